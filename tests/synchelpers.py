"""Helpers for sync tests: move data between two app environments, compare by uuid."""
import datetime
import io
import json

from applications.eden.modules.plugin_sync.fileio import export_bytes, import_from
from applications.eden.modules.plugin_sync.fileformat import NULL, UUID
from applications.eden.modules.plugin_sync.tables import LOCAL_META, references, synced_tables, travelling_fields

# local, not content (tables.LOCAL_META), the uuids of the local accounts, and deleted_fk (local ids)
LOCAL = LOCAL_META + ("created_by" + UUID, "modified_by" + UUID, "deleted_fk")


def settings(env):
    return env["plugin_sync_settings"]


def export(env, **kw):
    return export_bytes(env["db"], settings(env), **kw)


def sync(src, dst, dry_run=False, **kw):
    """Export everything from src and import it into dst; return dst's report."""
    data = export(src, **kw)
    return import_from(dst["db"], settings(dst), io.BytesIO(data), dry_run=dry_run)


def snapshot(env, tables=None):
    """{table: {uuid: {column: text}}}: content by identity, local ids replaced by uuids.

    Read with a plain select and turned into text by its own simple rule (_text), not by the export:
    a drift of the exporter's cells then shows as a difference (tests/test_export_cells.py holds
    the exporter to the same cells).  Columns as in the file: the travelling fields but the local
    ones (LOCAL) and the references, whose `@uuid` columns name their targets instead.
    """
    db = env["db"]
    out, uuids = {}, {}

    def uuid_of(target, i):
        if target not in uuids:
            uuids[target] = dict(db.executesql("SELECT id, uuid FROM %s" % db[target]._rname))
        return uuids[target].get(i)

    for t in tables or synced_tables(db, settings(env)):
        table = db[t]
        refs = {f: (target, is_list) for f, target, is_list in references(table)}
        if "deleted_rb" in table.fields:
            refs["deleted_rb"] = (t, False)
        fields = [f for f in travelling_fields(db, table) if f not in LOCAL]
        rows = {}
        for r in db(table).select(*[table[f] for f in fields], table.deleted_fk if "deleted_fk" in table.fields else table.id,
                                  cacheable=True):
            content = {}
            for f in fields:
                value = r[f]
                if f not in refs:
                    content[f] = _text(value)
                elif refs[f][1]:  # list:reference: the targets' uuids in list order
                    named = [uuid_of(refs[f][0], i) for i in value or []]
                    content[f + UUID] = "|%s|" % "|".join(u for u in named if u) if value else NULL
                else:
                    content[f + UUID] = _text(uuid_of(refs[f][0], value) if value is not None else None)
            if "deleted_fk" in table.fields:
                content["deleted_fk" + UUID] = _deleted_fk(table, r.deleted_fk, uuid_of)
            rows[content["uuid"]] = content
        out[t] = rows
    return out


