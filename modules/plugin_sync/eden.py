"""The Sahana Eden adapter: the one module of the plugin that reads web2py's `current`.

The engine (every other module here) takes a `db` and settings and knows
nothing of requests or of Eden.  This module is what models/plugin_sync.py and
controllers/plugin_sync.py call to fit the engine into the host:

- Eden defines its tables lazily (`current.s3db`): at model time `db.tables`
  holds a handful.  `load_tables()` defines the synced set through
  `s3db.table(name)`, so every request, process and the scheduler see the same
  set.  The model only makes sure, once per process, that the schema is ready
  (uuid indexes, change triggers, identity: `setup()`); the synced tables are
  loaded again only where they are used (the plugin's controller, the scheduled
  task, the CLI) through `prepare()`.
- Roles: the peer role is made the way Eden makes roles, `auth.s3_create_role`
  with a uid (`ensure_peer_role()`), never before Eden's first run made its own
  (Eden skips its prepopulate when any role exists).
- The scheduled sync is a task of Eden's own scheduler: registered in Eden's
  task registry (`settings.tasks`, run by Eden's `settings_task`) and scheduled
  once through `current.s3task.schedule_task` (`ensure_task()`).

In a plain web2py host (no `current.s3db`) every function falls back to the
engine's own behaviour: all defined tables, roles by name, a `scheduler_task` row.
"""
import threading

from gluon import current
from gluon.storage import Storage

from . import database_key, dialect, entities, jobs
from . import setup as engine_setup
from .accounts import PEER_GROUP, PEER_ROLE_DESCRIPTION, PEER_ROLE_NAME, ensure_peer_role as engine_peer_role
from .accounts import find_role, peer_group
from .log import briefly
from .replicate import LOCK_TTL, run_due
from .tables import DEFAULT_EDEN_TABLES, references

TASK = "plugin_sync_scheduled"  # the task's name in Eden's registry and in scheduler_task.task_name
TASK_UUID = "plugin_sync_scheduled-v1"
JOB_TASK = "plugin_sync_job"  # the task that runs a page's long work (jobs.py), queued per job
TASK_PERIOD = 60  # seconds: the task syncs the peers that are due (sync_instance.sync_interval)

_lock = threading.Lock()
_ready = set()  # (database, folder) whose schema this process has checked
_roles = set()
_tasks = set()


def is_eden(db=None):
    """Is the host Sahana Eden (lazy tables through current.s3db), and `db` its database in this request?

    `current` is per thread, not per application: a thread that served Eden keeps
    its current.s3db while it runs another app (or another instance, in the tests).
    """
    if getattr(current, "s3db", None) is None or getattr(current, "deployment_settings", None) is None:
        return False
    return db is None or getattr(current, "db", None) is db


def configure(settings, db=None):
    """The settings this instance runs with: a copy of the host's, with Eden's defaults where unset.

    A copy, because gluon's PluginManager keeps one settings object per thread,
    shared by every app (and request) that thread serves.  In Eden: the synced
    tables (tables.DEFAULT_EDEN_TABLES) and no lookup lists.
    """
    settings = Storage(settings)
    if is_eden(db):
        if settings.get("tables") is None:
            settings.tables = list(DEFAULT_EDEN_TABLES)
        if settings.get("lookup_tables") is None:
            settings.lookup_tables = []  # Eden's type lists (org_organisation_type...) sync with the rest
        if settings.get("match") == "eden" and settings.get("matcher") is None:
            settings.matcher = matcher
    return settings


def load_tables(db, settings):
    """Define the synced tables (and what Eden's models define along) in this request; the names missing.

    A table Eden does not have (a module switched off in the template) is
    reported, not silently dropped: pages and status list it as not here.
    """
    if not is_eden(db):
        return []
    s3db = current.s3db
    missing = []
    for name in settings.get("tables") or ():
        if name in db.tables:
            continue
        if getattr(current, "db", None) is not db:  # s3db defines into current.db: not this one's
            missing.append(name)
            continue
        try:
            table = s3db.table(name)
        except AttributeError:
            table = None
        if table is None:
            missing.append(name)
    names = [name for name in settings.get("tables") or () if name in db.tables]
    entities.attach(db, entity_model(db, names))
    # what they reference (org_region, auth_user, pr_pentity...): so that references travel with their uuid
    for name in names:
        for _, target, _ in references(db[name]):
            if target not in db.tables:
                try:
                    s3db.table(target)
                except AttributeError:
                    pass
    return missing


