"""Change capture: which records changed since a checkpoint, whoever wrote them.

Wall clocks cannot find changes (a relayed record keeps its old modified_on,
laptop clocks drift), and only the database sees every write path: pydal,
raw SQL, the merge's bulk executemany, cascades of foreign keys.  So triggers
on every synced table keep `plugin_sync_change` (one row per changed record,
the latest change wins: bounded by the number of records, not of writes) and
write a tombstone into `plugin_sync_tombstone` for every hard delete.

Every change carries a `seq`, and a reader asks for the half-open range
since <= seq < until, where `until = checkpoint(db)` and the next `since` is
that `until`.  The invariant that makes this lossless: once a reader has
taken a checkpoint, every change that becomes visible later has a seq >= it.

- SQLite: writers are serialised, so seq is a counter (plugin_sync_counter,
  one row) bumped by the triggers inside the writer's transaction: commit
  order is counter order, and it never goes back, even when changes or
  tombstones are purged.  until = counter + 1.
- PostgreSQL: a sequence is NOT commit ordered (the transaction that took 10
  may commit after the one that took 11, and a reader at 12 would miss 10
  forever).  seq is the writer's transaction id (txid_current(), 64 bits,
  never wraps), and until is the xmin of the reader's snapshot: every
  transaction below it has finished, and any still running has an id >= it,
  so its changes, whenever they commit, land at or after the checkpoint.
  A long-open transaction holds checkpoints back; it never loses a change.

The merge's own batch writes (executemany of thousands of rows) are captured
set-based instead (bulk_begin/bulk_end), and bulk_end() records the batch's
changes in two statements.  PostgreSQL: a transaction-local setting naming
the table makes its insert/update triggers stand aside (their WHEN).
SQLite: an AFTER trigger costs every row even when its WHEN skips it, so the
table's insert/update triggers are dropped for the length of the batch and
recreated before it ends, inside the merge's transaction (DDL is
transactional there, and the transaction holds the write lock: no other
connection writes meanwhile or sees the triggers gone; a rollback restores
them).  Either way nothing is visible to another connection and everything
ends with the savepoint or transaction, so every other write path still goes
through the triggers.  On SQLite the per-row trigger would be most of an
import's cost (it bumps the counter and upserts a change row: three
statements per row).  (SQLite's marker table plugin_sync_bulk, which the
triggers' WHEN still reads, stays empty.)

Triggers are installed at setup, idempotently: present triggers are left
alone (no lock on the tables at each start), missing ones are created, and
the first install on a table records its existing rows as changes, so that
"since 0" always means "everything".  The caller owns the transaction.
"""

import io

from . import dialect
from .schema import index_exists

CHANGE = "plugin_sync_change"
TOMBSTONE = "plugin_sync_tombstone"
IDENTITY = "plugin_sync_identity"
COUNTER = "plugin_sync_counter"  # SQLite only: the last seq handed out
BULK = "plugin_sync_bulk"  # SQLite only: the table the merge is bulk-writing (see bulk_begin)
BULK_SETTING = "plugin_sync.bulk"  # PostgreSQL: the same, as a transaction-local setting
PREFIX = "plugin_sync_capture"  # every trigger and function of ours starts with it
VERSION = "v2"  # bump when a trigger's text changes: older versions are replaced (v2: the bulk marker)
INSTALL_LOCK = 7402318562  # PostgreSQL advisory lock: one installer at a time

INDEXES = (
    # (name, table, columns, unique)
    ("plugin_sync_change_record_idx", CHANGE, "tablename, record_id", True),  # the upsert's key
    ("plugin_sync_change_table_seq_idx", CHANGE, "tablename, seq", False),  # changed_ids / changed_query
    ("plugin_sync_change_seq_idx", CHANGE, "seq", False),  # change_count over all tables
    ("plugin_sync_tombstone_seq_idx", TOMBSTONE, "seq", False),  # tombstones()
    ("plugin_sync_tombstone_record_idx", TOMBSTONE, "tablename, record_uuid", False),  # the delete trigger
)


class NotInstalled(RuntimeError):
    """Change capture was asked for before install_triggers ran on this database."""


# --------------------------------------------------------------------- reading


def checkpoint(db):
    """The `until` of a read now: every change below it is committed and visible.

    Store it as the next `since` only after the data read up to it is safe on
    the other side.
    """
    if dialect.supported(db) == dialect.SQLITE:
        rows = _sql(db, "SELECT seq FROM %s WHERE id = 1" % COUNTER) if _has_counter(db) else []
        if not rows:
            raise NotInstalled("change capture is not installed on this database (run plugin_sync.setup)")
        return int(rows[0][0]) + 1
    # Our own transaction's id is part of xmin, so our own uncommitted writes stay ahead of it.
    return int(_sql(db, "SELECT txid_snapshot_xmin(txid_current_snapshot())")[0][0])


