"""The replication log: one plugin_sync_log row per run, whatever started it."""
import json
import time

from .peers import utcnow


class Run:
    """Times a run and writes its log row: `with Run(db, "import", source=...) as run: run.report = ...`.

    The row is written after the run's own transaction ended (committed or
    rolled back), so a failed run is logged too, and commits only itself.
    """

    def __init__(self, db, operation, peer=None, source=None, dry_run=False):
        self.db, self.operation, self.peer, self.source, self.dry_run = db, operation, peer, source, dry_run
        self.report, self.error, self.counts, self.failed = None, None, {}, False

    def __enter__(self):
        self.started, self.t0 = utcnow(), time.time()
        return self

    def __exit__(self, kind, exc, tb):
        if exc is not None:
            self.failed = True  # whatever the exception says: Ctrl-C and MemoryError have no message
            self.db.rollback()
            self.error = getattr(exc, "describe", lambda: str(exc))() or type(exc).__name__
        if not self.dry_run:
            write(self.db, self)
        return False


def write(db, run):
    report = run.report.as_dict() if run.report is not None else dict(run.counts)
    totals = report.get("totals", report)
    db.plugin_sync_log.insert(
        started_on=run.started,
        duration=round(time.time() - run.t0, 3),
        operation=run.operation,
        peer=run.peer,
        source=(run.source or "")[:255],
        dry_run=run.dry_run,
        docs_read=totals.get("docs_read", 0),
        docs_written=totals.get("docs_written", 0),
        doc_write_failures=1 if run.failed or run.error else 0,
        conflicts=totals.get("conflicts", 0),
        result="error" if run.failed or run.error else "ok",
        error=run.error,
        report=json.dumps(report, default=str),
    )
    db.commit()
