"""Restoring the losing version of a conflict (the conflicts page's "Restore this version")."""
import pytest
from synchelpers import assert_converged, instances, org_conflict, settings, sync

from applications.eden.modules.plugin_sync.errors import SyncError
from applications.eden.modules.plugin_sync.restore import restore


def _conflict(a, b):
    """A's older phone loses to B's newer one on B; return (org uuid, the conflict row on B)."""
    org_uuid = org_conflict(a, b)
    c = b["db"].plugin_sync_conflict
    return org_uuid, b["db"](c.record_uuid == org_uuid).select().first()


def test_restore_puts_the_losing_version_back_and_keeps_the_replaced_one(new_instance):
    a, b = instances(new_instance, "a", "b")
    org_uuid, conflict = _conflict(a, b)
    db_b = b["db"]
    assert conflict.resolution == "kept_local" and '"111"' in conflict.loser
    report = restore(db_b, settings(b), conflict.id)
    org = db_b(db_b.org_organisation.uuid == org_uuid).select().first()
    assert org.phone == "111" and report.totals()["docs_written"] == 1
    assert org.modified_on >= conflict.local_modified_on  # the newest version now: it travels on
    assert db_b.plugin_sync_conflict(conflict.id).reviewed
    # nothing lost: the version it replaced (222) is in the conflict list, reviewed, saying why
    replaced = db_b((db_b.plugin_sync_conflict.record_uuid == org_uuid)
                    & (db_b.plugin_sync_conflict.id != conflict.id)).select()
    assert len(replaced) == 1 and '"222"' in replaced[0].loser and replaced[0].reviewed
    assert replaced[0].reason == "replaced by the restore of #%d" % conflict.id
    # the peer gets it at the next sync, as a plain update
    r = sync(b, a)
    assert r.totals()["conflicts"] == 0
    assert a["db"](a["db"].org_organisation.uuid == org_uuid).select().first().phone == "111"
    assert_converged(a, b)


def test_restore_brings_back_a_record_deleted_since(new_instance):
    a, b = instances(new_instance, "a", "b")
    org_uuid, conflict = _conflict(a, b)
    db_b = b["db"]
    hospitals = db_b(db_b.hms_hospital.organisation_id.belongs(
        db_b(db_b.org_organisation.uuid == org_uuid)._select(db_b.org_organisation.id))).count()
    db_b(db_b.hms_hospital.id > 0).update(organisation_id=None)
    db_b(db_b.org_organisation.uuid == org_uuid).delete()
    db_b.commit()
    restore(db_b, settings(b), conflict.id)
    org = db_b(db_b.org_organisation.uuid == org_uuid).select().first()
    assert org is not None and org.phone == "111", hospitals
    tomb = db_b.plugin_sync_tombstone
    assert db_b((tomb.record_uuid == org_uuid)).isempty()  # it does not stay deleted for the peers


def test_restore_is_a_local_edit_whatever_the_policy_and_a_bad_id_changes_nothing(new_instance):
    a, b = instances(new_instance, "a", "b")
    org_uuid, conflict = _conflict(a, b)
    db_b = b["db"]
    s = settings(b)
    old = dict(s)
    try:
        s.policy = {"org_organisation": "this"}  # a policy for incoming data: the administrator's choice wins
        restore(db_b, s, conflict.id)
    finally:
        s.clear(); s.update(old)
    assert db_b(db_b.org_organisation.uuid == org_uuid).select().first().phone == "111"
    before = db_b(db_b.plugin_sync_conflict).count()
    with pytest.raises(SyncError, match="no conflict"):
        restore(db_b, settings(b), 999999)
    assert db_b(db_b.plugin_sync_conflict).count() == before
    db_b.plugin_sync_conflict(conflict.id).update_record(loser="not json")
    db_b.commit()
    with pytest.raises(SyncError, match="no restorable version"):
        restore(db_b, settings(b), conflict.id)
    assert db_b(db_b.org_organisation.uuid == org_uuid).select().first().phone == "111"


def test_a_restored_conflict_is_marked_restored_and_its_replacement_is_no_took_incoming(new_instance):
    """Issue 15: the page offers no second restore, and the replaced version is not listed as "took incoming"."""
    a, b = instances(new_instance, "a", "b")
    org_uuid, conflict = _conflict(a, b)
    db_b = b["db"]
    assert db_b.plugin_sync_conflict(conflict.id).restored_on is None
    restore(db_b, settings(b), conflict.id)
    assert db_b.plugin_sync_conflict(conflict.id).restored_on is not None
    c = db_b.plugin_sync_conflict
    replaced = db_b((c.record_uuid == org_uuid) & (c.id != conflict.id)).select().first()
    assert replaced.resolution == "restore" and replaced.restored_on is None
    with pytest.raises(SyncError, match="restored already"):
        restore(db_b, settings(b), conflict.id)
    assert db_b(db_b.org_organisation.uuid == org_uuid).select().first().phone == "111"