def changed_ids(db, tablename, since, until):
    """Ids of the records of `tablename` created or updated in [since, until), oldest change first.

    A record changed many times appears once; a hard-deleted record is not
    here but in tombstones().
    """
    change = db[CHANGE]
    rows = db(_range(db, change, since, until) & (change.tablename == tablename)).select(
        change.record_id, orderby=change.seq
    )
    return [int(r.record_id) for r in rows]


def changed_query(db, tablename, since, until):
    """A pydal Query for db(query).select(...): the records of `tablename` changed in [since, until).

    The change table is searched by its (tablename, seq) index and the table by
    its primary key, so the cost follows the number of changes, not the table size.
    """
    change, table = db[CHANGE], db[tablename]
    subselect = db(_range(db, change, since, until) & (change.tablename == tablename))._select(change.record_id)
    return table._id.belongs(subselect)


def tombstones(db, since, until, tablenames=None):
    """Hard deletions in [since, until): rows of tablename, record_uuid, deleted_on, origin, seq."""
    tomb = db[TOMBSTONE]
    query = _range(db, tomb, since, until)
    if tablenames is not None:
        query &= tomb.tablename.belongs(list(tablenames))
    return db(query).select(
        tomb.tablename, tomb.record_uuid, tomb.deleted_on, tomb.origin, tomb.seq, orderby=tomb.seq
    )


def change_count(db, since, until, tablenames=None):
    """How much an incremental export of [since, until) carries: changed records plus hard deletions."""
    change, tomb = db[CHANGE], db[TOMBSTONE]
    changed, deleted = _range(db, change, since, until), _range(db, tomb, since, until)
    if tablenames is not None:
        changed &= change.tablename.belongs(list(tablenames))
        deleted &= tomb.tablename.belongs(list(tablenames))
    return db(changed).count() + db(deleted).count()


def _range(db, table, since, until):
    """since <= seq < until; a `since` ahead of this database means a checkpoint from elsewhere."""
    since, until = int(since or 0), int(until)
    if since > until:
        raise ValueError(
            "checkpoint %d is ahead of this database (now at %d): it was taken on another database "
            "or before a restore; start again from 0" % (since, until)
        )
    return (table.seq >= since) & (table.seq < until)


# ------------------------------------------------------------------ installing


def install_triggers(db, tablenames):
    """Make every write to these tables leave a change (or a tombstone); safe to call at every start.

    Returns the tables newly captured (their existing rows were recorded as changes).
    """
    sqlite = dialect.supported(db) == dialect.SQLITE
    if not sqlite:
        _sql(db, "SELECT pg_advisory_xact_lock(%d)" % INSTALL_LOCK)  # concurrent starts of several processes
    ensure_change_indexes(db)
    if sqlite:
        _sqlite_counter(db)
        _sqlite_bulk_table(db)
        _sqlite_tombstone_seq(db)
    else:
        _pg_functions(db)
        _pg_tombstone_seq(db)
    _number_old_tombstones(db)
    captured = []
    for tablename in tablenames:
        table = db[tablename]
        _check_columns(table)
        installed = _sqlite_install(db, table) if sqlite else _pg_install(db, table)
        if installed:
            _backfill(db, table)
            captured.append(tablename)
    return captured


def drop_triggers(db, tablenames):
    """Stop capturing these tables (a table left the sync policy); their change rows stay."""
    for tablename in tablenames:
        table = db[tablename]
        for name in _our_triggers(db, table):
            if dialect.is_sqlite(db):
                _sql(db, "DROP TRIGGER IF EXISTS %s" % name)
            else:
                _sql(db, "DROP TRIGGER IF EXISTS %s ON %s" % (name, table._rname))


def ensure_change_indexes(db):
    """The indexes every read and every trigger relies on, created where missing.

    The catalog is asked first: on PostgreSQL even CREATE INDEX IF NOT EXISTS takes a SHARE lock
    on the table before it finds the index there, so a process starting during a long import
    would queue behind the import, and every ordinary write behind it (the change log is written
    by every write).  Once the schema is in place, setup takes no lock a write waits on.
    """
    for name, tablename, columns, unique in INDEXES:
        if index_exists(db, name):
            continue
        _sql(
            db,
            "CREATE %sINDEX IF NOT EXISTS %s ON %s (%s)"
            % ("UNIQUE " if unique else "", name, db[tablename]._rname, columns),
        )


