"""Change capture: every write path leaves a change, in commit order, on SQLite and PostgreSQL."""
import re

import pytest

from applications.eden.modules.plugin_sync import setup
from applications.eden.modules.plugin_sync.changes import (
    change_count,
    changed_ids,
    changed_query,
    checkpoint,
    drop_triggers,
    install_triggers,
    tombstones,
)
from applications.eden.modules.plugin_sync.tables import synced_tables


def seq_of(db, tablename, record_id):
    change = db.plugin_sync_change
    row = db((change.tablename == tablename) & (change.record_id == record_id)).select(change.seq).first()
    return row and int(row.seq)


def read(db, tablename, since):
    """One incremental read, as an exporter does it: (ids changed in [since, until), until)."""
    until = checkpoint(db)
    return changed_ids(db, tablename, since, until), until


def test_every_write_path_leaves_a_change_with_increasing_seq(instance):
    db = instance["db"]
    since = checkpoint(db)
    seqs = []

    pid = db.pr_person.insert(first_name="Ana")  # pydal insert
    db.commit()
    ids, since = read(db, "pr_person", since)
    assert ids == [pid]
    seqs.append(seq_of(db, "pr_person", pid))

    db(db.pr_person.id == pid).update(last_name="Soares")  # pydal update
    db.commit()
    ids, since = read(db, "pr_person", since)
    assert ids == [pid]
    seqs.append(seq_of(db, "pr_person", pid))

    db.executesql("UPDATE pr_person SET phone = '+670 123' WHERE id = %d" % pid)  # raw SQL: no modified_on bump
    db.commit()
    ids, since = read(db, "pr_person", since)
    assert ids == [pid]
    seqs.append(seq_of(db, "pr_person", pid))

    db(db.pr_person.id == pid).update(deleted=True)  # Sahana's soft delete is an update
    db.commit()
    ids, since = read(db, "pr_person", since)
    assert ids == [pid]
    seqs.append(seq_of(db, "pr_person", pid))

    assert seqs == sorted(set(seqs)), seqs  # strictly increasing
    assert read(db, "pr_person", since)[0] == []  # nothing new
    assert db(db.plugin_sync_change.tablename == "pr_person").count() == 1  # one row per record


def test_bulk_executemany_writes_are_captured(instance, backend):
    """The merge writes in batches through the DB-API cursor: the triggers see those too."""
    db = instance["db"]
    since = checkpoint(db)
    mark = "?" if backend == "sqlite" else "%s"
    cursor = db._adapter.cursor
    cursor.executemany(
        "INSERT INTO org_organisation (uuid, name, mci) VALUES (%s, %s, 0)" % (mark, mark),
        [("urn:uuid:bulk-%d" % i, "Org %d" % i) for i in range(50)],
    )
    db.commit()
    ids, until = read(db, "org_organisation", since)
    assert sorted(ids) == sorted(r.id for r in db(db.org_organisation).select(db.org_organisation.id))
    assert len(ids) == 50
    cursor.executemany("UPDATE org_organisation SET acronym = %s WHERE id = %s" % (mark, mark),
                       [("O%d" % i, i) for i in ids[:7]])
    db.commit()
    assert sorted(read(db, "org_organisation", until)[0]) == sorted(ids[:7])


def test_raw_upserts_are_captured(instance, backend):
    """INSERT OR REPLACE (SQLite) and ON CONFLICT DO UPDATE (PostgreSQL) rewrite a record in place."""
    db = instance["db"]
    pid = db.pr_person.insert(first_name="Old", uuid="urn:uuid:upsert")
    db.commit()
    since = checkpoint(db)
    if backend == "sqlite":
        sql = "INSERT OR REPLACE INTO pr_person (id, uuid, first_name, mci) VALUES (%d, 'urn:uuid:upsert', 'New', 0)"
    else:
        sql = ("INSERT INTO pr_person (id, uuid, first_name, mci) VALUES (%d, 'urn:uuid:upsert', 'New', 0) "
               "ON CONFLICT (uuid) DO UPDATE SET first_name = EXCLUDED.first_name")
    db.executesql(sql % pid)
    db.commit()
    assert db.pr_person(pid).first_name == "New"
    assert read(db, "pr_person", since)[0] == [pid]
    assert db(db.plugin_sync_change).count() == 1
    assert db(db.plugin_sync_tombstone).isempty()  # replaced, not deleted


