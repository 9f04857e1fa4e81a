"""Locks and snapshots: an export reads one snapshot; readers go on while an import writes (SQLite's
write-ahead log); a second import waits its turn or is told clearly; setup takes no lock that
ordinary writes wait on once the schema is in place (PostgreSQL)."""
import csv
import io
import os
import sys
import threading

import psycopg2
import pytest

import eden
from synchelpers import export, instances, seed_small, settings

from applications.eden.modules.plugin_sync import export as export_module
from applications.eden.modules.plugin_sync.errors import Busy
from applications.eden.modules.plugin_sync.fileio import export_to, import_from
from applications.eden.modules.plugin_sync.merge import import_and_sync


def second_connection(env):
    """The same instance opened again, as another process would: call it in another thread (pydal
    hands a thread the DAL it already has for a URI)."""
    os.environ.update(EDEN_DB_URI=env["uri"], EDEN_INSTANCE="a")
    try:
        return eden.app_env(env["folder"])
    except SystemExit:  # gluon.shell exits when a model fails (it printed the traceback)
        raise AssertionError("the app's models failed to run (see the captured stderr)")


class Elsewhere(threading.Thread):
    """`fn(env)` on a connection of its own, in a thread; `.result()` waits and returns or raises."""

    def __init__(self, env, fn):
        super().__init__(daemon=True)
        self.env, self.fn, self.value, self.error = env, fn, None, None
        self.started_work = threading.Event()
        self.start()

    def run(self):
        other = None
        try:
            other = second_connection(self.env)
            self.started_work.set()
            self.value = self.fn(other)
        except BaseException as e:
            self.error = e
        finally:
            self.started_work.set()
            try:
                other["db"].rollback()
                other["db"].close()
            except Exception:
                pass

    def result(self, timeout=None):
        self.join(timeout)
        if self.error is not None:
            raise self.error
        return self.value


def elsewhere(env, fn):
    return Elsewhere(env, fn).result()


def _sections(text):
    """{table: [row dicts]} of an export."""
    out, rows = {}, list(csv.reader(io.StringIO(text, newline="")))
    k = 0
    while k < len(rows):
        if rows[k] and rows[k][0].startswith("TABLE "):
            name, header = rows[k][0][6:], [c.split(".", 1)[-1] for c in rows[k + 1]]
            k += 2
            while k < len(rows) and rows[k]:
                out.setdefault(name, []).append(dict(zip(header, rows[k])))
                k += 1
        k += 1
    return out


class _Interfering(io.StringIO):
    """The export's output stream: when the export starts on `table`, `interfere()` runs (once)."""

    def __init__(self, table, interfere):
        super().__init__(newline="")
        self.table, self.interfere, self.done = table, interfere, False

    def write(self, text):
        if not self.done and ("TABLE %s\r\n" % self.table) in text:
            self.done = True
            self.interfere()
        return super().write(text)


def test_an_export_reads_one_snapshot_and_its_checkpoint_matches(new_instance):
    """Persons and their human resources committed by another connection while the export is between
    the two tables: the file holds neither (no human resource without its person), and an export
    since the file's checkpoint holds both."""
    a, = instances(new_instance, "a")
    seed_small(a)
    added = []

    def add(other):
        odb = other["db"]
        person = odb.pr_person.insert(first_name="Added", last_name="Meanwhile")
        hr = odb.hrm_human_resource.insert(person_id=person, type="staff")
        odb.commit()
        return odb.hrm_human_resource(hr).uuid

    def interfere():
        added.append(elsewhere(a, add))

    db = a["db"]
    out = _Interfering("hrm_human_resource", interfere)
    counts = export_module.export(db, out, settings(a))
    db.commit()
    assert added, "the other connection wrote while the export ran"
    tables = _sections(out.getvalue())
    persons = {r["uuid"] for r in tables["pr_person"]}
    assert all(r["person_id@uuid"] in persons for r in tables["hrm_human_resource"])
    assert len(tables["hrm_human_resource"]) == 2 and len(persons) == 2
    later = _sections(export(a, since=counts["until"]).decode("utf-8"))
    assert added[0] in {r["uuid"] for r in later["hrm_human_resource"]}
    assert "Added" in {r["first_name"] for r in later["pr_person"]}


class _Meanwhile(io.BytesIO):
    """An export's file: at its first write (the export has read its snapshot) `meanwhile()` runs (once)."""

    def __init__(self, meanwhile):
        super().__init__()
        self.meanwhile = meanwhile

    def write(self, data):
        if self.meanwhile:
            meanwhile, self.meanwhile = self.meanwhile, None
            meanwhile()
        return super().write(data)


