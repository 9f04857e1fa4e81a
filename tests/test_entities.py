"""The host's data model in the sync, on the minihost (fast tier, SQLite and PostgreSQL): super records,
realms and location paths, as the minihost's own Model describes them (tests/minihost/models/eden.py: the
super-entity pr_pentity of organisations and offices, its realm rule, gis_location.path).  Real Eden's
model: tests/test_eden_entities.py.

A's records reach B, whose own records came first (every local id differs): B makes its own super
records and keys, realms and paths; nothing of A's local ids is stored, whatever the file says.
"""
import io
import json

import pytest

from synchelpers import export, instances, reorder, settings, sync

from applications.eden.modules.plugin_sync import entities, merge
from applications.eden.modules.plugin_sync.errors import TableNotSynced
from applications.eden.modules.plugin_sync.fileio import import_from
from applications.eden.modules.plugin_sync.tables import exclusion, synced_tables


def made(env, tablename, **fields):
    """A record made here (an organisation or an office gets its super record at once, as in Eden)."""
    return env["db"][tablename].insert(**fields)


def by_uuid(env, tablename, uuid):
    db = env["db"]
    return db(db[tablename].uuid == uuid).select().first()


def entity(env, pe_id):
    return env["db"].pr_pentity[pe_id]


def seed_b_first(b):
    """B's own entities first: its pe_ids for A's records cannot be A's."""
    for k in range(3):
        made(b, "org_organisation", name="B org %d" % k)
    b["db"].commit()


def test_a_new_record_gets_its_super_record_and_references_to_it_resolve_by_uuid(new_instance):
    a, b = instances(new_instance)
    seed_b_first(b)
    db = a["db"]
    org = made(a, "org_organisation", name="Alpha Relief")
    office = made(a, "org_office", name="Alpha HQ", organisation_id=org)
    made(a, "pr_contact", pe_id=db.org_organisation[org].pe_id, contact_method="EMAIL", value="info@alpha.org")
    made(a, "pr_contact", pe_id=db.org_office[office].pe_id, contact_method="PHONE", value="+670 123")
    db.commit()
    data = export(a)
    assert b"org_organisation.pe_id," not in data  # a record's own super key is local: not sent

    report = import_from(b["db"], settings(b), data)
    assert report.totals()["refs_nulled"] == 0, report.warnings
    dbb = b["db"]
    for table, uuid in (("org_organisation", db.org_organisation[org].uuid),
                        ("org_office", db.org_office[office].uuid)):
        row = by_uuid(b, table, uuid)
        sup = entity(b, row.pe_id)  # made on arrival, same uuid, its instance type
        assert (sup.uuid, sup.instance_type, sup.deleted) == (uuid, table, False)
    # the contacts hang off B's entities of the organisation and the office, not A's pe_ids
    got = {c.value: entity(b, c.pe_id).uuid for c in dbb(dbb.pr_contact).select()}
    assert got == {"info@alpha.org": db.org_organisation[org].uuid, "+670 123": db.org_office[office].uuid}
    assert by_uuid(b, "org_organisation", db.org_organisation[org].uuid).pe_id != db.org_organisation[org].pe_id

    entities_before = dbb(dbb.pr_pentity).count()
    again = import_from(dbb, settings(b), data)  # a second import changes nothing, makes no second super record
    assert not again.changed and dbb(dbb.pr_pentity).count() == entities_before


def test_a_contact_before_its_entity_in_the_file_waits_for_the_super_record(new_instance):
    a, b = instances(new_instance)
    seed_b_first(b)
    db = a["db"]
    org = made(a, "org_organisation", name="Alpha Relief")
    made(a, "pr_contact", pe_id=db.org_organisation[org].pe_id, contact_method="EMAIL", value="info@alpha.org")
    db.commit()
    reordered = reorder(export(a), ["pr_contact"])
    assert reordered.index(b"TABLE pr_contact") < reordered.index(b"TABLE org_organisation")
    report = import_from(b["db"], settings(b), reordered)
    assert report.totals()["refs_nulled"] == 0, report.warnings
    contact = b["db"](b["db"].pr_contact.value == "info@alpha.org").select().first()
    assert entity(b, contact.pe_id).uuid == db.org_organisation[org].uuid


