#!/usr/bin/env python
"""Benchmark (issue 12): the plugin's merge into real Sahana Eden against Eden's own S3XML import.

    .venv/bin/python tests/bench/bench_eden.py [--rows 10000,100000] [--eden-rows N] [--runs 3]
                                               [--backend sqlite|postgres] [--dataset synthetic|mixed]
                                               [--json out.json]
    make bench-eden ARGS="--rows 2000 --runs 1"      # a smoke run

Not a timed test: a script that prints a markdown table.  Real Eden instances are
prepared the way the tests prepare them (`scripts/eden.py prepare`, then
`edenhost.clone` per instance; PostgreSQL: a private server, scripts/pgserver.py).
Instance A gets N records through Eden's own API (insert + `s3db.update_super`,
so persons, organisations and offices have their person entities and sites):
gis_location (a hierarchy), org_organisation, org_office, pr_person, pr_contact,
pr_address (on the persons' entities), hrm_human_resource.  A exports them twice:
with the plugin (its CSV) and as Eden's S3XML (`resource.export_xml()` per table,
the same records).  Then, in turns, into a fresh copy B of the prepared Eden,
each in a process of its own (its peak RSS is its own):

1. the plugin's merge of the file          vs `S3Resource.import_xml` of the S3XML, per table
2. a re-sync of the same, unchanged file   vs Eden's re-import of the same S3XML

--dataset mixed (issue 22): A is loaded instead by Eden's own bulk importer from the CSVs Eden
ships in its templates, whole (tests/edenseed.load_templates: make run's descriptors, every
module the demo enables); the records of the tables the plugin syncs are measured, both ways, at
that size, Eden's import given them as one S3XML tree; then, for each of --rows, the same records
replicated with fresh uuids up to that size (replicate), the plugin against Eden's rate above.

Medians of --runs runs.  Eden's import is slow (tens of records/s here): for
sizes above --eden-rows its figure is that of the --eden-rows dataset (the same
shape, measured once in the run), compared as records/s; the table says so.
"""
import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(REPO, "scripts"))
sys.path.insert(0, os.path.dirname(HERE))
sys.path.insert(0, HERE)
import eden  # noqa: E402  the launcher
import edenhost  # noqa: E402  real Eden's runtime folders
from bench_sync import MB, vm_hwm_kb  # noqa: E402
from pgserver import PostgresServer  # noqa: E402

# the tables of the dataset, parents first (Eden's import order), with their share of N
SHARES = (("gis_location", 0.10), ("org_organisation", 0.02), ("org_office", 0.03), ("pr_person", 0.25),
          ("pr_contact", 0.25), ("pr_address", 0.10), ("hrm_human_resource", 0.25))
TABLES = [t for t, _ in SHARES]


def counts(n):
    out = {t: max(1, int(n * share)) for t, share in SHARES}
    out["pr_person"] += n - sum(out.values())
    return out


# ----------------------------------------------------------------- workers (one Eden process each)


def open_eden(folder, uri):
    """Eden's environment of a runtime folder, in this process, as its own administrator would work."""
    if uri:
        os.environ["EDEN_DB_URI"] = uri
    os.environ["EDEN_DB_POOL_SIZE"] = "0"
    eden.enter(folder, os.path.basename(folder), uri)
    env = eden.app_env(folder)
    from gluon import current

    current.request.env.request_method = "GET"  # as Eden's first run does for shell imports
    current.auth.override = True  # Eden's importer and exporter check permissions
    env["s3db"] = current.s3db
    if "plugin_sync_settings" in env:  # as the plugin's controller does: the deployment's synced set, defined
        from applications.eden.modules.plugin_sync.eden import model as plugin_eden_model

        plugin_eden_model.prepare(env["db"], env["plugin_sync_settings"])
        env["db"].commit()
    return env