def test_a_record_updated_three_times_appears_once(instance):
    db = instance["db"]
    pid = db.pr_person.insert(first_name="Bea")
    db.commit()
    since = checkpoint(db)
    for name in ("One", "Two", "Three"):
        db(db.pr_person.id == pid).update(last_name=name)
        db.commit()
    ids, until = read(db, "pr_person", since)
    assert ids == [pid]
    assert change_count(db, since, until) == 1
    assert db(db.plugin_sync_change).count() == 1


def test_changes_before_a_checkpoint_are_not_returned_after_it(instance):
    db = instance["db"]
    old = db.pr_person.insert(first_name="Before")
    db.commit()
    since = checkpoint(db)
    new = db.pr_person.insert(first_name="After")
    db.commit()
    ids, until = read(db, "pr_person", since)
    assert ids == [new]
    assert changed_ids(db, "pr_person", 0, until) == [old, new]  # from 0: everything, oldest first
    assert changed_ids(db, "org_organisation", since, until) == []  # per table
    rows = db(changed_query(db, "pr_person", since, until)).select(db.pr_person.first_name)
    assert [r.first_name for r in rows] == ["After"]


def test_a_hard_delete_leaves_a_tombstone_with_the_uuid(instance):
    db = instance["db"]
    org = db.org_organisation.insert(name="Closed NGO")
    office = db.org_office.insert(name="Dili office", organisation_id=org)  # ON DELETE CASCADE
    keep = db.org_organisation.insert(name="Still here")
    db.commit()
    office_uuid = db.org_office(office).uuid
    uuids = {db.org_organisation(org).uuid, office_uuid}
    since = checkpoint(db)
    db(db.org_organisation.id == org).delete()
    db.commit()
    until = checkpoint(db)
    dead = tombstones(db, since, until)
    assert {r.record_uuid for r in dead} == uuids  # the cascade's delete too
    assert {r.tablename for r in dead} == {"org_organisation", "org_office"}
    me = db(db.plugin_sync_identity).select().first().base_uuid
    assert all(r.deleted_on is not None and r.origin == me and since <= r.seq < until for r in dead)
    assert [r.record_uuid for r in tombstones(db, since, until, tablenames=["org_office"])] == [office_uuid]
    assert changed_ids(db, "org_organisation", 0, until) == [keep]  # the deleted record's change row is gone
    assert change_count(db, since, until) == 2
    assert len(tombstones(db, until, checkpoint(db))) == 0


def test_a_tombstone_written_without_seq_gets_one(instance):
    """An importer that records a peer's deletion through pydal need not know about seq."""
    db = instance["db"]
    since = checkpoint(db)
    db.plugin_sync_tombstone.insert(tablename="pr_person", record_uuid="urn:uuid:gone", origin="peer")
    db.commit()
    dead = tombstones(db, since, checkpoint(db))
    assert [(r.record_uuid, r.origin) for r in dead] == [("urn:uuid:gone", "peer")]


def test_tombstones_from_before_the_seq_column_get_one_at_install(instance):
    db = instance["db"]
    db.plugin_sync_tombstone.insert(tablename="pr_person", record_uuid="urn:uuid:old", origin="peer")
    db.executesql("UPDATE plugin_sync_tombstone SET seq = NULL")  # as an upgraded database has them
    db.commit()
    since = checkpoint(db)
    install_triggers(db, ["pr_person"])
    db.commit()
    assert [r.record_uuid for r in tombstones(db, since, checkpoint(db))] == ["urn:uuid:old"]


def test_deleting_over_an_existing_tombstone_keeps_its_origin_and_moves_its_seq(instance):
    db = instance["db"]
    pid = db.pr_person.insert(first_name="Relayed")
    uuid = db.pr_person(pid).uuid
    db.plugin_sync_tombstone.insert(tablename="pr_person", record_uuid=uuid, origin="peer")
    db.commit()
    since = checkpoint(db)
    db(db.pr_person.id == pid).delete()
    db.commit()
    dead = tombstones(db, since, checkpoint(db))
    assert [(r.record_uuid, r.origin) for r in dead] == [(uuid, "peer")]
    assert db(db.plugin_sync_tombstone).count() == 1


