"""Files in and out: CSV, gzip'd CSV or zip bundle; what the page, the CLI and peers call.

`export_to(db, settings, out, ...)` writes a file; `import_from(db, settings,
source, ...)` sniffs its format, merges it in one transaction, commits (or,
for a dry run, does not) and logs the run.  Both return plain dicts.
"""
import io
import os
import tempfile

from .bundle import is_bundle, open_bundle, upload_files, write_bundle
from .csvstream import open_output
from . import progress
from .export import export
from .log import Run, briefly
from .merge import import_and_sync
from .peers import mark_exported

FORMATS = ("csv", "gz", "zip")


def export_to(db, settings, out, fmt="csv", tables=None, since=None, until=None, log=True, echo_of=None,
              peers=None, after=None, limit=None):
    """Write an export to the binary stream `out` in `fmt` (csv, gz or zip); return its counts.

    `peers`: the instances the header may name (export.export); None: every peer.
    `after`, `limit`: one batch of the range (export.export, batches.py)."""
    if fmt not in FORMATS:
        raise ValueError("unknown format %r (use %s)" % (fmt, ", ".join(FORMATS)))
    with Run(db, "export", source=fmt, dry_run=not log) as run:
        if fmt == "zip":
            with tempfile.NamedTemporaryFile(suffix=".csv", delete=False) as tmp:
                text, _ = open_output(tmp)
                counts = export(db, text, settings, tables=tables, since=since, until=until, echo_of=echo_of,
                                peers=peers, after=after, limit=limit)
                text.flush()
                text.detach()
            warnings = counts["warnings"] = []
            try:
                write_bundle(out, tmp.name, upload_files(db, settings, tables, since, counts["until"], warnings,
                                                         counts["parts"]))
            finally:
                os.remove(tmp.name)
        else:
            text, raw = open_output(out, compress=(fmt == "gz"))
            counts = export(db, text, settings, tables=tables, since=since, until=until, echo_of=echo_of,
                            peers=peers, after=after, limit=limit)
            text.flush()
            text.detach()
            if raw is not out:
                raw.close()
        db.commit()  # ends the export's read transaction (server-side cursor) before the mark:
        # PostgreSQL: a write in the REPEATABLE READ snapshot fails ("could not serialize access")
        # when another export marked the row since the snapshot began (a hub's peers pulling at once)
        # at the end: SQLite's write lock is held only for this; while an import holds it, the mark
        # is left out: a peer's later claim to have merged up to this `until` is then capped lower,
        # so our edits since the last mark count as concurrent (conflicts kept), never overwritten
        if not briefly(db, lambda: mark_exported(db, counts["until"])):
            counts.setdefault("warnings", []).append(
                "an import held the database: this export's checkpoint %s was not recorded as handed out "
                "(a peer's claim beyond the last recorded one is treated as concurrent)" % counts["until"])
        run.counts = dict(docs_read=sum(v for k, v in counts["tables"].items() if k != "tombstones"),
                          warnings=counts.get("warnings") or [])
        db.commit()
    return counts


def export_bytes(db, settings, fmt="csv", **kw):
    out = io.BytesIO()
    export_to(db, settings, out, fmt=fmt, **kw)
    return out.getvalue()


def import_from(db, settings, source, dry_run=False, name=None, origin_hint=None, commit=True, sender=None,
                account=None):
    """Merge a file (path, bytes or binary stream; csv, gz or zip) and commit; return the Report.

    `sender`: the base_uuid of the peer that sent the file over the network
    (its account, or the peer we pulled from); the file must then be that
    peer's own (see merge.Merger.read_origin).  None: an administrator's file.
    `account`: the local account that imports (a peer's login here), owner of the records it creates.
    """
    if isinstance(source, (bytes, bytearray)):
        source = io.BytesIO(source)
    elif isinstance(source, str):
        name = name or source
        source = open(source, "rb")
    with Run(db, "import", source=name, dry_run=dry_run) as run:
        files = None
        if is_bundle(_peek(source)):
            source, files = open_bundle(source, settings)
        progress.reading(source)
        run.report = import_and_sync(db, source, settings, dry_run=dry_run, files=files, origin_hint=origin_hint,
                                     sender=sender, account=account)
        if commit and not dry_run:
            db.commit()
        peer = run.report.origin
        run.peer = peer.get("base_uuid") if peer else None
    return run.report


def _peek(stream):
    if hasattr(stream, "peek"):
        return stream.peek(4)[:4]
    pos = stream.tell()
    head = stream.read(4)
    stream.seek(pos)
    return head
