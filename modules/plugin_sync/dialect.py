"""The SQLite/PostgreSQL differences, asked in one spelling.

The engine supports SQLite and PostgreSQL (change capture has triggers for
those two only).  Wherever it must do something different on the two, it asks
here: `is_sqlite(db)` (else PostgreSQL: COPY, sequences, server-side cursors,
REPEATABLE READ snapshots, advisory locks) and, for raw SQL, `placeholder(db)`.
pydal's own adapter name (`db._adapter.dbengine`) is read in this module only.
"""

SQLITE, POSTGRES = "sqlite", "postgres"


def engine(db):
    """pydal's name of the database: 'sqlite', 'postgres', ..."""
    return db._adapter.dbengine


def is_sqlite(db):
    return engine(db) == SQLITE


def is_postgres(db):
    return engine(db) == POSTGRES


def supported(db):
    """The engine's name, or NotImplementedError for a database change capture cannot serve."""
    name = engine(db)
    if name not in (SQLITE, POSTGRES):
        raise NotImplementedError("change capture supports SQLite and PostgreSQL, not %s" % name)
    return name


def placeholder(db):
    """The DB-API parameter mark of raw SQL: sqlite3's `?`, psycopg2's `%s`."""
    return "?" if is_sqlite(db) else "%s"


def char_bool(db):
    """Does the adapter keep booleans as CHAR(1) 'T'/'F' (pydal on SQLite and others) rather than BOOLEAN?"""
    return db._adapter.dialect.types["boolean"].upper().startswith("CHAR")


CHUNK = 900  # ids/uuids per IN (...): under every SQLite build's variable limit


def chunks(seq, n=CHUNK):
    """`seq` in lists of at most `n` (an IN list per chunk)."""
    seq = list(seq)
    return [seq[k:k + n] for k in range(0, len(seq), n)]


def not_deleted(db, alias, column="deleted"):
    """SQL: the row `alias` is not deleted, as Eden's `deleted != True` asks (NULL too; booleans are 'T'/'F'
    where pydal stores them as characters)."""
    return "(%s.%s IS NULL OR %s.%s <> %s)" % (alias, column, alias, column, "'T'" if char_bool(db) else "TRUE")


def existing_tables(db):
    """The names of the tables the database holds (whether or not this request defined them)."""
    if is_sqlite(db):
        sql = "SELECT name FROM sqlite_master WHERE type = 'table'"
    else:
        sql = "SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema()"
    return {r[0] for r in db.executesql(sql)}


def copy_escape(text):
    """A value as a cell of PostgreSQL's COPY text format (backslash, tab and line breaks escaped)."""
    return str(text).replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")
