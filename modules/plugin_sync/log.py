"""The replication log: one plugin_sync_log row per run, whatever started it."""
import json
import time

from . import dialect, progress
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
        progress.phase(self.operation)
        return self

    def __exit__(self, kind, exc, tb):
        if exc is not None:
            self.failed = True  # whatever the exception says: Ctrl-C and MemoryError have no message
            self.db.rollback()
            self.error = getattr(exc, "describe", lambda: str(exc))() or type(exc).__name__
        if not self.dry_run and type(exc).__name__ != "Busy":  # Busy: the log is locked by the other import too
            write(self.db, self)
        return False


LOG_WAIT = 2  # seconds a log row waits for SQLite's write lock (an import holding it) before it is left out


def write(db, run):
    """The run's log row.  SQLite: while another import holds the write lock, an export's (or a page
    view's) row waits LOG_WAIT s and is then left out rather than failing the run it records."""
    briefly(db, lambda: _write(db, run))


def briefly(db, write_fn, wait=LOG_WAIT):
    """Run `write_fn`; on SQLite wait at most `wait` s for the write lock.  True if it was written.

    A reader's small bookkeeping write (a log row, the export's mark) must not make the
    reader wait for a long import, nor fail it: it is left out (rolled back) instead.
    """
    if not dialect.is_sqlite(db):
        write_fn()
        return True
    cur = db._adapter.connection.cursor()
    before = cur.execute("PRAGMA busy_timeout").fetchone()[0]
    cur.execute("PRAGMA busy_timeout = %d" % (wait * 1000))
    try:
        write_fn()
        return True
    except Exception as e:
        if "locked" not in str(e) and "busy" not in str(e):
            raise
        db.rollback()
        return False
    finally:
        cur.execute("PRAGMA busy_timeout = %d" % before)


def _write(db, run):
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


def logged_report(text):
    """A log row's JSON report as a dict (for the report table), or None when it is not one."""
    try:
        report = json.loads(text or "")
    except ValueError:
        return None
    return report if isinstance(report, dict) else None


def pretty(text):
    """A log row's report indented for people (as it is when it is not JSON)."""
    if not text:
        return ""
    try:
        return json.dumps(json.loads(text), indent=2, sort_keys=False, ensure_ascii=False)
    except ValueError:
        return text