def entity_model(db, names):
    """Eden's data model for the merge (entities.Model), read from s3db's configuration of the synced tables.

    Super-entities and the fields update_super copies into them (as update_super
    decides: the instance's `<super>_fields` mapping, else the fields both have,
    minus the super key and the super table's `no_shared_fields`); users named
    by email and roles by uuid (Eden's S3XML maps them so); realms of the
    tables with a realm_entity; gis_location's path.
    """
    s3db = current.s3db
    get_config = s3db.get_config
    supers = {}
    for name in names:
        found = get_config(name, "super_entity") or ()
        table = db[name]
        for sname in found if isinstance(found, (list, tuple)) else [found]:
            stable = s3db.table(sname) if isinstance(sname, str) else sname
            if stable is None:
                continue
            tn, key = stable._tablename, stable._id.name
            protected = {key, "instance_type"} | set(get_config(tn, "no_shared_fields") or ())
            mapping = get_config(name, "%s_fields" % tn)
            if mapping:
                shared = {sf: f for sf, f in mapping.items() if sf not in protected and sf in stable.fields
                          and f in table.fields}
            else:
                shared = {f: f for f in stable.fields if f not in protected and f in table.fields}
            if "deleted" in stable.fields and "deleted" in table.fields:
                shared["deleted"] = "deleted"
            supers.setdefault(name, []).append(entities.Super(tn, key, shared))
    realms = [name for name in names if "realm_entity" in db[name].fields]
    paths = {"gis_location": ("parent", "path")} if "gis_location" in names and {"parent", "path"} <= set(
        db.gis_location.fields) else {}
    keys = {"auth_user": "email"} if "auth_user" in db.tables and "email" in db.auth_user.fields else {}
    ownership = {"owned_by_group": "auth_group"} if "auth_group" in db.tables else {}
    return entities.Model(supers=supers, keys=keys, realms=realms, realm_rule=_realm_rule(db, realms),
                          paths=paths, ownership=ownership, after=_affiliations(db, names))


def _affiliations(db, names):
    """Eden's organisational affiliations (pr_affiliation: a site's and a staff member's place under their
    organisation, which realm hierarchies and the organisation's pages read) for what the import wrote, as
    Eden's own functions keep them (what the tables' onaccept calls): for the records without their
    affiliation yet, set-based where the entity has no affiliation of that kind yet (affiliate_staff,
    affiliate_sites: new records, the bulk of an import), else Eden's function per record."""
    auth, s3db = current.auth, current.s3db
    sites = {name for name in names if name in (getattr(auth, "org_site_types", None) or ())}
    staff = {"hrm_human_resource"} & set(names)

    def upkeep(tablename, uuids):
        if not is_eden(db) or tablename not in sites | staff:
            return
        table = db[tablename]
        for k in range(0, len(uuids), 900):
            ids = _unaffiliated(db, table, uuids[k:k + 900], tablename in staff)
            if tablename in staff:
                for record_id in affiliate_staff(db, table, ids):  # the set-based common case first
                    s3db.pr_update_affiliations(table, record_id)
            else:
                for record_id in affiliate_sites(db, table, ids):
                    s3db.org_update_affiliations(tablename, {"id": record_id})
    upkeep.tables = sites | staff
    return upkeep


# Eden's names (pr.py: pr_human_resource_update_affiliations, OU)
STAFF, VOLUNTEER, SITES, OU = "Staff", "Volunteer", "Sites", 1