def _check_columns(table):
    """The triggers name the columns `id` and `uuid`: Sahana's, and pydal's default."""
    if table._id._raw_rname != "id" or "uuid" not in table.fields or table.uuid._raw_rname != "uuid":
        raise ValueError("table %s cannot be captured: it needs columns named id and uuid" % table._tablename)


def _backfill(db, table):
    """Record the rows a table held before its triggers existed, so that 'since 0' is everything."""
    t = literal(table._tablename)
    seq = _sqlite_next_seq(db) if dialect.is_sqlite(db) else "txid_current()"
    _sql(
        db,
        "INSERT INTO %(C)s (tablename, record_id, seq) SELECT %(t)s, r.id, %(seq)s FROM %(T)s r "
        "WHERE NOT EXISTS (SELECT 1 FROM %(C)s c WHERE c.tablename = %(t)s AND c.record_id = r.id)"
        % dict(C=CHANGE, T=table._rname, t=t, seq=seq),
    )


def _number_old_tombstones(db):
    """Tombstones from before the seq column existed get one now, so that they travel too."""
    tomb = db[TOMBSTONE]
    if db(tomb.seq == None).isempty():  # noqa: E711  the common case: no write at each start
        return
    seq = _sqlite_next_seq(db) if dialect.is_sqlite(db) else "txid_current()"
    _sql(db, "UPDATE %s SET seq = %s WHERE seq IS NULL" % (TOMBSTONE, seq))


def _our_triggers(db, table):
    if dialect.is_sqlite(db):
        rows = _sql(
            db,
            "SELECT name FROM sqlite_master WHERE type = 'trigger' AND tbl_name = %s AND name LIKE %s"
            % (literal(table._raw_rname), literal(PREFIX + "%")),
        )
    else:
        rows = _sql(
            db,
            "SELECT tgname FROM pg_trigger WHERE tgrelid = %s::regclass AND NOT tgisinternal AND tgname LIKE %s"
            % (literal(table._rname), literal(PREFIX + "%")),
        )
    return {r[0] for r in rows}


def _replace_triggers(db, table, wanted, drop):
    """Create the wanted triggers that are missing, drop our stale ones; True if any was created."""
    present = _our_triggers(db, table)
    for name in present - set(wanted):
        _sql(db, drop % name)
    missing = [name for name in wanted if name not in present]
    for name in missing:
        _sql(db, wanted[name])
    return bool(missing)


# ---------------------------------------------------------------------- SQLite


def _sqlite_counter(db):
    """One row holding the last seq handed out; started above any seq already recorded."""
    if _has_counter(db) and _sql(db, "SELECT 1 FROM %s WHERE id = 1" % COUNTER):
        return  # in place: no write (a write would wait for a running import's lock)
    _sql(db, "CREATE TABLE IF NOT EXISTS %s (id INTEGER PRIMARY KEY CHECK (id = 1), seq INTEGER NOT NULL)" % COUNTER)
    _sql(
        db,
        "INSERT INTO %(K)s (id, seq) SELECT 1, max(coalesce((SELECT max(seq) FROM %(C)s), 0), "
        "coalesce((SELECT max(seq) FROM %(T)s), 0)) WHERE NOT EXISTS (SELECT 1 FROM %(K)s)"
        % dict(K=COUNTER, C=CHANGE, T=TOMBSTONE),
    )


def _sqlite_bulk_table(db):
    """The bulk marker: empty outside the merge's batches (and always, as seen by other connections)."""
    if not _sql(db, "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = %s" % literal(BULK)):
        _sql(db, "CREATE TABLE IF NOT EXISTS %s (tablename TEXT PRIMARY KEY)" % BULK)


def _has_counter(db):
    return bool(_sql(db, "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = %s" % literal(COUNTER)))


def _sqlite_next_seq(db):
    """Bump the counter now (outside a trigger) and return the SQL expression of the new value."""
    _sql(db, "UPDATE %s SET seq = seq + 1 WHERE id = 1" % COUNTER)
    return "(SELECT seq FROM %s WHERE id = 1)" % COUNTER


SQLITE_BUMP = "UPDATE %s SET seq = seq + 1 WHERE id = 1;" % COUNTER
SQLITE_SEQ = "(SELECT seq FROM %s WHERE id = 1)" % COUNTER

# UPDATE then INSERT ... WHERE NOT EXISTS rather than an upsert clause: an outer
# INSERT OR IGNORE / OR REPLACE would override the conflict handling inside a trigger.
SQLITE_CHANGE = """%(bump)s
    UPDATE %(C)s SET seq = %(seq)s WHERE tablename = %(t)s AND record_id = NEW.id;
    INSERT INTO %(C)s (tablename, record_id, seq) SELECT %(t)s, NEW.id, %(seq)s
        WHERE NOT EXISTS (SELECT 1 FROM %(C)s WHERE tablename = %(t)s AND record_id = NEW.id);"""

