#!/usr/bin/env python
"""Load harness (issue 23): a hub on Sahana's production stack and many field instances syncing with it at once.

    .venv/bin/python tests/bench/bench_hub.py [--peers 1,10,100] [--runs 1] [--processes 4] [--json out.json]
    make bench-hub ARGS="--peers 1,10"               # a smoke run

Not a timed test: a script that prints a markdown table.

- The hub: real Eden on the production stack (`eden.py serve --production`: uWSGI with
  --processes worker processes, one of Eden's scheduler workers) on a private PostgreSQL
  (scripts/pgserver.py, durable: fsync on), prepared as bench_eden.py prepares Eden.
- The field data: a small real Eden instance gets 100 records through Eden's own API
  (bench_eden.generate: locations, an organisation or two, offices, persons, their contacts
  and addresses, staff records), exported as the plugin's file.
- The simulated field instances: each replays that file with fresh uuids (its own
  base_uuid in the header, new uuids for every record in it), logs in with an account of
  its own on the hub bound to its base_uuid (accounts.peer_account, as the README's "Peers
  over the network" does), and runs one sync as replicate.sync does, through the
  transport's public calls (transport.connect: identity, changes since its checkpoint,
  receive).  Before each round a feeder peer pushes 100 records, so that every pull has
  at least the hub's 100 changes; a pull also carries what other peers pushed before it.
- A round: N peers in N threads, all started at once.  Rounds of 1 (the baseline, in the
  same run), 10 and 100 peers.

Checked after each round: every pushed record is on the hub exactly once (by uuid), every
pull is exactly the hub's changes in its [since, until) range and the peer's push is
acknowledged (the hub's `received` of it is the file's own checkpoint), no 5xx in uWSGI's
log, no retried request, no deadlock or lock wait in PostgreSQL's log.  Measured: records/s
(pushed + pulled), p50/p95/p99 of a sync's wall time, the hub's CPU seconds per 1,000
records (uWSGI master and workers, the scheduler worker and PostgreSQL's processes, from
/proc, finished children included), RSS of each uWSGI worker, the load average.
"""
import argparse
import gzip
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(REPO, "scripts"))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.dirname(HERE))
sys.path.insert(0, REPO)
import edenhost  # noqa: E402  real Eden's runtime folders
from bench_eden import generate, open_eden  # noqa: E402
from conftest import EdenServer  # noqa: E402  the tests' real-Eden server (the production stack on PostgreSQL)
from pgserver import PostgresServer  # noqa: E402

from modules.plugin_sync import transport  # noqa: E402  the engine's client (plain Python)
from modules.plugin_sync.csvstream import Reader  # noqa: E402
from modules.plugin_sync.fileformat import IDENTITY_TABLE, SINCE, TOMBSTONE_TABLE, UNTIL  # noqa: E402

UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
PASSWORD = "Bench-peer-1"
TICK = os.sysconf("SC_CLK_TCK")
PAGE_KB = os.sysconf("SC_PAGE_SIZE") // 1024


# ----------------------------------------------------------------- workers (Eden in a process of its own)


