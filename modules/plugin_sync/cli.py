"""The command line: export, import, status, for cron jobs and support staff.

Run through the launcher, against an instance's configured database:

    scripts/eden.py sync --instance a export -o hq.csv.gz --format gz
    scripts/eden.py sync --instance b import hq.csv.gz --dry-run --json

Only this layer turns exceptions into messages and exit codes: 0 done,
1 the sync failed (the database is unchanged; the message says table, line
and column), 2 bad usage.
"""
import argparse
import os
import json
import sys

from .errors import SyncError
from .fileio import FORMATS, export_to, import_from
from .peers import this_instance
from .tables import exclusion, synced_tables

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


PATH_ARGUMENTS = ("output", "file")  # file names given by the user: relative to where the command was run


def main(db, settings, argv=None, stdout=None, stderr=None, cwd=None):
    """Run one sub-command; `cwd`: the folder relative paths mean (the launcher changes directory)."""
    stdout, stderr = stdout or sys.stdout, stderr or sys.stderr
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:
        return 2 if e.code else 0
    for name in PATH_ARGUMENTS:
        value = getattr(args, name, None)
        if cwd and value and value != "-" and not os.path.isabs(value):
            setattr(args, name, os.path.join(cwd, os.path.expanduser(value)))
    fn = COMMANDS[args.command][0]
    try:
        return fn(db, settings, args, stdout) or 0
    except SyncError as e:
        db.rollback()
        if getattr(args, "json", False):
            stdout.write(json.dumps(dict(ok=False, error=e.as_dict()), indent=2) + "\n")
        stderr.write("error: %s\n" % e.describe())
        return 1
    except ValueError as e:  # bad usage the parser cannot see: an unknown account, a refused password
        db.rollback()
        stderr.write("error: %s\n" % e)
        return 2
    except (Exception, KeyboardInterrupt) as e:  # unforeseen, or Ctrl-C: one line, never a traceback
        db.rollback()
        what = "interrupted" if isinstance(e, KeyboardInterrupt) else "%s: %s" % (
            type(e).__name__, (str(e).splitlines() or ["no message"])[0])
        if getattr(args, "json", False):
            stdout.write(json.dumps(dict(ok=False, error=dict(error=type(e).__name__, message=what))) + "\n")
        stderr.write("error: %s (nothing was changed)\n" % what)
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
    for warning in counts.get("warnings") or ():  # e.g. an upload value naming no file in the uploads
        sys.stderr.write("warning: %s\n" % warning)


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
        not_synced={t: "%s: %s" % exclusion(db, settings, t) for t in sorted(db.tables) if exclusion(db, settings, t)},
        peers=[dict(base_uuid=p.base_uuid, owner=p.owner, url=p.url, last_update=str(p.last_update or ""),
                    sync_count=p.sync_count) for p in db(db.sync_instance).select(orderby=db.sync_instance.id)],
    )
    if args.json:
        stdout.write(json.dumps(status, indent=2) + "\n")
        return
    stdout.write("instance %s (%s)\n" % (status["base_uuid"], status["owner"] or "no owner set"))
    for t, n in status["synced_tables"].items():
        stdout.write("  syncs %-22s %d records\n" % (t, n))
    for t, why in status["not_synced"].items():
        stdout.write("  not synced %-17s %s\n" % (t, why))
    for p in status["peers"]:
        stdout.write("  peer %s %s %s last %s, %s syncs\n" % (p["base_uuid"], p["owner"] or "", p["url"] or "",
                                                           p["last_update"] or "never", p["sync_count"] or 0))


cmd_status.arguments = lambda p: p.add_argument("--json", action="store_true")


# -- network sync: peers, register, sync, account (replicate.py) -------------------------


@command("peers", "List the registered peers: url, login, mode, transport, sync interval, checkpoints, clock offset.")
def cmd_peers(db, settings, args, stdout):
    t = db.sync_instance
    rows = db(t).select(orderby=t.id)
    peers = [dict(id=p.id, base_uuid=p.base_uuid, owner=p.owner, url=p.url, username=p.username, mode=p.mode,
                  transport=p.transport, sync_interval=p.sync_interval, checkpoint_received=p.checkpoint_received,
                  checkpoint_sent=p.checkpoint_sent, clock_offset=p.clock_offset,
                  last_update=str(p.last_update or "")) for p in rows]
    if args.json:
        stdout.write(json.dumps(peers, indent=2) + "\n")
        return
    if not peers:
        stdout.write("no peers: register one with `register URL --username U --password P`\n")
    for p in peers:
        stdout.write("%3d %s %s\n    %s as %s, %s over %s, %s; checkpoints received %s, sent %s%s\n" % (
            p["id"], p["base_uuid"], p["owner"] or "", p["url"] or "(file only)", p["username"] or "-",
            p["mode"], p["transport"], "every %s min" % p["sync_interval"] if p["sync_interval"] else "manual",
            p["checkpoint_received"] or 0, p["checkpoint_sent"] or 0,
            "; clock offset %ss" % p["clock_offset"] if p["clock_offset"] is not None else ""))


