"""References in any order: forward, self, cyclic, list:reference, already here, unsynced tables."""
import datetime

import pytest

from synchelpers import assert_converged, export, instances, reorder, seed_small, settings, snapshot, sync

from applications.eden.modules.plugin_sync.fileio import import_from


def test_forward_references_between_tables(new_instance):
    a, b = instances(new_instance)
    seed_small(a)
    data = reorder(export(a), ["hrm_human_resource", "hms_hospital", "event_incident", "org_office", "pr_person",
                                "org_organisation", "gis_location"])
    assert data.decode().index("TABLE hrm_human_resource") < data.decode().index("TABLE pr_person")
    report = import_from(b["db"], settings(b), data)
    assert report.totals()["refs_nulled"] == 0, report.warnings
    assert_converged(a, b)


def test_self_references_child_before_parent_and_a_cycle(new_instance):
    a, b = instances(new_instance)
    db = a["db"]
    # children get lower ids than their parents: the export lists them first
    village = db.gis_location.insert(name="Village", level="L4")
    district = db.gis_location.insert(name="District", level="L2")
    country = db.gis_location.insert(name="Country", level="L0")
    db(db.gis_location.id == village).update(parent=district)
    db(db.gis_location.id == district).update(parent=country)
    # a cycle (bad data, but it exists in the wild): two locations each the other's parent
    x = db.gis_location.insert(name="X")
    y = db.gis_location.insert(name="Y", parent=x)
    db(db.gis_location.id == x).update(parent=y)
    db.commit()
    report = import_from(b["db"], settings(b), export(a))
    assert report.totals()["refs_nulled"] == 0
    assert_converged(a, b)
    dbb = b["db"]
    v = dbb(dbb.gis_location.name == "Village").select().first()
    assert dbb.gis_location(dbb.gis_location(v.parent).parent).name == "Country"
    xb = dbb(dbb.gis_location.name == "X").select().first()
    assert dbb.gis_location(dbb.gis_location(xb.parent).parent).id == xb.id


def test_list_reference_is_remapped(new_instance):
    a, b = instances(new_instance)
    seed_small(a)
    sync(a, b)
    dbb = b["db"]
    inc = dbb(dbb.event_incident).select().first()
    names = sorted(dbb.org_organisation(i).name for i in inc.organisation_ids)
    assert names == ["A Ministry of Health", "A Red Cross"]
    assert_converged(a, b)


def test_references_to_records_the_receiver_already_has(new_instance):
    a, b = instances(new_instance)
    seed_small(a)
    sync(a, b)
    dba = a["db"]
    org = dba(dba.org_organisation.acronym == "RC").select().first()
    dba.hms_hospital.insert(name="New clinic", organisation_id=org.id,
                            location_id=dba(dba.gis_location.level == "L1").select().first().id)
    dba.commit()
    # an incremental-style file: only hospitals; their organisation and location are not in it
    data = export(a, tables=["hms_hospital"])
    assert b"TABLE org_organisation" not in data
    report = import_from(b["db"], settings(b), data)
    assert report.tables["hms_hospital"]["created"] == 1 and report.totals()["refs_nulled"] == 0
    dbb = b["db"]
    clinic = dbb(dbb.hms_hospital.name == "New clinic").select().first()
    assert dbb.org_organisation(clinic.organisation_id).uuid == org.uuid
    assert_converged(a, b)


def test_reference_to_a_record_nowhere_is_nulled_and_counted(new_instance):
    a, b = instances(new_instance)
    dba = a["db"]
    loc = dba.gis_location.insert(name="Only on A")
    dba.org_office.insert(name="Office", location_id=loc)
    dba.commit()
    report = import_from(b["db"], settings(b), export(a, tables=["org_office"]))
    assert report.tables["org_office"]["refs_nulled"] == 1
    w = report.warnings[0]
    assert w["table"] == "org_office" and w["column"] == "location_id" and w["line"] == 8  # TABLE org_office is on line 6
    dbb = b["db"]
    assert dbb(dbb.org_office).select().first().location_id is None


def test_required_reference_missing_everywhere_fails_with_where(new_instance):
    a, b = instances(new_instance)
    dba = a["db"]
    p = dba.pr_person.insert(first_name="Ana")
    dba.hrm_human_resource.insert(person_id=p, type="staff")
    dba.commit()
    before = snapshot(b)
    try:
        import_from(b["db"], settings(b), export(a, tables=["hrm_human_resource"]))
    except Exception as e:
        msg = str(e)
    else:
        raise AssertionError("must fail")
    assert "hrm_human_resource" in msg and "person_id" in msg and "line" in msg and "urn:uuid:" in msg
    assert snapshot(b) == before


