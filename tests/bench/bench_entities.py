#!/usr/bin/env python
"""What Eden's data model costs the merge (issue 12): a merge with entities.Hooks against one without.

    .venv/bin/python tests/bench/bench_entities.py [--people N] [--runs R] [--backend sqlite|postgres|both]

Not a timed test: a script that prints a markdown table.  On real Eden (the tests'
prepared template, tests/conftest.py), instance A holds N/20 organisations, N/10
offices, N persons each with a contact and an address, a location hierarchy; its
full export is merged into instance B as a dry run (every write made, then rolled
back: the same work each run), R times with Eden's data model attached (super
records made and linked per batch, realms, paths, and the affiliations: what
issue 12 adds; the affiliations of new sites set-based, affiliations.affiliate_sites,
Eden's own per-record functions for the rest), R times without the affiliations,
and R times without any of it (the plugin before issue 12: super keys and owners
stay home).  Medians.
"""
import argparse
import copy
import io
import os
import statistics
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
import conftest  # noqa: E402  the harness: Eden's prepared template, runtime folders, PostgreSQL

from applications.eden.modules.plugin_sync import entities, fileio  # noqa: E402


class Request:
    """What conftest's helpers ask of pytest's request: the session's PostgreSQL server."""

    server = None

    def getfixturevalue(self, name):
        if Request.server is None:
            Request.server = conftest.PostgresServer().start()
        return Request.server


def fill(a, people):
    """A's records, inserted in bulk; their super records made by the same set-based code (entities)."""
    db, model = a["db"], entities.model(a["db"])
    uuids = {}

    def insert(tablename, rows):
        table = db[tablename]
        ids = table.bulk_insert(rows)
        uuids[tablename] = [r.uuid for r in db(table.id.belongs(ids)).select(table.uuid)]
        if tablename in model.supers:
            entities.link_supers(db, tablename, model.supers[tablename], uuids[tablename])
        return ids

    country = insert("gis_location", [dict(name="Benchland", level="L0")])[0]
    regions = insert("gis_location", [dict(name="Region %d" % k, level="L1", parent=country) for k in range(20)])
    places = insert("gis_location", [dict(name="Place %d" % k, level="L2", parent=regions[k % 20])
                                     for k in range(max(20, people // 50))])
    orgs = insert("org_organisation", [dict(name="Org %d" % k) for k in range(max(1, people // 20))])
    insert("org_office", [dict(name="Office %d" % k, organisation_id=orgs[k % len(orgs)],
                               location_id=places[k % len(places)]) for k in range(max(1, people // 10))])
    persons = insert("pr_person", [dict(first_name="P%d" % k, last_name="Bench") for k in range(people)])
    pe = {r.id: r.pe_id for r in db(db.pr_person.id.belongs(persons)).select(db.pr_person.id, db.pr_person.pe_id)}
    insert("pr_contact", [dict(pe_id=pe[p], contact_method="EMAIL", value="p%d@example.org" % k)
                          for k, p in enumerate(persons)])
    insert("pr_address", [dict(pe_id=pe[p], type=1, location_id=places[k % len(places)])
                          for k, p in enumerate(persons)])
    db.commit()


def timed_merge(b, data, model):
    """Seconds of one dry-run merge of `data` into B (rolled back), with `model` attached (None: without)."""
    db = b["db"]
    entities.attach(db, model)
    started = time.perf_counter()
    report = fileio.import_from(db, b["plugin_sync_settings"], data, dry_run=True, name="bench.csv")
    seconds = time.perf_counter() - started
    db.rollback()
    return seconds, report.totals()["created"]


def run(backend, people, runs):
    made = []
    try:
        a = load(backend, "a", made)
        fill(a, people)
        files = {}
        for kind, m in (("with", entities.model(a["db"])), ("without", None)):  # each side's own file format
            entities.attach(a["db"], m)
            out = io.BytesIO()
            fileio.export_to(a["db"], a["plugin_sync_settings"], out, fmt="csv", log=False)
            files[kind] = out.getvalue()
        b = load(backend, "b", made)
        model = entities.model(b["db"])
        set_based = copy.copy(model)  # the same without the affiliations
        set_based.after, set_based.upkept = None, set()
        variants = (("with", "with", model), ("set-based", "with", set_based), ("without", "without", None))
        times = {kind: [] for kind, _, _ in variants}
        for _ in range(runs):
            for kind, file_kind, m in variants:
                seconds, created = timed_merge(b, files[file_kind], m)
                times[kind].append(seconds)
        entities.attach(b["db"], model)
        return {k: statistics.median(v) for k, v in times.items()}, created
    finally:
        conftest.close_instances(made)


def load(backend, name, made):
    folder, _ = conftest.new_eden_folder(backend, Request(), name)
    env = conftest.load_eden(folder, name)
    made.append(env)
    return env


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--people", type=int, default=5000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--backend", default="both", choices=("sqlite", "postgres", "both"))
    args = parser.parse_args()
    backends = ("sqlite", "postgres") if args.backend == "both" else (args.backend,)
    print("| backend | records merged | with Eden's data model (s) | of it without affiliations (s) | without (s) "
          "| ratio | ratio without affiliations |")
    print("|---|---|---|---|---|---|---|")
    try:
        for backend in backends:
            times, created = run(backend, args.people, args.runs)
            print("| %s | %d | %.2f | %.2f | %.2f | %.2f | %.2f |" % (
                backend, created, times["with"], times["set-based"], times["without"],
                times["with"] / times["without"], times["set-based"] / times["without"]), flush=True)
    finally:
        if Request.server is not None:
            Request.server.stop()


if __name__ == "__main__":
    main()