cmd_peers.arguments = lambda p: p.add_argument("--json", action="store_true")


@command("register", "Register the instance at URL as a peer: fetch its identity, store the login this "
                     "instance uses there.")
def cmd_register(db, settings, args, stdout):
    from .replicate import register_peer

    row = register_peer(db, settings, args.url, args.username, args.password, mode=args.mode,
                        transport=args.transport, sync_interval=args.interval, account=args.account)
    stdout.write("registered %s (%s) at %s, id %d%s\n" % (row.base_uuid, row.owner or "no owner", row.url, row.id,
                                                         "; it logs in here as %s" % args.account if args.account else ""))


def _register_args(p):
    p.add_argument("url", help="the peer's app root, e.g. http://10.0.0.2:8000/eden")
    p.add_argument("--username", required=True, help="account at the peer (in its sync or admin group)")
    p.add_argument("--password", required=True)
    p.add_argument("--mode", choices=("pull", "push", "both"), help="default both")
    p.add_argument("--transport", choices=("http", "xmlrpc"), help="default http")
    p.add_argument("--interval", "--sync-interval", type=int, dest="interval",
                   help="minutes between scheduled syncs (0: manual; the column sync_interval)")
    p.add_argument("--account", help="the account HERE that the peer logs in with (see `account`): bound to it")


cmd_register.arguments = _register_args


@command("sync", "Sync with a peer now (id, base_uuid or owner): pull then push, or --pull / --push only.")
def cmd_sync(db, settings, args, stdout):
    from .replicate import as_dict, summary, sync

    mode = "pull" if args.pull and not args.push else "push" if args.push and not args.pull else None
    results = sync(db, settings, args.peer, mode=mode, batch=args.batch)
    if args.json:
        stdout.write(json.dumps(dict(ok=True, **as_dict(results)), indent=2, default=str) + "\n")
        return
    stdout.write("%s\n" % summary(results))
    for op, result in results.items():
        for w in result.warnings[:20]:
            stdout.write("  %s warning: %s\n" % (op, w["message"]))


def _sync_args(p):
    p.add_argument("peer", help="the peer's id, base_uuid or owner (see `peers`)")
    p.add_argument("--pull", action="store_true", help="only pull the peer's changes")
    p.add_argument("--push", action="store_true", help="only push ours")
    p.add_argument("--batch", type=int, help="records per batch (default: the setting sync_batch; 0: one transfer)")
    p.add_argument("--json", action="store_true", help="print the reports as JSON")


cmd_sync.arguments = _sync_args


@command("account", "Create (or reset) an account that a peer logs in with here: a member of the sync group.")
def cmd_account(db, settings, args, stdout):
    from .accounts import peer_account

    user_id = peer_account(db, settings, args.email, args.password, peer=args.peer)
    stdout.write("account %s (id %d) may now sync with this instance%s\n" % (
        args.email, user_id, ", as instance %s" % args.peer if args.peer else
        " (pull only: bind it with --peer BASE_UUID before it may push)"))


def _account_args(p):
    p.add_argument("email")
    p.add_argument("--password", required=True)
    p.add_argument("--peer", help="base_uuid of the instance that logs in with this account (it may push only "
                                  "that instance's files)")


cmd_account.arguments = _account_args


@command("conflicts", "List the conflicts (unreviewed ones, or --all): the losing versions kept so nothing is lost.")
def cmd_conflicts(db, settings, args, stdout):
    c = db.plugin_sync_conflict
    query = (c.id > 0) if args.all else (c.reviewed != True)  # noqa: E712
    rows = db(query).select(orderby=~c.id)
    found = [dict(id=r.id, table=r.tablename, uuid=r.record_uuid, origin=r.origin, resolution=r.resolution,
                  reason=r.reason, local_modified_on=str(r.local_modified_on or ""),
                  incoming_modified_on=str(r.incoming_modified_on or ""), reviewed=bool(r.reviewed)) for r in rows]
    if args.json:
        stdout.write(json.dumps(found, indent=2) + "\n")
        return
    if not found:
        stdout.write("no %sconflicts\n" % ("" if args.all else "unreviewed "))
    for r in found:
        stdout.write("%4d %s %s: %s (%s), here %s, incoming %s%s\n" % (
            r["id"], r["table"], r["uuid"], r["resolution"].replace("_", " "), r["reason"], r["local_modified_on"] or "-",
            r["incoming_modified_on"] or "-", ", reviewed" if r["reviewed"] else ""))


def _conflicts_arguments(p):
    p.add_argument("--all", action="store_true", help="reviewed ones too")
    p.add_argument("--json", action="store_true")


cmd_conflicts.arguments = _conflicts_arguments


@command("restore", "Write the losing version of conflict ID back as the current record (a new local edit; "
                    "the version it replaces is kept in the conflict list).")
def cmd_restore(db, settings, args, stdout):
    from .restore import restore

    report = restore(db, settings, args.id)
    stdout.write("conflict %d: losing version restored (%d record written)\n" % (args.id, report.totals()["docs_written"]))


cmd_restore.arguments = lambda p: p.add_argument("id", type=int, help="the conflict's id (see `conflicts`)")
