#!/usr/bin/env python
"""Benchmark (issue 23): a first sync over a link that drops every 1 MB, and the bytes of an incremental sync.

    .venv/bin/python tests/bench/bench_resume.py [--records 100000] [--every 1048576] [--batch N]
                                                 [--changed 100] [--no-eden] [--json out.json]

Not a timed test: a script that prints what it measured.  Two minihost servers on
SQLite (tests/conftest.py's Server, as the network tests start them), A and B; A
talks to B through tests/droplink.py, a proxy on 127.0.0.1 that cuts the connection
in flight whenever the bytes it carried (both ways, all connections) cross the next
multiple of --every.

1. First sync: B holds --records records (a location hierarchy, persons living in it);
   A pulls them all, in batches of `sync_batch` records, run after run as the scheduler
   would, until it completes.  Reported: runs, cuts, connections, the bytes of the
   connections that completed (what one clean transfer carries) and of those that were
   cut (re-sent), the time.  Then the same with `sync_batch = 0` (one transfer of the
   whole range, as before batches) for a few runs: it never completes.
2. Incremental sync: --changed persons edited on B; A pulls them.  Reported: the bytes
   on the wire (both ways, HTTP headers and the identity request included; the
   changes file is gzip'd CSV), and the changes file alone.
3. Beside it, real Sahana Eden (unless --no-eden): an instance prepared as the tests
   prepare it (bench_eden.Run), the same number of persons made through Eden's API and
   edited; the plugin's changes file for them and Eden's own S3XML of them as its sync
   sends it (`resource.export_xml(msince=...)`, persons with their components, raw: Eden's
   push posts text/xml uncompressed), gzip'd too for comparison.
"""
import argparse
import datetime
import gzip
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.dirname(HERE))
sys.path.insert(0, HERE)
if "--worker" not in sys.argv:  # the Eden worker loads Eden, not the minihost the harness enters
    from conftest import Server  # noqa: E402  (enters the harness' runtime, as the tests do)
    from droplink import DroppingLink  # noqa: E402

    from applications.eden.modules.plugin_sync import changes, replicate  # noqa: E402
    from applications.eden.modules.plugin_sync.errors import PeerError  # noqa: E402

FIRST = ("Maria", "Joao", "Ana", "Jose", "Rosa", "Antonio", "Fatima", "Manuel", "Ines", "Paulo", "Aylin", "Mehmet")
LAST = ("da Silva", "Soares", "Pereira", "Guterres", "Ximenes", "Alves", "Yilmaz", "Kaya", "Ramos", "Belo")
TRIES = dict(retries=4, backoff=0.05, max_wait=0.2, timeout=60, transfer_timeout=300)
KB = 1024.0