SQLITE_DELETE = """%(bump)s
    DELETE FROM %(C)s WHERE tablename = %(t)s AND record_id = OLD.id;
    UPDATE %(D)s SET seq = %(seq)s WHERE tablename = %(t)s AND record_uuid = OLD.uuid;
    INSERT INTO %(D)s (tablename, record_uuid, deleted_on, origin, seq)
        SELECT %(t)s, OLD.uuid, strftime('%%Y-%%m-%%d %%H:%%M:%%S', 'now'),
               (SELECT base_uuid FROM %(I)s ORDER BY id LIMIT 1), %(seq)s
        WHERE NOT EXISTS (SELECT 1 FROM %(D)s WHERE tablename = %(t)s AND record_uuid = OLD.uuid);"""


def _sqlite_install(db, table):
    name = "%s_%s_%s" % (PREFIX, VERSION, table._tablename)
    params = dict(bump=SQLITE_BUMP, seq=SQLITE_SEQ, C=CHANGE, D=TOMBSTONE, I=IDENTITY, t=literal(table._tablename))
    change, delete = SQLITE_CHANGE % params, SQLITE_DELETE % params
    unless_bulk = "WHEN NOT EXISTS (SELECT 1 FROM %s WHERE tablename = %s)" % (BULK, params["t"])
    wanted = {
        name + "_insert": "CREATE TRIGGER %s_insert AFTER INSERT ON %s %s BEGIN %s END"
        % (name, table._rname, unless_bulk, change),
        name + "_update": "CREATE TRIGGER %s_update AFTER UPDATE ON %s %s BEGIN %s END"
        % (name, table._rname, unless_bulk, change),
        name + "_delete": "CREATE TRIGGER %s_delete AFTER DELETE ON %s BEGIN %s END" % (name, table._rname, delete),
    }
    return _replace_triggers(db, table, wanted, "DROP TRIGGER IF EXISTS %s")


def _sqlite_tombstone_seq(db):
    """A tombstone written by anyone without a seq (an importer, pydal) gets one: it must travel too."""
    tomb = db[TOMBSTONE]
    name = "%s_%s_tombstone_seq" % (PREFIX, VERSION)
    sql = "CREATE TRIGGER %s AFTER INSERT ON %s WHEN NEW.seq IS NULL BEGIN %s %s END" % (
        name, tomb._rname, SQLITE_BUMP, "UPDATE %s SET seq = %s WHERE id = NEW.id;" % (tomb._rname, SQLITE_SEQ)
    )
    _replace_triggers(db, tomb, {name: sql}, "DROP TRIGGER IF EXISTS %s")


# ------------------------------------------------------------------ PostgreSQL

# UPDATE first, INSERT only when missing: an INSERT ... ON CONFLICT would burn
# a value of the change table's 32-bit id sequence on every write.
PG_CAPTURE = """
BEGIN
    IF TG_OP = 'DELETE' THEN
        DELETE FROM %(C)s WHERE tablename = TG_ARGV[0] AND record_id = OLD.id;
        UPDATE %(D)s SET seq = txid_current() WHERE tablename = TG_ARGV[0] AND record_uuid = OLD.uuid;
        IF NOT FOUND THEN
            INSERT INTO %(D)s (tablename, record_uuid, deleted_on, origin, seq)
            VALUES (TG_ARGV[0], OLD.uuid, date_trunc('second', now() AT TIME ZONE 'UTC'),
                    (SELECT base_uuid FROM %(I)s ORDER BY id LIMIT 1), txid_current());
        END IF;
        RETURN OLD;
    END IF;
    UPDATE %(C)s SET seq = txid_current() WHERE tablename = TG_ARGV[0] AND record_id = NEW.id;
    IF NOT FOUND THEN
        INSERT INTO %(C)s (tablename, record_id, seq) VALUES (TG_ARGV[0], NEW.id, txid_current())
        ON CONFLICT (tablename, record_id) DO UPDATE SET seq = EXCLUDED.seq;
    END IF;
    RETURN NEW;
END
""" % dict(C=CHANGE, D=TOMBSTONE, I=IDENTITY)

