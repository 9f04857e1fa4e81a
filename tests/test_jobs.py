"""Jobs (issue 15): a page's long work run in the background, its progress in a file, its end in the job row.

On the minihost, through the engine alone (jobs.run is what Eden's scheduler task
calls; the browser test in test_eden_browser.py runs it in Eden's real worker).
"""
import io
import json
import os
import socket
import subprocess
import sys
import time

from synchelpers import export, seed_small, settings, snapshot

from applications.eden.modules.plugin_sync import jobs, progress, stash
from applications.eden.modules.plugin_sync.peers import utcnow


def kept(env, data, name="field.csv"):
    """An upload kept in the stash, as the import page keeps it: (key, item)."""
    key, item, _ = stash.keep(env["folder"], {}, io.BytesIO(data), name)
    return key, item


def run(env, kind, params):
    job_id = jobs.create(env["db"], kind, params, user_id=1, app_folder=env["folder"])
    state = jobs.run(env["db"], settings(env), job_id, env["folder"])
    return job_id, state, jobs.status(env["db"], job_id, env["folder"])


def test_preview_then_import_jobs_report_progress_and_the_report(new_instance):
    a, b = new_instance("a"), new_instance("b")
    seed_small(a)
    data = export(a)
    before = snapshot(b)
    key, item = kept(b, data)
    job_id, state, status = run(b, "preview", dict(path=item["path"], name="field.csv", key=key))
    assert state == "done" and status["state"] == "done" and status["report"]["dry_run"]
    assert snapshot(b) == before  # a preview writes nothing
    assert os.path.exists(item["path"])  # kept for "Import for real"
    assert status["params"] == dict(name="field.csv", key=key)  # the server's path is not shown
    read = status["report"]["totals"]["docs_read"]
    assert status["done"] == status["total"] == read > 0
    on_disk = progress.read(jobs.progress_path(b["folder"], job_id))
    assert on_disk["phase"] == "import" and on_disk["done"] == read and 0 < on_disk["read"] <= on_disk["size"]

    job_id, state, status = run(b, "import", dict(path=item["path"], name="field.csv"))
    assert state == "done" and not status["report"]["dry_run"]
    assert status["report"]["totals"]["created"] == read
    assert snapshot(b) != before
    assert not os.path.exists(item["path"])  # imported: the kept file is gone
    # a job runs once: a retried scheduler task finds it done
    assert jobs.run(b["db"], settings(b), job_id, b["folder"]) == "done"


def test_a_failing_import_job_says_where_and_writes_nothing(new_instance):
    b = new_instance("b")
    before = snapshot(b)
    bad = (b"TABLE org_organisation\norg_organisation.id,org_organisation.uuid,org_organisation.name,"
           b"org_organisation.modified_on\n1,urn:uuid:0b0e6f9e-6c0a-4a57-9d3c-0d2f4a1c1e01,New org,2020-01-01 00:00:00\n"
           b"2,urn:uuid:0b0e6f9e-6c0a-4a57-9d3c-0d2f4a1c1e02,Bad date,not-a-date\n\nEND\n")
    _, item = kept(b, bad, "bad.csv")
    _, state, status = run(b, "import", dict(path=item["path"], name="bad.csv"))
    assert state == "failed" and status["report"] is None
    error = status["error"]
    assert error["table"] == "org_organisation" and error["column"] == "modified_on" and error["line"] == 4
    assert "not-a-date" in error["describe"]
    assert snapshot(b) == before and not os.path.exists(item["path"])


def test_progress_estimates_total_rate_and_time_left_from_the_share_read(tmp_path):
    now = [1000.0]
    stream = io.BytesIO(b"x" * 1000)
    meter = progress.Meter(str(tmp_path / "1.json"), clock=lambda: now[0], throttle=0)
    with progress.watching(meter):
        progress.phase("import")
        progress.reading(stream)
        stream.seek(250)  # a quarter of the file read: 500 rows merged
        now[0] += 10
        progress.batch(500)
        state = progress.read(str(tmp_path / "1.json"))
    assert progress.estimate(state, now[0]) == dict(done=500, total=2000, rate=50.0, seconds_left=30,
                                                    fraction=0.25)
    progress.batch(7)  # nobody watches any more: nothing counts, nothing is written
    assert progress.read(str(tmp_path / "1.json"))["done"] == 500


def test_a_job_whose_worker_died_is_reported_failed(instance):
    db, folder = instance["db"], instance["folder"]
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = time.time() - jobs.STALE - 5
    cases = {}
    for name, worker in (("dead", "%s:%d:x" % (socket.gethostname(), dead.pid)),
                         ("alive", "%s:%d:x" % (socket.gethostname(), os.getpid()))):
        job_id = jobs.create(db, "sync", dict(peer=1), app_folder=folder)
        db(db.plugin_sync_job.id == job_id).update(state="running", worker=worker, started_on=utcnow())
        db.commit()
        with open(jobs.progress_path(folder, job_id), "w") as f:
            json.dump(dict(phase="pull", done=10, updated=stale, started=stale), f)
        cases[name] = job_id
    gone = jobs.status(db, cases["dead"], folder)
    assert gone["state"] == "failed" and "stopped" in gone["error"]["describe"]
    assert db.plugin_sync_job(cases["dead"]).state == "failed"  # and so it stays
    assert jobs.status(db, cases["alive"], folder)["state"] == "running"  # slow, not dead
    # queued long ago: failed only when no scheduler worker is alive to take it
    queued = jobs.create(db, "sync", dict(peer=1), app_folder=folder)
    db(db.plugin_sync_job.id == queued).update(created_on=utcnow().replace(year=2020))
    db.commit()
    assert jobs.status(db, queued, folder, workers_alive=True)["state"] == "queued"
    assert jobs.status(db, queued, folder, workers_alive=False)["state"] == "failed"


def test_the_stash_keeps_the_last_uploads_and_gives_each_once(tmp_path):
    pending = {}
    keys = []
    for i in range(stash.KEEP + 2):
        key, item, pending = stash.keep(str(tmp_path), pending, io.BytesIO(b"file %d" % i), "f%d.csv" % i)
        keys.append(key)
    assert sorted(pending) == sorted(keys[-stash.KEEP:])
    assert len(os.listdir(os.path.join(str(tmp_path), "uploads", "plugin_sync_pending"))) == stash.KEEP
    assert stash.peek(pending, keys[-1])["name"] == "f%d.csv" % (stash.KEEP + 1)
    item, pending = stash.take(pending, keys[-1])
    assert open(item["path"], "rb").read() == b"file %d" % (stash.KEEP + 1)
    assert stash.take(pending, keys[-1])[0] is None and stash.peek(pending, keys[-1]) is None


def test_an_export_job_writes_the_file_with_its_rows_expected(new_instance):
    a = new_instance("a")
    seed_small(a)
    path = os.path.join(jobs.folder_of(a["folder"]), "out.csv")
    job_id, state, status = run(a, "export", dict(fmt="csv", tables=None, name="a.csv", path=path))
    assert state == "done" and status["report"]["file"] == "a.csv"
    with open(path, "rb") as f:
        data = f.read()
    assert data.startswith(b"TABLE sync_instance") and data.rstrip().endswith(b"END")
    assert status["report"]["bytes"] == len(data) and status["report"]["rows"] > 0
    on_disk = progress.read(jobs.progress_path(a["folder"], job_id))
    assert on_disk["phase"] == "export" and on_disk["expected"] == on_disk["done"] == status["report"]["rows"]
