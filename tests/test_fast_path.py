"""The merge's two paths agree: the column-wise one (Merger.fast_batch: batches all new or all
unchanged, taken on paths="auto") decides, writes, captures and reports exactly as the row-wise one
(paths="rows"), which it hands everything else to.

Each test imports the same files into two fresh instances, one per path, and compares what an
import leaves: the data by uuid, the report (counts, warnings, notes), the change log (which records
changed, under which origin tag), the tombstones, the conflict log and the checkpoint of the sender.
"""
import datetime
import json
import os

import pytest
from hypothesis import HealthCheck, event, example, given, settings as hsettings, strategies as st
from synchelpers import LOCAL, export, instances, seed_small, settings, snapshot
from test_convergence import OPS, REGRESSIONS, played, reset

from applications.eden.modules.plugin_sync import merge
from applications.eden.modules.plugin_sync.changes import CHANGE, checkpoint
from applications.eden.modules.plugin_sync.peers import this_instance
from applications.eden.modules.plugin_sync.tables import synced_tables

EXAMPLES = {"sqlite": int(os.environ.get("PATHS_EXAMPLES", 25)),
            "postgres": int(os.environ.get("PATHS_EXAMPLES_PG", 6))}


def _seed(a):
    ids = seed_small(a)
    db = a["db"]
    # a reference into an unsynced table that the receiver lacks (nulled, with a warning, on insert)
    user = db.auth_user.insert(first_name="Clerk", email="clerk@a.tl", uuid="urn:uuid:clerk-of-a")
    db.pr_person.insert(first_name="Ana", created_by=user, date_of_birth=datetime.date(1980, 2, 3),
                        location_id=ids["l0"])
    db.pr_person.insert(first_name="Ines", date_of_birth=None)  # a NULL date among canonical ones
    db.commit()


def _content(record):
    """A row in export form without what is local to the instance holding it (ids, local accounts)."""
    return {k: v for k, v in record.items()
            if k not in LOCAL and k + "@uuid" not in record and k not in ("deleted_rb", "id@seq")}


def _change_log(env, since):
    """{table: [(uuid, tagged with the sender's origin)]} of the records changed since `since`."""
    db = env["db"]
    out = {}
    for t in synced_tables(db, settings(env)):
        rows = db.executesql(
            "SELECT r.uuid, c.origin, c.origin_seq = c.seq FROM %s c JOIN %s r ON r.id = c.record_id "
            "WHERE c.tablename = '%s' AND c.seq >= %d" % (CHANGE, db[t]._rname, t, since))
        out[t] = sorted((u, o, bool(same)) for u, o, same in rows)
    return out


def _padding(env):
    """The uuids of the instance's tombstones before its first import: its own (instances() burns ids)."""
    if "test_padding" not in env:
        tomb = env["db"].plugin_sync_tombstone
        env["test_padding"] = {r.record_uuid for r in env["db"](tomb).select(tomb.record_uuid)}
    return env["test_padding"]


def _logs(env, started):
    """The tombstones and the conflict log, without ids, local columns or the real clock's stamps (those
    after `started`), and without the tombstones of the instance's own padding (instances() burns ids)."""
    db = env["db"]
    tomb, c = db.plugin_sync_tombstone, db.plugin_sync_conflict
    padding = _padding(env)
    tombs = sorted((r.tablename, r.record_uuid, r.origin, r.deleted_on if r.deleted_on < started else "now")
                   for r in db(tomb).select() if r.record_uuid not in padding)
    conflicts = sorted(
        (r.tablename, r.record_uuid, r.origin, r.resolution, r.reason, r.local_modified_on, r.incoming_modified_on,
         json.dumps(_content(json.loads(r.loser or "{}")), sort_keys=True),
         json.dumps(_content(json.loads(r.winner or "{}")), sort_keys=True))
        for r in db(c).select())
    me = this_instance(db).base_uuid
    peers = sorted((r.base_uuid, r.checkpoint_received) for r in db(db.sync_instance.base_uuid != me).select())
    return tombs, conflicts, peers


def _import(env, data, paths, batch=merge.BATCH, now=None):
    """Merge `data` on the given path and commit; (report, change log, logs) of that import."""
    db = env["db"]
    _padding(env)  # before the first import
    started = datetime.datetime.utcnow() - datetime.timedelta(hours=1)
    since = checkpoint(db)
    report = merge.import_and_sync(db, data, settings(env), batch=batch, paths=paths, now=now)
    db.commit()  # no transaction left open: on PostgreSQL it would hold back the other's checkpoint
    return report, _change_log(env, since), _logs(env, started)


def _same_outcome(auto_env, rows_env, data, batch=merge.BATCH, now=None):
    """Import `data` on both paths (on the clock `now`, else the real one); assert they agree; return the
    column-wise path's report."""
    # one clock for both: a stamp ahead of it is dated "now" in the data and the warnings alike
    now = now or datetime.datetime.utcnow().replace(microsecond=0)
    auto, ch_auto, logs_auto = _import(auto_env, data, "auto", batch, now)
    rows, ch_rows, logs_rows = _import(rows_env, data, "rows", batch, now)
    assert rows.column_batches == 0, "paths='rows' took the column-wise path"
    assert auto.tables == rows.tables
    assert auto.warnings == rows.warnings
    assert (auto.notes, auto.skipped_tables, auto.checkpoint) == (rows.notes, rows.skipped_tables, rows.checkpoint)
    assert ch_auto == ch_rows
    assert logs_auto == logs_rows
    assert snapshot(auto_env) == snapshot(rows_env)
    return auto