def affiliate_sites(db, table, ids):
    """Eden's org_site_update_affiliations for the sites `ids` (of an instance table of org_site: offices,
    facilities...), set-based for the common case; the ids it leaves to Eden's own org_update_affiliations.

    The common case: the site has an entity, no current "Sites" affiliation (a
    new site: Eden's function then removes nothing) and owns no OU role (the path
    rebuild of pr_add_to_role is a no-op, see affiliate_staff).  For those: the
    affiliation to the organisation's "Sites" role (made if missing, type OU),
    as add_affiliations does it; a site without organisation gets none, as in
    Eden.
    """
    if not ids:
        return []
    rows = db.executesql("SELECT t.id, t.pe_id, o.pe_id FROM %s t LEFT JOIN %s o ON o.id = t.organisation_id "
                         "WHERE t.id IN (%s)" % (table._rname, db.org_organisation._rname, _ints(ids)))
    busy = _busy_entities(db, {pe for _, pe, _ in rows if pe is not None}, (SITES,))
    add_affiliations(db, [(org_pe, SITES, pe) for _, pe, org_pe in rows if pe is not None and pe not in busy
                          and org_pe])
    return [rid for rid, pe, _ in rows if pe is None or pe in busy]


def affiliate_staff(db, table, ids):
    """Eden's pr_human_resource_update_affiliations for the staff records `ids` (hrm_human_resource), set-based
    for the common case of an import; the ids it leaves to Eden's own per-record function.

    The common case: the record's person has an entity, no current Staff or
    Volunteer affiliation (a person new here: Eden's function then removes
    nothing) and owns no OU role (then pr_add_to_role's `pr_rebuild_path(pe_id,
    clear=True)` is a no-op: it clears and rebuilds the paths of the OU roles
    the person's entity owns, and of their descendants: there are none; the
    roles it makes belong to the sites and organisations, never to the person,
    so this holds after them too).  For those persons, from all their current
    staff records (status 1, type 1 staff or 2 volunteer, not deleted), the
    masters as Eden computes them: type 1 the site's entity where the site's
    instance table has a pe_id, and the organisation's, role "Staff"; type 2 the
    organisation's, role "Volunteer".  Then per chunk: one lookup of the
    masters' roles, one INSERT of the missing ones (pe_id, role, role_type OU,
    path NULL: Eden's lazy rebuild), one lookup of their ids, one of the
    affiliations there (any, as pr_add_to_role asks) and one INSERT of the
    missing ones; the rows as the DAL's insert makes them (its defaults: uuid,
    created_on...).  Everyone else (a changed organisation, a person who owns
    OU roles, a record without person) goes to Eden's function per record.
    """
    if not ids:
        return []
    s3db = current.s3db
    ptable = db.pr_person
    rows = db.executesql("SELECT h.id, h.person_id, p.pe_id FROM %s h LEFT JOIN %s p ON p.id = h.person_id "
                         "WHERE h.id IN (%s)" % (table._rname, ptable._rname, _ints(ids)))
    entity = {pid: pe for _, pid, pe in rows if pid is not None and pe is not None}
    busy = _busy_entities(db, set(entity.values()), (STAFF, VOLUNTEER))
    left = [rid for rid, pid, pe in rows if pid not in entity or entity[pid] in busy]
    todo = {pid: pe for pid, pe in entity.items() if pe not in busy}
    if not todo:
        return left
    otable = db.org_organisation
    hrs = db.executesql(
        "SELECT h.person_id, h.type, h.site_id, o.pe_id FROM %s h LEFT JOIN %s o ON o.id = h.organisation_id "
        "WHERE h.person_id IN (%s) AND h.status = 1 AND h.type IN (1, 2) AND %s" % (
            table._rname, otable._rname, _ints(todo), _alive(db, "h")))
    site_pe = site_entities(db, {site for _, kind, site, _ in hrs if kind == 1 and site})
    masters = {}  # {person_id: {role: [master pe_id]}}, in Eden's order
    for pid, kind, site, org_pe in hrs:
        mine = masters.setdefault(pid, {STAFF: [], VOLUNTEER: []})
        role = STAFF if kind == 1 else VOLUNTEER
        for pe in ([site_pe.get(site)] if kind == 1 else []) + [org_pe]:
            if pe and pe not in mine[role]:
                mine[role].append(pe)
    add_affiliations(db, [(m, role, todo[pid]) for pid, mine in masters.items() for role in (STAFF, VOLUNTEER)
                          for m in mine[role]])
    return left


