"""The merge between two independent instances: identity by uuid, newest wins, conflicts kept."""
import datetime
import io

import pytest

from synchelpers import assert_converged, concurrent_org_edit, counts, export, instances, seed_small, settings, snapshot, sync

from applications.eden.modules.plugin_sync import merge
from applications.eden.modules.plugin_sync.fileio import import_from


def test_create_on_a_then_sync_to_b_with_different_ids(new_instance):
    a, b = instances(new_instance)
    ids = seed_small(a)
    report = sync(a, b)
    t = report.totals()
    assert t["created"] == sum(len(v) for v in snapshot(a).values()), report.as_dict()
    assert_converged(a, b)
    # the local ids differ, the references follow the uuids
    db_a, db_b = a["db"], b["db"]
    hosp_a = db_a(db_a.hms_hospital).select().first()
    hosp_b = db_b(db_b.hms_hospital.uuid == hosp_a.uuid).select().first()
    assert hosp_b.id != hosp_a.id
    assert db_b.org_organisation(hosp_b.organisation_id).uuid == db_a.org_organisation(ids["org2"]).uuid
    assert db_b.gis_location(hosp_b.location_id).uuid == db_a.gis_location(ids["l2"]).uuid
    # the sender is now a known peer
    peer = db_b(db_b.sync_instance).select().first()
    assert peer.base_uuid == db_a(db_a.plugin_sync_identity).select().first().base_uuid
    assert peer.sync_count == 1 and peer.last_update is not None


def test_edit_on_both_sides_converges_and_keeps_losers(new_instance):
    b, a = instances(new_instance, "b", "a")
    seed_small(a)
    sync(a, b)
    db_a, db_b = a["db"], b["db"]
    t0 = datetime.datetime.utcnow().replace(microsecond=0)
    # a concurrent edit of the same record: B's is newer and must win everywhere
    org_uuid = concurrent_org_edit(a, b, t0)
    # edits on one side only travel as plain updates
    db_a(db_a.pr_person.first_name == "Maria").update(phone="+670 1", modified_on=t0 + datetime.timedelta(seconds=1))
    db_b(db_b.hms_hospital.id > 0).update(total_beds=150, modified_on=t0 + datetime.timedelta(seconds=1))
    # new records on both sides
    db_b.org_organisation.insert(name="Created on B")
    db_a.gis_location.insert(name="Created on A", level="L3")
    db_a.commit(); db_b.commit()
    r1 = sync(a, b)
    r2 = sync(b, a)
    assert_converged(a, b)
    assert db_a(db_a.org_organisation.uuid == org_uuid).select().first().phone == "222"
    # the conflict is decided (and its loser, A's phone 111, kept) where both versions met: on B
    assert r1.tables["org_organisation"]["conflicts_kept_local"] == 1
    lost_b = db_b(db_b.plugin_sync_conflict.record_uuid == org_uuid).select().first()
    assert '"111"' in lost_b.loser and lost_b.resolution == "kept_local"
    assert lost_b.origin == db_a(db_a.plugin_sync_identity).select().first().base_uuid
    # B had seen A's version, so on A, B's version is a plain update
    assert r2.tables["org_organisation"]["updated"] == 1
    assert r2.tables["org_organisation"]["conflicts_took_incoming"] == 0
    # one-sided edits are updates, not conflicts
    assert r1.tables["pr_person"]["updated"] == 1, r1.tables["pr_person"]
    assert r1.tables["pr_person"]["conflicts_took_incoming"] == 0
    assert r2.tables["hms_hospital"]["updated"] == 1, r2.tables["hms_hospital"]


def test_tie_on_modified_on_is_broken_the_same_way_on_both_sides(new_instance):
    a, b = instances(new_instance)
    seed_small(a)
    sync(a, b)
    same = datetime.datetime(2030, 1, 1, 12, 0, 0)
    for env, phone in ((a, "aaa"), (b, "bbb")):
        db = env["db"]
        db(db.org_organisation.acronym == "RC").update(phone=phone, modified_on=same)
        db.commit()
    s = settings(a)
    old = s.clock_tolerance
    s.clock_tolerance = 10 ** 9  # 2030 is not "the future" for this test
    try:
        sync(a, b)
        sync(b, a)
    finally:
        s.clock_tolerance = old
    assert_converged(a, b)