# TRUNCATE fires no row trigger: tombstone every row before it goes.
PG_TRUNCATE = """
BEGIN
    EXECUTE format('UPDATE %(D)s d SET seq = txid_current() FROM %%s r '
                   'WHERE d.tablename = %%L AND d.record_uuid = r.uuid', TG_RELID::regclass, TG_ARGV[0]);
    EXECUTE format('INSERT INTO %(D)s (tablename, record_uuid, deleted_on, origin, seq) '
                   'SELECT %%L, r.uuid, date_trunc(''second'', now() AT TIME ZONE ''UTC''), '
                   '(SELECT base_uuid FROM %(I)s ORDER BY id LIMIT 1), txid_current() FROM %%s r '
                   'WHERE NOT EXISTS (SELECT 1 FROM %(D)s d WHERE d.tablename = %%L AND d.record_uuid = r.uuid)',
                   TG_ARGV[0], TG_RELID::regclass, TG_ARGV[0]);
    DELETE FROM %(C)s WHERE tablename = TG_ARGV[0];
    RETURN NULL;
END
""" % dict(C=CHANGE, D=TOMBSTONE, I=IDENTITY)

PG_TOMBSTONE_SEQ = """
BEGIN
    NEW.seq := txid_current();
    RETURN NEW;
END
"""

PG_FUNCTIONS = {
    PREFIX: PG_CAPTURE,
    PREFIX + "_truncate": PG_TRUNCATE,
    PREFIX + "_tombstone_seq": PG_TOMBSTONE_SEQ,
}


def _pg_functions(db):
    """Create or update the trigger functions; triggers call them by name, so updates apply at once."""
    for name, body in PG_FUNCTIONS.items():
        present = _sql(
            db,
            "SELECT prosrc FROM pg_proc WHERE proname = %s AND pronamespace = current_schema()::regnamespace"
            % literal(name),
        )
        if present and present[0][0] == body:
            continue  # unchanged: no catalog write at each start
        _sql(db, "CREATE OR REPLACE FUNCTION %s() RETURNS trigger LANGUAGE plpgsql AS $body$%s$body$" % (name, body))


def _pg_tombstone_seq(db):
    """A tombstone written by anyone without a seq (an importer, pydal) gets one: it must travel too."""
    tomb = db[TOMBSTONE]
    name = "%s_%s_tombstone_seq" % (PREFIX, VERSION)
    sql = "CREATE TRIGGER %s BEFORE INSERT ON %s FOR EACH ROW WHEN (NEW.seq IS NULL) EXECUTE FUNCTION %s()" % (
        name, tomb._rname, PREFIX + "_tombstone_seq"
    )
    _replace_triggers(db, tomb, {name: sql}, "DROP TRIGGER IF EXISTS %%s ON %s" % tomb._rname)


def _pg_install(db, table):
    name = "%s_%s" % (PREFIX, VERSION)
    t = literal(table._tablename)
    unless_bulk = "WHEN (current_setting(%s, true) IS DISTINCT FROM %s)" % (literal(BULK_SETTING), t)
    wanted = {
        name: "CREATE TRIGGER %s AFTER INSERT OR UPDATE ON %s FOR EACH ROW %s EXECUTE FUNCTION %s(%s)"
        % (name, table._rname, unless_bulk, PREFIX, t),
        name + "_delete": "CREATE TRIGGER %s_delete AFTER DELETE ON %s FOR EACH ROW EXECUTE FUNCTION %s(%s)"
        % (name, table._rname, PREFIX, t),
        name + "_truncate": "CREATE TRIGGER %s_truncate BEFORE TRUNCATE ON %s FOR EACH STATEMENT "
        "EXECUTE FUNCTION %s_truncate(%s)" % (name, table._rname, PREFIX, t),
    }
    return _replace_triggers(db, table, wanted, "DROP TRIGGER IF EXISTS %%s ON %s" % table._rname)


# --------------------------------------------------------------------- helpers


def _sql(db, sql):
    return db.executesql(sql)


def literal(text):
    return "'%s'" % str(text).replace("'", "''")


# ------------------------------------------------------- used by export and merge


def changed_where(db, tablename, since, until, alias="t", echo_of=None, ids=None):
    """SQL `WHERE` (and its parameters) restricting `alias` to the records changed in [since, until).

    `echo_of` (a peer's base_uuid) leaves out the versions our merge wrote from
    that peer's own files and nobody changed since: the peer has them, and
    sending them back would only echo (or, where a reference of theirs did
    not resolve here, undo their value).  `ids` (lo, hi): only ids in
    lo < id <= hi (either may be None): one batch of a range (batches.py).
    """
    subselect, params = _changed_ids_sql(db, tablename, since, until, echo_of)
    bounds = ""
    lo, hi = ids or (None, None)
    if lo is not None:
        bounds += " AND %%s > %d" % int(lo)
    if hi is not None:
        bounds += " AND %%s <= %d" % int(hi)
    # the bounds on both sides: the subselect reads only the batch's part of the change log
    return "WHERE %s.id IN (%s%s)%s" % (alias, subselect, bounds.replace("%s", "record_id"),
                                        bounds.replace("%s", alias + ".id")), params