def test_two_peers_pull_at_once(pg_instance):
    """PostgreSQL: another peer's pull starts and ends while ours is writing its file (a hub's peers pull at
    the same moment): both get their file; ours is not failed by the other's record of what it handed out,
    and the highest checkpoint handed out is the one kept."""
    a = pg_instance
    seed_small(a)
    a["db"].commit()

    def pull(other):
        odb = other["db"]
        odb.org_organisation.insert(name="Written meanwhile")
        odb.commit()
        return export_to(odb, settings(other), io.BytesIO(), fmt="csv", log=False)["until"]

    theirs = []
    ours = export_to(a["db"], settings(a), _Meanwhile(lambda: theirs.append(elsewhere(a, pull))), fmt="csv",
                     log=False)  # failed: "could not serialize access due to concurrent update"
    assert theirs and theirs[0] > ours["until"]
    db = a["db"]
    assert db(db.plugin_sync_identity).select().first().exported_until == theirs[0]


@pytest.fixture
def sqlite_pair(request):
    """Two instances on SQLite: the source of a file, and the receiver."""
    from conftest import close_instances, make_instance

    made = []
    a = make_instance("sqlite", request, "a", made)
    b = make_instance("sqlite", request, "b", made)
    seed_small(a)
    yield a, b
    close_instances(made)


def test_sqlite_uses_the_write_ahead_log(sqlite_pair):
    a, b = sqlite_pair
    assert b["db"].executesql("PRAGMA journal_mode")[0][0] == "wal"


def test_readers_go_on_while_an_import_writes(sqlite_pair):
    """An import holds the write lock with its rows written (spilled to the file, not committed): another
    connection exports (sees the committed state) and reads the log; the import then commits."""
    a, b = sqlite_pair
    data = export(a)
    db = b["db"]
    db.executesql("PRAGMA cache_size = 1")  # the import's pages go to the file before its commit
    report = import_and_sync(db, data, settings(b))  # the merge itself: its transaction stays open
    assert report.totals()["created"] == 12
    text = elsewhere(b, lambda other: export(other).decode("utf-8"))  # a reader, during the import
    assert "TABLE pr_person" in text and "Maria" not in text
    db.commit()
    assert "Maria" in elsewhere(b, lambda other: export(other).decode("utf-8"))


def test_a_second_import_waits_its_turn(sqlite_pair):
    a, b = sqlite_pair
    data = export(a)
    db = b["db"]
    import_and_sync(db, data, settings(b))  # the first import, not committed yet: the write lock held

    def second(other):
        report = import_from(other["db"], settings(other), data)
        odb = other["db"]
        return report, [r.result for r in odb(odb.plugin_sync_log).select(orderby=odb.plugin_sync_log.id)]

    second = Elsewhere(b, second)
    second.started_work.wait()
    second.join(1.0)  # meanwhile it waits for the write lock (a failure would end the thread)
    assert second.is_alive() and second.error is None
    db.commit()  # the first import ends (its log row is written by import_from's caller: none here)
    report, results = second.result()
    assert report.totals()["unchanged"] == 12  # it ran after the first, on its data
    assert results[-1] == "ok"


def test_a_second_import_that_waited_too_long_is_told_clearly(sqlite_pair):
    a, b = sqlite_pair
    data = export(a)
    db = b["db"]
    import_and_sync(db, data, settings(b))

    def impatient(other):
        s = settings(other)
        saved, s.import_wait = s.import_wait, 0.2
        try:
            import_from(other["db"], s, data)
        finally:
            s.import_wait = saved

    with pytest.raises(Busy) as e:
        elsewhere(b, impatient)
    assert "another import is writing to this database" in str(e.value) and "nothing was changed" in str(e.value)
    db.rollback()  # the first import fails too: nothing of either is here
    assert db(db.pr_person).count() == 0


def test_setup_takes_no_lock_that_writes_wait_on(pg_instance, postgres):
    """PostgreSQL: while a transaction writes to a synced table (and so to the change log), a process
    starting (the app's models run setup) gets through without waiting for a lock."""
    env = pg_instance
    db = env["db"]
    db.org_organisation.insert(name="Being written")  # uncommitted: row locks, RowExclusiveLock
    dbname = env["uri"].rsplit("/", 1)[-1]
    admin = psycopg2.connect(host="127.0.0.1", port=postgres.port, user="postgres", dbname=dbname)
    admin.autocommit = True
    admin.cursor().execute("ALTER DATABASE %s SET lock_timeout = '3s'" % dbname)  # a wait fails the start
    for name, module in list(sys.modules.items()):
        if name.endswith("plugin_sync") and hasattr(module, "_ready"):
            module._ready.clear()  # a new process: setup runs
    elsewhere(env, lambda other: other["db"].commit())  # would raise "canceling statement due to lock timeout"
    db.commit()
    admin.close()


