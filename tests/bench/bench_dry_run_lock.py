#!/usr/bin/env python
"""Benchmark (issue 19): how long Eden's own writes wait while the plugin previews or imports, on SQLite.

    .venv/bin/python tests/bench/bench_dry_run_lock.py [--rows 100000] [--runs 1] [--json out.json]

Not a timed test: a script that prints a markdown table.  Real Eden is prepared
as tests/bench/bench_eden.py prepares it (its Run: `scripts/eden.py prepare`,
a clone per instance); A gets --rows records through Eden's API and exports the
plugin's file.  Then, each into a fresh clone B and in a process of its own:

- `dry-run`: `import --dry-run` as it is now (the merge into a copy, scratch.py);
- `dry-run-in-place`: the dry run as it was before (the merge into B itself,
  rolled back at the end): scratch.copy_of replaced by a no-op, nothing else;
- `import`: the real import (one transaction, committed);
- `dry-run-again`: the real import first (not probed), then the preview of the same
  file again: the copy is then of a database holding the records (its seconds and
  size are shown).

Meanwhile a prober writes what an Eden login writes (an `auth_event` row, then
a commit) through a connection of its own with Eden's busy timeout (Python's
sqlite3 default, 5 s), every PROBE_EVERY seconds: the longest wait of a probe,
and how many failed with "database is locked" (what Eden answers as HTTP 500).
"""
import argparse
import contextlib
import datetime
import glob
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from bench_eden import Run, open_eden  # noqa: E402  real Eden prepared and cloned as that benchmark does

EDEN_TIMEOUT = 5.0  # seconds: the busy timeout of Eden's SQLite connections (Python's sqlite3 default)
PROBE_EVERY = 0.2  # seconds between two probes
MODES = ("dry-run", "dry-run-in-place", "import", "dry-run-again")


def worker_main(args):
    """One merge of the file into this instance, as `mode` says; prints its seconds and totals (JSON)."""
    env = open_eden(args.folder, None)
    from applications.eden.modules.plugin_sync import fileio, merge

    path = os.path.join(args.files, "plugin.csv")
    if args.mode == "dry-run-in-place":  # the dry run before scratch.py: merged into the database, rolled back
        merge.scratch.copy_of = lambda db: contextlib.nullcontext()
    if args.mode == "dry-run-again":  # the records are here already: the preview copies a full database
        fileio.import_from(env["db"], env["plugin_sync_settings"], path, name="bench.csv")
    copying = _timed(merge.scratch) if args.mode in ("dry-run", "dry-run-again") else []
    open(os.path.join(args.folder, "probe-now"), "w").close()  # the prober counts from here
    t0 = time.perf_counter()
    report = fileio.import_from(env["db"], env["plugin_sync_settings"], path, dry_run=args.mode != "import",
                                name="bench.csv")
    seconds = time.perf_counter() - t0
    size = sum(os.path.getsize(f) for f in glob.glob(database_of(args.folder) + "*"))  # and its -wal
    env["db"].close()
    print(json.dumps(dict(seconds=seconds, totals=report.totals(), copy_seconds=copying, db_mb=size / 1e6)))


def _timed(scratch):
    """Time the copy of the database (scratch.copy_of's setup) into the list returned."""
    seconds, copy_of = [], scratch.copy_of

    @contextlib.contextmanager
    def timed(db):
        t0 = time.perf_counter()
        with copy_of(db):
            seconds.append(time.perf_counter() - t0)
            yield

    scratch.copy_of = timed
    return seconds


class Prober(threading.Thread):
    """Writes an Eden login's auth_event row every PROBE_EVERY s through its own connection; times each."""

    def __init__(self, path, start):
        super().__init__(daemon=True)
        self.path, self.start_file, self.waits, self.failed, self.stop = path, start, [], 0, threading.Event()

    def run(self):
        while not os.path.exists(self.start_file) and not self.stop.wait(0.05):
            pass
        while not self.stop.is_set():
            t0 = time.perf_counter()
            conn = sqlite3.connect(self.path, timeout=EDEN_TIMEOUT)
            try:
                conn.execute("INSERT INTO auth_event (uuid, time_stamp, client_ip, origin, description) "
                             "VALUES (?,?,?,?,?)", (uuid.uuid4().urn, datetime.datetime.utcnow(), "127.0.0.1", "auth",
                                                    "User 1 Logged-in"))
                conn.commit()
            except sqlite3.OperationalError:
                self.failed += 1
            finally:
                conn.close()
            self.waits.append(time.perf_counter() - t0)
            self.stop.wait(PROBE_EVERY)


def database_of(folder):
    return os.path.join(folder, "applications", "eden", "databases", "storage.db")


def measure(run, files, mode):
    target = run.clone("b")
    folder = target[0]
    prober = Prober(database_of(folder), os.path.join(folder, "probe-now"))
    cmd = [sys.executable, os.path.abspath(__file__), "--worker", "--mode", mode, "--folder", folder, "--files", files]
    prober.start()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=dict(os.environ, EDEN_DB_POOL_SIZE="0"))
    prober.stop.set()
    prober.join()
    run.drop(target)
    if proc.returncode != 0:
        raise RuntimeError("worker (%s) failed:\n%s" % (mode, proc.stderr[-4000:]))
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    waits = sorted(prober.waits)
    return dict(mode=mode, seconds=out["seconds"], created=out["totals"]["created"], probes=len(waits),
                longest=waits[-1], median=waits[len(waits) // 2], failed=prober.failed,
                copy_seconds=out["copy_seconds"][0] if out["copy_seconds"] else None, db_mb=out["db_mb"])


def table(rows, n):
    lines = ["| run (SQLite, %s records) | merge (of which the copy) | database | Eden logins written meanwhile | "
             "longest wait of one | median wait | failed (\"database is locked\") |" % "{:,}".format(n),
             "|---|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        copy = " (%.1f s)" % r["copy_seconds"] if r["copy_seconds"] is not None else ""
        lines.append("| %s | %.1f s%s | %.0f MB | %d | %.3f s | %.3f s | %d |" % (
            r["mode"], r["seconds"], copy, r["db_mb"], r["probes"], r["longest"], r["median"], r["failed"]))
    return "\n".join(lines)


def parse(argv):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rows", type=int, default=100000)
    p.add_argument("--runs", type=int, default=1)
    p.add_argument("--modes", default=",".join(MODES), help="comma-separated, of: %s" % ", ".join(MODES))
    p.add_argument("--json")
    p.add_argument("--keep", action="store_true", help="keep the temp folder")
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--mode", help=argparse.SUPPRESS)
    p.add_argument("--folder", help=argparse.SUPPRESS)
    p.add_argument("--files", help=argparse.SUPPRESS)
    return p.parse_args(argv)


def main(argv=None):
    args = parse(argv)
    if args.worker:
        return worker_main(args)
    base = tempfile.mkdtemp(prefix="eden-bench-lock-")
    os.chmod(base, 0o755)
    run = Run(base, "sqlite")
    rows = []
    try:
        files = run.dataset(args.rows)
        for r in range(args.runs):
            for mode in args.modes.split(","):
                rows.append(measure(run, files, mode.strip()))
                print("  run %d %s: %s" % (r + 1, mode, rows[-1]), flush=True)
    finally:
        run.stop()
        if not args.keep:
            shutil.rmtree(base, ignore_errors=True)
    print("\n" + table(rows, args.rows))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(dict(args=vars(args), results=rows), f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