def site_entities(db, site_ids):
    """{site_id: pe_id} of the sites whose instance table has a pe_id (as Eden reads it: org_site's
    instance_type, then that table's row of the site_id; deleted or not)."""
    s3db, out = current.s3db, {}
    if not site_ids:
        return out
    stable, kinds = db.org_site, {}
    for chunk in _chunked(sorted(site_ids)):
        for site, kind in db.executesql("SELECT site_id, instance_type FROM %s WHERE site_id IN (%s)" % (
                stable._rname, _ints(chunk))):
            kinds.setdefault(kind, []).append(site)
    for kind, sites in kinds.items():
        itable = s3db.table(kind, None) if kind else None
        if itable is None or "pe_id" not in itable.fields or "site_id" not in itable.fields:
            continue
        for chunk in _chunked(sites):
            for site, pe in db.executesql("SELECT site_id, pe_id FROM %s WHERE site_id IN (%s) ORDER BY id" % (
                    itable._rname, _ints(chunk))):
                out.setdefault(site, pe)
    return out


def _busy_entities(db, pe_ids, roles):
    """The entities among `pe_ids` that Eden's per-record function must see: with a current affiliation in one
    of these roles (it may remove one), or owning a current OU role (pr_rebuild_path has paths to redo)."""
    out = set()
    if not pe_ids:
        return out
    s3db, ph = current.s3db, dialect.placeholder(db)
    atable, rtable = s3db.table("pr_affiliation"), s3db.table("pr_role")
    for chunk in _chunked(sorted(pe_ids)):
        marks = _ints(chunk)
        out.update(r[0] for r in db.executesql(
            "SELECT a.pe_id FROM %s a JOIN %s r ON r.id = a.role_id WHERE a.pe_id IN (%s) AND %s AND %s "
            "AND r.role IN (%s) UNION SELECT r.pe_id FROM %s r WHERE r.pe_id IN (%s) AND r.role_type = %d AND %s" % (
                atable._rname, rtable._rname, marks, _alive(db, "a"), _alive(db, "r"), ",".join([ph] * len(roles)),
                rtable._rname, marks, OU, _alive(db, "r")), placeholders=list(roles)))
    return out


def add_affiliations(db, wanted):
    """Eden's pr_add_affiliation(master, affiliate, role, role_type=OU) for each (master, role, affiliate) of
    `wanted`, set-based, for affiliates that own no OU role (see affiliate_staff: the path rebuild is a no-op).

    As Eden: a master's current role of that name, whatever its type (the first
    one), else a new one of type OU with no path; an affiliation unless one of
    that role and entity is there (deleted or not, as pr_add_to_role asks).
    """
    if not wanted:
        return
    s3db = current.s3db
    rtable, atable = s3db.table("pr_role"), s3db.table("pr_affiliation")
    keys = sorted({(m, role) for m, role, _ in wanted})
    roles = _roles_of(db, rtable, keys)
    missing = [k for k in keys if k not in roles]
    if missing:
        insert_rows(db, rtable, [dict(pe_id=m, role=role, role_type=OU) for m, role in missing])
        roles.update(_roles_of(db, rtable, missing))
    pairs = list(dict.fromkeys((roles[(m, role)], a) for m, role, a in wanted if (m, role) in roles))
    there = set()
    for chunk in _chunked(pairs):
        there.update(db.executesql("SELECT role_id, pe_id FROM %s WHERE role_id IN (%s) AND pe_id IN (%s)" % (
            atable._rname, _ints({r for r, _ in chunk}), _ints({a for _, a in chunk}))))
    insert_rows(db, atable, [dict(role_id=r, pe_id=a) for r, a in pairs if (r, a) not in there])