def generate(env, n):
    """N records through Eden's API (insert, then update_super for the super-entity tables)."""
    import random

    db, s3db = env["db"], env["s3db"]
    rnd = random.Random(12)
    want = counts(n)
    tables = {t: s3db.table(t) for t in TABLES}
    made = {t: [] for t in TABLES}

    def make(tablename, **values):
        table = tables[tablename]
        record_id = table.insert(**values)
        if s3db.get_config(tablename, "super_entity"):
            s3db.update_super(table, dict(values, id=record_id))
        made[tablename].append(record_id)
        if sum(map(len, made.values())) % 5000 == 0:
            db.commit()
        return record_id

    country = make("gis_location", name="Benchland", level="L0")
    for i in range(want["gis_location"] - 1):
        level = "L1" if i < 20 else "L2"
        parent = country if level == "L1" else rnd.choice(made["gis_location"][1:21])
        make("gis_location", name="Place %d" % i, level=level, parent=parent, lat=rnd.uniform(-9, -8),
             lon=rnd.uniform(124, 127))
    places = made["gis_location"]
    for i in range(want["org_organisation"]):
        make("org_organisation", name="Organisation %d" % i, acronym="O%d" % i, comments="Bench org %d" % i)
    orgs = made["org_organisation"]
    for i in range(want["org_office"]):
        make("org_office", name="Office %d" % i, organisation_id=rnd.choice(orgs), location_id=rnd.choice(places))
    for i in range(want["pr_person"]):
        make("pr_person", first_name=rnd.choice(FIRST), last_name="%s %d" % (rnd.choice(LAST), i),
             gender=rnd.choice((2, 3)))
    persons = made["pr_person"]
    pe_ids = dict(db(tables["pr_person"].id > 0).select(tables["pr_person"].id, tables["pr_person"].pe_id).as_dict(
        key="id").items())
    for i in range(want["pr_contact"]):
        pe = pe_ids[persons[i % len(persons)]]["pe_id"]
        make("pr_contact", pe_id=pe, contact_method="EMAIL" if i % 2 else "SMS",
             value=("p%d@example.org" % i) if i % 2 else "+670 7%07d" % i)
    for i in range(want["pr_address"]):
        make("pr_address", pe_id=pe_ids[persons[i % len(persons)]]["pe_id"], type=1, location_id=rnd.choice(places),
             address="Rua %d" % i)
    for i in range(want["hrm_human_resource"]):
        make("hrm_human_resource", person_id=persons[i % len(persons)], organisation_id=rnd.choice(orgs),
             type=rnd.choice((1, 2)))
    db.commit()
    return {t: len(ids) for t, ids in made.items()}


FIRST = ("Maria", "Joao", "Ana", "Jose", "Rosa", "Antonio", "Fatima", "Manuel", "Ines", "Paulo", "Aylin", "Mehmet")
LAST = ("da Silva", "Soares", "Pereira", "Guterres", "Ximenes", "Alves", "Yilmaz", "Kaya", "Ramos", "Belo")


def generate_mixed(env, folder, n=0):
    """The mixed dataset of all modules: the CSVs Eden ships in its templates (make run's descriptors), whole,
    through Eden's own bulk importer (tests/edenseed.load_templates); the records of the synced tables.
    `n` above their number: replicated with fresh uuids up to at least n (replicate)."""
    import edenseed
    from applications.eden.modules.plugin_sync import tables as policy

    env["folder"] = folder
    work = tempfile.mkdtemp(prefix="eden-csv-")
    try:
        errors = edenseed.load_templates(env, work, rows=None, scripts=False)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if errors:
        raise RuntimeError("Eden's importer refused the template CSVs: %s" % errors[:10])
    db = env["db"]

    def made():
        alive = {t: db(db[t].deleted != True).count() if "deleted" in db[t].fields else db(db[t]).count()  # noqa
                 for t in policy.synced_tables(db, env["plugin_sync_settings"])}
        db.commit()
        return {t: k for t, k in alive.items() if k}

    replicate(env, n, lambda: sum(made().values()))
    return made()


HEX_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def replicate(env, n, total):
    """Up to at least n records (`total()`: how many A holds): copies of A's synced records, each under fresh
    uuids (every uuid of the plugin's file, the sender's identity included, mapped by uuid5 per copy: references within a copy stay consistent; records
    every instance shares, like the countries' urn:iso uuids, and lookups with a unique name stay shared),
    merged into A by the plugin."""
    import uuid
    from applications.eden.modules.plugin_sync import fileio
    from applications.eden.modules.plugin_sync import tables as policy

    if total() >= n:
        return
    db, settings = env["db"], env["plugin_sync_settings"]
    shared = set()  # lookups with a unique name (org_organisation_type...): one record, that every copy refers to
    for t in policy.synced_tables(db, settings):
        if any(f.unique for f in db[t] if f.name not in ("id", "uuid")):
            shared.update(HEX_UUID.findall(" ".join(r.uuid for r in db(db[t]).select(db[t].uuid))))
    text = fileio.export_bytes(db, settings, log=False).decode("utf-8")
    k = 0
    while total() < n:
        space = uuid.uuid5(uuid.NAMESPACE_URL, "bench-copy-%d" % k)
        copy = HEX_UUID.sub(lambda m: m.group(0) if m.group(0) in shared else str(uuid.uuid5(space, m.group(0))),
                            text)
        fileio.import_from(db, settings, copy.encode("utf-8"), name="copy-%d.csv" % k)
        k += 1