def test_references_into_unsynced_tables_by_uuid_or_null(new_instance):
    a, b = instances(new_instance)
    dba, dbb = a["db"], b["db"]
    shared = "urn:uuid:11111111-2222-4333-8444-555555555555"
    ua = dba.auth_user.insert(first_name="Field", email="f@a", uuid=shared)
    ub = dbb.auth_user.insert(first_name="Field", email="f@b", uuid=shared)
    stranger = dba.auth_user.insert(first_name="Only A", email="o@a")
    dba.org_organisation.insert(name="Known author", created_by=ua, modified_by=stranger)
    dba.commit(); dbb.commit()
    report = import_from(dbb, settings(b), export(a))
    org = dbb(dbb.org_organisation.name == "Known author").select().first()
    assert org.created_by == ub  # same person by uuid: resolved
    assert org.modified_by is None  # unknown here: NULL, never an unrelated local user
    assert report.tables["org_organisation"]["refs_nulled"] == 1
    # auth rows themselves never travel
    assert dbb(dbb.auth_user).count() == 1


def test_unresolvable_lookup_reference_keeps_the_local_value_on_update(new_instance):
    a, b = instances(new_instance)
    seed_small(a)
    sync(a, b)
    dbb = b["db"]
    # B's own lookup row (another uuid); A's type is unknown to B from now on
    mine = dbb.org_organisation_type.insert(name="Red Cross / Red Crescent")
    dbb(dbb.org_organisation.acronym == "RC").update(organisation_type_id=mine)
    dbb.commit()
    dba = a["db"]
    dba(dba.org_organisation_type.id > 0).update(uuid="urn:uuid:99999999-0000-4000-8000-000000000009")
    later = datetime.datetime.utcnow().replace(microsecond=0) + datetime.timedelta(seconds=60)
    dba(dba.org_organisation.acronym == "RC").update(phone="+670 333", modified_on=later)
    dba.commit()
    report = sync(a, b)
    org = dbb(dbb.org_organisation.acronym == "RC").select().first()
    assert org.phone == "+670 333" and org.organisation_type_id == mine
    assert report.tables["org_organisation"]["refs_nulled"] == 0


def test_a_lookup_reference_nulled_on_a_peer_is_not_wiped_on_the_way_back(new_instance):
    """B lacks A's lookup list: B keeps NULL, and B's copy sent back must not wipe A's value."""
    a, b = new_instance("a"), new_instance("b")  # b has no lookup list at all
    seed_small(a)
    report = sync(a, b)
    assert report.tables["org_organisation"]["refs_nulled"] == 1
    back = sync(b, a)
    assert back.totals()["updated"] == 0 and back.totals()["conflicts"] == 0
    dba = a["db"]
    assert dba(dba.org_organisation.acronym == "RC").select().first().organisation_type_id is not None


@pytest.mark.parametrize("incoming_newer", [False, True])
def test_a_row_waiting_for_its_required_reference_is_decided_like_any_other(new_instance, incoming_newer):
    """A's edit of a record B changed too, whose NOT NULL reference names a person further on in the file:
    the row waits for the person, and is then decided against B's version (a conflict, the newer wins),
    not written over it."""
    a, b = instances(new_instance)
    seed_small(a)
    sync(a, b)
    db_a, db_b = a["db"], b["db"]
    t0 = datetime.datetime.utcnow().replace(microsecond=0)
    hr_uuid = db_a(db_a.hrm_human_resource.job_title == "Nurse").select().first().uuid
    newcomer = db_a.pr_person.insert(first_name="Newcomer", modified_on=t0)
    a_stamp, b_stamp = (t0, t0 - datetime.timedelta(minutes=5))[::1 if incoming_newer else -1]
    db_a(db_a.hrm_human_resource.uuid == hr_uuid).update(person_id=newcomer, job_title="Nurse (A)",
                                                         modified_on=a_stamp)
    db_b(db_b.hrm_human_resource.uuid == hr_uuid).update(job_title="Head nurse (B)", modified_on=b_stamp)
    db_a.commit(); db_b.commit()
    data = reorder(export(a), ["hrm_human_resource"])
    assert data.decode().index("TABLE hrm_human_resource") < data.decode().index("TABLE pr_person")
    report = import_from(db_b, settings(b), data)
    db_b.commit()
    hr = db_b(db_b.hrm_human_resource.uuid == hr_uuid).select().first()
    conflict = db_b(db_b.plugin_sync_conflict.record_uuid == hr_uuid).select().first()
    counted = report.tables["hrm_human_resource"]
    assert conflict is not None, "the two versions met: one of them is kept in the conflict log"
    if incoming_newer:
        assert hr.job_title == "Nurse (A)" and db_b.pr_person(hr.person_id).first_name == "Newcomer"
        assert conflict.resolution == "took_incoming" and "Head nurse (B)" in conflict.loser
        assert counted["conflicts_took_incoming"] == 1, counted
    else:
        assert hr.job_title == "Head nurse (B)" and db_b.pr_person(hr.person_id).first_name == "Maria"
        assert conflict.resolution == "kept_local" and "Nurse (A)" in conflict.loser
        assert counted["conflicts_kept_local"] == 1, counted