def changed_page(db, tablename, since, until, after_id=None, room=None, echo_of=None):
    """(how many, the last id) of the first `room` records of `tablename` changed in [since, until)
    with an id above `after_id`, in id order: where a batch of at most `room` records ends."""
    subselect, params = _changed_ids_sql(db, tablename, since, until, echo_of)
    if after_id is not None:
        subselect += " AND record_id > %d" % int(after_id)
    if room is not None:
        subselect += " ORDER BY record_id LIMIT %d" % int(room)
    n, last = db.executesql("SELECT count(*), max(record_id) FROM (%s) page" % subselect, placeholders=params)[0]
    return int(n), (None if last is None else int(last))


def tables_in_range(db, names, since, until, keep=None):
    """The tables of `names` (in their order) with a change in [since, until), and `keep` (a batch's position
    table) however it stands: what an incremental export reads.  One statement, an index probe per table
    ((tablename, seq)), whatever the size of the range: a host that defines its tables on demand then defines
    only these (a peer's poll touches a few of Eden's hundreds)."""
    names = list(names)
    if not names:
        return []
    _range(db, db[CHANGE], since, until)  # same check of the checkpoint
    ph = dialect.placeholder(db)
    found = set()
    for chunk in dialect.chunks(names):
        found.update(r[0] for r in db.executesql(
            "WITH n(name) AS (VALUES %s) SELECT name FROM n WHERE EXISTS (SELECT 1 FROM %s c WHERE c.tablename = "
            "n.name AND c.seq >= %s AND c.seq < %s)" % (",".join(["(%s)" % ph] * len(chunk)), CHANGE, ph, ph),
            placeholders=list(chunk) + [int(since or 0), int(until)]))
    return [n for n in names if n in found or n == keep]


def _changed_ids_sql(db, tablename, since, until, echo_of=None):
    """The change log's SELECT of record_id for `tablename` in [since, until) (and its parameters)."""
    _range(db, db[CHANGE], since, until)  # same check of the checkpoint
    ph = dialect.placeholder(db)
    sql = "SELECT record_id FROM %s WHERE tablename = %s AND seq >= %s AND seq < %s" % (CHANGE, ph, ph, ph)
    params = (tablename, int(since or 0), int(until))
    if echo_of:
        sql += " AND NOT (COALESCE(origin, '') = %s AND COALESCE(origin_seq, -1) = seq)" % ph
        params += (echo_of,)
    return sql, params


def unseen_by(db, tablename, ids, origin, seen_until):
    """Which of these local records hold a version that `origin` has not seen.

    A version was seen by the sender when the sender wrote it (our merge
    tagged it with the sender's base_uuid, and nothing wrote it since), or when
    it is older than the checkpoint up to which the sender has merged our own
    changes (`seen_until`, from the sender's file).  Any other version differing
    from the sender's is a concurrent edit: a real conflict.
    """
    out = set()
    ids = [int(i) for i in ids]
    seen_until = int(seen_until or 0)
    for k in range(0, len(ids), 900):
        chunk = ids[k:k + 900]
        rows = _sql(db, "SELECT record_id, seq, origin, origin_seq FROM %s WHERE tablename = %s AND record_id IN (%s)" % (
            CHANGE, literal(tablename), ",".join(str(i) for i in chunk)))
        for record_id, seq, tag, tag_seq in rows:
            if seq < seen_until or (origin and tag == origin and tag_seq == seq):
                continue
            out.add(int(record_id))
    return out


def write_mark(db):
    """Where this transaction's next writes start: pass it to tag_writes() afterwards."""
    if dialect.is_sqlite(db):
        return checkpoint(db)  # the counter + 1: the next seq a trigger hands out
    return int(_sql(db, "SELECT txid_current()")[0][0])


def written_since(db, tablename, ids, mark):
    """Which of these records this transaction wrote since `mark` (write_mark())."""
    if dialect.is_sqlite(db):
        where = "seq >= %d" % int(mark)  # one writer at a time: every change from the mark on is ours
    else:
        where = "seq = %d" % int(mark)  # our transaction id
    out = set()
    ids = [int(i) for i in ids]
    for k in range(0, len(ids), 900):
        rows = _sql(db, "SELECT record_id FROM %s WHERE tablename = %s AND %s AND record_id IN (%s)" % (
            CHANGE, literal(tablename), where, ",".join(str(i) for i in ids[k:k + 900])))
        out.update(int(r[0]) for r in rows)
    return out