def sent_tables(folder):
    """The tables of a dataset folder, parents first (mixed: those generate_mixed found; else TABLES)."""
    path = os.path.join(folder, "tables.json")
    return json.load(open(path)) if os.path.exists(path) else TABLES


def export(env, folder):
    """The plugin's file and Eden's S3XML of the same records (one document per table)."""
    from applications.eden.modules.plugin_sync import fileio

    with open(os.path.join(folder, "plugin.csv"), "wb") as f:
        fileio.export_to(env["db"], env["plugin_sync_settings"], f, fmt="csv", log=False)
    for tablename in sent_tables(folder):
        xml = env["s3db"].resource(tablename).export_xml(dereference=False, mcomponents=None)
        with open(os.path.join(folder, "%s.xml" % tablename), "wb") as f:
            f.write(xml if isinstance(xml, bytes) else xml.encode("utf-8"))


def plugin_merge(env, folder):
    from applications.eden.modules.plugin_sync import fileio

    report = fileio.import_from(env["db"], env["plugin_sync_settings"], os.path.join(folder, "plugin.csv"),
                                name="bench.csv")
    return report.totals()


def eden_import(env, folder):
    """Eden's own import, table by table, parents first; one commit, as one sync run of Eden's."""
    from lxml import etree

    done = {}
    names = sent_tables(folder)
    tree = None  # one S3XML tree, as one sync of Eden's: a reference finds its record in it
    for tablename in names:
        with open(os.path.join(folder, "%s.xml" % tablename), "rb") as f:
            doc = etree.parse(f)
        if tree is None:
            tree = doc
        else:
            tree.getroot().extend(doc.getroot().findall("resource"))
    for tablename in names:
        resource = env["s3db"].resource(tablename)
        resource.import_xml(tree)
        if resource.error:  # Eden refuses some of its own exports (asset_asset: "site_id: value(s) required"):
            # said, and counted as what it wrote (its rate is records written per second)
            sys.stderr.write("  Eden's import of %s refused: %s\n" % (tablename, resource.error))
        done[tablename] = resource.import_count
    env["db"].commit()
    return done


OPS = {"plugin": plugin_merge, "eden": eden_import}


def worker_main(args):
    env = open_eden(args.folder, args.uri)
    base = vm_hwm_kb()
    out = {}
    t0 = time.perf_counter()
    if args.worker == "generate" and args.dataset == "mixed":
        out["made"] = generate_mixed(env, args.folder, args.n)
        with open(os.path.join(args.files, "tables.json"), "w") as f:
            json.dump(list(out["made"]), f)
    elif args.worker == "generate":
        out["made"] = generate(env, args.n)
    elif args.worker == "export":
        export(env, args.files)
    elif args.profile and args.worker == "plugin":  # where the first merge's time goes (cProfile, cumulative)
        import cProfile
        import pstats

        profile = cProfile.Profile()
        out["first"] = profile.runcall(OPS[args.worker], env, args.files)
        out["first_seconds"] = time.perf_counter() - t0
        profile.dump_stats(args.profile)
        pstats.Stats(args.profile, stream=sys.stderr).sort_stats("cumulative").print_stats(40)
    else:  # a merge or an import, then the same again (the re-sync)
        out["first"] = OPS[args.worker](env, args.files)
        out["first_seconds"] = time.perf_counter() - t0
        t1 = time.perf_counter()
        out["again"] = OPS[args.worker](env, args.files)
        out["again_seconds"] = time.perf_counter() - t1
    out.update(seconds=time.perf_counter() - t0, base_kb=base, peak_kb=vm_hwm_kb())
    env["db"].close()
    print(json.dumps(out, default=str))


# ----------------------------------------------------------------- the run