def worker_main(args):
    env = open_eden(args.folder, args.uri)
    db, settings = env["db"], env["plugin_sync_settings"]
    from applications.eden.modules.plugin_sync import accounts, changes, fileio, peers
    from applications.eden.modules.plugin_sync.tables import synced_tables

    spec = json.load(open(args.spec)) if args.spec else {}
    out = {}
    if args.worker == "source":  # the field data: Eden's API, then the plugin's file of these changes
        since = changes.checkpoint(db)
        db.commit()
        out["made"] = generate(env, spec["records"])
        with open(spec["file"], "wb") as f:
            out["counts"] = fileio.export_to(db, settings, f, fmt="csv", since=since, log=False)["tables"]
        out["base_uuid"] = peers.this_instance(db).base_uuid
        db.commit()
    elif args.worker == "accounts":  # one account per simulated peer, bound to its base_uuid
        for email, base in spec["peers"]:
            accounts.peer_account(db, settings, email, PASSWORD, peer=base)
    elif args.worker == "profile":  # a peer's sync served in this process (web2py's WSGI entry), profiled
        out["profile"] = profile_sync(spec)
    elif args.worker == "check":  # what the hub holds of the pushed uuids; its changes in each pulled range
        found = {}
        for tablename, uuids in spec["pushed"].items():
            uuids = sorted(set(uuids))  # a uuid pushed twice would be a fault of the harness, counted below
            table = env["s3db"].table(tablename) or db[tablename]
            for chunk in range(0, len(uuids), 1000):
                rows = db(table.uuid.belongs(uuids[chunk:chunk + 1000])).select(table.uuid)
                for row in rows:
                    found[row.uuid] = found.get(row.uuid, 0) + 1
        out["copies"] = {}
        for u, n in found.items():
            out["copies"][str(n)] = out["copies"].get(str(n), 0) + 1
        tables = synced_tables(db, settings)
        ranges = {}
        for since, until in spec["ranges"]:
            got = []
            for tablename in tables:
                table = db[tablename]
                ids = changes.changed_ids(db, tablename, since, until)
                for chunk in range(0, len(ids), 1000):
                    got += ["%s %s" % (tablename, r.uuid) for r in
                            db(table.id.belongs(ids[chunk:chunk + 1000])).select(table.uuid)]
            got += ["%s %s" % (t.tablename, t.record_uuid) for t in changes.tombstones(db, since, until, tables)]
            ranges["%d-%d" % (since, until)] = sorted(got)
        out["ranges"] = ranges
        db.rollback()
    db.close()
    print(json.dumps(out, default=str))


def profile_sync(spec):
    """Where a hub's worker spends a sync's time: identity, changes, receive through gluon.main.wsgibase
    (the request's whole path: Eden's models, the plugin's model, the controller), under cProfile."""
    import base64
    import cProfile
    import io
    import pstats

    import gluon.main

    auth = "Basic " + base64.b64encode(("%s:%s" % (spec["email"], PASSWORD)).encode()).decode()
    body = base64.b64decode(spec["body"])

    def request(path, query="", data=None):
        environ = {"REQUEST_METHOD": "POST" if data else "GET", "PATH_INFO": "/eden/plugin_sync/" + path,
                   "QUERY_STRING": query, "HTTP_AUTHORIZATION": auth, "HTTP_HOST": "127.0.0.1",
                   "SERVER_NAME": "127.0.0.1", "SERVER_PORT": "80", "REMOTE_ADDR": "127.0.0.1",
                   "wsgi.url_scheme": "http", "wsgi.input": io.BytesIO(data or b""), "wsgi.errors": sys.stderr,
                   "CONTENT_LENGTH": str(len(data or b"")), "SERVER_PROTOCOL": "HTTP/1.1"}
        if data:
            environ.update(CONTENT_TYPE="application/gzip",
                           HTTP_CONTENT_DISPOSITION='attachment; filename="changes.csv.gz"')
        status = []
        b"".join(gluon.main.wsgibase(environ, lambda s, h, *a: status.append(s)))
        return status[0]

    peer, since = spec["peer"], spec["since"]
    request("identity.json", "peer=%s&since=%d" % (peer, since))  # the first: compiles, caches
    prof = cProfile.Profile()
    times, statuses = {}, []
    for name, args in (("identity", ("identity.json", "peer=%s&since=%d" % (peer, since))),
                       ("changes", ("changes", "since=%d&peer=%s" % (since, peer))),
                       ("receive", ("receive.json", "peer=%s" % peer, body))):
        t0 = time.process_time()
        statuses.append(prof.runcall(request, *args))
        times[name] = time.process_time() - t0
    text = io.StringIO()
    pstats.Stats(prof, stream=text).sort_stats("cumulative").print_stats(45)
    sys.stderr.write(text.getvalue())
    return dict(cpu=times, statuses=statuses)


# ----------------------------------------------------------------- the hub and the field data