def tag_writes(db, mark, origin):
    """Tag every change written since `mark` in this transaction as written by `origin`."""
    if dialect.is_sqlite(db):
        where = "seq >= %d" % int(mark)  # SQLite has one writer at a time: all of them are ours
    else:
        where = "seq = %d" % int(mark)  # our transaction id
    # changes tagged already (bulk_end with origin) are left as they are: no second row version
    _sql(db, "UPDATE %s SET origin = %s, origin_seq = seq WHERE %s AND (coalesce(origin, '') <> %s "
         "OR coalesce(origin_seq, -1) <> seq)" % (CHANGE, literal(origin), where, literal(origin)))


def untag(db, tablename, ids):
    """These records' last writes are this instance's own, not the sender's version (tag_writes tagged
    the whole import): their versions stay unseen by the sender."""
    ids = sorted(int(i) for i in ids)
    for k in range(0, len(ids), 900):
        _sql(db, "UPDATE %s SET origin_seq = NULL WHERE tablename = %s AND record_id IN (%s)" % (
            CHANGE, literal(tablename), ",".join(str(i) for i in ids[k:k + 900])))


def bulk_begin(db, tablename):
    """The merge is about to batch-write `tablename` in this transaction: its triggers stand aside.

    Call it inside a savepoint and pair it with bulk_end(); a rollback (to the
    savepoint or of the transaction) undoes what it did along with the writes.

    SQLite charges every row of a table that has an AFTER trigger, even one
    whose WHEN skips it (a third of a bulk insert's time), so there the
    table's insert and update triggers are dropped until bulk_end() recreates
    them from their own text.  That is safe because DDL is transactional in
    SQLite and the merge's transaction holds the write lock: no other
    connection can write meanwhile (and none can see the triggers gone: readers
    see the committed schema), and a rollback restores the triggers with the
    rest.  PostgreSQL: the triggers stay, a transaction-local setting makes
    them stand aside (their WHEN costs little there).
    """
    if dialect.is_sqlite(db):
        table = db[tablename]
        rows = _sql(
            db,
            "SELECT name, sql FROM sqlite_master WHERE type = 'trigger' AND tbl_name = %s AND name LIKE %s"
            % (literal(table._raw_rname), literal(PREFIX + "%")),
        )
        kept = [(name, sql) for name, sql in rows if name.endswith(("_insert", "_update"))]
        for name, _ in kept:
            _sql(db, "DROP TRIGGER %s" % name)
        _dropped(db)[tablename] = [sql for _, sql in kept]
    else:
        db.executesql("SELECT set_config(%s, %s, true)", placeholders=(BULK_SETTING, tablename))


def _dropped(db):
    """{tablename: [CREATE TRIGGER text]} of the triggers bulk_begin() dropped (SQLite), per db."""
    stash = getattr(db, "_plugin_sync_dropped", None)
    if stash is None:
        stash = db._plugin_sync_dropped = {}
    return stash