def test_realms_are_the_receivers_by_its_rule_never_the_files(new_instance):
    a, b = instances(new_instance)
    seed_b_first(b)
    db = a["db"]
    org = made(a, "org_organisation", name="Alpha Relief")
    other = made(a, "org_organisation", name="Beta Aid")
    office = made(a, "org_office", name="Alpha HQ", organisation_id=org)
    db(db.org_office.id == office).update(realm_entity=db.org_organisation[org].pe_id)
    db.commit()
    data = export(a).decode("utf-8")
    # a hostile file says the realm is the sender's id 4242: realm_entity is local, never taken
    data = data.replace("org_office.name,", "org_office.realm_entity,org_office.name,", 1)
    data = data.replace("\r\n%d,Alpha HQ," % office, "\r\n%d,4242,Alpha HQ," % office, 1)
    assert "4242" in data
    report = import_from(b["db"], settings(b), data.encode("utf-8"))
    assert report.totals()["created"] == 3, report.warnings
    uuid = db.org_office[office].uuid
    b_org, b_office = by_uuid(b, "org_organisation", db.org_organisation[org].uuid), by_uuid(b, "org_office", uuid)
    assert b_org.realm_entity == b_org.pe_id  # an organisation's realm: its own entity
    assert b_office.realm_entity == b_org.pe_id  # an office's: its organisation's

    db(db.org_office.id == office).update(organisation_id=other)  # the office moves to the other organisation
    db.commit()
    sync(a, b)
    b_other = by_uuid(b, "org_organisation", db.org_organisation[other].uuid)
    assert by_uuid(b, "org_office", uuid).realm_entity == b_other.pe_id != b_org.pe_id


def _with_paths(data, paths):
    """The file with a gis_location.path column holding `paths` ({id in the file: path}): the sender's ids."""
    lines = data.decode("utf-8").split("\r\n")
    start = lines.index("TABLE gis_location")
    header = lines[start + 1].split(",")
    lines[start + 1] = ",".join(header + ["gis_location.path"])
    k = start + 2
    while lines[k]:
        lines[k] = lines[k] + "," + paths.get(int(lines[k].split(",")[0]), "<NULL>")
        k += 1
    return "\r\n".join(lines).encode("utf-8")


def test_paths_are_rebuilt_from_the_receivers_parents_never_copied(new_instance):
    a, b = instances(new_instance)
    db, dbb = a["db"], b["db"]
    for k in range(4):  # B's own locations first: its ids for A's cannot be A's
        dbb.gis_location.insert(name="B place %d" % k)
    dbb.commit()
    l0 = db.gis_location.insert(name="Timor-Leste", level="L0")
    l1 = db.gis_location.insert(name="Aileu", level="L1", parent=l0)
    l2 = db.gis_location.insert(name="Aileu Vila", level="L2", parent=l1)
    other = db.gis_location.insert(name="Ermera", level="L1", parent=l0)
    db.commit()
    sent = {l0: "%d" % l0, l1: "%d/%d" % (l0, l1), l2: "%d/%d/%d" % (l0, l1, l2), other: "%d/%d" % (l0, other)}
    data = _with_paths(export(a), sent)  # a sender that sends its paths: its own ids
    report = import_from(dbb, settings(b), data)
    assert report.totals()["created"] == 4, report.warnings

    def paths():
        rows = dbb(dbb.gis_location.uuid.belongs([db.gis_location[i].uuid for i in sent])).select()
        return {db(db.gis_location.uuid == r.uuid).select().first().id: r for r in rows}

    here = paths()
    for i, row in here.items():
        chain, node = [], row
        while node is not None:  # B's own chain of ids, from the root
            chain.insert(0, str(node.id))
            node = dbb.gis_location[node.parent] if node.parent else None
        assert row.path == "/".join(chain) != sent[i]

    db(db.gis_location.id == l1).update(parent=other)  # Aileu moves under Ermera: its child's path follows
    db.commit()
    sync(a, b)
    here = paths()
    assert here[l2].path == "%d/%d/%d/%d" % (here[l0].id, here[other].id, here[l1].id, here[l2].id)


def test_a_super_table_never_syncs_as_a_table(instance):
    db, s = instance["db"], settings(instance)
    assert "pr_pentity" not in synced_tables(db, s)
    assert exclusion(db, s, "pr_pentity")[0] == "never"
    old = s.get("tables")
    try:
        s.tables = ["pr_pentity", "org_organisation"]  # whatever the settings say
        assert synced_tables(db, s) == ["org_organisation"]
        with pytest.raises(TableNotSynced, match="pr_pentity"):
            synced_tables(db, s, only=["pr_pentity"])
    finally:
        s.tables = old


