"""The merge's column-wise path (Merger.fast_batch: batches all new or all unchanged) decides, writes,
captures and reports exactly as the row-wise one, which it hands everything else to."""
import datetime

import pytest

from synchelpers import export, instances, seed_small, settings, snapshot

from applications.eden.modules.plugin_sync import merge
from applications.eden.modules.plugin_sync.changes import changed_ids, checkpoint
from applications.eden.modules.plugin_sync.fileio import import_from
from applications.eden.modules.plugin_sync.tables import synced_tables


def _seed(a):
    ids = seed_small(a)
    db = a["db"]
    # a reference into an unsynced table that the receiver lacks (nulled, with a warning, on insert)
    user = db.auth_user.insert(first_name="Clerk", email="clerk@a.tl", uuid="urn:uuid:clerk-of-a")
    db.pr_person.insert(first_name="Ana", created_by=user, date_of_birth=datetime.date(1980, 2, 3),
                        location_id=ids["l0"])
    db.pr_person.insert(first_name="Ines", date_of_birth=None)  # a NULL date among canonical ones
    db.commit()


def _state(env):
    db = env["db"]
    return snapshot(env), {t: db(db[t]).count() for t in synced_tables(db, settings(env))}


def _run(env, data, monkeypatch, fast):
    with monkeypatch.context() as m:
        if not fast:
            m.setattr(merge.Merger, "fast_batch", lambda self, plan, raw, parsed=None: False)
        calls = []
        if fast:
            real = merge.Merger.fast_batch
            def spy(self, plan, raw, parsed=None):
                calls.append(real(self, plan, raw, parsed))
                return calls[-1]

            m.setattr(merge.Merger, "fast_batch", spy)
        db = env["db"]
        since = checkpoint(db)
        report = import_from(db, settings(env), data)
        changed = {t: len(changed_ids(db, t, since, checkpoint(db))) for t in synced_tables(db, settings(env))}
        db.commit()  # no transaction left open: on PostgreSQL it would hold back the other's checkpoint
        return report, changed, calls


@pytest.mark.parametrize("step", ["empty", "resync", "stamped"])
def test_the_column_wise_path_merges_as_the_row_wise_one(new_instance, backend, monkeypatch, step):
    a, fast, slow = instances(new_instance, "a", "b", "c")
    _seed(a)
    data = export(a)
    if step != "empty":
        for env in (fast, slow):
            import_from(env["db"], settings(env), data)
    if step == "stamped":  # the same content, stamped later by the sender: the later stamp is taken
        dba = a["db"]
        dba.executesql("UPDATE pr_person SET modified_on = %s" % (
            "datetime(modified_on, '+1 hour')" if backend == "sqlite" else "modified_on + interval '1 hour'"))
        dba.commit()
        data = export(a)
    for env in (a, fast, slow):
        env["db"].commit()
    r_fast, ch_fast, calls = _run(fast, data, monkeypatch, True)
    r_slow, ch_slow, _ = _run(slow, data, monkeypatch, False)
    if step in ("empty", "resync"):
        assert any(calls), "the column-wise path was not taken at all"
    assert r_fast.tables == r_slow.tables
    assert r_fast.warnings == r_slow.warnings
    assert ch_fast == ch_slow
    assert _state(fast) == _state(slow)
    if step == "empty":
        assert any("clerk-of-a" in w["message"] for w in r_fast.warnings)  # the nulled reference
        assert r_fast.totals()["created"] == sum(_state(fast)[1].values())
    if step == "resync":
        assert r_fast.totals()["unchanged"] == r_fast.totals()["read"]


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


def test_a_uuid_again_in_a_later_batch_of_a_new_table(new_instance, backend, monkeypatch):
    """An empty table's batches are inserted without a lookup; the UNIQUE uuid index refuses the batch
    holding a uuid written by an earlier one, and that batch is merged as usual (here: the later copy wins)."""
    a, fast, slow = instances(new_instance, "a", "b", "c")
    _seed(a)
    data = _with_a_later_copy(export(a))
    results = []
    for env, on in ((fast, True), (slow, False)):
        with monkeypatch.context() as m:
            if not on:
                m.setattr(merge.Merger, "fast_batch", lambda self, plan, raw, parsed=None: False)
            db = env["db"]
            report = merge.import_and_sync(db, data, settings(env), batch=2)
            db.commit()
            results.append((report.tables, report.warnings, _state(env)))
    assert results[0] == results[1]
    db = fast["db"]
    assert db(db.pr_person.phone == "+670 555").count() == 1
    assert results[0][0]["pr_person"]["updated"] + results[0][0]["pr_person"]["older"] >= 1


@pytest.mark.parametrize("batch", [2, 1000])
def test_the_first_error_in_the_file_is_the_one_reported(new_instance, backend, batch):
    """A bad value, then a row with a cell too many further down (in the same batch or a later one; on
    PostgreSQL a reader thread reads ahead): the bad value is reported, and nothing is written."""
    import csv
    import io

    from applications.eden.modules.plugin_sync.errors import BadValue

    a, b = instances(new_instance)
    _seed(a)
    rows = list(csv.reader(io.StringIO(export(a).decode("utf-8"), newline="")))
    head = [i for i, r in enumerate(rows) if r and r[0].startswith("pr_person.")][0]
    cols = rows[head]
    rows[head + 1][cols.index("pr_person.date_of_birth")] = "not a date"
    rows[head + 4].append("extra")
    out = io.StringIO(newline="")
    csv.writer(out).writerows(rows)
    db = b["db"]
    before = _state(b)
    with pytest.raises(BadValue) as e:
        merge.import_and_sync(db, out.getvalue().encode("utf-8"), settings(b), batch=batch)
    assert e.value.table == "pr_person" and e.value.column == "date_of_birth" and e.value.line == head + 2
    db.commit()
    assert _state(b) == before