class Hub:
    """A private PostgreSQL, Eden prepared once, the hub on the production stack, and workers on it."""

    def __init__(self, base, processes):
        self.base, self.processes = base, processes
        self.pg = PostgresServer(folder=os.path.join(base, "pg"))  # durable, as a hub's database is
        kept = os.path.join(self.pg.dir, "bench.port")  # a kept --base: the same port, or Eden prepares anew
        if os.path.exists(kept):
            self.pg.port = int(open(kept).read())
        with open(kept, "w") as f:
            f.write(str(self.pg.port))
        self.pg.start()
        self.server = None
        try:
            self.prepare()
        except BaseException:
            self.stop()
            raise

    def prepare(self):
        base = self.base
        self._sql("ALTER SYSTEM SET log_lock_waits = on", "ALTER SYSTEM SET deadlock_timeout = '200ms'",
                  "SELECT pg_reload_conf()")
        self.template_uri = self.pg.database("eden_template")
        self.template = os.path.join(base, "template")
        subprocess.run([sys.executable, os.path.join(REPO, "scripts", "eden.py"), "prepare", "--instance", "template",
                        "--runtime", base, "--db", self.template_uri], check=True, stdout=subprocess.DEVNULL)
        self.n, self.log = 0, None
        for old in self._sql("SELECT datname FROM pg_database WHERE datname ~ '^eden_(source|hub)_'"):
            self._sql('DROP DATABASE "%s"' % old[0])  # a kept --base's instances of a run before
        for name in os.listdir(base):
            if re.match(r"(source|hub)-\d+$", name):
                shutil.rmtree(os.path.join(base, name))

    def _sql(self, *statements):
        import psycopg2

        conn = psycopg2.connect(host="127.0.0.1", port=self.pg.port, user="postgres", dbname="postgres")
        conn.autocommit = True
        cursor = conn.cursor()
        for statement in statements:
            cursor.execute(statement)
        rows = cursor.fetchall() if cursor.description else []
        conn.close()
        return rows

    def clone(self, name):
        self.n += 1
        uri = self.pg.new_database("eden_%s" % name, template="eden_template")
        folder = edenhost.clone(self.template, "%s-%d" % (name, self.n), self.base, db_uri=uri,
                                template_uri=self.template_uri)
        return folder, uri

    def worker(self, op, instance, spec, show=False):
        folder, uri = instance
        path = os.path.join(self.base, "spec-%s.json" % op)
        with open(path, "w") as f:
            json.dump(spec, f)
        cmd = [sys.executable, os.path.abspath(__file__), "--worker", op, "--folder", folder, "--uri", uri,
               "--spec", path]
        proc = subprocess.run(cmd, capture_output=True, text=True, env=dict(os.environ, EDEN_DB_POOL_SIZE="0"))
        if proc.returncode != 0:
            raise RuntimeError("worker %s failed:\n%s" % (op, proc.stderr[-4000:]))
        if show:
            print(proc.stderr[proc.stderr.find("Ordered by"):], flush=True)
        return json.loads(proc.stdout.strip().splitlines()[-1])

    def serve(self, instance):
        """The hub on the production stack, as the tests' real-Eden servers on PostgreSQL run."""
        folder, uri = instance
        server = EdenServer(folder, uri, "hub", scheduler=True)
        server.PROCESSES = self.processes
        self.server = server.start(timeout=300)
        self.url, self.log = server.url, server.log

    def warm(self):
        """Every uWSGI worker past its first request (web2py compiles and caches on it); run_round
        with a few peers then takes them past their first sync."""
        for _ in range(self.processes * 3):
            urllib.request.urlopen(self.url + "/default/index", timeout=60).read()

    def pids(self):
        """{role: [pid]} of the hub's processes: uWSGI master and workers, the scheduler worker, PostgreSQL."""
        out = {"uwsgi": [], "uwsgi_workers": [], "scheduler": [], "postgres": []}
        for pid in tree(self.server.proc.pid):
            cmd = cmdline(pid)
            if "uwsgi" in cmd:
                out["uwsgi"].append(pid)
                if parent(pid) in out["uwsgi"]:
                    out["uwsgi_workers"].append(pid)
            elif pid != self.server.proc.pid:
                out["scheduler"].append(pid)
        with open(os.path.join(self.pg.data, "postmaster.pid")) as f:
            out["postgres"] = tree(int(f.readline()))
        return out

    def cpu(self):
        """CPU seconds so far (the live processes' own, their reaped children's): (serving, scheduler).

        Serving: uWSGI's master and workers and PostgreSQL's processes, what the syncs cost.  Eden's
        scheduler worker and the tasks it spawns (its periodic tasks load Eden in a fresh interpreter:
        seconds of CPU whenever one falls in a round) are counted apart.
        """
        pids = self.pids()
        serving = pids["uwsgi"] + [self.server.proc.pid] + pids["postgres"]
        return (sum(cpu_seconds(pid) for pid in serving), sum(cpu_seconds(pid) for pid in pids["scheduler"]))

    def rss_mb(self):
        return [rss_kb(pid) / 1024.0 for pid in self.pids()["uwsgi_workers"]]

    def server_errors(self):
        with open(self.log, errors="replace") as f:
            return len(re.findall(r"\(HTTP/1\.[01] 5\d\d\)", f.read()))

    def pg_trouble(self):
        with open(os.path.join(self.pg.dir, "log"), errors="replace") as f:
            text = f.read()
        return dict(deadlocks=text.count("deadlock detected"), lock_waits=text.count("still waiting for"))

    def stop(self):
        if self.server:
            self.server.stop()
        self.pg.stop()