def _roles_of(db, rtable, keys):
    """{(pe_id, role): id} of the current roles of these names of these entities (the lowest id of each)."""
    ph, out = dialect.placeholder(db), {}
    wanted = set(keys)
    for chunk in _chunked(keys):
        names = sorted({role for _, role in chunk})
        for pe, role, rid in db.executesql(
                "SELECT r.pe_id, r.role, min(r.id) FROM %s r WHERE r.pe_id IN (%s) AND r.role IN (%s) AND %s "
                "GROUP BY r.pe_id, r.role" % (rtable._rname, _ints({m for m, _ in chunk}), ",".join([ph] * len(names)),
                                              _alive(db, "r")), placeholders=names):
            if (pe, role) in wanted:
                out[(pe, role)] = rid
    return out


def insert_rows(db, table, rows, size=400):
    """Insert these rows (dicts of the same fields) as the DAL's `table.insert(**row)` would make each (its
    defaults and computed fields, a fresh uuid per row, its before-insert callbacks), one multi-row INSERT per
    `size` rows; through the DAL's bulk_insert (a statement per row) where the table has after-insert callbacks."""
    if not rows:
        return
    if table._after_insert:  # (Eden's tables have none)
        table.bulk_insert(rows)
        return
    adapter = db._adapter
    literal = _literals(adapter)
    for k in range(0, len(rows), size):
        ops = []
        for r in rows[k:k + size]:
            row = table._fields_and_values_for_insert(dict(r))
            if any(f(row) for f in table._before_insert):  # (as the DAL's insert: such a row is not inserted)
                continue
            ops.append(sorted(row.op_values(), key=lambda fv: fv[0].name))
        if not ops:
            continue
        fields = [f for f, _ in ops[0]]
        if any([f for f, _ in op] != fields for op in ops):  # (not the same fields: one at a time)
            for op in ops:
                adapter.insert(table, op)
            continue
        db.executesql("INSERT INTO %s (%s) VALUES %s" % (
            table._rname, ", ".join(f._rname for f in fields),
            ", ".join("(%s)" % ", ".join(literal(f, v) for f, v in op) for op in ops)))


def _literals(adapter):
    """The DAL's SQL literal of a field's value (adapter.expand), computed once per value that is the same on
    many rows (a default: deleted, mci, an owner...); per row for a callable default (created_on) and for a
    field of a custom type, whose encoder may make a value (Eden's uuid: a new one for "")."""
    memo = {}

    def literal(f, v):
        if callable(v) or not isinstance(f.type, str):
            return adapter.expand(v, f.type)
        key = (f.name, type(v), v)
        try:
            return memo[key]
        except KeyError:
            memo[key] = out = adapter.expand(v, f.type)
            return out
        except TypeError:  # (not hashable)
            return adapter.expand(v, f.type)
    return literal


def _alive(db, alias):
    """SQL: the row `alias` is not deleted, as Eden's `deleted != True` asks (NULL too)."""
    return "(%s.deleted IS NULL OR %s.deleted <> %s)" % (alias, alias, "'T'" if dialect.char_bool(db) else "TRUE")


def _ints(values):
    return ",".join(str(int(v)) for v in values)


def _chunked(seq, n=900):
    seq = list(seq)
    return [seq[k:k + n] for k in range(0, len(seq), n)]


def _unaffiliated(db, table, uuids, staff):
    """ids of these records whose entity (a site's; a staff record's person's) has no affiliation with their
    organisation yet, so that Eden's functions run only where there is work (new records, a changed
    organisation), not for every record a re-sync updates.  Two queries: the records' entities and
    organisations, then the affiliations of those entities (Eden gives pr_affiliation.pe_id no index: a
    subquery per record would scan it per record)."""
    s3db, ph = current.s3db, dialect.placeholder(db)
    atable, rtable, otable = s3db.table("pr_affiliation"), s3db.table("pr_role"), db.org_organisation
    if staff:
        entity = "LEFT JOIN %s p ON p.id = t.person_id" % db.pr_person._rname, "p.pe_id"
    else:
        entity = "", "t.pe_id"
    rows = db.executesql("SELECT t.id, %s, t.organisation_id FROM %s t %s WHERE t.uuid IN (%s) AND "
                         "t.organisation_id IS NOT NULL" % (entity[1], table._rname, entity[0],
                                                            ",".join([ph] * len(uuids))), placeholders=list(uuids))
    pes = {pe for _, pe, _ in rows if pe is not None}
    there = set()
    for chunk in _chunked(sorted(pes)):
        there.update(db.executesql(
            "SELECT a.pe_id, o.id FROM %s a JOIN %s r ON r.id = a.role_id JOIN %s o ON o.pe_id = r.pe_id "
            "WHERE a.pe_id IN (%s) AND %s AND %s" % (atable._rname, rtable._rname, otable._rname, _ints(chunk),
                                                     _alive(db, "a"), _alive(db, "r"))))
    return [rid for rid, pe, org in rows if (pe, org) not in there]