def test_reimport_is_a_noop_and_dry_run_writes_nothing(new_instance):
    a, b = instances(new_instance)
    seed_small(a)

    data = export(a)
    before = counts(b)
    dry = import_from(b["db"], settings(b), data, dry_run=True)
    assert counts(b) == before
    real = import_from(b["db"], settings(b), data)
    assert dry.totals() == real.totals() and dry.tables == real.tables
    snap = snapshot(b)
    again = import_from(b["db"], settings(b), data)
    t = again.totals()
    assert t["created"] == t["updated"] == t["conflicts"] == 0
    assert t["unchanged"] == real.totals()["created"]
    assert snapshot(b) == snap


def test_policies_this_other_master(new_instance):
    a, b = instances(new_instance)
    seed_small(a)
    sync(a, b)
    db_a, db_b = a["db"], b["db"]
    s = settings(b)
    old = dict(s)
    newer = datetime.datetime.utcnow().replace(microsecond=0)
    older = newer - datetime.timedelta(hours=1)
    try:
        # 'this': local wins even though incoming is newer
        s.policy = {"org_organisation": "this", "gis_location": "other", "pr_person": "master"}
        s.master = db_a(db_a.plugin_sync_identity).select().first().base_uuid
        db_a(db_a.org_organisation.acronym == "RC").update(phone="A-new", modified_on=newer)
        db_b(db_b.org_organisation.acronym == "RC").update(phone="B-old", modified_on=older)
        db_a(db_a.gis_location.level == "L1").update(population=1, modified_on=older)
        db_b(db_b.gis_location.level == "L1").update(population=2, modified_on=newer)
        db_a(db_a.pr_person.first_name == "Maria").update(phone="master", modified_on=older)
        db_b(db_b.pr_person.first_name == "Maria").update(phone="not master", modified_on=newer)
        db_a.commit(); db_b.commit()
        sync(a, b)
        assert db_b(db_b.org_organisation.acronym == "RC").select().first().phone == "B-old"
        assert db_b(db_b.gis_location.level == "L1").select().first().population == 1
        assert db_b(db_b.pr_person.first_name == "Maria").select().first().phone == "master"
    finally:
        s.clear(); s.update(old)


def test_future_timestamp_is_flagged_and_does_not_win_later_conflicts(new_instance):
    a, b = instances(new_instance)
    seed_small(a)
    sync(a, b)
    db_a, db_b = a["db"], b["db"]
    now = datetime.datetime.utcnow().replace(microsecond=0)
    future = now + datetime.timedelta(days=3)
    db_a(db_a.org_organisation.acronym == "RC").update(phone="from the future", modified_on=future)
    db_a(db_a.org_organisation.acronym == "RC").select().first()
    db_a.gis_location.insert(name="New, stamped ahead", modified_on=future)
    db_a.commit()
    data = export(a)
    report = import_from(db_b, settings(b), data)
    assert report.tables["org_organisation"]["future"] == 1
    w = [w for w in report.warnings if w["column"] == "modified_on" and w["table"] == "org_organisation"]
    assert w and "ahead of this instance's clock" in w[0]["message"] and w[0]["line"] > 0
    # it updates what B had not changed (B had seen nothing newer), stamped with B's clock
    org = db_b(db_b.org_organisation.acronym == "RC").select().first()
    assert org.phone == "from the future" and org.modified_on <= now + datetime.timedelta(minutes=5)
    new = db_b(db_b.gis_location.name == "New, stamped ahead").select().first()
    assert new is not None and new.modified_on < future
    # an honest edit on B afterwards is not overwritten by the same file again (B merged it already)
    db_b(db_b.org_organisation.acronym == "RC").update(phone="honest")
    db_b.commit()
    again = import_from(db_b, settings(b), data)
    assert db_b(db_b.org_organisation.acronym == "RC").select().first().phone == "honest"
    assert again.tables["org_organisation"]["older"] == 1 and again.totals()["conflicts"] == 0
    # nor by a new suspect version of A's, concurrent with it: that one waits in the conflict list
    db_a(db_a.org_organisation.acronym == "RC").update(phone="from the future again", modified_on=future)
    db_a.commit()
    data = export(a)
    again = import_from(db_b, settings(b), data)
    assert db_b(db_b.org_organisation.acronym == "RC").select().first().phone == "honest"
    assert again.tables["org_organisation"]["conflicts_kept_local"] == 1
    logged = db_b(db_b.plugin_sync_conflict.reason == "future timestamp").select()
    assert len(logged) == 1 and "from the future again" in logged[0].loser
    import_from(db_b, settings(b), data)  # logged once, not at every re-import
    assert db_b(db_b.plugin_sync_conflict.reason == "future timestamp").count() == 1


