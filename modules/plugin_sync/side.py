"""Connections of their own, for what other nodes must see while this one's transaction runs (issue 23).

A merge is one transaction: what it writes is invisible to every other
connection until its commit.  A job's progress and the heartbeats that keep
a lease (a peer's lock, a running job) alive must be seen at once by every
app server and worker over the same database, so they are written through a
connection of their own, in a thread of their own (`Ticker`), each write
committed by itself.

PostgreSQL: that connection is to the same database (its writers lock rows:
a heartbeat never waits for a merge).  SQLite holds one writer for the whole
database, the merge for its whole transaction, so there the progress goes to
a small database file beside the main one (`<database>-plugin_sync.sqlite`):
an SQLite database is one machine's anyway, and a progress write then never
waits for the merge.
"""
import threading

from pydal import DAL

from . import dialect

PROGRESS = "plugin_sync_progress"
SIDE_SUFFIX = "-plugin_sync.sqlite"  # SQLite: the progress database beside the main file
# the progress table's columns on SQLite's side file (PostgreSQL: the model defines it in the database)
_SQLITE_PROGRESS = ("CREATE TABLE IF NOT EXISTS %s (id INTEGER PRIMARY KEY AUTOINCREMENT, job INTEGER UNIQUE, "
                    "state TEXT, beat DOUBLE)" % PROGRESS)


def same_database(db):
    """A DAL of its own on `db`'s database (no tables defined: raw SQL only); close it when done."""
    return DAL(db._uri, folder=db._folder, pool_size=0, migrate_enabled=False, check_reserved=None,
               adapter_args=getattr(db._adapter, "adapter_args", None) or {},
               driver_args=getattr(db._adapter, "driver_args", None) or {})


def side_path(db):
    """SQLite: the path of the progress database beside the main file."""
    return db._adapter.dbpath + SIDE_SUFFIX


def progress_database(db):
    """Where job progress is written and read: a DAL of its own (see the module's docstring)."""
    if not dialect.is_sqlite(db):
        return same_database(db)
    side = DAL("sqlite://" + side_path(db), pool_size=0, migrate_enabled=False, check_reserved=None)
    side.executesql("PRAGMA busy_timeout = 5000")
    # progress is disposable (the next write says it again): no waiting for the disk, readers never blocked
    side.executesql("PRAGMA synchronous = OFF")
    if str(side.executesql("PRAGMA journal_mode")[0][0]).lower() != "wal":
        side.executesql("PRAGMA journal_mode = WAL")
    side.executesql(_SQLITE_PROGRESS)
    side.commit()
    return side


def reading_progress(db, fn):
    """`fn(pdb)` on the database holding the progress: `db` itself on PostgreSQL (a page reads outside any
    merge), SQLite's side file otherwise (opened for the call: a file open, cheap)."""
    if not dialect.is_sqlite(db):
        return fn(db)
    side = progress_database(db)
    try:
        return fn(side)
    finally:
        side.close()


def write(db, sql, placeholders):
    """Run a raw INSERT/UPDATE/DELETE on `db`; the rows it changed (executesql's fetch after it loses that)."""
    db._adapter.execute(sql, placeholders)
    return db._adapter.cursor.rowcount


class Ticker(threading.Thread):
    """Calls `tick(conn)` every `every` seconds in a thread of its own, on a connection `opener()` makes there
    at the first tick (pydal's connections belong to the thread that made them; a run shorter than one
    period opens none), and (`final`) once more at `stop()`.

    A failed tick (the database busy, the network down) is rolled back and tried again at the next one:
    what it writes is a heartbeat, the next one says the same.
    """

    def __init__(self, opener, tick, every, name="plugin_sync-ticker", final=True):
        super().__init__(daemon=True, name=name)
        self.opener, self.tick, self.every, self.final = opener, tick, every, final
        self.stopping = threading.Event()
        self.error = None

    def run(self):
        conn = None
        try:
            while not self.stopping.wait(self.every):
                conn = self._once(conn)
            if self.final:
                conn = self._once(conn)  # the last word, at stop()
        finally:
            if conn is not None:
                try:
                    conn.close()
                except Exception:
                    pass

    def _once(self, conn):
        try:
            if conn is None:
                conn = self.opener()
            self.tick(conn)
            conn.commit()
        except Exception as e:
            self.error = e
            if conn is not None:
                try:
                    conn.rollback()
                except Exception:
                    pass
        return conn

    def start(self):
        super().start()
        return self

    def stop(self):
        """The last tick, then the connection closed; returns when the thread has ended."""
        self.stopping.set()
        if self.is_alive() and threading.current_thread() is not self:
            self.join(60)
