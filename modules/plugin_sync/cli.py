"""The command line: export, import, status, for cron jobs and support staff.

Run through the launcher, against an instance's configured database:

    scripts/eden.py sync --instance a export -o hq.csv.gz --format gz
    scripts/eden.py sync --instance b import hq.csv.gz --dry-run --json

Only this layer turns exceptions into messages and exit codes: 0 done,
1 the sync failed (the database is unchanged; the message says table, line
and column), 2 bad usage.
"""
import argparse
import json
import sys

from .errors import SyncError
from .fileio import FORMATS, export_to, import_from
from .peers import this_instance
from .tables import excluded_tables, is_never_synced, synced_tables

COMMANDS = {}


def command(name, help):
    """Register a subcommand: `fn(db, settings, args)` plus `fn.arguments(parser)`."""

    def wrap(fn):
        COMMANDS[name] = (fn, help)
        return fn

    return wrap


def build_parser():
    parser = argparse.ArgumentParser(prog="eden.py sync", description="plugin_sync: export, import and sync data.")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, (fn, help) in COMMANDS.items():
        p = sub.add_parser(name, help=help, description=help)
        getattr(fn, "arguments", lambda p: None)(p)
    return parser


def main(db, settings, argv=None, stdout=None, stderr=None):
    stdout, stderr = stdout or sys.stdout, stderr or sys.stderr
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:
        return 2 if e.code else 0
    fn = COMMANDS[args.command][0]
    try:
        return fn(db, settings, args, stdout) or 0
    except SyncError as e:
        db.rollback()
        if getattr(args, "json", False):
            stdout.write(json.dumps(dict(ok=False, error=e.as_dict()), indent=2) + "\n")
        stderr.write("error: %s\n" % e.describe())
        return 1


@command("export", "Write the synced tables (or --tables) as pydal CSV, gzip'd CSV or a zip bundle with uploads.")
def cmd_export(db, settings, args, stdout):
    tables = [t for t in (args.tables or "").split(",") if t] or None
    if args.output in (None, "-"):
        out = stdout.buffer if hasattr(stdout, "buffer") else stdout
        counts = export_to(db, settings, out, fmt=args.format, tables=tables, since=args.since)
        out.flush()
    else:
        with open(args.output, "wb") as out:
            counts = export_to(db, settings, out, fmt=args.format, tables=tables, since=args.since)
        total = sum(v for k, v in counts["tables"].items() if k != "tombstones")
        sys.stderr.write("exported %d records from %d tables to %s (checkpoint %s)\n"
                         % (total, len(counts["tables"]) - 1, args.output, counts["until"]))


def _export_args(p):
    p.add_argument("-o", "--output", help="file to write (default: standard output)")
    p.add_argument("--format", choices=FORMATS, default="csv", help="csv (default), gz, or zip (with uploaded files)")
    p.add_argument("--tables", help="comma-separated subset of the synced tables")
    p.add_argument("--since", type=int, help="only records changed since this checkpoint (incremental)")


cmd_export.arguments = _export_args


@command("import", "Merge a file (csv, gz or zip; '-' for standard input) into this instance, in one transaction.")
def cmd_import(db, settings, args, stdout):
    source = sys.stdin.buffer if args.file == "-" else args.file
    report = import_from(db, settings, source, dry_run=args.dry_run, name=args.file)
    if args.json:
        stdout.write(json.dumps(report.as_dict(), indent=2, default=str) + "\n")
        return
    stdout.write(report.summary() + "\n")
    for name, counts in report.tables.items():
        shown = ", ".join("%s %d" % (k, v) for k, v in counts.items() if v)
        stdout.write("  %-20s %s\n" % (name, shown or "nothing"))
    for w in report.warnings[:20]:
        where = ", ".join("%s %s" % (k, w[k]) for k in ("table", "line", "column") if w.get(k) is not None)
        stdout.write("  warning: %s (%s)\n" % (w["message"], where))
    if report.warning_count > 20:
        stdout.write("  ... %d warnings in all (--json shows the first 200)\n" % report.warning_count)
    for note in report.notes:
        stdout.write("  note: %s\n" % note)


def _import_args(p):
    p.add_argument("file", help="the file to import, or - for standard input")
    p.add_argument("--dry-run", action="store_true", help="report what would change, write nothing")
    p.add_argument("--json", action="store_true", help="print the full report as JSON")


cmd_import.arguments = _import_args


@command("status", "Show this instance's identity, what syncs, and the known peers.")
def cmd_status(db, settings, args, stdout):
    me = this_instance(db)
    status = dict(
        base_uuid=me.base_uuid, owner=me.owner, contact=me.contact,
        synced_tables={t: db(db[t]).count() for t in synced_tables(db, settings)},
        not_synced=sorted(t for t in db.tables if is_never_synced(t) or t in excluded_tables(settings)),
        peers=[dict(base_uuid=p.base_uuid, owner=p.owner, url=p.url, last_update=str(p.last_update or ""),
                    sync_count=p.sync_count) for p in db(db.sync_instance).select(orderby=db.sync_instance.id)],
    )
    if args.json:
        stdout.write(json.dumps(status, indent=2) + "\n")
        return
    stdout.write("instance %s (%s)\n" % (status["base_uuid"], status["owner"] or "no owner set"))
    for t, n in status["synced_tables"].items():
        stdout.write("  syncs %-22s %d records\n" % (t, n))
    stdout.write("  never/not synced: %s\n" % ", ".join(status["not_synced"]))
    for p in status["peers"]:
        stdout.write("  peer %s %s %s last %s, %s syncs\n" % (p["base_uuid"], p["owner"] or "", p["url"] or "",
                                                           p["last_update"] or "never", p["sync_count"] or 0))


cmd_status.arguments = lambda p: p.add_argument("--json", action="store_true")