def fill(node, n, rnd):
    """n records in B: a location hierarchy (1%) and persons living in it, with the fields a register has."""
    db = node.db
    country = db.gis_location.insert(name="Benchland", level="L0")
    places = [country]
    for i in range(max(1, n // 100) - 1):
        places.append(db.gis_location.insert(name="Place %d" % i, level="L1" if i < 20 else "L2",
                                             parent=country if i < 20 else places[1 + i % 20],
                                             lat=rnd.uniform(-9, -8), lon=rnd.uniform(124, 127)))
    for i in range(n - len(places)):
        db.pr_person.insert(first_name=rnd.choice(FIRST), last_name="%s %d" % (rnd.choice(LAST), i),
                            gender=rnd.choice(("female", "male")), email="person%d@example.org" % i,
                            phone="+670 7%07d" % i, location_id=rnd.choice(places),
                            date_of_birth="19%02d-%02d-%02d" % (rnd.randint(40, 99), rnd.randint(1, 12),
                                                              rnd.randint(1, 28)))
        if i % 10000 == 0:
            db.commit()
    db.commit()


def runs_until_done(node, peer, batch, max_runs):
    """(runs, completed) of pulls run again after each failure, as the scheduler would."""
    for run in range(1, max_runs + 1):
        try:
            replicate.sync(node.db, node.settings, peer, mode="pull", batch=batch, **TRIES)
            return run, True
        except PeerError as e:
            print("    run %d: %s" % (run, str(e)[:160]), flush=True)
    return max_runs, False


def first_sync(a, b, link, records, every, batch):
    peer = a.peer(b).id
    b.db.commit()
    until = changes.checkpoint(b.db)
    b.db.commit()
    link.reset(every=every)
    t0 = time.time()
    runs, done = runs_until_done(a, peer, batch, max_runs=20)
    seconds = time.time() - t0
    a.db.commit()
    got = a.db(a.db.pr_person).count() + a.db(a.db.gis_location).count()
    row = a.peer(b)
    out = dict(records=records, every=every, batch=batch, runs=runs, completed=done, connections=link.connections,
               cuts=link.cuts, delivered=link.delivered, wasted=link.wasted, seconds=round(seconds, 1),
               arrived=got, checkpoint_exact=row.checkpoint_received == until and not row.checkpoint_resume)
    out["resent_share"] = link.wasted / float(link.delivered or 1)
    return out


def before_batches(a, b, link, every, runs=2):
    """One transfer of the whole range (sync_batch 0): what a first sync did before batches."""
    peer = a.peer(b).id
    a.db(a.db.sync_instance.id == peer).update(checkpoint_received=0, checkpoint_resume=None)
    a.db.commit()
    link.reset(every=every)
    t0 = time.time()
    n, done = runs_until_done(a, peer, 0, max_runs=runs)
    return dict(runs=n, completed=done, cuts=link.cuts, delivered=link.delivered, wasted=link.wasted,
                seconds=round(time.time() - t0, 1))


def incremental(a, b, link, changed, rnd):
    """Bytes on the wire of a pull of `changed` edited persons (and of the changes file alone)."""
    db = b.db
    ids = [r.id for r in db(db.pr_person).select(db.pr_person.id, orderby=db.pr_person.id, limitby=(0, 50000))]
    chosen = rnd.sample(ids, changed)
    since = a.peer(b).checkpoint_received
    for i in chosen:
        db(db.pr_person.id == i).update(phone="+670 8%07d" % rnd.randint(0, 9999999), last_name="Edited %d" % i)
    db.commit()
    me = a.db(a.db.plugin_sync_identity).select().first().base_uuid
    a.db.commit()
    file_bytes = len(replicate.changes(db, b.settings, since, fmt="gz", peer=me)[0])
    db.commit()
    link.reset(every=None)
    report = replicate.sync(a.db, a.settings, a.peer(b).id, mode="pull", **TRIES)["pull"]
    return dict(changed=changed, updated=report.totals()["updated"], wire=link.delivered, file=file_bytes,
                connections=link.connections)


# ----------------------------------------------------------------- real Eden: the plugin's file and Eden's S3XML


def eden_worker(args):
    """In an Eden process of its own: make persons through Eden's API, edit `changed` of them, measure both files."""
    from bench_eden import open_eden

    env = open_eden(args.folder, args.uri)
    db, s3db = env["db"], env["s3db"]
    from applications.eden.modules.plugin_sync import changes as capture
    from applications.eden.modules.plugin_sync import replicate as rep

    rnd = random.Random(23)
    table = s3db.table("pr_person")
    made = []
    for i in range(args.n):
        values = dict(first_name=rnd.choice(FIRST), last_name="%s %d" % (rnd.choice(LAST), i),
                      gender=rnd.choice((2, 3)), date_of_birth="19%02d-01-15" % rnd.randint(40, 99))
        rid = table.insert(**values)
        s3db.update_super(table, dict(values, id=rid))
        made.append(rid)
    db.commit()
    since = capture.checkpoint(db)
    db.commit()
    time.sleep(1.1)  # Eden's msince takes modified_on >= msince (seconds): the persons made stay before it
    msince = datetime.datetime.utcnow().replace(microsecond=0)  # Eden's last_push: the edits come after it
    time.sleep(1.1)
    for rid in rnd.sample(made, args.changed):
        db(table.id == rid).update(last_name="Edited %d" % rid)
    db.commit()
    plugin = rep.changes(db, env["plugin_sync_settings"], since, fmt="gz")[0]
    db.commit()
    resource = s3db.resource("pr_person", components=None, include_deleted=True)
    xml = resource.export_xml(msince=msince)
    xml = xml if isinstance(xml, bytes) else xml.encode("utf-8")
    out = dict(persons=args.n, changed=args.changed, eden_results=resource.results, plugin_gz=len(plugin),
               s3xml=len(xml), s3xml_gz=len(gzip.compress(xml)))
    db.close()
    print(json.dumps(out))


def eden_figures(changed, n):
    from bench_eden import Run

    base = tempfile.mkdtemp(prefix="eden-bench-resume-")
    os.chmod(base, 0o755)
    run = Run(base, "sqlite")
    try:
        folder, uri = run.clone("wire")
        cmd = [sys.executable, os.path.abspath(__file__), "--worker", "eden", "--folder", folder, "--n", str(n),
               "--changed", str(changed)] + (["--uri", uri] if uri else [])
        proc = subprocess.run(cmd, capture_output=True, text=True, env=dict(os.environ, EDEN_DB_POOL_SIZE="0"))
        if proc.returncode != 0:
            raise RuntimeError("Eden worker failed:\n%s" % proc.stderr[-4000:])
        return json.loads(proc.stdout.strip().splitlines()[-1])
    finally:
        run.stop()
        shutil.rmtree(base, ignore_errors=True)


# ----------------------------------------------------------------- the run


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--records", type=int, default=100000)
    p.add_argument("--every", type=int, default=1 << 20, help="the link drops every this many bytes")
    p.add_argument("--batch", type=int, default=None, help="records per batch (default: the setting's default)")
    p.add_argument("--changed", type=int, default=100)
    p.add_argument("--eden-persons", type=int, default=1000, help="persons made in the real Eden instance")
    p.add_argument("--no-eden", action="store_true")
    p.add_argument("--eden-only", action="store_true", help="only part 3 (real Eden)")
    p.add_argument("--json")
    p.add_argument("--worker", help=argparse.SUPPRESS)
    p.add_argument("--folder", help=argparse.SUPPRESS)
    p.add_argument("--uri", help=argparse.SUPPRESS)
    p.add_argument("--n", type=int, default=0, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker == "eden":
        return eden_worker(args)

    results = {}
    if not args.eden_only:
        results.update(minihost_figures(args))
    if not args.no_eden:
        results["eden"] = eden_figures(args.changed, args.eden_persons)
        print("real Eden: %s" % json.dumps(results["eden"]), flush=True)
    print(report(results))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)
    return 0


def minihost_figures(args):
    """Parts 1 and 2, on two minihost servers."""
    from test_network import Node, register_all  # noqa: E402  the network tests' nodes

    rnd = random.Random(23)
    servers = [Server("a").start(), Server("b").start()]
    link = DroppingLink(servers[1].port)
    results = {}
    try:
        a, b = Node(servers[0]), Node(servers[1])
        register_all(a, b)
        a.register(b, url=link.url)
        t0 = time.time()
        fill(b, args.records, rnd)
        print("B filled with %s records in %.0fs" % ("{:,}".format(args.records), time.time() - t0), flush=True)

        first = results["first_sync"] = first_sync(a, b, link, args.records, args.every, args.batch)
        print("first sync, batches of %s, link dropping every %s bytes: %s" % (
            args.batch or "the default", "{:,}".format(args.every), json.dumps(first)), flush=True)
        inc = results["incremental"] = incremental(a, b, link, args.changed, rnd)
        print("incremental: %s" % json.dumps(inc), flush=True)
        before = results["one_transfer"] = before_batches(a, b, link, args.every)
        print("one transfer (sync_batch 0): %s" % json.dumps(before), flush=True)
    finally:
        link.close()
        for s in servers:
            s.stop()
    return results


def report(r):
    lines = minihost_report(r) if "first_sync" in r else []
    e = r.get("eden")
    if e:
        lines += [
            "",
            "| real Eden, %d of %d persons changed | bytes |" % (e["changed"], e["persons"]),
            "|---|---:|",
            "| the plugin's changes file (gzip'd CSV) | %s |" % _size(e["plugin_gz"]),
            "| Eden's S3XML of the same %d persons (export_xml msince, as its sync sends it) | %s |" % (
                e["eden_results"], _size(e["s3xml"])),
            "| the same S3XML gzip'd | %s |" % _size(e["s3xml_gz"]),
        ]
    return "\n".join(lines)


def minihost_report(r):
    f, i, o = r["first_sync"], r["incremental"], r["one_transfer"]
    return [
        "",
        "| first sync over a link dropping every %s | batches of %s | one transfer (before) |" % (
            _size(f["every"]), f["batch"] or "default"),
        "|---|---:|---:|",
        "| completed | %s (%d runs) | %s (%d runs) |" % ("yes" if f["completed"] else "NO", f["runs"],
                                                      "yes" if o["completed"] else "no", o["runs"]),
        "| records arrived / sent | %s / %s | |" % ("{:,}".format(f["arrived"]), "{:,}".format(f["records"])),
        "| checkpoint exact | %s | |" % ("yes" if f["checkpoint_exact"] else "NO"),
        "| cuts | %d | %d |" % (f["cuts"], o["cuts"]),
        "| bytes of completed connections (one clean transfer) | %s | %s |" % (_size(f["delivered"]),
                                                                              _size(o["delivered"])),
        "| bytes re-sent (connections cut) | %s (%.1f%%) | %s |" % (_size(f["wasted"]), 100 * f["resent_share"],
                                                                  _size(o["wasted"])),
        "| time | %.0f s | %.0f s |" % (f["seconds"], o["seconds"]),
        "",
        "| %d changed persons, incremental pull | bytes |" % i["changed"],
        "|---|---:|",
        "| on the wire (both ways, HTTP headers and identity included) | %s |" % _size(i["wire"]),
        "| the changes file (gzip'd CSV) | %s |" % _size(i["file"]),
    ]


def _size(n):
    return "%.1f KB" % (n / KB) if n < 1 << 20 else "%.2f MB" % (n / KB / KB)


if __name__ == "__main__":
    sys.exit(main())
