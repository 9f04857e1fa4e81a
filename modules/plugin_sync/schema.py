"""What the plugin adds to the host's schema: an index on `uuid` per synced table, where none is.

Merging looks every incoming record up by uuid; without an index that is a
full scan per batch.  Sahana's meta fields declare `uuid` unique, and the
database keeps a UNIQUE index for it: that index serves the lookups, and a
second one would only cost every insert (about a tenth of a bulk insert on
SQLite).  So the plugin creates its own index only on a table whose uuid has
no unique index, and drops its own where one exists (from an older version).
Idempotent and cheap to call at every start.
"""
from . import dialect


def uuid_index_name(tablename):
    return "plugin_sync_%s_uuid_idx" % tablename


def unique_uuid_index(db, table):
    """The name of a unique index on the table's uuid column alone, or None."""
    column = table.uuid._raw_rname if hasattr(table.uuid, "_raw_rname") else "uuid"
    if dialect.is_sqlite(db):
        for row in db.executesql("PRAGMA index_list(%s)" % table._rname):
            name, unique, partial = row[1], row[2], row[4] if len(row) > 4 else 0
            if not unique or partial:
                continue
            cols = [r[2] for r in db.executesql("PRAGMA index_info(%s)" % _quote(name))]
            if cols == [column]:
                return name
        return None
    rows = db.executesql(
        "SELECT c.relname FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
        "JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0] "
        "WHERE i.indrelid = %s::regclass AND i.indisunique AND i.indnatts = 1 AND i.indpred IS NULL "
        "AND a.attname = %s ORDER BY c.relname",
        placeholders=(table._rname, column),
    )
    return rows[0][0] if rows else None


def ensure_uuid_indexes(db, tablenames):
    """Make sure each table's uuid is indexed (once); return the names of the indexes serving it."""
    names = []
    for tablename in tablenames:
        table = db[tablename]
        ours = uuid_index_name(tablename)
        unique = unique_uuid_index(db, table)
        if unique:
            if index_exists(db, ours):  # redundant: the unique index serves lookups
                db.executesql("DROP INDEX %s;" % ours)
            names.append(unique)
            continue
        if not index_exists(db, ours):  # asked first: CREATE INDEX IF NOT EXISTS locks the table (PostgreSQL)
            db.executesql("CREATE INDEX IF NOT EXISTS %s ON %s (%s);" % (ours, table._rname, table.uuid._rname))
        names.append(ours)
    return names


def ensure_index(db, name, table, columns):
    """An index `name` on `table`'s `columns`, made once (asked first, as above)."""
    if not index_exists(db, name):
        db.executesql("CREATE INDEX IF NOT EXISTS %s ON %s (%s);"
                      % (name, table._rname, ", ".join(table[c]._rname for c in columns)))


def index_exists(db, name):
    if dialect.is_sqlite(db):
        sql, args = "SELECT 1 FROM sqlite_master WHERE type = 'index' AND name = ?", (name,)
    else:
        sql, args = "SELECT 1 WHERE to_regclass(%s) IS NOT NULL", (name,)
    return bool(db.executesql(sql, placeholders=args))


def _quote(name):
    return '"%s"' % name.replace('"', '""')