def _realm_rule(db, realms):
    """Eden's own realm function for the tables whose realm a template decides in Python (the deployment's
    `auth.realm_entity`, a table's `realm_entity` hook): None where Eden's default cascade holds everywhere
    (entities.set_realms computes that one set-based)."""
    settings, get_config = current.deployment_settings, current.s3db.get_config
    deployment = callable(settings.get_auth_realm_entity())
    custom = {name for name in realms if deployment or callable(get_config(name, "realm_entity"))}
    if not custom:
        return None

    def rule(tablename, uuids):
        if tablename not in custom or not is_eden(db):
            return False
        table = db[tablename]
        for k in range(0, len(uuids), 900):
            current.auth.set_realm_entity(table, table.uuid.belongs(uuids[k:k + 900]), force_update=True)
        return True
    return rule


def _key(db):
    return database_key(db)


def setup(db, settings):
    """The model's call, every request: settings, the task's registration, and once per process the schema."""
    if _key(db) in _ready:
        return
    with _lock:
        if _key(db) in _ready:
            return
        load_tables(db, settings)
        engine_setup(db, settings)  # uuid indexes, change triggers (idempotent), identity
        _ready.add(_key(db))


def prepare(db, settings):
    """Before the engine runs in a request (pages, endpoints, task, CLI): the synced tables defined here."""
    missing = load_tables(db, settings)
    if _key(db) not in _ready:
        setup(db, settings)
    return missing


def ensure_peer_role(db, settings):
    """The peer role's id; in Eden made by auth.s3_create_role with its uid (once Eden's own roles exist)."""
    name = peer_group(settings)
    found = find_role(db, name)
    if found:
        return found
    auth = getattr(current, "auth", None)
    if is_eden(db) and hasattr(auth, "s3_create_role") and not db(db.auth_group).isempty():
        role_id = auth.s3_create_role(PEER_ROLE_NAME if name == PEER_GROUP else name, PEER_ROLE_DESCRIPTION,
                                      uid=name)
        db.commit()
        return role_id
    if is_eden(db):
        return None  # Eden's first run has not made its roles yet: do not pre-empt it
    return engine_peer_role(db, settings)


def scheduled(db, settings):
    """The scheduled task: sync the peers that are due; {base_uuid: "ok" | "error: ..."}."""
    prepare(db, settings)
    return run_due(db, settings)


def register_task(db, function):
    """Put a task (by its function's name) into Eden's task registry (deployment settings' tasks, run by Eden's
    `settings_task`)."""
    if not is_eden(db):
        return False
    current.deployment_settings.tasks[function.__name__] = function
    return True


def run_job(db, settings, job_id, app_folder):
    """The job task (a page's long work, jobs.py): the synced tables defined, then the job run; its final state."""
    prepare(db, settings)
    return jobs.run(db, settings, int(job_id), app_folder)


