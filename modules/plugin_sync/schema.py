"""What the plugin adds to the host's schema: an index on `uuid` per synced table.

Merging looks every incoming record up by uuid; without an index that is a
full scan per batch.  CREATE INDEX IF NOT EXISTS works on SQLite and PostgreSQL
alike, so this is idempotent and cheap to call at every start.
"""


def uuid_index_name(tablename):
    return "plugin_sync_%s_uuid_idx" % tablename


def ensure_uuid_indexes(db, tablenames):
    """Create the uuid index of each table if it is missing; return the names created or kept."""
    names = []
    for tablename in tablenames:
        table = db[tablename]
        name = uuid_index_name(tablename)
        db.executesql(
            "CREATE INDEX IF NOT EXISTS %s ON %s (%s);" % (name, table._rname, table.uuid._rname)
        )
        names.append(name)
    return names