def _text(value):
    """A value as text, by a rule of the tests' own: <NULL>, date and time to the second, the rest str()."""
    if value is None:
        return NULL
    if isinstance(value, datetime.datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S")
    if isinstance(value, (datetime.date, datetime.time)):
        return value.isoformat()[:19]
    if isinstance(value, (list, dict)):
        return json.dumps(value, sort_keys=True, default=str)
    return str(value)


def _deleted_fk(table, text, uuid_of):
    """deleted_fk's {field: local id} as {field: uuid} (JSON, sorted), as the file carries it."""
    try:
        data = json.loads(text) if text else None
    except ValueError:
        data = None
    if not data or not isinstance(data, dict):
        return NULL
    named = {}
    for f, i in data.items():
        target = table[f].type[10:].strip() if f in table.fields and table[f].type.startswith("reference ") else None
        named[f] = uuid_of(target, i) if target and isinstance(i, int) else None
    return json.dumps(named, sort_keys=True)


def dangling(env):
    """References that point at no row (must be zero after any sync)."""
    db = env["db"]
    bad = []
    for t in synced_tables(db, settings(env)):
        for f, target, is_list in references(db[t]):
            if is_list:
                for r in db(db[t]).select(db[t].id, db[t][f]):
                    for i in r[f] or []:
                        if not db(db[target].id == i).count():
                            bad.append((t, r.id, f, i))
                continue
            q = (db[t][f] != None) & ~db[t][f].belongs(db()._select(db[target].id))  # noqa: E711
            bad += [(t, r.id, f, r[f]) for r in db(q).select(db[t].id, db[t][f])]
    return bad


def count(env, table, **where):
    """Rows of `table` matching `where` (field=value), read fresh (committed before and after)."""
    db = env["db"]
    db.commit()
    query = db[table].id > 0
    for k, v in where.items():
        query &= db[table][k] == v
    n = db(query).count()
    db.commit()
    return n


def sections(text):
    """{table: section text} of an export, in file order."""
    body = text.rsplit("END", 1)[0]
    out = {}
    for block in body.split("TABLE ")[1:]:
        name = block.split("\r\n", 1)[0]
        out[name] = "TABLE " + block
    return out


def reorder(data, first):
    """The same export with the sections in another order (children before parents)."""
    secs = sections(data.decode("utf-8"))
    order = ["sync_instance"] + first + [t for t in secs if t not in first and t != "sync_instance"]
    return ("".join(secs[t] for t in order) + "END").encode("utf-8")


def counts(env):
    db = env["db"]
    return {t: db(db[t]).count() for t in db.tables}


def seed_small(env, prefix="A"):
    """A small realistic graph: types, orgs, a 3-level location chain, persons, HRs, hospitals, an incident."""
    db = env["db"]
    ot = seed_lookups(env)
    org1 = db.org_organisation.insert(name="%s Red Cross" % prefix, acronym="RC", organisation_type_id=ot, country="TL")
    org2 = db.org_organisation.insert(name="%s Ministry of Health" % prefix, country="TL")
    l0 = db.gis_location.insert(name="Timor-Leste", level="L0", code="TL")
    l1 = db.gis_location.insert(name="%s Aileu" % prefix, level="L1", parent=l0, population=37926)
    l2 = db.gis_location.insert(name="%s Aileu Vila" % prefix, level="L2", parent=l1, lat=-8.73, lon=125.57)
    p1 = db.pr_person.insert(first_name="Maria", last_name="Alex", gender="female", location_id=l2, email="m@x.tl")
    p2 = db.pr_person.insert(first_name="Mariano", last_name="Rodriques", gender="male", location_id=l1)
    db.hrm_human_resource.insert(person_id=p1, organisation_id=org1, type="volunteer", job_title="Nurse")
    db.hrm_human_resource.insert(person_id=p2, organisation_id=org1, type="staff")
    db.hms_hospital.insert(name="%s Hospital, \"Central\", Dili" % prefix, organisation_id=org2, location_id=l2,
                           total_beds=120, status="Functional", comments="line one\nline two, with comma")
    db.org_office.insert(name="%s head office" % prefix, organisation_id=org1, location_id=l1)
    db.event_incident.insert(name="%s floods" % prefix, location_id=l1, organisation_ids=[org1, org2])
    db.commit()
    return dict(org1=org1, org2=org2, l0=l0, l1=l1, l2=l2, p1=p1, p2=p2, ot=ot)


def pad_ids(env, n=7):
    """Make local ids differ between instances: burn n ids in every synced table."""
    db = env["db"]
    for t in synced_tables(db, settings(env)):
        for _ in range(n):
            kw = {"first_name": "x"} if t == "pr_person" else {"value": "x"} if t == "pr_contact" else {"name": "x"}
            pad_person = None
            if t == "hrm_human_resource":
                kw = {"person_id": db.pr_person.insert(first_name="pad")}
                pad_person = kw["person_id"]
            i = db[t].insert(**kw)
            db(db[t].id == i).delete()
            if pad_person:
                db(db.pr_person.id == pad_person).delete()
    db.commit()


NGO = "urn:uuid:00000000-0000-4000-8000-000000000001"


def seed_lookups(env):
    """The lookup list, identical on every site (same uuids): not synced, resolved by uuid."""
    db = env["db"]
    row = db(db.org_organisation_type.uuid == NGO).select().first()
    return row.id if row else db.org_organisation_type.insert(name="NGO", uuid=NGO)


def instances(new_instance, *names, pad=3):
    """Fresh instances with the same lookup lists and different local ids."""
    envs = []
    for k, name in enumerate(names or ("a", "b")):
        env = new_instance(name)
        pad_ids(env, pad * k)
        seed_lookups(env)
        env["db"].commit()
        envs.append(env)
    return envs


def assert_converged(*envs):
    """All instances hold the same content by uuid, and no reference dangles."""
    first = snapshot(envs[0])
    for env in envs[1:]:
        other = snapshot(env)
        diffs = []
        for t in first:
            for u in set(first[t]) | set(other[t]):
                x, y = first[t].get(u), other[t].get(u)
                if x != y:
                    keys = [k for k in (x or y) if (x or {}).get(k) != (y or {}).get(k)]
                    diffs.append((t, u, [(k, (x or {}).get(k), (y or {}).get(k)) for k in keys][:4]))
        assert not diffs, diffs[:5]
    for env in envs:
        assert dangling(env) == []


def concurrent_org_edit(a, b, t0):
    """The same organisation (acronym RC) edited on both sides, uncommitted: A's phone 111 five
    minutes before `t0`, B's phone 222 at `t0`; its uuid."""
    db_a, db_b = a["db"], b["db"]
    org_uuid = db_a(db_a.org_organisation.acronym == "RC").select().first().uuid
    db_a(db_a.org_organisation.uuid == org_uuid).update(phone="111", modified_on=t0 - datetime.timedelta(minutes=5))
    db_b(db_b.org_organisation.uuid == org_uuid).update(phone="222", modified_on=t0)
    return org_uuid


def org_conflict(a, b):
    """A's older phone (111) meets B's newer one (222) on B: a conflict kept local there; the org's uuid."""
    seed_small(a)
    sync(a, b)
    org_uuid = concurrent_org_edit(a, b, datetime.datetime.utcnow().replace(microsecond=0))
    a["db"].commit(); b["db"].commit()
    sync(a, b)
    return org_uuid


def hub_peers(db, count, now):
    """`count` peers of a hub in every state, their runs logged as of `now`: 3 failing, 5 overdue (by 1 to 5
    intervals), 7 never synced, 2 file-only, the rest fine; {state: [base_uuid, ...]}."""
    states = {"failing": [], "overdue": [], "never": [], "file": [], "ok": []}

    def peer(name, url="http://127.0.0.1:9/eden"):
        base_uuid = "hub-peer-%03d" % (db(db.sync_instance).count() + 1)
        db.sync_instance.insert(base_uuid=base_uuid, owner=name, url=url, sync_interval=10, mode="both")
        return base_uuid

    def run(base_uuid, minutes_ago, error=None):
        db.plugin_sync_log.insert(started_on=now - datetime.timedelta(minutes=minutes_ago), operation="pull",
                                  peer=base_uuid, result="error" if error else "ok", error=error, docs_read=3,
                                  docs_written=2)
    for i in range(count):
        state = ("failing" if i < 3 else "overdue" if i < 8 else "never" if i < 15 else "file" if i < 17 else "ok")
        base_uuid = peer("%s %02d" % (state, i), url=None if state == "file" else "http://127.0.0.1:9/eden")
        if state == "failing":
            run(base_uuid, 2, error="connection refused")
        elif state == "overdue":
            run(base_uuid, 20 * (i - 2))
        elif state == "ok":
            run(base_uuid, 1)
        states[state].append(base_uuid)
    db.commit()
    return states