# -- what held: kill -9 mid-import, two imports at once ------------------------------------------

def _many(env, n=4000):
    """n persons with human resources: an import of a few seconds."""
    db = env["db"]
    org = db.org_organisation.insert(name="Many")
    people = db.pr_person.bulk_insert([dict(first_name="P%d" % i, last_name="Many") for i in range(n)])
    db.hrm_human_resource.bulk_insert([dict(person_id=p, organisation_id=org, type="staff") for p in people])
    db.commit()


def _content(env):
    db = env["db"]
    db.commit()  # a fresh read
    return {t: sorted(r.uuid for r in db(db[t]).select(db[t].uuid))
            for t in ("org_organisation", "pr_person", "hrm_human_resource")}


def test_kill_9_at_any_moment_of_an_import_leaves_it_entirely_before(new_instance, tmp_path):
    """The CLI import killed (SIGKILL) at several moments: the database holds all of the file or none
    of it, never a part, and the next import completes."""
    import random
    import signal
    import subprocess
    import time

    from test_cli import SCRIPT

    a, b = instances(new_instance)
    _many(a)
    path = tmp_path / "many.csv"
    path.write_bytes(export(a))
    before, full = _content(b), _content(a)
    folder = b["folder"]
    cmd = [sys.executable, SCRIPT, "sync", "--instance", os.path.basename(folder), "--runtime",
           os.path.dirname(folder), "--db", b["uri"], "import", str(path)]
    b["db"].close()  # SQLite: the killed process's write-ahead log is recovered by the next opener
    rnd = random.Random(14)
    started = time.time()
    subprocess.run(cmd + ["--dry-run"], check=True, capture_output=True, env=dict(os.environ, EDEN_DB_POOL_SIZE="0"))
    took = time.time() - started  # how long a run takes here: the kills are spread over it
    states = []
    for k in range(4):
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                env=dict(os.environ, EDEN_DB_POOL_SIZE="0"))
        # the first kill early (a real import writes, so it outlasts a dry run: a share of a dry run's time is
        # before its end even when the machine's load changes between the two), the later ones anywhere
        time.sleep(took * (rnd.uniform(0.2, 0.5) if k == 0 else rnd.uniform(0.4, 1.0)))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        check = subprocess.run(cmd[:-2] + ["status"], capture_output=True, env=dict(os.environ, EDEN_DB_POOL_SIZE="0"))
        assert check.returncode == 0, check.stderr
        states.append(_content_of(b))
        assert states[-1] in (before, full), "a part of the file was left after kill -9"
        if states[-1] == full:
            break
    assert states[0] == before  # the first kill, 0.2-0.5 of a dry run's time in, came before the end
    done = subprocess.run(cmd, capture_output=True, env=dict(os.environ, EDEN_DB_POOL_SIZE="0"))
    assert done.returncode == 0, done.stderr
    assert _content_of(b) == full


def _content_of(env):
    """_content() through a connection of its own (the test's own is closed)."""
    return elsewhere(env, _content)


def test_two_imports_at_once(new_instance):
    """The same file imported by two connections at the same moment: both succeed, each record once."""
    a, b = instances(new_instance)
    _many(a, 1500)
    data = export(a)
    go = threading.Barrier(2)

    def run(other):
        go.wait()
        return import_from(other["db"], settings(other), data).totals()

    first, second = Elsewhere(b, run), Elsewhere(b, run)
    t1, t2 = first.result(), second.result()
    assert t1["created"] + t2["created"] == 1500 * 2 + 1
    assert _content_of(b) == _content(a)


def test_a_peer_logs_in_while_an_import_writes(start_server):
    """A real server on SQLite: while another process holds the write lock with written (spilled) pages,
    a peer's HTTP Basic login and identity.json answer at once (it used to be a 401 after 30 s)."""
    import sqlite3

    from test_pages import ADMIN, Client

    srv = start_server("busy")
    path = srv.uri[len("sqlite://"):]
    writer = sqlite3.connect(path, isolation_level=None)
    writer.execute("PRAGMA cache_size = 1")
    writer.execute("BEGIN IMMEDIATE")
    writer.executemany("INSERT INTO org_organisation (name, uuid) VALUES (?, ?)",
                       [("Org %d" % i, "urn:uuid:inflight-%d" % i) for i in range(3000)])
    try:
        status, headers, body = Client(srv, basic=ADMIN).get("/plugin_sync/identity.json")
        assert status == 200, body[:300]
        status, headers, body = Client(srv, basic=ADMIN).get("/plugin_sync/export.csv")
        i = body.find(b"inflight-"); assert status == 200 and i < 0, body[max(0, i - 300):i + 100]  # the committed state
    finally:
        writer.execute("ROLLBACK")
        writer.close()
