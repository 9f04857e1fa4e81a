"""Jobs (issue 15): a page's long work run in the background, its progress and its end in the database.

On the minihost, through the engine alone (jobs.run is what Eden's scheduler task
calls; the browser test in test_eden_browser.py runs it in Eden's real worker).
"""
import io
import time

from synchelpers import export, seed_small, settings, snapshot

from applications.eden.modules.plugin_sync import jobs, progress, side, stash
from applications.eden.modules.plugin_sync.peers import utcnow


def kept(env, data, name="field.csv"):
    """An upload kept in the stash, as the import page keeps it: (key, item)."""
    key, item, _ = stash.keep(env["db"], {}, io.BytesIO(data), name)
    return key, item


def run(env, kind, params):
    job_id = jobs.create(env["db"], kind, params, user_id=1)
    state = jobs.run(env["db"], settings(env), job_id)
    return job_id, state, jobs.status(env["db"], job_id)


def test_preview_then_import_jobs_report_progress_and_the_report(new_instance):
    a, b = new_instance("a"), new_instance("b")
    seed_small(a)
    data = export(a)
    before = snapshot(b)
    key, item = kept(b, data)
    job_id, state, status = run(b, "preview", dict(key=key, name="field.csv"))
    assert state == "done" and status["state"] == "done" and status["report"]["dry_run"]
    assert snapshot(b) == before  # a preview writes nothing
    assert stash.exists(b["db"], key)  # kept for "Import for real"
    read = status["report"]["totals"]["docs_read"]
    assert status["done"] == status["total"] == read > 0
    saved = progress.read(b["db"], job_id)
    assert saved["phase"] == "import" and saved["done"] == read and 0 < saved["read"] <= saved["size"] == len(data)

    job_id, state, status = run(b, "import", dict(key=key, name="field.csv"))
    assert state == "done" and not status["report"]["dry_run"]
    assert status["report"]["totals"]["created"] == read
    assert snapshot(b) != before
    assert not stash.exists(b["db"], key)  # imported: the kept file is gone
    # a job runs once: a retried scheduler task finds it done
    assert jobs.run(b["db"], settings(b), job_id) == "done"


def test_a_failing_import_job_says_where_and_writes_nothing(new_instance):
    b = new_instance("b")
    before = snapshot(b)
    bad = (b"TABLE org_organisation\norg_organisation.id,org_organisation.uuid,org_organisation.name,"
           b"org_organisation.modified_on\n1,urn:uuid:0b0e6f9e-6c0a-4a57-9d3c-0d2f4a1c1e01,New org,2020-01-01 00:00:00\n"
           b"2,urn:uuid:0b0e6f9e-6c0a-4a57-9d3c-0d2f4a1c1e02,Bad date,not-a-date\n\nEND\n")
    key, item = kept(b, bad, "bad.csv")
    _, state, status = run(b, "import", dict(key=key, name="bad.csv"))
    assert state == "failed" and status["report"] is None
    error = status["error"]
    assert error["table"] == "org_organisation" and error["column"] == "modified_on" and error["line"] == 4
    assert "not-a-date" in error["describe"]
    assert snapshot(b) == before and not stash.exists(b["db"], key)


def test_progress_estimates_total_rate_and_time_left_from_the_share_read(instance):
    db = instance["db"]
    job_id = jobs.create(db, "preview", dict(key="k"))
    now = [1000.0]
    stream = io.BytesIO(b"x" * 1000)
    meter = progress.Meter(db, job_id, clock=lambda: now[0], throttle=0.01)
    with progress.watching(meter):
        progress.phase("import")
        progress.reading(stream)
        stream.seek(250)  # a quarter of the file read: 500 rows merged
        now[0] += 10
        progress.batch(500)
    state = progress.read(db, job_id)
    assert progress.estimate(state, now[0]) == dict(done=500, total=2000, rate=50.0, seconds_left=30,
                                                    fraction=0.25)
    progress.batch(7)  # nobody watches any more: nothing counts, nothing is written
    assert progress.read(db, job_id)["done"] == 500


def test_a_job_whose_heartbeat_stopped_is_reported_failed(instance):
    """A running job is dead when its heartbeat (its progress row's beat) has stopped for STALE s, whatever
    machine ran it; a slow one that still beats runs on."""
    db = instance["db"]
    cases = {}
    for name, beat in (("dead", time.time() - jobs.STALE - 5), ("alive", time.time() - 1)):
        job_id = jobs.create(db, "sync", dict(peer=1))
        db(db.plugin_sync_job.id == job_id).update(state="running", worker="elsewhere:1:x",
                                                   started_on=utcnow().replace(year=2020))
        db.commit()
        pdb = side.progress_database(db)
        progress.save(pdb, job_id, dict(phase="pull", done=10, updated=beat, started=beat - 100))
        pdb.commit()
        pdb.close()
        cases[name] = job_id
    gone = jobs.status(db, cases["dead"])
    assert gone["state"] == "failed" and "stopped" in gone["error"]["describe"]
    assert db.plugin_sync_job(cases["dead"]).state == "failed"  # and so it stays
    assert jobs.status(db, cases["alive"])["state"] == "running"  # slow, not dead
    # queued long ago: failed only when no scheduler worker is alive to take it
    queued = jobs.create(db, "sync", dict(peer=1))
    db(db.plugin_sync_job.id == queued).update(created_on=utcnow().replace(year=2020))
    db.commit()
    assert jobs.status(db, queued, workers_alive=True)["state"] == "queued"
    assert jobs.status(db, queued, workers_alive=False)["state"] == "failed"


def test_the_stash_keeps_the_last_uploads_and_gives_each_once(instance):
    db = instance["db"]
    pending = {}
    keys = []
    for i in range(stash.KEEP + 2):
        key, item, pending = stash.keep(db, pending, io.BytesIO(b"file %d" % i), "f%d.csv" % i)
        keys.append(key)
    assert sorted(pending) == sorted(keys[-stash.KEEP:])
    assert db(db.plugin_sync_upload).count() == stash.KEEP
    assert stash.peek(db, pending, keys[-1])["name"] == "f%d.csv" % (stash.KEEP + 1)
    item, pending = stash.take(db, pending, keys[-1])
    assert stash.open_local(db, item["key"]).read() == b"file %d" % (stash.KEEP + 1)
    stash.discard(db, item["key"])
    assert stash.take(db, pending, keys[-1])[0] is None and stash.peek(db, pending, keys[-1]) is None
    # a file of several chunks comes back whole
    big = bytes(range(256)) * (stash.CHUNK // 128 + 3)
    key, _, _ = stash.keep(db, {}, io.BytesIO(big), "big.csv")
    assert stash.open_local(db, key).read() == big
    assert db(db.plugin_sync_upload.upload_key == key).select().first().size == len(big)


def test_an_export_job_keeps_the_file_with_its_rows_expected(new_instance):
    a = new_instance("a")
    seed_small(a)
    job_id, state, status = run(a, "export", dict(fmt="csv", tables=None, name="a.csv", key="out"))
    assert state == "done" and status["report"]["file"] == "a.csv"
    data = stash.open_local(a["db"], "out").read()
    assert data.startswith(b"TABLE sync_instance") and data.rstrip().endswith(b"END")
    assert status["report"]["bytes"] == len(data) and status["report"]["rows"] > 0
    saved = progress.read(a["db"], job_id)
    assert saved["phase"] == "export" and saved["expected"] == saved["done"] == status["report"]["rows"]