class Run:
    """Prepared Eden (once), instances cloned from it, workers started on them."""

    def __init__(self, base, backend, dataset="synthetic"):
        self.base, self.backend, self.n, self.kind = base, backend, 0, dataset
        self.server = PostgresServer().start() if backend == "postgres" else None
        self.template_uri = self.server.new_database("eden_template") if self.server else None
        self.template = os.path.join(base, "template")
        cmd = [sys.executable, os.path.join(REPO, "scripts", "eden.py"), "prepare", "--instance", "template",
               "--runtime", base] + (["--db", self.template_uri] if self.template_uri else [])
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def clone(self, name):
        self.n += 1
        uri = None
        if self.server:
            uri = self.server.new_database("eden_%s" % name, template=self.template_uri.rsplit("/", 1)[1])
        folder = edenhost.clone(self.template, "%s-%d" % (name, self.n), self.base, db_uri=uri,
                                template_uri=self.template_uri)
        return folder, uri

    def worker(self, op, instance, files, n=0, profile=None):
        folder, uri = instance
        cmd = [sys.executable, os.path.abspath(__file__), "--worker", op, "--folder", folder, "--files", files,
               "--n", str(n), "--dataset", self.kind] + (["--uri", uri] if uri else []) + (
                   ["--profile", profile] if profile else [])
        proc = subprocess.run(cmd, capture_output=True, text=True, env=dict(os.environ, EDEN_DB_POOL_SIZE="0"))
        if proc.returncode != 0:
            raise RuntimeError("worker %s failed:\n%s" % (op, proc.stderr[-4000:]))
        if profile:
            print(proc.stderr[proc.stderr.find("Ordered by"):][:12000], flush=True)
        return json.loads(proc.stdout.strip().splitlines()[-1])

    def dataset(self, n):
        """A source instance with n records, exported both ways into a folder of its own: the folder."""
        files = os.path.join(self.base, "files-%d" % n)
        os.makedirs(files, exist_ok=True)
        source = self.clone("source")
        t0 = time.time()
        made = self.worker("generate", source, files, n)["made"]
        how = "by Eden's importer from its template CSVs" if self.kind == "mixed" else "through Eden's API"
        print("  %s records made in A %s in %.0fs: %s" % ("{:,}".format(sum(made.values())), how, time.time() - t0,
                                                          made), flush=True)
        self.made = sum(made.values())
        self.worker("export", source, files)
        self.drop(source)
        return files

    def drop(self, instance):
        shutil.rmtree(instance[0], ignore_errors=True)

    def stop(self):
        if self.server:
            self.server.stop()


def measure(run, n, eden_n, runs, eden_done, profile=None, both=False):
    """Rounds in turns (plugin, Eden, plugin, Eden...), each into a fresh B; medians and peaks.

    `eden_done`: {size: Eden's runs} measured already; a subset size measured before is not measured again.
    `both`: Eden imports the same dataset (its size is the one made: the mixed dataset).
    """
    files = run.dataset(n)
    if run.kind == "mixed":  # its size is the one made (the templates' records, or whole copies of them)
        n = run.made
    if both:
        eden_n = n
    eden_files = None
    if both:
        eden_files = files
    elif eden_n and eden_n not in eden_done:
        eden_files = files if eden_n == n else run.dataset(eden_n)
    got = {"plugin": [], "eden": eden_done.setdefault(eden_n, []) if eden_n else []}
    if profile:  # one merge more, profiled: slower, so not among the figures
        target = run.clone("b")
        out = run.worker("plugin", target, files, profile=profile)
        run.drop(target)
        print("  profiled merge: %.1fs (cProfile's cost included)" % out["first_seconds"], flush=True)
    for r in range(runs):
        for op, where in (("plugin", files), ("eden", eden_files)):
            if where is None:
                continue
            target = run.clone("b")
            out = run.worker(op, target, where)
            run.drop(target)
            got[op].append(out)
            written = out["first"]["created"] if op == "plugin" else sum(out["first"].values())
            print("  run %d %s: %s records written in %.1fs, re-sync %.1fs, peak %.0f MB" % (
                r + 1, op, "{:,}".format(written), out["first_seconds"], out["again_seconds"], out["peak_kb"] / MB),
                flush=True)
    return summary(n, eden_n, got)


def summary(n, eden_n, got):
    def med(op, key):
        return statistics.median(o[key] for o in got[op]) if got[op] else None

    out = dict(rows=n, eden_rows=eden_n, runs=len(got["plugin"]))
    for op, size in (("plugin", n), ("eden", eden_n)):
        if not got[op]:
            continue
        out[op] = dict(seconds=med(op, "first_seconds"), resync_seconds=med(op, "again_seconds"),
                       rate=size / med(op, "first_seconds"), resync_rate=size / med(op, "again_seconds"),
                       peak_mb=max(o["peak_kb"] for o in got[op]) / MB,
                       base_mb=min(o["base_kb"] for o in got[op]) / MB,
                       report=got[op][-1]["first"], again=got[op][-1]["again"])
    if "eden" in out:
        out["ratio"] = out["plugin"]["rate"] / out["eden"]["rate"]
        out["resync_ratio"] = out["plugin"]["resync_rate"] / out["eden"]["resync_rate"]
    return out


