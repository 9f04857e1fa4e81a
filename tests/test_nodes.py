"""Several nodes, one instance (issue 23): app servers and scheduler workers on different machines over one
PostgreSQL database work as one.

A node here is a minihost runtime folder of its own (its own uploads, sessions, temporary files: what
one machine holds) over the shared database.  What two requests share must be in the database: a job's
progress and end, a previewed upload, the peer lock and its takeover.  To be sure nothing of one node's
disk is read by another, a node's folder is removed once it has done its part.
"""
import io
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time

import pytest
from conftest import REPO, close_instances, make_instance
from synchelpers import settings, snapshot

from applications.eden.modules.plugin_sync import jobs, lease, progress, replicate, stash
from applications.eden.modules.plugin_sync.errors import Locked, PeerError

LEASE = 2  # seconds: the peer lock's lease in these tests (lock_ttl)


@pytest.fixture
def hub(request, postgres):
    """node(name) -> env of another node of one instance: a runtime folder of its own over one PostgreSQL
    database."""
    uri = postgres.new_database("nodes")
    made = []

    def node(name):
        if not made or made[-1].get("uri") != uri:  # the first node makes the tables
            return make_instance("postgres", request, name, made, uri=uri)
        # the others are deployed with its migration records (web2py's databases/*.table), as a multi-server
        # site deploys them (or runs with migrate off): they do not create the tables again
        first = next(env for env in made if env["uri"] == uri)
        return make_instance("postgres", request, name, made, uri=uri, like=first["folder"])

    node.uri = uri
    node.made = made
    yield node
    close_instances(made)


def field_file(n=40):
    """A file of another instance: `n` new organisations."""
    rows = ["%d,urn:uuid:6f1c2d3e-0000-4000-8000-%012d,Field org %d,2024-01-01 00:00:00" % (i, i, i)
            for i in range(1, n + 1)]
    return ("TABLE org_organisation\norg_organisation.id,org_organisation.uuid,org_organisation.name,"
            "org_organisation.modified_on\n%s\n\nEND\n" % "\n".join(rows)).encode()


def test_a_job_started_on_one_node_is_watched_on_the_other(hub, monkeypatch):
    """Node A's worker runs an import job; node B's page polls it: B sees A's progress while the job runs
    (rows done, phase), then its end and its report, and the records."""
    data = field_file()
    a, b = hub("a"), hub("b")
    key, _, _ = stash.keep(a["db"], {}, io.BytesIO(data), "field.csv")
    job_id = jobs.create(a["db"], "import", dict(key=key, name="field.csv"), user_id=None)
    a["db"].close()  # the worker below is node A on a connection of its own

    merged, go = threading.Event(), threading.Event()
    real_batch = progress.batch

    def pausing_batch(rows):  # the merge's hook: the job stops after its first batch until B has looked
        real_batch(rows)
        merged.set()
        go.wait(30)

    monkeypatch.setattr(progress, "batch", pausing_batch)
    worker = Worker(a, lambda env: jobs.run(env["db"], settings(env), job_id))
    assert merged.wait(30), "the job did not start merging"
    seen = poll(lambda: jobs.status(b["db"], job_id), lambda s: s["done"] > 0)
    assert seen["state"] == "running" and seen["phase"] == "import"
    assert seen["done"] > 0 and seen["total"] and seen["fraction"]
    go.set()
    assert worker.result(60) == "done"
    b["db"].commit()
    end = jobs.status(b["db"], job_id)
    assert end["state"] == "done" and end["report"]["totals"]["created"] == end["done"] == end["total"] > 0
    assert snapshot(b)["org_organisation"]  # the records are there, seen from B


def test_a_preview_on_one_node_is_imported_on_the_other(hub):
    """The administrator previews a file on node A; 'Import for real' lands on node B (the session shared,
    as a multi-server Eden keeps it in the database): B imports the kept upload, A's disk gone meanwhile."""
    data = field_file()
    a, b = hub("a"), hub("b")
    before = snapshot(b)
    key, _, pending = stash.keep(a["db"], {}, io.BytesIO(data), "field.csv")
    preview = jobs.create(a["db"], "preview", dict(key=key, name="field.csv"), user_id=None)
    assert jobs.run(a["db"], settings(a), preview) == "done"
    read = jobs.status(a["db"], preview)["report"]["totals"]["docs_read"]
    a["db"].close()
    shutil.rmtree(a["folder"])  # nothing of node A's machine is left for B to read

    b["db"].commit()
    shown = jobs.status(b["db"], preview)  # B's page shows the preview's report, and offers the import
    assert shown["state"] == "done" and shown["report"]["dry_run"] and shown["report"]["totals"]["docs_read"] == read
    assert stash.peek(b["db"], pending, key)
    item, pending = stash.take(b["db"], pending, key)
    assert item is not None and item["name"] == "field.csv"
    job_id = jobs.create(b["db"], "import", dict(key=item["key"], name=item["name"]), user_id=None)
    assert jobs.run(b["db"], settings(b), job_id) == "done", jobs.status(b["db"], job_id)["error"]
    report = jobs.status(b["db"], job_id)["report"]
    assert report["totals"]["created"] == read > 0 and not report["dry_run"]
    assert snapshot(b) != before
    assert not stash.exists(b["db"], key)  # imported: no longer kept, on any node


DEAD_NODE = """
import os, sys
sys.path.insert(0, os.path.join(%(repo)r, "scripts"))
import eden
eden.enter(%(folder)r, "hub", %(uri)r)
env = eden.app_env(%(folder)r)
from applications.eden.modules.plugin_sync import replicate
settings = env["plugin_sync_settings"]
settings.lock_ttl = %(lease)r
replicate.sync(env["db"], settings, %(peer)r)  # the peer never answers: it holds the lock until killed
"""


