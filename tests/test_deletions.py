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


def _delete_with_a_clock_a_day_ahead(env, tablename, uuid):
    """A hard delete on an instance whose clock runs a day ahead: its tombstone carries that date."""
    db = env["db"]
    db(db[tablename].uuid == uuid).delete()
    ahead = datetime.datetime.utcnow().replace(microsecond=0) + datetime.timedelta(days=1)
    tomb = db.plugin_sync_tombstone
    db((tomb.tablename == tablename) & (tomb.record_uuid == uuid)).update(deleted_on=ahead)
    db.commit()
    return ahead


def test_a_deletion_dated_ahead_of_our_clock_does_not_beat_a_later_local_edit(new_instance):
    a, b = instances(new_instance)
    seed_small(a)
    sync(a, b)
    db, dbb = a["db"], b["db"]
    hosp = db(db.hms_hospital).select().first()
    _delete_with_a_clock_a_day_ahead(a, "hms_hospital", hosp.uuid)
    # B edits the record after the real moment of the deletion, which A has not seen
    dbb(dbb.hms_hospital.uuid == hosp.uuid).update(
        status="Reopened", modified_on=datetime.datetime.utcnow().replace(microsecond=0))
    dbb.commit()
    report = sync(a, b)
    kept = dbb(dbb.hms_hospital.uuid == hosp.uuid).select().first()
    assert kept is not None and kept.status == "Reopened"  # the edit is not lost
    assert report.tables["hms_hospital"]["future"] == 1
    assert report.tables["hms_hospital"]["conflicts_kept_local"] == 1
    said = [w for w in report.warnings if "ahead of this instance's clock" in w["message"]]
    assert said and said[0]["table"] == "plugin_sync_tombstone" and said[0]["line"] > 0
    tomb = dbb.plugin_sync_tombstone
    assert dbb((tomb.tablename == "hms_hospital") & (tomb.record_uuid == hosp.uuid)).count() == 0


def test_a_deletion_dated_ahead_of_our_clock_does_not_block_later_edits(new_instance):
    a, b, c = instances(new_instance, "a", "b", "c")
    seed_small(a)
    sync(a, b)
    sync(a, c)
    db, dbb, dbc = a["db"], b["db"], c["db"]
    hosp = db(db.hms_hospital).select().first()
    ahead = _delete_with_a_clock_a_day_ahead(a, "hms_hospital", hosp.uuid)
    report = sync(a, b)  # B had not changed it: the deletion applies, dated with B's clock
    assert dbb(dbb.hms_hospital.uuid == hosp.uuid).count() == 0 and report.tables["hms_hospital"]["deleted"] == 1
    tomb = dbb.plugin_sync_tombstone
    stored = dbb((tomb.tablename == "hms_hospital") & (tomb.record_uuid == hosp.uuid)).select().first()
    assert stored is not None and stored.deleted_on < ahead - datetime.timedelta(hours=23)
    # C, whose clock is right, edits the record after the deletion: the edit is the newer version on B
    dbc(dbc.hms_hospital.uuid == hosp.uuid).update(
        status="Reopened", modified_on=datetime.datetime.utcnow().replace(microsecond=0) + datetime.timedelta(seconds=60))
    dbc.commit()
    sync(c, b)
    back = dbb(dbb.hms_hospital.uuid == hosp.uuid).select().first()
    assert back is not None and back.status == "Reopened"