def table(backend, results):
    lines = ["| backend | records | plugin merge | Eden import_xml | ratio (target >= 30x) | plugin re-sync | "
             "Eden re-import | ratio (target >= 100x) | peak RSS plugin / Eden |", "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in results:
        p, e = r["plugin"], r.get("eden")
        subset = "" if not e or r["eden_rows"] == r["rows"] else " (Eden: %s records)" % "{:,}".format(r["eden_rows"])
        lines.append("| %s | %s%s | %.1f s (%s rec/s) | %s | %s | %.1f s (%s rec/s) | %s | %s | %.0f / %s MB |" % (
            backend, "{:,}".format(r["rows"]), subset, p["seconds"], "{:,.0f}".format(p["rate"]),
            "%.1f s (%s rec/s)" % (e["seconds"], "{:,.0f}".format(e["rate"])) if e else "-",
            "%.1fx" % r["ratio"] if e else "-", p["resync_seconds"], "{:,.0f}".format(p["resync_rate"]),
            "%.1f s (%s rec/s)" % (e["resync_seconds"], "{:,.0f}".format(e["resync_rate"])) if e else "-",
            "%.1fx" % r["resync_ratio"] if e else "-", p["peak_mb"], "%.0f" % e["peak_mb"] if e else "-"))
    return "\n".join(lines)


def parse(argv):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rows", default="10000,100000", help="dataset sizes, comma-separated")
    p.add_argument("--eden-rows", type=int, default=10000,
                   help="largest dataset Eden's import runs in full; above it, a subset of this many (0: none)")
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--backend", choices=("sqlite", "postgres"), default="sqlite")
    p.add_argument("--dataset", choices=("synthetic", "mixed"), default="synthetic",
                   help="synthetic: --rows records of 7 tables made through Eden's API; mixed: every module's "
                        "records, the CSVs Eden ships in its templates through Eden's importer (their own size, "
                        "then replicated up to each of --rows)")
    p.add_argument("--json")
    p.add_argument("--keep", action="store_true", help="keep the temp folder")
    p.add_argument("--profile", help="cProfile one extra plugin merge per size into this file (printed, not timed)")
    p.add_argument("--worker", help=argparse.SUPPRESS)
    p.add_argument("--folder", help=argparse.SUPPRESS)
    p.add_argument("--uri", help=argparse.SUPPRESS)
    p.add_argument("--files", help=argparse.SUPPRESS)
    p.add_argument("--n", type=int, default=0, help=argparse.SUPPRESS)
    return p.parse_args(argv)


def main(argv=None):
    args = parse(argv)
    if args.worker:
        return worker_main(args)
    base = tempfile.mkdtemp(prefix="eden-bench-")
    os.chmod(base, 0o755)
    started, results, eden_done = time.time(), [], {}
    run = Run(base, args.backend, args.dataset)
    try:
        natural = None
        if args.dataset == "mixed":  # the templates' own records, both ways; then copies of them (--rows), the
            # plugin only, compared with Eden's rate on the templates' own records (the same shape, this run)
            print("[%s] the mixed dataset of all modules (Eden's template CSVs)" % args.backend, flush=True)
            results.append(measure(run, 0, 0, args.runs, eden_done, args.profile, both=True))
            natural = results[-1]["rows"]
            print(table(args.backend, results[-1:]), flush=True)
        for n in [int(x) for x in args.rows.split(",") if int(x)]:
            eden_n = natural or min(n, args.eden_rows)
            print("[%s] %s records (Eden's import: %s)" % (args.backend, "{:,}".format(n), "{:,}".format(eden_n)),
                  flush=True)
            results.append(measure(run, n, eden_n, args.runs, eden_done, args.profile))
            print(table(args.backend, results[-1:]), flush=True)
    finally:
        run.stop()
        if not args.keep:
            shutil.rmtree(base, ignore_errors=True)
    print("\n" + table(args.backend, results))
    print("\nMedians of %d runs, in turns, each into a fresh copy of the prepared Eden, each in its own process; "
          "%.0fs in all." % (args.runs, time.time() - started))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(dict(args=vars(args), results=results), f, indent=2, default=str)
    return 0


if __name__ == "__main__":
    sys.exit(main())
