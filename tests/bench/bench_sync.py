#!/usr/bin/env python
"""Benchmark of plugin_sync (issue 5): throughput and memory against the baselines.

    .venv/bin/python tests/bench/bench_sync.py [--rows N] [--big-rows M] [--backend sqlite|postgres|both]
                                               [--runs R] [--quick] [--json out.json]
    make bench ARGS="--quick"

Not a timed test: a script that prints a markdown table.  It loads the host
app's real schema through the app environment (like tests/conftest.py), in
temp runtime folders, on SQLite and/or a private PostgreSQL 15 (scripts/pgserver.py,
durability off like the test server), fills a source instance with N
generated rows (organisations, a location hierarchy, persons -> locations,
human resources -> persons + organisations, offices, hospitals, incidents with
a list:reference) and measures, each with its baseline in the same run:

1. full export                     vs pydal's db.export_to_csv_file (its loop, on the synced tables)
2. merge import into an empty db   vs pydal's db.import_from_csv_file(f, id_map={}, unique='uuid')
                                   and vs a raw executemany insert of the same rows (the floor)
3. re-sync of the same file        vs pydal's re-import of its file into the full db
4. 10% of rows changed on both sides (conflicts), vs pydal's re-import
5. incremental sync of 100 changed records (export since the checkpoint + import), at N and M rows
6. peak RSS (VmHWM) of export and import, each in a subprocess of its own, at N and M rows

Times are medians of --runs runs (fewer for the big phase).  pydal is slow
(one SELECT per row): above --baseline-rows its importer is measured on a
smaller dataset of the same shape and reported as rows/s (the output says so).
"""
import argparse
import datetime
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid as uuidlib

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(REPO, "scripts"))
sys.path.insert(0, os.path.dirname(HERE))
import eden  # noqa: E402  the launcher
from minihost import host as minihost  # noqa: E402  the engine's fixture host
from pgserver import PostgresServer  # noqa: E402

# share of each synced table in a dataset of N rows (the rest of N goes to persons)
SHARES = (
    ("gis_location", 0.10),
    ("org_organisation", 0.02),
    ("org_office", 0.05),
    ("pr_person", 0.45),
    ("hrm_human_resource", 0.30),
    ("hms_hospital", 0.05),
    ("event_incident", 0.03),
)
NGO = "urn:uuid:00000000-0000-4000-8000-000000000001"  # the lookup row every instance holds
EDIT_FIELD = {  # the text field each scenario edits
    "gis_location": "comments", "org_organisation": "comments", "org_office": "comments",
    "pr_person": "phone", "hrm_human_resource": "job_title", "hms_hospital": "comments",
    "event_incident": "comments",
}
CHUNK = 10000
MB = 1024.0


# ----------------------------------------------------------------- the data


def table_counts(n):
    """Rows per table for a dataset of n rows (each table at least 1)."""
    counts = {t: max(1, int(n * share)) for t, share in SHARES}
    counts["pr_person"] += n - sum(counts.values())
    return counts


