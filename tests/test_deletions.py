"""Deletions travel: soft deletes, merges (deleted_rb), hard deletes through tombstones."""
import datetime
import json

from synchelpers import assert_converged, export, instances, seed_small, settings, sync

from applications.eden.modules.plugin_sync.fileio import import_from


def test_soft_delete_and_deleted_fk_travel(new_instance):
    a, b = instances(new_instance)
    ids = seed_small(a)
    sync(a, b)
    db = a["db"]
    office = db(db.org_office).select().first()
    db(db.org_office.id == office.id).update(
        deleted=True, organisation_id=None, deleted_fk=json.dumps({"organisation_id": ids["org1"]}))
    db.commit()
    sync(a, b)
    dbb = b["db"]
    ob = dbb(dbb.org_office.uuid == office.uuid).select().first()
    assert ob.deleted is True and ob.organisation_id is None
    org_b = dbb(dbb.org_organisation.uuid == db.org_organisation(ids["org1"]).uuid).select().first()
    assert json.loads(ob.deleted_fk) == {"organisation_id": org_b.id}  # remapped to B's id
    assert_converged(a, b)


def test_merge_replacement_travels_as_uuid(new_instance):
    a, b = instances(new_instance)
    seed_small(a)
    db = a["db"]
    dup = db.org_organisation.insert(name="Red Cross (duplicate)")
    sync(a, b)
    keep = db(db.org_organisation.acronym == "RC").select().first()
    db(db.org_organisation.id == dup).update(deleted=True, deleted_rb=keep.id)
    db.commit()
    sync(a, b)
    dbb = b["db"]
    dup_b = dbb(dbb.org_organisation.name == "Red Cross (duplicate)").select().first()
    assert dup_b.deleted and dbb.org_organisation(dup_b.deleted_rb).uuid == keep.uuid
    assert_converged(a, b)


def test_hard_delete_travels_and_does_not_come_back(new_instance):
    a, b = instances(new_instance)
    seed_small(a)
    sync(a, b)
    old_file_from_a = export(a)  # a stale copy, e.g. on a USB stick
    db = a["db"]
    hosp = db(db.hms_hospital).select().first()
    db(db.hms_hospital.id == hosp.id).delete()
    db.commit()
    report = sync(a, b)
    assert report.tables["hms_hospital"]["deleted"] == 1
    dbb = b["db"]
    assert dbb(dbb.hms_hospital.uuid == hosp.uuid).count() == 0
    # the stale file does not resurrect it
    again = import_from(dbb, settings(b), old_file_from_a)
    assert again.tables["hms_hospital"]["tombstoned"] == 1
    assert dbb(dbb.hms_hospital.uuid == hosp.uuid).count() == 0
    # and B, syncing back, does not resurrect it on A
    sync(b, a)
    assert db(db.hms_hospital.uuid == hosp.uuid).count() == 0
    assert_converged(a, b)


def test_record_edited_after_remote_hard_delete_is_kept(new_instance):
    a, b = instances(new_instance)
    seed_small(a)
    sync(a, b)
    db, dbb = a["db"], b["db"]
    hosp = db(db.hms_hospital).select().first()
    db(db.hms_hospital.id == hosp.id).delete()
    db.commit()
    later = datetime.datetime.utcnow().replace(microsecond=0) + datetime.timedelta(seconds=30)
    dbb(dbb.hms_hospital.uuid == hosp.uuid).update(status="Reopened", modified_on=later)
    dbb.commit()
    report = sync(a, b)
    assert dbb(dbb.hms_hospital.uuid == hosp.uuid).count() == 1
    assert any("deleted elsewhere" in w["message"] for w in report.warnings)