def start_job(db, settings, job_id, app_folder, worker_alive):
    """Queue a job for Eden's scheduler worker; "queued", or "ran" when it ran here and now.

    Queued the way Eden schedules tasks (S3Task.schedule_task: a one-off scheduler_task row of
    Eden's `settings_task`; its run_async fails with this gluon and pydal), and the worker told
    to pick it up at once.  With no live worker (`worker_alive`: health.scheduler_state), in a
    host without Eden's S3Task, or where queueing fails, the job runs in the calling request:
    the page then answers when it is done, instead of waiting for a worker that is not there.
    """
    s3task = getattr(current, "s3task", None)
    if worker_alive and is_eden(db) and s3task is not None and "scheduler_task" in db.tables:
        try:
            task_id = s3task.schedule_task(JOB_TASK, function_name="settings_task",
                                           vars={"taskname": JOB_TASK, "job": int(job_id)}, repeats=1,
                                           retry_failed=0, timeout=task_timeout(settings), ignore_duplicate=True,
                                           user_id=False)
            if "scheduler_worker" in db.tables:  # the ticker assigns it now, not at its next round
                db(db.scheduler_worker.is_ticker == True).update(status="PICK")  # noqa: E712 (pydal)
            db.commit()
            return "queued"
        except Exception:  # the scheduler's tables locked or missing: run it here rather than not at all
            db.rollback()
    run_job(db, settings, job_id, app_folder)
    return "ran"


def task_timeout(settings):
    """A run may take long (a first full sync); the lock outlives the scheduler's timeout."""
    return max(60, int((settings.get("lock_ttl") or LOCK_TTL) * 0.9))


def ensure_task(db, settings):
    """The periodic scheduler_task row (every minute, forever, failures retried), created once.

    In Eden through its S3Task (`schedule_task` of Eden's `settings_task` with
    taskname=plugin_sync_scheduled); in a plain host a row for the task itself.
    Returns the row's id, or None where no scheduler is defined.
    """
    if "scheduler_task" not in db.tables:
        return None
    task = db.scheduler_task
    row = db(task.task_name == TASK).select(task.id, limitby=(0, 1)).first()
    if row:
        return row.id
    s3task = getattr(current, "s3task", None)
    if is_eden(db) and s3task is not None:
        task_id = s3task.schedule_task(TASK, function_name="settings_task", vars={"taskname": TASK},
                                       period=TASK_PERIOD, repeats=0, retry_failed=-1,
                                       timeout=task_timeout(settings), ignore_duplicate=True, user_id=False)
        db(task.id == task_id).update(uuid=TASK_UUID, prevent_drift=True)  # unique: one row, however many ask
    else:
        task_id = task.insert(function_name=TASK, task_name=TASK, uuid=TASK_UUID, args="[]", vars="{}",
                              period=TASK_PERIOD, repeats=0, retry_failed=-1, timeout=task_timeout(settings),
                              prevent_drift=True)
    db.commit()
    return task_id


def once_per_process(db, settings):
    """The controller's call: the peer role and the scheduled task, checked once per process."""
    key = _key(db)
    _once(db, key, _roles, lambda: ensure_peer_role(db, settings))
    _once(db, key, _tasks, lambda: ensure_task(db, settings))


def _once(db, key, done, ensure):
    """Run `ensure` until it succeeds once for `key`.  It may not break, nor hold up, the request it
    runs in: a failure (two processes at once), or SQLite's write lock held by an import for more
    than a moment (log.briefly), is retried at the next request."""
    if key in done:
        return
    made = []
    try:
        if briefly(db, lambda: made.append(ensure())) and made[0]:
            done.add(key)
    except Exception:
        db.rollback()


# ------------------------------------------------------------------ menus
PAGES = (("index", "Dashboard"), ("export", "Export"), ("import_and_sync", "Import"), ("instances", "Peers"),
         ("log", "Log"), ("conflicts", "Conflicts"))


def add_main_menu(T):
    """Eden's main menu: a "Sync (plugin)" entry under the administrator's menu (built by Eden's 00_utils model).

    Only where Eden built that menu for an ADMIN (its menu_admin is None otherwise); no Eden file changes.
    """
    main = (getattr(current, "menu", None) or {}).get("main")
    auth = getattr(current, "auth", None)
    if main is None or auth is None or not hasattr(auth, "s3_has_role") or not auth.s3_has_role("ADMIN"):
        return False
    try:
        from s3layouts import MM
    except ImportError:
        return False
    for item in main.components:
        if getattr(item, "controller", None) == "admin" and not any(
                getattr(c, "controller", None) == "plugin_sync" for c in item.components):
            item.append(_shown(MM(T("Sync (plugin_sync)"), c="plugin_sync", f="index")))
            return True
    return False


