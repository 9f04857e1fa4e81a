"""A dry run on SQLite merges into a copy of the database: the database itself is never write-locked.

SQLite has one write lock per database: an import holds it from its first write
to its commit, and every other writer (an Eden login, a page that saves) waits
for it and then fails with "database is locked".  A dry run that merged and
rolled back held that lock for its whole length.  Instead, `copy_of(db)` copies
the database with SQLite's online backup (a read: in WAL mode, the plugin's,
writers go on meanwhile), points the import's connection at the copy for the
run, and deletes the copy afterwards.  The merge itself is unchanged, so the
dry run's report is the real import's on the same data, by construction.

The copy lies next to the database (the same disk; it needs as much free space
as the database takes).  PostgreSQL needs none of this: its writers lock rows,
not the database, and a dry run there is the merge rolled back.
"""
import contextlib
import glob
import os
import sqlite3
import tempfile

from .errors import SyncError


@contextlib.contextmanager
def copy_of(db):
    """`with copy_of(db):` this thread's queries through `db` go to a fresh copy of its SQLite database."""
    adapter = db._adapter
    original = adapter.connection
    if original.in_transaction:  # SQLite cannot copy from a connection amid a write (it would wait forever):
        db.rollback()  # what the caller had not committed is dropped, as the dry run always did at its end
    path, copy = _scratch_path(original), None
    try:
        copy = adapter.driver.Connection(path or ":memory:", **adapter.driver_args)
        original.backup(copy)  # one step, one read transaction: consistent, never blocks a WAL writer
        copy.execute("PRAGMA synchronous = OFF")  # thrown away afterwards: no need to survive a crash
    except sqlite3.Error as e:
        _close(copy, path)
        raise SyncError("the dry run could not copy the database to merge into (%s): nothing was changed"
                        % e) from None
    adapter.set_connection(copy, run_hooks=True)  # pydal's functions and pragmas, as on any connection
    try:
        yield
    finally:
        adapter.set_connection(original)
        _close(copy, path)


def _scratch_path(connection):
    """A new file next to the database (None for a database in memory: its copy stays in memory too)."""
    files = [row[2] for row in connection.execute("PRAGMA database_list") if row[1] == "main"]
    if not files or not files[0]:
        return None
    fd, path = tempfile.mkstemp(prefix=".plugin_sync_dry_run_", suffix=".sqlite",
                                dir=os.path.dirname(files[0]))
    os.close(fd)
    return path


def _close(copy, path):
    if copy is not None:
        copy.close()
    if path:
        for name in [path] + glob.glob(glob.escape(path) + "-*"):  # and its -wal, -shm, -journal
            try:
                os.remove(name)
            except OSError:
                pass