@pytest.mark.parametrize("step", ["empty", "resync", "stamped"])
def test_the_column_wise_path_merges_as_the_row_wise_one(new_instance, backend, step):
    a, fast, slow = instances(new_instance, "a", "b", "c")
    _seed(a)
    data = export(a)
    if step != "empty":
        for env in (fast, slow):
            merge.import_and_sync(env["db"], data, settings(env))
            env["db"].commit()
    if step == "stamped":  # the same content, stamped later by the sender: the later stamp is taken
        dba = a["db"]
        dba.executesql("UPDATE pr_person SET modified_on = %s" % (
            "datetime(modified_on, '+1 hour')" if backend == "sqlite" else "modified_on + interval '1 hour'"))
        dba.commit()
        data = export(a)
    for env in (a, fast, slow):
        env["db"].commit()
    report = _same_outcome(fast, slow, data)
    assert report.column_batches > 0, "the column-wise path was not taken at all"
    if step == "empty":
        assert any("clerk-of-a" in w["message"] for w in report.warnings)  # the nulled reference
        assert report.totals()["created"] == sum(len(rows) for rows in snapshot(fast).values())
    if step == "resync":
        assert report.totals()["unchanged"] == report.totals()["read"]
    if step == "stamped":  # pr_person's later stamps go row-wise; the other tables' batches column-wise
        assert report.tables["pr_person"]["unchanged"] == report.tables["pr_person"]["read"] > 0


def test_paths_is_checked(instance):
    with pytest.raises(ValueError):
        merge.import_and_sync(instance["db"], export(instance), settings(instance), paths="columns")


def _with_a_later_copy(data):
    """The export with a second, later copy of the first pr_person row at the end of its section."""
    import csv
    import io

    rows = list(csv.reader(io.StringIO(data.decode("utf-8"), newline="")))
    head = [i for i, r in enumerate(rows) if r and r[0].startswith("pr_person.")][0]
    end = head + 1
    while rows[end]:
        end += 1
    copy = list(rows[head + 1])
    cols = rows[head]
    copy[cols.index("pr_person.phone")] = "+670 555"
    stamp = copy[cols.index("pr_person.modified_on")]
    later = datetime.datetime.fromisoformat(stamp) + datetime.timedelta(seconds=1)
    copy[cols.index("pr_person.modified_on")] = later.strftime("%Y-%m-%d %H:%M:%S")
    rows.insert(end, copy)
    out = io.StringIO(newline="")
    csv.writer(out).writerows(rows)
    return out.getvalue().encode("utf-8")


def test_a_uuid_again_in_a_later_batch_of_a_new_table(new_instance, backend):
    """An empty table's batches are inserted without a lookup; the UNIQUE uuid index refuses the batch
    holding a uuid written by an earlier one, and that batch is merged as usual (here: the later copy wins)."""
    a, fast, slow = instances(new_instance, "a", "b", "c")
    _seed(a)
    data = _with_a_later_copy(export(a))
    report = _same_outcome(fast, slow, data, batch=2)
    assert report.column_batches > 0
    db = fast["db"]
    assert db(db.pr_person.phone == "+670 555").count() == 1
    assert report.tables["pr_person"]["updated"] + report.tables["pr_person"]["older"] >= 1


# histories like the convergence test's, shorter: their files are replayed into one instance per path
HISTORY = st.tuples(st.sampled_from([2, 3, 4]), st.booleans(), st.booleans(), st.lists(OPS, min_size=3, max_size=20),
                    st.sampled_from([2, 3, 1000]))


def test_both_paths_agree_on_every_file_of_a_history(new_instance, backend):
    """Every file of a random history (creates, edits, soft and hard deletes, skewed clocks and edits
    stamped a day ahead, full and incremental syncs among 2-4 instances; the convergence test's
    regressions first), replayed in order into two fresh instances, one per path, each on the clock
    of the file's receiver (the stamps and deletions ahead of it are suspect there too):
    after each file both hold the same data and logs and reported the same.  Files from several
    senders meet there: new records, re-sent and older versions, conflicts, tombstones, references
    forward and to records deleted."""
    envs = instances(new_instance, "a", "b", "c", "d")
    auto_env, rows_env = instances(new_instance, "e", "f")
    if backend == "sqlite":
        for env in envs + [auto_env, rows_env]:
            env["db"].executesql("PRAGMA synchronous=OFF")

    taken = []  # column-wise batches per example: the property holds the two paths to each other

    @hsettings(max_examples=EXAMPLES[backend], derandomize=True, deadline=None, database=None,
               suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(HISTORY)
    def run(history):
        n, incremental_gossip, shared_start, ops, batch = history
        reset(envs + [auto_env, rows_env])
        world = played(envs[:n], incremental_gossip, shared_start, ops)
        world.sync(0, 1, False)  # at least one full file
        columns = 0
        for _, data, now in world.files:  # on its receiver's clock: the stamps ahead of it are suspect here too
            columns += _same_outcome(auto_env, rows_env, data, batch, now).column_batches
        taken.append(columns)
        event("column-wise batches: %s" % ("none" if not columns else "some"))

    for history in REGRESSIONS.values():
        run = example(history + (2,))(run)
    run()
    assert sum(taken) > 0 and taken.count(0) < len(taken), "the histories never took the column-wise path"