def set_options_menu(T):
    """Eden's left-hand options menu on the plugin's pages (Eden has none for an unknown controller)."""
    menu = getattr(current, "menu", None)
    if menu is None or "main" not in menu:
        return False
    try:
        from s3layouts import M
    except ImportError:
        return False
    menu.options = _shown(M(c="plugin_sync")(*[_shown(M(T(label), f=f)) for f, label in PAGES]))
    return True


def _shown(item):
    """Eden hides (check_active) and refuses (check_permission) menu items of controllers that are not Eden modules
    (settings.has_module): the
    plugin's pages check the admin role themselves, so its items are shown to whoever sees the menu."""
    item.check_active = lambda request=None: True
    item.check_permission = lambda: True
    return item


# ------------------------------------------------------------------ translations
def add_translations(T, app_folder):
    """The plugin's own strings in the language asked for: languages/plugin_sync/<lang>.py of the application.

    web2py has one language file per application (Eden's languages/es.py...), which the plugin
    must not edit. The plugin's file is merged into a private copy of T's table for this request
    only (with a private cache: web2py's is shared by every request of that language file), where
    Eden has no translation of a string (or only the string itself, as web2py records unknown ones).
    Returns the file used, or None.
    """
    import os
    from gluon.languages import read_dict
    asked = [getattr(T, "accepted_language", None)] + list(getattr(T, "requested_languages", None) or ())
    for lang in [str(a).lower() for a in asked if a]:
        for name in (lang, lang[:2]):
            path = os.path.join(app_folder, "languages", "plugin_sync", "%s.py" % name)
            if os.path.isfile(path):
                table = dict(T.t)
                for key, value in read_dict(path).items():
                    if table.get(key) in (None, key):
                        table[key] = value
                T.t, T.cache = table, ({}, threading.RLock())
                return path
    return None


METHOD = Storage(CREATE="create", UPDATE="update", DELETE="delete", MERGE="merge")  # S3ImportItem.METHOD


class _Item(object):
    """What a deduplicate rule reads of Eden's S3ImportItem (table, data, components) and sets (id, method)."""

    METHOD = METHOD

    def __init__(self, table, data):
        self.table, self.tablename, self.data = table, table._tablename, Storage(data)
        self.components, self.id, self.method, self.skip, self.original = [], None, METHOD.CREATE, False, None
        self.uid = data.get("uuid")


def matcher(tablename, rows, resolve):
    """{incoming uuid: local uuid} of the rows ({column: cell}) that the table's own `deduplicate` rule
    (the one Eden's S3XML import asks, often S3Duplicate) matches with a record here (match = "eden")."""
    from .fileformat import NULL, UUID

    s3db = current.s3db
    rule = s3db.get_config(tablename, "deduplicate")
    if not rule:
        return {}
    table = s3db.table(tablename)
    refs = [(f, target) for f, target, is_list in references(table) if not is_list]
    ids = {f: resolve(target, {r.get(f + UUID) for r in rows} - {None, NULL, ""}) for f, target in refs}
    found = {}
    for row in rows:
        data = _typed(table, row)
        for f, _ in refs:
            data[f] = ids[f].get(row.get(f + UUID))
        item = _Item(table, data)
        rule(item)
        if item.id:
            found[row["uuid"]] = item.id
    if not found:
        return {}
    here = current.db(table._id.belongs(set(found.values()))).select(table._id, table.uuid)
    uuids = {r[table._id.name]: r.uuid for r in here}
    return {u: uuids[i] for u, i in found.items() if i in uuids}


def _typed(table, row):
    """The cells of a file's row as the values a deduplicate rule compares (dates as dates...); a cell
    that does not read is left out (the merge itself reports it)."""
    from .dialect import char_bool
    from .fileformat import NULL
    from .values import is_text, parser

    data = {}
    for f, cell in row.items():
        if f not in table.fields:
            continue
        read = parser(table[f].type, char_bool(table._db))
        try:
            data[f] = None if cell == NULL else cell if is_text(read) else read(cell)
        except ValueError:
            pass
    return data