class Generator:
    """Deterministic rows of every synced table, with explicit ids 1..count and consistent references.

    The minihost's local ids (pe_id, realm_entity, gis_location.path) are left NULL at the source: they
    never travel; the receiver's merge makes them (super records, realms, paths: entities.Hooks)."""

    def __init__(self, n, seed=5, char_bool=True):
        self.n, self.counts = n, table_counts(n)
        self.rng = random.Random(seed)
        self.char_bool = char_bool
        self.base = datetime.datetime(2024, 1, 1)
        nloc = self.counts["gis_location"]
        self.l1_end = 1 + max(1, nloc // 100)
        self.l2_end = self.l1_end + max(1, nloc // 10)

    def uuid(self):
        return uuidlib.UUID(int=self.rng.getrandbits(128), version=4).urn

    def when(self, k):
        return (self.base + datetime.timedelta(seconds=k * 7)).strftime("%Y-%m-%d %H:%M:%S")

    def ref(self, table):
        return self.rng.randint(1, self.counts[table])

    def meta(self, k):
        stamp = self.when(k)
        return dict(uuid=self.uuid(), mci=0, deleted=self.bool(False), deleted_fk=None, deleted_rb=None,
                    created_on=stamp, modified_on=stamp, created_by=None, modified_by=None)

    def bool(self, value):
        return ("T" if value else "F") if self.char_bool else value

    def fields(self, table, k):
        r = self.rng
        if table == "gis_location":
            if k == 1:
                level, parent = "L0", None
            elif k <= self.l1_end:
                level, parent = "L1", 1
            elif k <= self.l2_end:
                level, parent = "L2", r.randint(2, self.l1_end)
            else:
                level, parent = "L3", r.randint(self.l1_end + 1, self.l2_end)
            return dict(name="Location %d" % k, level=level, parent=parent, path=None, code="LOC-%06d" % k,
                        lat=round(r.uniform(-9, -8), 5), lon=round(r.uniform(124, 127), 5),
                        population=r.randint(100, 100000), comments=None)
        if table == "org_organisation":
            return dict(pe_id=None, realm_entity=None,
                        name="Organisation %d" % k, acronym="O%d" % k, organisation_type_id=1, country="TL",
                        website="https://org%d.example.org" % k, phone="+670 %07d" % k,
                        email="info@org%d.example.org" % k, comments="Founded in %d, works in health" % (1950 + k % 70))
        if table == "org_office":
            return dict(pe_id=None, realm_entity=None, name="Office %d" % k,
                        organisation_id=self.ref("org_organisation"),
                        location_id=self.ref("gis_location"), phone="+670 %07d" % k, comments=None)
        if table == "pr_person":
            return dict(first_name=r.choice(FIRST), last_name=r.choice(LAST), gender=r.choice(("female", "male")),
                        date_of_birth="%04d-%02d-%02d" % (r.randint(1940, 2010), r.randint(1, 12), r.randint(1, 28)),
                        email="person%d@example.org" % k, phone="+670 7%06d" % k, location_id=self.ref("gis_location"),
                        lat=round(r.uniform(-9, -8), 5), lon=round(r.uniform(124, 127), 5))
        if table == "hrm_human_resource":
            return dict(person_id=self.ref("pr_person"), organisation_id=self.ref("org_organisation"),
                        type=r.choice(("staff", "volunteer")), job_title=r.choice(JOBS),
                        start_date="%04d-%02d-01" % (r.randint(2000, 2023), r.randint(1, 12)))
        if table == "hms_hospital":
            return dict(name="Hospital %d" % k, code="H%06d" % k, organisation_id=self.ref("org_organisation"),
                        location_id=self.ref("gis_location"), facility_type="Hospital", status="Functional",
                        total_beds=r.randint(10, 500), lat=round(r.uniform(-9, -8), 5),
                        lon=round(r.uniform(124, 127), 5), comments='Beds, "ICU" and\nan emergency room')
        if table == "event_incident":
            orgs = sorted({self.ref("org_organisation") for _ in range(r.randint(1, 3))})
            return dict(name="Flood %d" % k, start_date=self.when(k), location_id=self.ref("gis_location"),
                        organisation_ids="|%s|" % "|".join(map(str, orgs)), closed=self.bool(k % 3 == 0),
                        comments="Response coordinated by the cluster")
        raise KeyError(table)

    def records(self, table):
        """Yield each row of `table` as a dict of every field, `id` included (none for other tables)."""
        if table not in self.counts:
            return  # doc_document (documents travel in bundles with their files), pr_contact: not measured here
        offset = sum(self.counts[t] for t, _ in SHARES[:[t for t, _ in SHARES].index(table)])
        for k in range(1, self.counts[table] + 1):
            values = self.meta(offset + k)
            values.update(self.fields(table, k))
            values["id"] = k
            yield values

    def rows(self, table, columns):
        """Yield chunks of tuples in `columns` order."""
        chunk = []
        for values in self.records(table):
            chunk.append(tuple(values[c] for c in columns))
            if len(chunk) >= CHUNK:
                yield chunk
                chunk = []
        if chunk:
            yield chunk


FIRST = ("Maria", "Joao", "Ana", "Jose", "Rosa", "Antonio", "Fatima", "Manuel", "Ines", "Paulo", "Aylin", "Mehmet")
LAST = ("da Silva", "Soares", "Pereira", "Guterres", "Ximenes", "Alves", "Yilmaz", "Kaya", "Ramos", "Belo")
JOBS = ("Nurse", "Doctor", "Logistician", "Driver", "Coordinator", "Volunteer", "Engineer", None)


# ------------------------------------------------------------ the instances


class Instance:
    """One app environment (db, settings) in its own runtime folder, on a fresh database."""

    def __init__(self, bench, name, triggers=True):
        bench.counter += 1
        self.folder = minihost.runtime_folder("%s-%d" % (name, bench.counter), bench.base)
        if bench.backend == "postgres":
            self.uri = bench.server.new_database("bench")
        else:
            self.uri = "sqlite://%s" % os.path.join(self.folder, "applications", "eden", "databases", "storage.sqlite")
        os.environ["EDEN_DB_URI"] = self.uri
        os.environ["EDEN_INSTANCE"] = name
        self.env = eden.app_env(self.folder)
        self.db, self.settings = self.env["db"], self.env["plugin_sync_settings"]
        self.sqlite = bench.backend == "sqlite"
        db = self.db
        if db(db.org_organisation_type.uuid == NGO).isempty():
            db.org_organisation_type.insert(name="NGO", uuid=NGO)
        if not triggers:
            from applications.eden.modules.plugin_sync.changes import drop_triggers

            drop_triggers(db, self.tables())
        db.commit()

    def tables(self):
        from applications.eden.modules.plugin_sync.tables import synced_tables

        return synced_tables(self.db, self.settings)

    def cursor(self):
        return self.db._adapter.connection.cursor()

    def load(self, gen, materialized=None):
        """Insert the generator's rows with executemany (raw SQL: the floor's own path); return seconds."""
        t0 = time.perf_counter()
        cur = self.cursor()
        for table in self.tables():
            columns = list(self.db[table].fields)
            chunks = materialized[table] if materialized else gen.rows(table, columns)
            for chunk in chunks:
                self.insert_many(cur, table, columns, chunk)
        if not self.sqlite:
            for table in self.tables():
                cur.execute("SELECT setval(pg_get_serial_sequence('%s', 'id'), (SELECT max(id) FROM %s))" % (table, table))
        self.db.commit()
        return time.perf_counter() - t0

    def insert_many(self, cur, table, columns, rows):
        if self.sqlite:
            sql = "INSERT INTO %s (%s) VALUES (%s)" % (table, ", ".join(columns), ",".join("?" * len(columns)))
            cur.executemany(sql, rows)
        else:  # COPY (text format): the fastest way in, the floor
            from applications.eden.modules.plugin_sync.write import copy_text

            cur.copy_expert("COPY %s (%s) FROM STDIN" % (table, ", ".join(columns)), copy_text(rows))

    def close(self, drop=True):
        try:
            self.db.rollback()
            self.db.close()
        except Exception:
            pass
        if drop:
            shutil.rmtree(self.folder, ignore_errors=True)


class Bench:
    """The state of one backend's run: its server, its temp folders, its results."""

    def __init__(self, backend, base, server=None):
        self.backend, self.base, self.server = backend, base, server
        self.counter = 0
        self.results = []

    def instance(self, name, **kw):
        return Instance(self, name, **kw)

    def record(self, scenario, n, seconds, runs, baseline=None, target=None, unit="rows/s", note=""):
        """One line of the table: rows/s (or seconds or MB) with its baseline and target."""
        self.results.append(dict(backend=self.backend, scenario=scenario, rows=n, value=seconds, runs=runs,
                                 baseline=baseline, target=target, unit=unit, note=note))
        print("  [%s] %s: %s" % (self.backend, scenario, _fmt_value(seconds, unit)), flush=True)


class Measure:
    """One timed operation: fn(), or fn(setup()) with teardown(arg) after (setup and teardown untimed)."""

    def __init__(self, fn, setup=None, teardown=None):
        self.fn, self.setup, self.teardown = fn, setup, teardown

    def seconds(self):
        arg = self.setup() if self.setup else None
        t0 = time.perf_counter()
        self.fn(arg) if self.setup else self.fn()
        elapsed = time.perf_counter() - t0
        if self.teardown:
            self.teardown(arg)
        return elapsed


def interleaved(runs, *measures):
    """The median seconds of each measure over `runs` rounds, the measures taking turns in each round."""
    times = [[] for _ in measures]
    for _ in range(runs):
        for k, measure in enumerate(measures):
            times[k].append(measure.seconds())
    return [statistics.median(t) for t in times]


def median_time(fn, runs, setup=None, teardown=None):
    """Median seconds of fn() over `runs` runs (setup()/teardown() untimed, around each run)."""
    return interleaved(runs, Measure(fn, setup, teardown))[0]


class PlainSQLite:
    """The SQLite floor: a plain sqlite3 connection (its default pragmas: no foreign key checks)
    on a new file holding the app's tables (their DDL, whose UNIQUE uuid is the uuid index)."""

    sqlite = True

    def __init__(self, path, ddl, tables):
        import sqlite3

        if os.path.exists(path):
            os.remove(path)
        self.path, self.tables_ = path, tables
        self.conn = sqlite3.connect(path)
        for sql in ddl:
            self.conn.execute(sql)
        self.conn.commit()

    def tables(self):
        return self.tables_

    def load(self, _gen, materialized):
        cur = self.conn.cursor()
        for table, chunks in materialized.items():
            columns = self.columns[table]
            for chunk in chunks:
                Instance.insert_many(self, cur, table, columns, chunk)
        self.conn.commit()

    def close(self):
        self.conn.close()
        os.remove(self.path)


def app_floor(bench):
    """A fresh instance whose change triggers stand aside for every table (the merge's bulk marker)."""
    from applications.eden.modules.plugin_sync.changes import BULK

    inst = bench.instance("app-floor")
    for table in inst.tables():
        inst.db.executesql("INSERT INTO %s (tablename) VALUES (?)" % BULK, placeholders=(table,))
    return inst


def floor_target(bench, src, files):
    """(setup, teardown, note) of the raw-insert floor on this backend."""
    if bench.backend == "postgres":
        return (lambda: bench.instance("floor", triggers=False), lambda inst: inst.close(),
                "psycopg2 COPY, same schema, triggers dropped")
    tables = src.tables()
    ddl = [r[0] for t in tables for r in src.db.executesql(
        "SELECT sql FROM sqlite_master WHERE type = 'table' AND name = '%s'" % t)]
    columns = {t: list(src.db[t].fields) for t in tables}

    def setup():
        target = PlainSQLite(files("floor.sqlite"), ddl, tables)
        target.columns = columns
        return target

    return setup, lambda target: target.close(), "plain sqlite3, the app's tables, UNIQUE uuid index"


# ---------------------------------------------------------------- operations


def engine_export(inst, path, since=None):
    from applications.eden.modules.plugin_sync.fileio import export_to

    with open(path, "wb") as out:
        return export_to(inst.db, inst.settings, out, since=since)


def engine_import(inst, path):
    from applications.eden.modules.plugin_sync.fileio import import_from

    return import_from(inst.db, inst.settings, path)


def pydal_export(inst, path):
    """db.export_to_csv_file's own loop (pages of 500 by limitby), on the synced tables only.

    The whole-database call would also write the change log and the plugin's
    bookkeeping tables (as many rows again): not a fair comparison.
    """
    db = inst.db
    with open(path, "w", encoding="utf-8", newline="") as ofile:
        for table in inst.tables():
            ofile.write("TABLE %s\r\n" % table)
            query = db._adapter.id_query(db[table])
            nrows = db(query).count()
            kwargs = dict(write_colnames=True)
            for k in range(0, nrows, 500):
                db(query).select(limitby=(k, k + 500)).export_to_csv_file(ofile, **kwargs)
                kwargs["write_colnames"] = False
            ofile.write("\r\n\r\n")
        ofile.write("END")
    db.commit()


def pydal_import(inst, path):
    with open(path, "r", encoding="utf-8", newline="") as f:
        inst.db.import_from_csv_file(f, id_map={}, unique="uuid")
    inst.db.commit()


def edit(inst, table, where, value, modified_on):
    """A local edit of the rows `where` (raw SQL: one statement; the triggers record it)."""
    field = EDIT_FIELD[table]
    cur = inst.cursor()
    ph = "?" if inst.sqlite else "%s"
    cur.execute("UPDATE %s SET %s = %s, modified_on = %s WHERE %s" % (table, field, ph, ph, where),
                (value, modified_on))


def modulo(inst, k, r):
    return ("id %% %d = %d" if inst.sqlite else "mod(id, %d) = %d") % (k, r)


def edit_tenth(inst, side, counts):
    """10% of every table's rows (id % 10 = 3), edited on both sides: A's edit is newer for half of them."""
    now = datetime.datetime.utcnow().replace(microsecond=0)
    newer = (now - datetime.timedelta(minutes=10)).strftime("%Y-%m-%d %H:%M:%S")
    older = (now - datetime.timedelta(minutes=20)).strftime("%Y-%m-%d %H:%M:%S")
    value = "edited at %s" % side.upper()
    for table in counts:
        a_newer, b_newer = modulo(inst, 20, 13), modulo(inst, 20, 3)
        edit(inst, table, a_newer, value, newer if side == "a" else older)
        edit(inst, table, b_newer, value, older if side == "a" else newer)
    inst.db.commit()


def edit_hundred(inst, counts, round_no):
    """100 records changed on the source: spread over persons, human resources, hospitals, locations."""
    now = datetime.datetime.utcnow().replace(microsecond=0).strftime("%Y-%m-%d %H:%M:%S")
    plan = (("pr_person", 50), ("hrm_human_resource", 30), ("hms_hospital", 10), ("gis_location", 10))
    rng = random.Random(round_no)
    total = 0
    for table, k in plan:
        ids = sorted(rng.sample(range(1, counts[table] + 1), min(k, counts[table])))
        edit(inst, table, "id IN (%s)" % ",".join(map(str, ids)), "round %d" % round_no, now)
        total += len(ids)
    inst.db.commit()
    return total


# ------------------------------------------------------------ the scenarios


def run_backend(bench, args, files):
    n, runs = args.rows, args.runs
    counts = table_counts(n)
    print("\n== %s: %d rows (%s)" % (bench.backend, n, ", ".join("%s %d" % kv for kv in counts.items())), flush=True)
    src = bench.instance("src")
    char_bool = src.db._adapter.dialect.types["boolean"].upper().startswith("CHAR")
    gen = Generator(n, char_bool=char_bool)
    rows = {t: list(gen.rows(t, list(src.db[t].fields))) for t in src.tables()}
    secs = src.load(gen, rows)
    print("  source filled in %.1fs (raw executemany, triggers on)" % secs, flush=True)

    # Each figure and its baselines are measured in turns (A B C, A B C, ...), not one after the
    # other: this machine's speed drifts by a quarter over minutes (shared cores, CPU steal), which
    # would move a ratio of figures taken minutes apart more than any change of the engine does.
    sqlite = bench.backend == "sqlite"  # the targets: SQLite, and the import on PostgreSQL

    # 1. export, in turns with pydal's export
    f_engine, f_pydal = files("engine-%d.csv" % n), files("pydal-%d.csv" % n)
    t_exp, t_pexp = interleaved(runs, Measure(lambda: engine_export(src, f_engine)),
                                Measure(lambda: pydal_export(src, f_pydal)))
    pydal_exp = n / t_pexp
    bench.record("pydal export_to_csv_file", n, pydal_exp, runs)
    bench.record("1. full export", n, n / t_exp, runs, baseline=("pydal export", pydal_exp), target=10 if sqlite else None)

    # pydal's importer: one SELECT per row, minutes at 100,000 rows: on a smaller dataset if asked
    nb = min(n, args.baseline_rows)
    bsrc = src
    if nb < n:
        bsrc = bench.instance("pydal-src")
        bsrc.load(Generator(nb, char_bool=char_bool))
        f_pydal = files("pydal-%d.csv" % nb)
        pydal_export(bsrc, f_pydal)

    # 2. merge import into an empty db, in turns with the raw-insert floor (the same rows, one
    # executemany per table and chunk, no triggers) and pydal's import into an empty db
    last = {}  # the newest database of each kind: the re-syncs below run on them

    def fresh(kind, make=None):
        def setup():
            if kind in last:
                last.pop(kind).close()
            last[kind] = inst = (make or (lambda: bench.instance(kind)))()
            return inst
        return setup

    floor_setup, floor_teardown, floor_note = floor_target(bench, src, files)
    measures = [Measure(lambda target: target.load(None, rows), floor_setup, floor_teardown),
                Measure(lambda inst: engine_import(inst, f_engine), fresh("dst")),
                Measure(lambda inst: pydal_import(inst, f_pydal), fresh("pydal-dst"))]
    if sqlite:
        # what the app's own database allows: foreign keys checked, the UNIQUE uuid index, the change
        # triggers present and standing aside (the merge itself drops a table's insert/update
        # triggers for the length of a batch: see changes.bulk_begin)
        measures.append(Measure(lambda inst: inst.load(None, rows), lambda: app_floor(bench), lambda inst: inst.close()))
    times = interleaved(runs, *measures)
    floor, imp, pydal_imp = n / times[0], n / times[1], nb / times[2]
    bench.record("raw executemany insert (floor)", n, floor, runs, note=floor_note)
    if sqlite:
        bench.record("raw executemany insert into the app's database", n, n / times[3], runs,
                     note="foreign keys on, the UNIQUE uuid index, triggers present with the bulk marker set")
    bench.record("pydal import_from_csv_file, empty db", nb, pydal_imp, runs)
    target_x = 20 if bench.backend == "postgres" else 15
    bench.record("2. merge import, empty db", n, imp, runs, baseline=("pydal import", pydal_imp), target=target_x)
    bench.record("2. merge import, empty db (vs floor)", n, imp, runs, baseline=("raw executemany", floor),
                 target=0.25 if sqlite else None)

    # 3. re-sync of the same file, in turns with pydal's re-import of its own; when pydal works on
    # a smaller dataset, the engine's re-sync of that same dataset too (like for like: a smaller
    # database is a faster one for both)
    dst = last.pop("dst")
    measures = [Measure(lambda: engine_import(dst, f_engine)),
                Measure(lambda: pydal_import(last["pydal-dst"], f_pydal))]
    if bsrc is not src:
        f_small, small = files("engine-%d.csv" % nb), bench.instance("dst-small")
        engine_export(bsrc, f_small)
        engine_import(small, f_small)
        measures.append(Measure(lambda: engine_import(small, f_small)))
    times = interleaved(runs, *measures)
    pydal_reimp = nb / times[1]
    bench.record("pydal import_from_csv_file, full db (re-import)", nb, pydal_reimp, runs)
    bench.record("3. re-sync, unchanged file", n, n / times[0], runs, baseline=("pydal re-import", pydal_reimp),
                 target=30 if sqlite else None)
    if bsrc is not src:
        bench.record("3. re-sync, unchanged file, pydal's dataset", nb, nb / times[2], runs,
                     baseline=("pydal re-import", pydal_reimp))
        small.close()
        bsrc.close()
    last.pop("pydal-dst").close()

    # 4. 10% changed on both sides: the source's full export into a copy of dst edited locally
    edit_tenth(src, "a", counts)
    f_conf = files("conflicts-%d.csv" % n)
    engine_export(src, f_conf)

    def conflict_setup():
        inst = bench.instance("conflict")
        engine_import(inst, f_engine)
        edit_tenth(inst, "b", counts)
        return inst

    report = {}
    t_conf = median_time(lambda inst: report.update(r=engine_import(inst, f_conf)), runs, conflict_setup,
                            lambda inst: inst.close())
    totals = report["r"].totals()
    bench.record("4. 10% changed on both sides", n, n / t_conf, runs, baseline=("pydal re-import", pydal_reimp),
                 note="conflicts %d, unchanged %d" % (totals["conflicts"], totals["unchanged"]))

    # 5. incremental: catch up (the conflict edits), then rounds of 100 changes
    incremental(bench, src, dst, counts, n, runs, files)

    # 6. memory at N, each operation in a process of its own
    rss(bench, src, n, files)
    src.close()
    dst.close()

    if args.big_rows:
        big_phase(bench, args, files, char_bool)


def incremental(bench, src, dst, counts, n, runs, files):
    """Rounds of: 100 changes at the source, export since the last checkpoint, import at the destination."""
    path = files("incremental-%d.csv" % n)
    until = engine_export(src, path, since=0)["until"]  # a full export once: dst has everything
    engine_import(dst, path)
    times, carried = [], []
    for round_no in range(max(runs, 3)):
        edit_hundred(src, counts, round_no)
        t0 = time.perf_counter()
        result = engine_export(src, path, since=until)
        report = engine_import(dst, path)
        times.append(time.perf_counter() - t0)
        until = result["until"]
        carried.append(sum(v for k, v in result["tables"].items() if k != "tombstones"))
        assert report.totals()["updated"] == carried[-1], (report.totals(), carried[-1])
    bench.record("5. incremental sync of 100 changes (export + import)", n, statistics.median(times), len(times),
                 target=1.0, unit="s", note="records carried: %s" % sorted(set(carried)))


def rss(bench, src, n, files):
    """Peak RSS of an export and of an import of n rows, each in a fresh process."""
    path = files("rss-%d.csv" % n)
    out = worker(bench, "export", src, path)
    bench.record("6. peak RSS, export", n, out["peak_kb"] / MB, 1, target=200, unit="MB",
                 note="after loading the app %.0f MB; %.1fs" % (out["base_kb"] / MB, out["seconds"]))
    dst = bench.instance("rss-dst")
    out = worker(bench, "import", dst, path)
    bench.record("6. peak RSS, import", n, out["peak_kb"] / MB, 1, target=200, unit="MB",
                 note="after loading the app %.0f MB; %.1fs" % (out["base_kb"] / MB, out["seconds"]))
    dst.close()
    os.remove(path)


def big_phase(bench, args, files, char_bool):
    """M rows (1,000,000): memory of export and import, and the incremental sync at that size."""
    m = args.big_rows
    counts = table_counts(m)
    print("== %s: big phase, %d rows" % (bench.backend, m), flush=True)
    src = bench.instance("big-src")
    secs = src.load(Generator(m, seed=7, char_bool=char_bool))
    print("  big source filled in %.1fs" % secs, flush=True)
    path = files("big-%d.csv" % m)
    out = worker(bench, "export", src, path)
    until = out["until"]
    bench.record("6. peak RSS, export", m, out["peak_kb"] / MB, 1, target=200, unit="MB",
                 note="after loading the app %.0f MB; %.1fs" % (out["base_kb"] / MB, out["seconds"]))
    bench.record("1. full export (big)", m, m / out["seconds"], 1, note="in the RSS subprocess")
    dst = bench.instance("big-dst")
    out = worker(bench, "import", dst, path)
    bench.record("6. peak RSS, import", m, out["peak_kb"] / MB, 1, target=200, unit="MB",
                 note="after loading the app %.0f MB; %.1fs" % (out["base_kb"] / MB, out["seconds"]))
    bench.record("2. merge import, empty db (big)", m, m / out["seconds"], 1, note="in the RSS subprocess")
    os.remove(path)
    incremental_big(bench, src, dst, counts, m, files, until)
    src.close()
    dst.close()


def incremental_big(bench, src, dst, counts, m, files, until):
    path = files("incremental-%d.csv" % m)
    times = []
    for round_no in range(3):
        edit_hundred(src, counts, 100 + round_no)
        t0 = time.perf_counter()
        result = engine_export(src, path, since=until)
        engine_import(dst, path)
        times.append(time.perf_counter() - t0)
        until = result["until"]
    bench.record("5. incremental sync of 100 changes (export + import)", m, statistics.median(times), len(times),
                 target=1.0, unit="s")


def sqlite_utils_baseline(bench, args, files):
    """sqlite-utils upsert_all by uuid into a plain SQLite file: empty, then full (if installed)."""
    try:
        import sqlite_utils
    except ImportError:
        print("  sqlite-utils not installed (pip install -r tests/bench/requirements.txt): skipped")
        return
    n = min(args.rows, args.baseline_rows * 4)
    gen = Generator(n)
    data = {}
    for table, _ in SHARES:
        data[table] = [{k: v for k, v in r.items() if k != "id"} for r in gen.records(table)]

    def fresh():
        path = files("sqlite-utils.db")
        if os.path.exists(path):
            os.remove(path)
        return sqlite_utils.Database(path)

    def upsert(db):
        for table, rows in data.items():
            db[table].upsert_all(rows, pk="uuid", batch_size=1000)

    holder = {}

    def setup():
        holder["db"] = db = fresh()
        return db

    t_empty = median_time(upsert, args.runs, setup)
    t_full = median_time(lambda: upsert(holder["db"]), args.runs)
    bench.record("sqlite-utils upsert_all, empty db", n, n / t_empty, args.runs, note="same rows, pk uuid")
    bench.record("sqlite-utils upsert_all, full db", n, n / t_full, args.runs, note="same rows, pk uuid")


# ----------------------------------------------------------- the subprocess


def worker(bench, op, inst, path):
    """Run one export or import in a fresh process; its peak RSS is its own."""
    inst.db.commit()
    cmd = [sys.executable, os.path.abspath(__file__), "--worker", op, "--folder", inst.folder, "--uri", inst.uri,
           "--file", path]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError("worker %s failed:\n%s" % (op, proc.stderr[-3000:]))
    return json.loads(proc.stdout.strip().splitlines()[-1])


def vm_hwm_kb():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def worker_main(args):
    os.environ["EDEN_DB_URI"] = args.uri
    os.environ["EDEN_DB_POOL_SIZE"] = "0"
    eden.enter(args.folder, "worker")
    env = eden.app_env(args.folder)
    inst = type("Inst", (), {})()
    inst.db, inst.settings = env["db"], env["plugin_sync_settings"]
    base = vm_hwm_kb()
    t0 = time.perf_counter()
    out = {}
    if args.worker == "export":
        result = engine_export(inst, args.file)
        out["until"] = result["until"]
    else:
        engine_import(inst, args.file)
    out.update(seconds=time.perf_counter() - t0, base_kb=base, peak_kb=vm_hwm_kb())
    inst.db.close()
    print(json.dumps(out))


# ----------------------------------------------------------------- reporting


def _fmt_value(value, unit):
    if unit == "rows/s":
        return "{:,.0f} rows/s".format(value)
    if unit == "s":
        return "%.3f s" % value
    return "%.0f %s" % (value, unit)


def verdict(r):
    """(ratio text, target text, pass/fail) of one result."""
    value, target, baseline = r["value"], r["target"], r["baseline"]
    if r["unit"] in ("s", "MB"):
        if target is None:
            return "", "", ""
        return "", "< %s %s" % (target, r["unit"]), "pass" if value < target else "FAIL"
    if baseline is None:
        return "", "", ""
    ratio = value / baseline[1]
    text = "%.1fx %s" % (ratio, baseline[0]) if ratio >= 1 else "%.2fx %s" % (ratio, baseline[0])
    if target is None:
        return text, "", ""
    return text, ">= %sx" % target, "pass" if ratio >= target else "FAIL"


def table(results):
    lines = ["| backend | scenario | rows | result | ratio to baseline | target | |",
             "|---|---|---:|---:|---|---|---|"]
    for r in results:
        ratio, target, ok = verdict(r)
        note = " (%s)" % r["note"] if r["note"] else ""
        lines.append("| %s | %s%s | {:,} | %s | %s | %s | %s |".format(r["rows"])
                     % (r["backend"], r["scenario"], note, _fmt_value(r["value"], r["unit"]), ratio, target, ok))
    return "\n".join(lines)


# ---------------------------------------------------------------------- main


def parse(argv):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rows", type=int, default=100000, help="N: rows of the throughput scenarios (default 100,000)")
    p.add_argument("--big-rows", type=int, default=1000000,
                   help="M: rows of the memory and incremental figures (default 1,000,000; 0 to skip)")
    p.add_argument("--baseline-rows", type=int, default=20000,
                   help="pydal's importer runs on at most this many rows (reported as rows/s)")
    p.add_argument("--backend", choices=("sqlite", "postgres", "both"), default="both")
    p.add_argument("--runs", type=int, default=3, help="runs per throughput figure (the median is reported)")
    p.add_argument("--quick", action="store_true", help="a smoke run: 5,000 rows, 20,000 big, 3 runs")
    p.add_argument("--json", help="also write the results to this file")
    p.add_argument("--keep", action="store_true", help="keep the temp folder (databases, files)")
    p.add_argument("--strict", action="store_true", help="exit with status 1 when a target is missed")
    p.add_argument("--worker", choices=("export", "import"), help=argparse.SUPPRESS)
    p.add_argument("--folder", help=argparse.SUPPRESS)
    p.add_argument("--uri", help=argparse.SUPPRESS)
    p.add_argument("--file", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.quick:
        args.rows, args.big_rows, args.baseline_rows = 5000, 20000, 5000
    return args


def main(argv=None):
    args = parse(argv)
    if args.worker:
        return worker_main(args)
    base = tempfile.mkdtemp(prefix="eden-bench-")
    os.chmod(base, 0o755)
    os.environ["EDEN_DB_POOL_SIZE"] = "0"
    eden.enter(minihost.runtime_folder("bench", base), "bench")
    data_dir = os.path.join(base, "files")
    os.makedirs(data_dir)

    def files(name):
        return os.path.join(data_dir, name)

    backends = ("sqlite", "postgres") if args.backend == "both" else (args.backend,)
    results, started = [], time.time()
    try:
        for backend in backends:
            server = PostgresServer().start() if backend == "postgres" else None
            try:
                bench = Bench(backend, base, server)
                run_backend(bench, args, files)
                if backend == "sqlite":
                    sqlite_utils_baseline(bench, args, files)
                results += bench.results
            finally:
                if server:
                    server.stop()
    finally:
        if not args.keep:
            shutil.rmtree(base, ignore_errors=True)
    print("\n" + table(results))
    print("\nMedians of %d runs (big phase: 1 run, incremental: 3 rounds); pydal's importer measured on %s rows "
          "(rows/s); PostgreSQL runs with fsync off like the test server; %.0fs in all."
          % (args.runs, "{:,}".format(min(args.rows, args.baseline_rows)), time.time() - started))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(dict(args=vars(args), results=results), f, indent=2, default=str)
    failed = [r for r in results if verdict(r)[2] == "FAIL"]
    return 1 if failed and args.strict else 0


if __name__ == "__main__":
    sys.exit(main())