def test_truncate_leaves_tombstones(instance, backend):
    """TRUNCATE fires no row trigger on PostgreSQL: a statement trigger tombstones the rows first."""
    db = instance["db"]
    uuids = {db.gis_location(db.gis_location.insert(name=n)).uuid for n in ("Dili", "Baucau")}
    db.commit()
    since = checkpoint(db)
    db.gis_location.truncate("" if backend == "sqlite" else "CASCADE")
    db.commit()
    until = checkpoint(db)
    assert {r.record_uuid for r in tombstones(db, since, until)} >= uuids
    assert changed_ids(db, "gis_location", 0, until) == []


def test_seq_never_goes_back_even_when_changes_and_tombstones_are_purged(instance):
    db = instance["db"]
    pid = db.pr_person.insert(first_name="Gone")
    db.commit()
    db(db.pr_person.id == pid).delete()
    db(db.plugin_sync_tombstone).delete()  # a purge of old tombstones
    db(db.plugin_sync_change).delete()
    db.commit()
    since = checkpoint(db)
    new = db.pr_person.insert(first_name="New")
    db.commit()
    assert read(db, "pr_person", since)[0] == [new]
    assert seq_of(db, "pr_person", new) >= since


def test_a_checkpoint_from_elsewhere_is_refused(instance):
    db = instance["db"]
    with pytest.raises(ValueError) as e:
        changed_ids(db, "pr_person", checkpoint(db) + 1000, checkpoint(db))
    assert "ahead of this database" in str(e.value)


def test_install_triggers_is_idempotent(instance, backend):
    db, settings = instance["db"], instance["plugin_sync_settings"]
    tables = synced_tables(db, settings)

    def triggers():
        if backend == "sqlite":
            sql = "SELECT tbl_name, name FROM sqlite_master WHERE type = 'trigger'"
        else:
            sql = "SELECT tgrelid::regclass::text, tgname FROM pg_trigger WHERE NOT tgisinternal"
        return sorted(tuple(r) for r in db.executesql(sql))

    before = triggers()
    assert {t.strip('"') for t, name in before if name.startswith("plugin_sync_capture")} >= set(tables)
    assert install_triggers(db, tables) == []  # nothing new to capture
    assert install_triggers(db, tables) == []
    setup(db, settings)
    db.commit()
    assert triggers() == before
    since = checkpoint(db)
    pid = db.pr_person.insert(first_name="Once")
    db.commit()
    assert read(db, "pr_person", since)[0] == [pid]
    assert db(db.plugin_sync_change.record_id == pid).count() == 1


def test_first_install_records_existing_rows(instance):
    """Rows written before the triggers existed must travel too: 'since 0' means everything."""
    db = instance["db"]
    drop_triggers(db, ["hms_hospital"])
    hid = db.hms_hospital.insert(name="Guido Valadares")  # not captured
    db.commit()
    assert changed_ids(db, "hms_hospital", 0, checkpoint(db)) == []
    since = checkpoint(db)
    assert install_triggers(db, ["hms_hospital"]) == ["hms_hospital"]
    db.commit()
    assert read(db, "hms_hospital", since)[0] == [hid]
    assert read(db, "hms_hospital", 0)[0] == [hid]


def test_a_transaction_committing_after_the_checkpoint_is_not_missed(pg_instance):
    """T1 writes first and stays open; T2 writes and commits; a reader checkpoints; T1 commits.

    With a plain sequence T1's change would sit below the reader's checkpoint and
    be missed forever; with txids the checkpoint cannot pass an open transaction.
    """
    import psycopg2  # PostgreSQL only: SQLite serialises writers, a transaction cannot commit around another

    instance = pg_instance
    db = instance["db"]
    before = db.pr_person.insert(first_name="Committed before")
    db.commit()
    since = checkpoint(db)
    t1, t2 = psycopg2.connect(instance["uri"]), psycopg2.connect(instance["uri"])
    try:
        c1, c2 = t1.cursor(), t2.cursor()
        c1.execute("INSERT INTO pr_person (uuid, first_name, mci) VALUES ('urn:uuid:t1', 'T1', 0) RETURNING id")
        id1 = c1.fetchone()[0]
        c1.execute("SELECT txid_current()")
        txid1 = c1.fetchone()[0]
        c2.execute("INSERT INTO pr_person (uuid, first_name, mci) VALUES ('urn:uuid:t2', 'T2', 0) RETURNING id")
        id2 = c2.fetchone()[0]
        t2.commit()  # T2 commits; T1 is still open

        ids, until = read(db, "pr_person", since)
        db.commit()
        assert id1 not in ids
        assert until <= txid1  # the checkpoint did not pass the open transaction
        assert before not in ids  # it was read before `since`
        sent = set(ids)

        t1.commit()
        ids, until2 = read(db, "pr_person", until)
        sent |= set(ids)
        assert id1 in ids
        assert sent == {id1, id2}  # between the two reads, nothing missed
        assert until2 > until
    finally:
        t1.close()
        t2.close()