# ----------------------------------------------------------------- /proc


def children(pid):
    try:
        with open("/proc/%d/task/%d/children" % (pid, pid)) as f:
            return [int(p) for p in f.read().split()]
    except OSError:
        return []


def tree(pid):
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo += children(p)
    return out


def cmdline(pid):
    try:
        with open("/proc/%d/cmdline" % pid, "rb") as f:
            return f.read().replace(b"\0", b" ").decode("utf-8", "replace")
    except OSError:
        return ""


def stat(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()
    except OSError:
        return None


def parent(pid):
    s = stat(pid)
    return int(s[1]) if s else None


def cpu_seconds(pid):
    s = stat(pid)  # fields after the name: state ppid ... utime(12) stime(13) cutime(14) cstime(15)
    return sum(int(x) for x in s[11:15]) / TICK if s else 0.0


def rss_kb(pid):
    s = stat(pid)
    return int(s[21]) * PAGE_KB if s else 0


def self_cpu():
    t = os.times()
    return t.user + t.system


# ----------------------------------------------------------------- the simulated field instances


def file_uuids(data):
    """(table, uuid) of every record in a plugin file (bytes, gzip'd or not), read with the engine's reader."""
    out = []
    import io

    for section in Reader(io.BytesIO(data)):
        if section.tablename == IDENTITY_TABLE:
            for _ in section.rows():
                pass
        elif section.tablename == TOMBSTONE_TABLE:
            table, key = section.columns.index("tablename"), section.columns.index("record_uuid")
            out += ["%s %s" % (cells[table], cells[key]) for _, cells in section.rows()]
        else:
            key = section.columns.index("uuid")
            out += ["%s %s" % (section.tablename, cells[key]) for _, cells in section.rows()]
    return out


class Peer:
    """A field instance: its identity, its account on the hub, its file (the field data under fresh uuids)."""

    def __init__(self, name, template, source_base):
        self.name, self.base = name, str(uuid.uuid4())
        self.email = "%s@peers.example.org" % name
        self.replay(template, source_base)
        self.result = None

    def replay(self, template, source_base):
        """The field file as this instance's own: its base_uuid in the header, fresh uuids for its records
        (the uuids of records it only refers to, the prepopulated ones the hub has too, are kept)."""
        fresh = {source_base: self.base}
        fresh.update((u, None) for u in re.findall(UUID, " ".join(file_uuids(template.encode("utf-8")))))

        def new(m):
            u = m.group(0)
            if u in fresh and fresh[u] is None:
                fresh[u] = str(uuid.uuid4())
            return fresh.get(u) or u

        text = from_zero(UUID.sub(new, template)).encode("utf-8")
        self.body = gzip.compress(text, 6)
        self.pushed = {}
        for item in file_uuids(text):
            tablename, u = item.split(" ", 1)
            self.pushed.setdefault(tablename, []).append(u)

    def sync(self, url, since, delay=0):
        """One sync as replicate.sync runs it (identity, pull since the checkpoint, push), timed."""
        time.sleep(delay)
        t = transport.connect(dict(url=url, username=self.email, password=PASSWORD, base_uuid=self.base,
                                   owner=self.name))
        t0 = time.perf_counter()
        try:
            t.identity(me=self.base, since=since)
            got = t.changes(since, me=self.base)
            pulled = got.data
            answer = t.receive(self.body, "gz", me=self.base)
            self.result = dict(seconds=time.perf_counter() - t0, since=got.since, until=got.until, pulled=pulled,
                               tries=t.tries, created=(answer.get("report") or {}).get("totals", {}).get("created"))
        except Exception as e:
            self.result = dict(seconds=time.perf_counter() - t0, error="%s: %s" % (type(e).__name__, e),
                               tries=t.tries)
        return self.result


def from_zero(text):
    """The file with its header's since@seq at 0: a simulated instance holds these records only, so they are
    all its changes (a file from a later since would rightly leave the hub's checkpoint of it at 0)."""
    import csv
    import io

    lines = text.split("\n", 3)  # TABLE sync_instance, its header, the sender's row, the rest
    header = next(csv.reader([lines[1]]))
    row = next(csv.reader([lines[2]]))
    row[[c.split(".", 1)[-1] for c in header].index(SINCE)] = "0"
    out = io.StringIO()
    csv.writer(out, lineterminator="").writerow(row)
    return "\n".join([lines[0], lines[1], out.getvalue(), lines[3]])


def file_until(text):
    """The sender's checkpoint a file carries (its header's until@seq)."""
    import io

    for section in Reader(io.BytesIO(text.encode("utf-8"))):
        if section.tablename == IDENTITY_TABLE:
            return int(next(section.rows())[1][section.columns.index(UNTIL)])


def pushed_count(peers):
    return sum(len(v) for p in peers for v in p.pushed.values())


def make_peers(n, template, source_base, tag):
    """N peers of a round and its feeder (who pushes the hub's 100 changes of the round first)."""
    return ([Peer("p%s-%d-%d" % (tag, n, i), template, source_base) for i in range(n)],
            Peer("feeder%s-%d" % (tag, n), template, source_base))


def run_round(hub, peers, feeder, template, spread=0):
    """N peers at once (or starting evenly over `spread` seconds; -1: one after another, the baseline);
    the checks and the figures of the round."""
    n = len(peers)
    ask = transport.connect(dict(url=hub.url, username=feeder.email, password=PASSWORD, base_uuid=feeder.base))
    since = ask.identity()["checkpoint"]
    if "error" in feeder.sync(hub.url, since):
        raise RuntimeError("the feeder's sync failed: %s" % feeder.result["error"])
    errors_before, trouble_before = hub.server_errors(), hub.pg_trouble()
    load = os.getloadavg()
    cpu0, me0 = hub.cpu(), self_cpu()
    threads = [threading.Thread(target=p.sync, args=(hub.url, since, max(0, spread) * i / n))
               for i, p in enumerate(peers)]
    t0 = time.perf_counter()
    if spread < 0:  # one after another: each pulls the hub's changes since the one before it pulled (its push)
        for p in peers:
            p.sync(hub.url, since)
            since = p.result.get("until", since)
    for t in threads if spread >= 0 else ():
        t.start()
    for t in threads if spread >= 0 else ():
        t.join()
    wall = time.perf_counter() - t0
    cpu1 = hub.cpu()
    cpu, scheduler = cpu1[0] - cpu0[0], cpu1[1] - cpu0[1]
    me = self_cpu() - me0
    rss = hub.rss_mb()
    failed = [p.result["error"] for p in peers if "error" in p.result]
    out = dict(peers=n, spread=spread, wall=wall, load=load, hub_cpu=cpu, scheduler_cpu=scheduler, client_cpu=me,
               rss_mb=rss, failed=failed)
    if failed:
        return out
    pulled = {p.name: file_uuids(p.result["pulled"]) for p in peers}
    out["pushed"] = pushed_count(peers)
    out["pulled"] = sum(len(v) for v in pulled.values())
    out["records"] = out["pushed"] + out["pulled"]
    secs = sorted(p.result["seconds"] for p in peers)
    out.update(p50=pct(secs, 50), p95=pct(secs, 95), p99=pct(secs, 99), max=secs[-1],
               rate=out["records"] / wall, cpu_per_1000=1000.0 * cpu / out["records"],
               pulled_per_sync=out["pulled"] / n)
    # the checks
    everything = {}
    for p in peers:
        for tablename, uuids in p.pushed.items():
            everything.setdefault(tablename, []).extend(uuids)
    ranges = sorted({(p.result["since"], p.result["until"]) for p in peers})
    check = hub.worker("check", hub.instance, dict(pushed=everything, ranges=ranges))
    problems = []
    if len({u for p in peers for v in p.pushed.values() for u in v}) != out["pushed"]:
        problems.append("the peers' files share uuids: the harness's replay is wrong")
    if check["copies"] != {"1": out["pushed"]}:
        problems.append("pushed records on the hub by number of copies: %s (want {1: %d})"
                        % (check["copies"], out["pushed"]))
    for p in peers:
        want = check["ranges"]["%d-%d" % (p.result["since"], p.result["until"])]
        got = sorted(pulled[p.name])
        if got != want:
            problems.append("%s pulled %d records of [%d, %d), the hub changed %d there (%d missing, %d extra, "
                            "%d twice)" % (p.name, len(got), p.result["since"], p.result["until"], len(want),
                                           len(set(want) - set(got)), len(set(got) - set(want)),
                                           len(got) - len(set(got))))
    received = {ask_received(hub, p) for p in peers}
    if received != {file_until(template)}:
        problems.append("the hub's checkpoints of the peers' pushes: %s, not the file's %d"
                        % (sorted(received, key=str), file_until(template)))
    retried = sum(p.result["tries"] - 3 for p in peers)
    fives = hub.server_errors() - errors_before
    trouble = hub.pg_trouble()
    out.update(problems=problems, retried=retried, http_5xx=fives,
               deadlocks=trouble["deadlocks"] - trouble_before["deadlocks"],
               lock_waits=trouble["lock_waits"] - trouble_before["lock_waits"])
    return out


def ask_received(hub, peer):
    t = transport.connect(dict(url=hub.url, username=peer.email, password=PASSWORD, base_uuid=peer.base))
    return t.identity(me=peer.base)["received"]


def pct(values, p):
    """The p-th percentile (nearest rank) of sorted values."""
    k = max(0, min(len(values) - 1, int(round(p / 100.0 * len(values) + 0.5)) - 1))
    return values[k]


# ----------------------------------------------------------------- report


def table(results, baseline):
    lines = ["| peers | records (pushed + pulled) | pulled per sync | wall | records/s | sync p50 / p95 / p99 "
             "| hub CPU s per 1,000 records (x baseline) | scheduler CPU s | RSS per uWSGI worker | load avg (1 min) "
             "| checks |",
             "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    for r in results:
        if r.get("failed"):
            lines.append("| %s | failed: %s |" % (peers_label(r), r["failed"][:3]))
            continue
        ok = "ok" if not (r["problems"] or r["http_5xx"] or r["deadlocks"] or r["retried"]) else (
            "%s; 5xx %d, retried %d, deadlocks %d" % ("; ".join(r["problems"][:3]), r["http_5xx"], r["retried"],
                                                      r["deadlocks"]))
        lines.append(("| %s | %s | %.0f | %.1f s | %.0f | %.2f / %.2f / %.2f s | %.2f (%.1fx) | %.1f | %.0f-%.0f MB "
                      "| %.1f | %s |") % (
            peers_label(r), "{:,}".format(r["records"]), r["pulled_per_sync"], r["wall"], r["rate"], r["p50"], r["p95"],
            r["p99"], r["cpu_per_1000"], r["cpu_per_1000"] / baseline if baseline else 0, r["scheduler_cpu"],
            min(r["rss_mb"]), max(r["rss_mb"]), r["load"][0], ok))
    return "\n".join(lines)


def peers_label(r):
    if r["spread"] < 0:
        return "1 at a time (%d syncs)" % r["peers"]
    return "%d at once" % r["peers"] if not r["spread"] else "%d over %.0f s" % (r["peers"], r["spread"])


def is_baseline(r):
    return (r["peers"] == 1 or r["spread"] < 0) and not r.get("failed")


def median_of(runs):
    """Per peer count, the run with the median p95 (its other figures with it: one real run, not a blend)."""
    out = []
    for kind in sorted({(r["peers"], r["spread"]) for r in runs}):
        alike = [r for r in runs if (r["peers"], r["spread"]) == kind]
        same = sorted((r for r in alike if not r.get("failed")), key=lambda r: r["p95"])
        out.append(same[len(same) // 2] if same else alike[0])
    return out


def round_size(text):
    """(peers, spread) of a round: N (at once), N@S (evenly over S seconds), 1xN (N syncs one after another)."""
    if text.startswith("1x"):
        return int(text[2:]), -1
    n, _, spread = text.partition("@")
    return int(n), float(spread or 0)


def parse(argv):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--peers", default="1x5,10,100,100@120",
                   help="rounds, comma-separated: N peers all at once, N@S: N peers starting evenly over S seconds, "
                        "1xN: N peers one after another (first: the single-peer baseline)")
    p.add_argument("--runs", type=int, default=1, help="rounds of each size, in turns (figures: the median p95's)")
    p.add_argument("--records", type=int, default=100, help="records each peer changes (Eden's API)")
    p.add_argument("--processes", type=int, default=4, help="uWSGI worker processes of the hub")
    p.add_argument("--base", help="a folder to keep Eden's prepared template and PostgreSQL in (reused)")
    p.add_argument("--json")
    p.add_argument("--profile", action="store_true",
                   help="after the rounds, one sync served in a process of its own under cProfile (printed)")
    p.add_argument("--worker", help=argparse.SUPPRESS)
    p.add_argument("--folder", help=argparse.SUPPRESS)
    p.add_argument("--uri", help=argparse.SUPPRESS)
    p.add_argument("--spec", help=argparse.SUPPRESS)
    return p.parse_args(argv)


def main(argv=None):
    args = parse(argv)
    if args.worker:
        return worker_main(args)
    base = args.base or tempfile.mkdtemp(prefix="eden-hub-")
    os.makedirs(base, exist_ok=True)
    os.chmod(base, 0o755)
    started = time.time()
    hub = Hub(base, args.processes)
    try:
        source = hub.clone("source")
        path = os.path.join(base, "field.csv")
        made = hub.worker("source", source, dict(records=args.records, file=path))
        print("field data: %s made through Eden's API; the plugin's file: %s" % (made["made"], made["counts"]),
              flush=True)
        template = open(path, encoding="utf-8").read()
        hub.instance = hub.clone("hub")
        sizes = [round_size(x) for x in args.peers.split(",")]
        rounds = [make_peers(n, template, made["base_uuid"], "%d%s" % (run, i)) + (spread,)
                  for run in range(args.runs) for i, (n, spread) in enumerate(sizes)]
        profiled = Peer("profiled", template, made["base_uuid"])
        warming = make_peers(2 * args.processes, template, made["base_uuid"], "warm") + (0,)
        # the peers' accounts (and the plugin's tables: the models' first run) before the hub serves
        hub.worker("accounts", hub.instance, dict(peers=[(profiled.email, profiled.base)] + [
            (p.email, p.base) for peers, feeder, _ in [warming] + rounds for p in peers + [feeder]]))
        hub.serve(hub.instance)
        hub.warm()
        run_round(hub, *warming[:2], template)  # every worker past its first sync (imports, compiled code)
        results = []
        for peers, feeder, spread in rounds:
            r = run_round(hub, peers, feeder, template, spread)
            results.append(r)
            base_cpu = next((x["cpu_per_1000"] for x in results if is_baseline(x)), None)
            print(table([r], base_cpu), flush=True)
        if args.profile:
            import base64

            since = transport.connect(dict(url=hub.url, username=profiled.email, password=PASSWORD)).identity()
            out = hub.worker("profile", hub.instance, dict(email=profiled.email, peer=profiled.base,
                                                           since=since["checkpoint"] - 1,
                                                           body=base64.b64encode(profiled.body).decode()), show=True)
            print("a sync served in one process, CPU seconds: %s; answers %s" % (
                {k: round(v, 3) for k, v in out["profile"]["cpu"].items()}, out["profile"]["statuses"]), flush=True)
        final = median_of(results)
        baseline = next((x["cpu_per_1000"] for x in final if is_baseline(x)), None)
        print("\n" + table(final, baseline))
        print("\nhub: uWSGI %d processes + 1 scheduler worker + PostgreSQL 15, %d cores; %d run%s per size; %.0fs "
              "in all" % (args.processes, os.cpu_count(), args.runs, "s" if args.runs > 1 else "",
                          time.time() - started))
        if args.json:
            with open(args.json, "w") as f:
                json.dump(dict(args=vars(args), results=results), f, indent=2, default=str)
        return 0 if all(not r.get("failed") and not r["problems"] and not r["http_5xx"] and not r["deadlocks"]
                        for r in results) else 1
    finally:
        hub.stop()
        if not args.base:
            shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