def bulk_end(db, tablename, ids=(), uuids=(), inserted_after=None, new_uuids=(), new_ids=(), origin=None):
    """Record the changes of the records of `tablename` just written; the triggers are back after it.

    The records are named by local `ids`, by `uuids`, or (SQLite only: one
    writer at a time, so no one else's rows can appear) as every row whose id
    is above `inserted_after`, the table's max(id) before the batch's INSERT.
    `new_uuids` and `new_ids` (PostgreSQL) name rows just inserted: their ids
    are new, so one INSERT ... ON CONFLICT does it (the upsert is there for
    safety only); by `new_ids` (taken from the table's sequence by the
    writer) it needs no look at the table at all.
    Set-based: what the row trigger does per row, in one UPDATE and one INSERT
    per kind (and chunk).  On SQLite the batch takes one new seq for all its
    rows (as on PostgreSQL, where a transaction's rows share its txid).
    With `origin`, the changes are tagged at once as tag_writes() would
    (saves rewriting every change row at the end of an import).
    """
    table = db[tablename]
    sqlite = dialect.is_sqlite(db)
    wheres = []  # (condition on r, the target table's row, its parameters, rows just inserted)
    if sqlite:
        for k in range(0, len(ids), 900):
            chunk = [int(i) for i in ids[k:k + 900]]
            wheres.append(("r.id IN (%s)" % ",".join(map(str, chunk)), [], False))
        for k in range(0, len(uuids), 900):
            chunk = list(uuids[k:k + 900])
            wheres.append(("r.uuid IN (%s)" % ",".join("?" * len(chunk)), chunk, False))
        if inserted_after is not None:  # rows just inserted: one upsert (a stale change row is taken over)
            wheres.append(("r.id > %d" % int(inserted_after), [], True))
        if new_ids:
            raise ValueError("new_ids is for PostgreSQL only: name the rows by inserted_after")
        if wheres:
            _sql(db, "UPDATE %s SET seq = seq + 1 WHERE id = 1" % COUNTER)
        seq, ph = SQLITE_SEQ, "?"
    else:
        if ids:
            wheres.append(("r.id = ANY(%s)", [[int(i) for i in ids]], False))
        if uuids:
            wheres.append(("r.uuid = ANY(%s)", [list(uuids)], False))
        if new_uuids:
            wheres.append(("r.uuid = ANY(%s)", [list(new_uuids)], True))
        if inserted_after is not None:
            raise ValueError("inserted_after is for SQLite only: name the rows by ids or uuids")
        seq, ph = "txid_current()", "%s"
    tag = [] if origin is None else [origin]
    cols, vals, sets = "tablename, record_id, seq", "", "seq = %s" % seq
    if origin is not None:
        cols, vals, sets = cols + ", origin, origin_seq", ", %s, %s" % (ph, seq), sets + ", origin = %s, origin_seq = %s" % (ph, seq)
    if new_ids:
        # ids fresh from the sequence have no change row: a plain INSERT (a fifth cheaper than the
        # upsert); should a stale one be there all the same, the upsert, after the savepoint's rollback
        # (and by COPY, which inserts a fifth faster again: the seq is this transaction's id)
        sql = "INSERT INTO %s (%s) SELECT %%s, i, txid_current()%s FROM unnest(%%s::bigint[]) i" % (CHANGE, cols, vals)
        args = [tablename] + tag + [[int(i) for i in new_ids]]
        txid = int(_sql(db, "SELECT txid_current()")[0][0])
        cells = "\t%d" % txid + ("\t%s\t%d" % (dialect.copy_escape(origin), txid) if tag else "") + "\n"
        name = dialect.copy_escape(tablename) + "\t"
        lines = "".join([name + str(int(i)) + cells for i in new_ids])
        db.executesql("SAVEPOINT plugin_sync_capture")
        try:
            db._adapter.cursor.copy_expert("COPY %s (%s) FROM STDIN" % (CHANGE, cols), io.StringIO(lines))
        except db._adapter.driver.IntegrityError:
            db.executesql("ROLLBACK TO SAVEPOINT plugin_sync_capture")
            db.executesql(sql + " ON CONFLICT (tablename, record_id) DO UPDATE SET seq = EXCLUDED.seq%s"
                          % (", origin = EXCLUDED.origin, origin_seq = EXCLUDED.origin_seq" if tag else ""),
                          placeholders=args)
        db.executesql("RELEASE SAVEPOINT plugin_sync_capture")
    excluded = ", origin = EXCLUDED.origin, origin_seq = EXCLUDED.origin_seq" if tag else ""
    for where, params, new in wheres:
        names = dict(C=CHANGE, T=table._rname, seq=seq, where=where, ph=ph, cols=cols, vals=vals, sets=sets,
                     excluded=excluded)
        if new:
            db.executesql(
                "INSERT INTO %(C)s (%(cols)s) SELECT %(ph)s, r.id, %(seq)s%(vals)s FROM %(T)s r WHERE %(where)s "
                "ON CONFLICT (tablename, record_id) DO UPDATE SET seq = EXCLUDED.seq%(excluded)s" % names,
                placeholders=[tablename] + tag + params)
            continue
        db.executesql(
            "UPDATE %(C)s SET %(sets)s WHERE tablename = %(ph)s AND record_id IN "
            "(SELECT r.id FROM %(T)s r WHERE %(where)s)" % names, placeholders=tag + [tablename] + params)
        db.executesql(
            "INSERT INTO %(C)s (%(cols)s) SELECT %(ph)s, r.id, %(seq)s%(vals)s FROM %(T)s r "
            "WHERE %(where)s AND NOT EXISTS (SELECT 1 FROM %(C)s c WHERE c.tablename = %(ph)s AND c.record_id = r.id)"
            % names + ("" if sqlite else " ON CONFLICT (tablename, record_id) DO UPDATE SET seq = EXCLUDED.seq%s" % excluded),
            placeholders=[tablename] + tag + params + [tablename])
    if sqlite:
        for sql in _dropped(db).pop(tablename, []):
            _sql(db, sql)
    else:
        db.executesql("SELECT set_config(%s, '', true)", placeholders=(BULK_SETTING,))