def test_a_host_without_a_model_keeps_its_super_keys_and_owners_home(new_instance):
    """A plain web2py app attaches no Model: it gets NOTHING, which maps no super key and no owner, so
    those stay home, and the merge makes no super record, realm or path."""
    a, b = instances(new_instance)
    db = a["db"]
    org = made(a, "org_organisation", name="Alpha Relief")
    made(a, "pr_contact", pe_id=db.org_organisation[org].pe_id, value="info@alpha.org")
    l0 = db.gis_location.insert(name="Timor-Leste", level="L0")
    db.commit()
    for env in (a, b):
        entities.attach(env["db"], None)
    assert entities.model(db) is entities.NOTHING
    data = export(a)
    assert b"pr_contact.pe_id" not in data and b"org_organisation.pe_id" not in data
    dbb = b["db"]
    entities_before = dbb(dbb.pr_pentity).count()
    import_from(dbb, settings(b), data)
    assert dbb(dbb.pr_pentity).count() == entities_before
    assert by_uuid(b, "org_organisation", db.org_organisation[org].uuid).pe_id is None
    assert by_uuid(b, "gis_location", db.gis_location[l0].uuid).path is None


@pytest.mark.parametrize("paths", merge.PATHS)
def test_an_appadmin_export_resolves_super_keys_through_its_own_super_table(new_instance, paths):
    """A plain pydal/appadmin file (db.export_to_csv_file: local ids, no @uuid) carries the super table
    (`TABLE pr_pentity`, keyed on pe_id): a contact's pe_id, and a deleted contact's deleted_fk, name A's
    entity by A's pe_id, which resolves through that section's row (its uuid) to B's entity; also when the
    contacts come before the records of their entities (in Eden's export, a staff record comes before the
    warehouse that is its site; a super table, defined first, before all)."""
    a, b, c = instances(new_instance, "a", "b", "c")
    for env in (b, c):
        seed_b_first(env)
    db = a["db"]
    org = made(a, "org_organisation", name="Alpha Relief")
    office = made(a, "org_office", name="Alpha HQ", organisation_id=org)
    org_pe, office_pe = db.org_organisation[org].pe_id, db.org_office[office].pe_id
    made(a, "pr_contact", pe_id=org_pe, contact_method="EMAIL", value="info@alpha.org")
    made(a, "pr_contact", pe_id=office_pe, contact_method="PHONE", value="+670 123")
    # soft-deleted as Eden deletes: the reference nulled, kept in deleted_fk (A's ids)
    made(a, "pr_contact", pe_id=None, contact_method="SMS", value="+670 999", deleted=True,
         deleted_fk=json.dumps({"pe_id": office_pe}))
    db.commit()
    buf = io.StringIO()
    db.export_to_csv_file(buf)  # what appadmin writes
    data = buf.getvalue().encode("utf-8")
    assert b"TABLE pr_pentity" in data and b"@uuid" not in data
    contacts_first = reorder(data, ["pr_pentity", "pr_contact"])
    assert contacts_first.index(b"TABLE pr_contact") < contacts_first.index(b"TABLE org_organisation")

    for env, file in ((b, data), (c, contacts_first)):
        dbb = env["db"]
        report = merge.import_and_sync(dbb, file, settings(env), paths=paths)
        dbb.commit()
        assert report.plain_pydal and "pr_pentity" in report.skipped_tables
        assert report.totals()["refs_nulled"] == 0, report.warnings
        b_org = by_uuid(env, "org_organisation", db.org_organisation[org].uuid)
        b_office = by_uuid(env, "org_office", db.org_office[office].uuid)
        assert {b_org.pe_id, b_office.pe_id}.isdisjoint({org_pe, office_pe})  # B's own ids differ from A's
        got = {r.value: (r.pe_id, r.deleted, r.deleted_fk) for r in dbb(dbb.pr_contact).select()}
        assert got == {"info@alpha.org": (b_org.pe_id, False, None), "+670 123": (b_office.pe_id, False, None),
                       "+670 999": (None, True, json.dumps({"pe_id": b_office.pe_id}))}
        again = merge.import_and_sync(dbb, file, settings(env), paths=paths)  # nothing changes a second time
        dbb.commit()
        assert not again.changed, again.tables
