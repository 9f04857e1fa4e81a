"""plugin_sync: synchronise Sahana Eden instances by uuid.

The engine: plain Python that takes a pydal `db` (and settings) and knows
nothing of web2py's request/response.  The controller, the CLI and the
scheduler task all call these same functions.
"""
from . import dialect
from .changes import checkpoint, install_triggers
from .peers import this_instance
from .entities import super_tables
from .schema import ensure_index, ensure_uuid_indexes
from .tables import synced_tables

_ready = set()


def database_key(db):
    """Which database this is, for once-per-process caches: its URI and, for SQLite, its file.

    (A relative SQLite URI such as Eden's "sqlite://storage.db" names a different file in each app folder.)
    """
    adapter = db._adapter
    return (db._uri, getattr(adapter, "dbpath", None) or getattr(adapter, "folder", None) or getattr(db, "_folder", None))


def setup(db, settings):
    """Once per process and database: uuid indexes and this instance's identity."""
    key = database_key(db)
    if key in _ready:
        return
    if dialect.is_sqlite(db):
        use_wal(db)
    install_schema(db, settings)
    me = this_instance(db, owner=settings.owner, contact=settings.contact)
    if me.exported_until is None:  # upgraded from before exported_until: what it exported is unknown, all may be
        me.update_record(exported_until=checkpoint(db))
    db.commit()
    _ready.add(key)


def install_schema(db, settings):
    """The synced tables' uuid indexes and change triggers (changes.py), and the uuid indexes of the super-entity
    tables the merge makes rows of (Eden's have none: entities.py); not this instance's identity, so that a
    database copied into several instances (a template) can have it."""
    names = synced_tables(db, settings)
    ensure_uuid_indexes(db, names + super_tables(db))
    install_triggers(db, names)
    ensure_index(db, "plugin_sync_upload_chunk_n", db.plugin_sync_upload_chunk, ("upload", "n"))  # stash.py


def use_wal(db):
    """SQLite: the write-ahead log, so that readers (exports, page views, peers logging in) go on while
    an import writes.  The mode is kept in the database file: set once, it holds for every connection,
    whatever opened the database (the host app's DAL, the CLI, the scheduler)."""
    if db._adapter.connection.in_transaction:
        db.commit()
    try:
        if str(db.executesql("PRAGMA journal_mode")[0][0]).lower() != "wal":
            db.executesql("PRAGMA journal_mode=WAL")
    except Exception:  # another connection is in the middle of a transaction: the next start sets it
        db.rollback()