def test_own_uncommitted_writes_stay_ahead_of_the_checkpoint(instance, backend):
    db = instance["db"]
    since = checkpoint(db)
    pid = db.pr_person.insert(first_name="Mine, not yet committed")
    until = checkpoint(db)
    if backend == "postgres":
        assert pid not in changed_ids(db, "pr_person", since, until)
        assert seq_of(db, "pr_person", pid) >= until
    db.rollback()
    assert changed_ids(db, "pr_person", since, checkpoint(db)) == []


def test_cost_follows_the_changes_not_the_table(instance, backend):
    """5 changes in a table of 20,000 rows: the change index and the primary key, no table scan."""
    db = instance["db"]
    if backend == "sqlite":
        db.executesql(
            "WITH RECURSIVE g(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM g WHERE n < 20000) "
            "INSERT INTO pr_person (uuid, first_name, mci) SELECT 'urn:uuid:p-' || n, 'P' || n, 0 FROM g"
        )
    else:
        db.executesql(
            "INSERT INTO pr_person (uuid, first_name, mci) "
            "SELECT 'urn:uuid:p-' || n, 'P' || n, 0 FROM generate_series(1, 20000) n"
        )
    db.commit()
    since = checkpoint(db)
    assert db(db.plugin_sync_change.tablename == "pr_person").count() == 20000
    ids = [r.id for r in db(db.pr_person.id > 0).select(db.pr_person.id, limitby=(0, 5), orderby=db.pr_person.id)]
    db(db.pr_person.id.belongs(ids)).update(phone="changed")
    db.commit()
    until = checkpoint(db)
    assert sorted(changed_ids(db, "pr_person", since, until)) == ids
    db.executesql("ANALYZE")

    change = db.plugin_sync_change
    ids_sql = db((change.seq >= since) & (change.seq < until) & (change.tablename == "pr_person"))._select(
        change.record_id, orderby=change.seq
    )
    rows_sql = db(changed_query(db, "pr_person", since, until))._select(db.pr_person.ALL)
    explain = "EXPLAIN QUERY PLAN " if backend == "sqlite" else "EXPLAIN "
    for sql in (ids_sql, rows_sql):
        plan = " | ".join(str(r) for r in db.executesql(explain + sql.rstrip(";")))
        print(plan)
        assert re.search(r"plugin_sync_change_(table_)?seq_idx", plan), plan  # either index on seq
        if backend == "sqlite":
            assert "SCAN pr_person" not in plan and "SCAN plugin_sync_change" not in plan, plan
        else:
            assert "Seq Scan" not in plan, plan
    assert len(db(changed_query(db, "pr_person", since, until)).select()) == 5


def test_two_processes_installing_at_once_do_not_collide(pg_instance):
    """Several web2py processes run setup at their first request: installers queue, none fails.

    PostgreSQL only: SQLite serialises the installers by its write lock.
    """
    import threading

    instance = pg_instance

    from pydal import DAL

    db = instance["db"]
    drop_triggers(db, ["org_office"])
    db.commit()
    other = DAL(instance["uri"], folder=db._folder, auto_import=True, migrate=False, pool_size=0)
    try:
        assert install_triggers(db, ["org_office"]) == ["org_office"]  # holds the install lock until commit
        result = {}
        thread = threading.Thread(target=lambda: result.update(other=install_triggers(other, ["org_office"])))
        thread.start()
        thread.join(1.0)
        assert thread.is_alive()  # waiting for the first installer
        db.commit()
        thread.join(30)
        other.commit()
        assert result == {"other": []}  # it found the triggers in place
    finally:
        other.close()
    oid = db.org_office.insert(name="Suai")
    db.commit()
    assert db(db.plugin_sync_change.record_id == oid).count() == 1
