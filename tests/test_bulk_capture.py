"""The merge captures its own batch writes set-based (changes.bulk_begin/bulk_end): same changes as the triggers."""
import csv
import io

import pytest

from synchelpers import export, instances, seed_small, settings

from applications.eden.modules.plugin_sync.changes import BULK, BULK_SETTING, changed_ids, checkpoint
from applications.eden.modules.plugin_sync.errors import SyncError
from applications.eden.modules.plugin_sync.fileio import import_from
from applications.eden.modules.plugin_sync.tables import synced_tables


def marker(db, backend):
    """The bulk marker as other statements of the connection see it: must be unset outside the merge."""
    if backend == "sqlite":
        return [r[0] for r in db.executesql("SELECT tablename FROM %s" % BULK)]
    value = db.executesql("SELECT current_setting(%s, true)", placeholders=(BULK_SETTING,))[0][0]
    return [value] if value else []


def test_every_record_the_merge_writes_is_a_change(new_instance, backend):
    a, b = instances(new_instance)
    seed_small(a)
    dbb = b["db"]
    since = checkpoint(dbb)
    import_from(dbb, settings(b), export(a))  # inserts, and deferred reference fixes
    until = checkpoint(dbb)
    for t in synced_tables(dbb, settings(b)):
        ids = sorted(r.id for r in dbb(dbb[t]).select(dbb[t].id))
        assert sorted(changed_ids(dbb, t, since, until)) == ids, t
    assert marker(dbb, backend) == []
    # updates: a newer version of two records
    dba = a["db"]
    dba(dba.pr_person.id > 0).update(phone="+670 999")
    dba.commit()
    report = import_from(dbb, settings(b), export(a))
    assert report.tables["pr_person"]["updated"] == 2
    assert len(changed_ids(dbb, "pr_person", until, checkpoint(dbb))) == 2
    assert marker(dbb, backend) == []
    # and the triggers still capture every other write
    since = checkpoint(dbb)
    pid = dbb.pr_person.insert(first_name="After")
    dbb.commit()
    assert changed_ids(dbb, "pr_person", since, checkpoint(dbb)) == [pid]


def test_a_failed_import_leaves_no_marker_and_no_change(new_instance, backend):
    a, b = instances(new_instance)
    seed_small(a)
    dbb = b["db"]
    data = export(a).replace(b"Mariano", b"M" * 300)  # longer than first_name's 128 characters
    since = checkpoint(dbb)
    with pytest.raises(SyncError):
        import_from(dbb, settings(b), data)
    assert marker(dbb, backend) == []
    assert changed_ids(dbb, "org_organisation", since, checkpoint(dbb)) == []
    oid = dbb.org_organisation.insert(name="Captured")
    dbb.commit()
    assert changed_ids(dbb, "org_organisation", since, checkpoint(dbb)) == [oid]


def triggers(db, backend):
    if backend == "sqlite":
        sql = "SELECT tbl_name, name, sql FROM sqlite_master WHERE type = 'trigger'"
    else:
        sql = "SELECT tgrelid::regclass::text, tgname, tgenabled FROM pg_trigger WHERE NOT tgisinternal"
    return sorted(tuple(r) for r in db.executesql(sql))


def test_the_triggers_are_all_back_after_an_import(new_instance, backend):
    """SQLite: the merge drops a table's insert/update triggers for a batch; they come back, same text."""
    a, b = instances(new_instance)
    seed_small(a)
    dbb = b["db"]
    before = triggers(dbb, backend)
    import_from(dbb, settings(b), export(a))
    dbb.commit()
    assert triggers(dbb, backend) == before


def test_a_failed_batch_write_leaves_every_trigger_in_place(new_instance, backend):
    """The database refuses a row mid-batch (an integer beyond 64 bits): the rollback restores the
    triggers the merge had dropped for the batch, and every later write is captured again."""
    a, b = instances(new_instance)
    seed_small(a)
    dbb = b["db"]
    tables = synced_tables(dbb, settings(b))
    before = triggers(dbb, backend)
    rows = list(csv.reader(io.StringIO(export(a).decode("utf-8"), newline="")))
    head = [i for i, r in enumerate(rows) if r and r[0].startswith("hms_hospital.")][0]
    rows[head + 1][rows[head].index("hms_hospital.total_beds")] = "9" * 30
    out = io.StringIO(newline="")
    csv.writer(out).writerows(rows)
    data = out.getvalue().encode("utf-8")
    since = checkpoint(dbb)
    with pytest.raises(SyncError) as e:
        import_from(dbb, settings(b), data)
    assert "database refused" in str(e.value)
    assert triggers(dbb, backend) == before
    assert marker(dbb, backend) == []
    assert all(changed_ids(dbb, t, since, checkpoint(dbb)) == [] for t in tables)
    # every write path is captured again: pydal's insert, a raw update
    oid = dbb.hms_hospital.insert(name="Captured")
    dbb.executesql("UPDATE org_organisation SET comments = 'x' WHERE id IN (SELECT min(id) FROM org_organisation)")
    dbb.commit()
    assert changed_ids(dbb, "hms_hospital", since, checkpoint(dbb)) == [oid]
    assert len(changed_ids(dbb, "org_organisation", since, checkpoint(dbb))) == (
        1 if dbb(dbb.org_organisation).count() else 0)


def test_stale_change_rows_for_new_ids_are_taken_over(new_instance, backend):
    """Change rows left for ids the merge's inserts then take (a restore, a reset sequence): the
    capture still records the new rows at this import's seq (PostgreSQL: the upsert after a refused INSERT)."""
    a, b = instances(new_instance)
    seed_small(a)
    dbb = b["db"]
    if backend == "sqlite":
        start = dbb.executesql("SELECT coalesce(max(id), 0) FROM pr_person")[0][0]
        start = max(start, (dbb.executesql("SELECT seq FROM sqlite_sequence WHERE name = 'pr_person'") or [[0]])[0][0])
    else:
        last, called = dbb.executesql("SELECT last_value, is_called FROM pr_person_id_seq")[0]
        start = last if called else last - 1
    for i in range(start + 1, start + 200):
        dbb.executesql("INSERT INTO plugin_sync_change (tablename, record_id, seq) VALUES ('pr_person', %d, 1)" % i)
    dbb.commit()
    since = checkpoint(dbb)
    report = import_from(dbb, settings(b), export(a))
    dbb.commit()
    ids = sorted(r.id for r in dbb(dbb.pr_person).select(dbb.pr_person.id))
    assert report.tables["pr_person"]["created"] == len(ids) > 0
    assert sorted(changed_ids(dbb, "pr_person", since, checkpoint(dbb))) == ids