def test_changes_for_a_peer_leave_out_its_own_versions(new_instance):
    """No echo: what B merged from A goes back to A only once B changed it again.

    The echo would be worse than useless: A, having edited the record since,
    would see B's copy of its older version as a concurrent edit (a false
    conflict in the list).
    """
    from applications.eden.modules.plugin_sync import replicate
    from applications.eden.modules.plugin_sync.changes import checkpoint
    from applications.eden.modules.plugin_sync.csvstream import Reader

    a, b = instances(new_instance, "a", "b")
    db_a, db_b = a["db"], b["db"]
    db_b.org_organisation.insert(name="B's own, before")  # so that B's checkpoint is past 0
    db_b.commit()
    since = checkpoint(db_b)
    seed_small(a)
    sync(a, b)
    me_a = db_a(db_a.plugin_sync_identity).select().first().base_uuid
    db_b(db_b.pr_person.first_name == "Maria").update(phone="edited on B")
    db_b.commit()
    t = datetime.datetime.utcnow().replace(microsecond=0) + datetime.timedelta(seconds=1)
    db_a(db_a.org_organisation.acronym == "RC").update(phone="edited on A since", modified_on=t)
    db_a.commit()

    def uuids(data):
        import gzip
        import io
        out = set()
        for section in Reader(io.TextIOWrapper(io.BytesIO(gzip.decompress(data)), encoding="utf-8", newline="")):
            if "uuid" in section.columns and section.tablename != "sync_instance":
                out.update(cells[section.columns.index("uuid")] for _, cells in section.rows())
            else:
                list(section.rows())
        return out

    maria = db_b(db_b.pr_person.first_name == "Maria").select().first().uuid
    echo, _, _, _ = replicate.changes(db_b, settings(b), since, fmt="gz")
    data, _, _, _ = replicate.changes(db_b, settings(b), since, fmt="gz", peer=me_a)
    assert maria in uuids(data) and len(uuids(echo)) == snapshot_size(a) > len(uuids(data)) == 1
    # what A gets: B's edit, and no false conflict on the record A edited since
    report = import_from(db_a, settings(a), data)
    assert report.totals()["conflicts"] == 0 and report.totals()["updated"] == 1
    assert db_a(db_a.pr_person.first_name == "Maria").select().first().phone == "edited on B"
    # the echo, for comparison, would have logged one
    assert import_from(db_a, settings(a), echo).totals()["conflicts"] == 1


def snapshot_size(env):
    return sum(len(rows) for rows in snapshot(env).values())


def test_a_file_of_some_tables_does_not_move_the_checkpoint(new_instance):
    """export --tables: the changes of the other tables must still come with the next incremental file."""
    a, b = instances(new_instance, "a", "b")
    db_a, db_b = a["db"], b["db"]
    seed_small(a)
    sync(a, b)
    peers = db_b.sync_instance
    base_a = db_a(db_a.plugin_sync_identity).select().first().base_uuid
    checkpoint = db_b(peers.base_uuid == base_a).select().first().checkpoint_received
    db_a(db_a.pr_person.first_name == "Maria").update(phone="people file")
    db_a(db_a.org_organisation.acronym == "RC").update(phone="not in the people file")
    db_a.commit()
    people = import_from(db_b, settings(b), export(a, since=checkpoint, tables=["pr_person"]))
    assert people.totals()["updated"] == 1 and any("only some tables" in n for n in people.notes)
    assert db_b(peers.base_uuid == base_a).select().first().checkpoint_received == checkpoint
    # the next incremental file starts where the last full one ended: the organisation comes along
    rest = import_from(db_b, settings(b), export(a, since=checkpoint))
    assert rest.tables["org_organisation"]["updated"] == 1 and rest.tables["pr_person"]["updated"] == 0
    assert db_b(peers.base_uuid == base_a).select().first().checkpoint_received > checkpoint
    assert_converged(a, b)