class Unreachable:
    """A transport to a peer that is down: a run that got the lock fails at once with PeerError."""

    def identity(self, **kw):
        raise PeerError("the peer is down")


def test_a_lock_held_by_a_node_that_died_is_taken_over_after_its_lease_not_before(hub, postgres):
    """Node A syncs with a peer that never answers and is killed (SIGKILL) while it holds the lock, its
    heartbeat having moved the lease on.  Once A is dead, node B (same host: a node's pid or host name
    decides nothing) is refused until the lease has run out, then takes the lock over."""
    b = hub("b")
    silent = socket.socket()  # a peer that accepts connections and never answers
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)
    peer = "0e5d7c1a-3b57-4a1e-9c2b-5f1d8a7e6c01"
    b["db"].sync_instance.insert(base_uuid=peer, uuid="urn:uuid:" + peer, owner="Field",
                                 url="http://127.0.0.1:%d/eden" % silent.getsockname()[1])
    b["db"].commit()
    folder = make_node_folder(hub)
    script = DEAD_NODE % dict(repo=REPO, folder=folder, uri=hub.uri, lease=LEASE, peer=peer)
    node_a = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                              env=dict(os.environ, EDEN_DB_POOL_SIZE="0"))
    s = settings(b)
    s.lock_ttl = LEASE
    lock = b["db"].plugin_sync_lock

    def attempt():
        """B's sync: 'refused' (the lock is A's) or 'taken' (B got the lock, and then the peer was down)."""
        try:
            replicate.sync(b["db"], s, peer, transport=Unreachable())
        except Locked:
            return "refused"
        except PeerError:
            return "taken"
        raise AssertionError("the sync with an unreachable peer did not fail")

    try:
        held = poll(lambda: (b["db"].commit(), b["db"](lock.peer == peer).select().first())[1],
                    lambda row: row is not None and row.holder, timeout=60,
                    failed=lambda: node_a.poll() is not None and node_a.stderr.read().decode()[-2000:])
        assert attempt() == "refused"
        # A lives: its heartbeat moves the lease on (a live holder keeps it: test_a_live_holder_keeps_...)
        poll(lambda: (b["db"].commit(), b["db"](lock.peer == peer).select().first())[1],
             lambda row: row.expires_on > held.expires_on, timeout=LEASE * 5)
        assert node_a.poll() is None, node_a.stderr.read().decode()[-2000:]
        node_a.send_signal(signal.SIGKILL)
        node_a.wait()
        assert attempt() == "refused", "the lock of a node that died was taken over before its lease ended"
        b["db"].commit()
        lease_end = b["db"](lock.peer == peer).select().first().expires_on
        assert lease_end > held.expires_on
        poll(attempt, lambda outcome: outcome == "taken", timeout=LEASE * 10)
        taken = b["db"].executesql("SELECT clock_timestamp() AT TIME ZONE 'UTC'")[0][0]
        assert taken >= lease_end  # after the lease, in the database's clock
        row = b["db"](lock.peer == peer).select().first()
        assert row.holder is None and row.last_result == "error"  # B's run ended (the peer was down) and freed it
    finally:
        if node_a.poll() is None:
            node_a.kill()
            node_a.wait()
        silent.close()


def test_a_live_holder_keeps_its_lease_and_one_taken_over_stops_without_freeing_the_new_holder(instance):
    """On SQLite and PostgreSQL: a lease of 0.8 s held for 2 s by a run that lives is not taken; a run whose
    lock another took over (it stalled beyond its lease) finds out, stops before its next step, and leaves
    the other's lock alone."""
    db, peer, ttl = instance["db"], "peer-1", 0.8
    held = lease.Lease(db, peer, ttl=ttl).take()
    try:
        time.sleep(ttl * 2.5)
        with pytest.raises(Locked):
            lease.acquire(db, peer, ttl=ttl)
        lock = db.plugin_sync_lock
        db(lock.peer == peer).update(holder="elsewhere:1:x")  # another run took it over
        db.commit()
        poll(lambda: held.lost, bool, timeout=10)
        with pytest.raises(Locked, match="taken over"):
            held.check()
    finally:
        held.end("ok")
    assert db(lock.peer == peer).select().first().holder == "elsewhere:1:x"


def make_node_folder(hub):
    """A runtime folder for a node that runs in a process of its own (its env is not loaded here)."""
    env = hub("a")
    env["db"].close()
    return env["folder"]


class Worker(threading.Thread):
    """`fn(env)` as node `env` would run it on a machine of its own: on a connection of its own, in a thread."""

    def __init__(self, env, fn):
        super().__init__(daemon=True)
        self.env, self.fn, self.value, self.error = env, fn, None, None
        self.start()

    def run(self):
        import eden

        other = None
        try:
            os.environ.update(EDEN_DB_URI=self.env["uri"], EDEN_INSTANCE="hub")
            other = eden.app_env(self.env["folder"])
            self.value = self.fn(other)
        except BaseException as e:
            self.error = e
        finally:
            if other is not None:
                other["db"].close()

    def result(self, timeout):
        self.join(timeout)
        if self.error is not None:
            raise self.error
        return self.value


def poll(fetch, done, timeout=20, failed=lambda: None):
    """fetch() every 0.1 s until done(value); the value (AssertionError with the last one after `timeout` s)."""
    deadline = time.time() + timeout
    while True:
        value = fetch()
        if done(value):
            return value
        why = failed()
        assert not why, why
        assert time.time() < deadline, "still %r after %s s" % (value, timeout)
        time.sleep(0.1)