def _two_versions(data, newer_first, gap):
    """The export with a second version of its first person (phone 'newer', one second later) either
    before or after the original (phone 'older'), `gap` rows of copies of other people apart."""
    import csv

    rows = list(csv.reader(io.StringIO(data.decode("utf-8"), newline="")))
    head = [i for i, r in enumerate(rows) if r and r[0].startswith("pr_person.")][0]
    cols = rows[head]
    first = rows[head + 1]
    older, newer = list(first), list(first)
    older[cols.index("pr_person.phone")] = "older"
    newer[cols.index("pr_person.phone")] = "newer"
    stamp = datetime.datetime.fromisoformat(first[cols.index("pr_person.modified_on")])
    newer[cols.index("pr_person.modified_on")] = str(stamp + datetime.timedelta(seconds=1))
    fillers = []
    for k in range(gap):  # other people between the two versions
        filler = list(first)
        filler[cols.index("pr_person.uuid")] = "urn:uuid:filler-%d" % k
        fillers.append(filler)
    pair = [newer] + fillers + [older] if newer_first else [older] + fillers + [newer]
    rows[head + 1:head + 2] = pair
    out = io.StringIO(newline="")
    csv.writer(out).writerows(rows)
    return out.getvalue().encode("utf-8"), first[cols.index("pr_person.uuid")]


@pytest.mark.parametrize("newer_first", [True, False])
@pytest.mark.parametrize("gap,batch", [(0, 2000), (5, 2), (2000, 2000)])
@pytest.mark.parametrize("held", [False, True])
def test_a_uuid_twice_in_one_file_is_decided_as_if_together(new_instance, newer_first, gap, batch, held):
    """Two versions of one record in one file, in the same batch or batches apart, in either order,
    new here or held here already: the newer one is kept, the other counts as older, no conflict."""
    a, b = instances(new_instance)
    seed_small(a)
    if held:
        sync(a, b)
        a["db"](a["db"].pr_person).update(phone="edited")  # a version B has not merged yet
        a["db"].commit()
    data, uuid = _two_versions(export(a), newer_first, gap)
    report = merge.import_and_sync(b["db"], data, settings(b), batch=batch)
    b["db"].commit()
    db = b["db"]
    assert db(db.pr_person.uuid == uuid).select().first().phone == "newer"
    counts = report.tables["pr_person"]
    assert counts["older"] == 1
    assert counts["conflicts_kept_local"] == counts["conflicts_took_incoming"] == 0
    assert db(db.plugin_sync_conflict).count() == 0
    again = merge.import_and_sync(db, data, settings(b), batch=batch)  # and the same file again: nothing
    db.commit()
    assert db(db.pr_person.uuid == uuid).select().first().phone == "newer"
    assert again.totals()["updated"] == again.totals()["created"] == 0


def test_dry_run_names_the_records_it_would_create_update_or_decide(new_instance, monkeypatch):
    """Issue 15: the preview lists records by name, first SAMPLE_LIMIT per table and kind, the rest counted."""
    from applications.eden.modules.plugin_sync import report as report_module
    a, b = instances(new_instance)
    seed_small(a)
    for i in range(5):
        a["db"].pr_person.insert(first_name="Extra%d" % i, last_name="Person")
    a["db"].commit()
    monkeypatch.setattr(report_module, "SAMPLE_LIMIT", 3)
    dry = import_from(b["db"], settings(b), export(a), dry_run=True)
    samples = dry.as_dict()["samples"]
    people = samples["pr_person"]["created"]
    assert people["names"] == ["Maria Alex", "Mariano Rodriques", "Extra0 Person"] and people["more"] == 4
    assert samples["org_organisation"]["created"]["names"] == ["A Red Cross", "A Ministry of Health"]
    real = import_from(b["db"], settings(b), export(a))
    assert real.as_dict()["samples"] == {}  # a real import names nothing: no cost
    # an edit on A: the next preview names the record it would update
    a["db"](a["db"].org_organisation.name == "A Red Cross").update(acronym="ARC", modified_on=datetime.datetime.utcnow()
                                                                    + datetime.timedelta(seconds=5))
    a["db"].commit()
    dry = import_from(b["db"], settings(b), export(a), dry_run=True)
    assert dry.as_dict()["samples"]["org_organisation"] == {"updated": dict(names=["A Red Cross"], more=0)}
