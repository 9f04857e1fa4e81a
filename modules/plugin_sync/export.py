"""Export: the synced tables as one pydal-format CSV stream, annotated with uuids.

Rows are read with one SQL query per table (LEFT JOINs fetch the uuid of each
referenced record) through a server-side cursor, and written as they come, so
memory stays flat whatever the size of the database.  One cell builder
(TableExporter.columns_of) makes a batch's cells column by column: the file's
lines quote them (lines()), wire_rows gives them as they are (cells()).  The
file starts with the exporting instance's own `sync_instance` row and ends
with the tombstones of hard-deleted records.
"""
import datetime
import json

from . import changes, dialect, progress
from .csvstream import Writer
from .entities import key_of
from .batches import plan
from .fileformat import (AFTER, IDENTITY_COLUMNS, IDENTITY_TABLE, MERGED, NEXT, NULL, PARTIAL, ROW_SEQ, SINCE,
                         TOMBSTONE_COLUMNS, TOMBSTONE_TABLE, UNTIL)
from .gcpause import paused
from .peers import identity_record, utcnow
from .tables import annotations, define_tables, synced_tables, travelling_fields
from .values import bar_decode, bar_encode, column_values, formatter, quoted_cells, stored_text_formatter

BATCH = 5000


def _select_sql(db, table, notes, where="", as_text=(), seq=False, fields=None):
    """The export's query; the date/datetime fields named in `as_text` are read as text.

    With `seq`, a last column holds the seq of the row's last change (ROW_SEQ),
    read from the change log in the same query: the seq of the very version read.
    (A scalar subquery, not a LEFT JOIN: PostgreSQL, with the statistics of
    a table just bulk-loaded, would join the whole change log per row.)

    SQLite: their stored text.  PostgreSQL: to_char() in the format pydal
    writes (whatever the server's DateStyle), which truncates fractions of a
    second like the formatter does.
    """
    def column(f):
        if f.type == "json" and not dialect.is_sqlite(db):  # its JSON text, not the decoded value
            return "CAST(t.%s AS TEXT)" % f._rname
        if f.name not in as_text:
            return "t.%s" % f._rname
        if dialect.is_sqlite(db):
            return "CAST(t.%s AS TEXT)" % f._rname
        return "to_char(t.%s, '%s')" % (f._rname, "YYYY-MM-DD HH24:MI:SS" if f.type == "datetime" else "YYYY-MM-DD")

    cols = [column(table[f]) for f in (fields or travelling_fields(db, table))]
    joins = []
    for i, (_, fname, ref, kind) in enumerate(notes):
        if kind == "ref":
            rt, key = db[ref], key_of(db, ref)  # a super-entity's key is its own (pe_id...), not id
            cols.append("r%d.%s" % (i, rt[key]._rname if key else rt._id._rname))
            joins.append("LEFT JOIN %s r%d ON r%d.%s = t.%s" % (rt._rname, i, i, rt._id._rname, table[fname]._rname))
    if seq:  # a probe of the change log's (tablename, record_id) index per row, whatever the statistics say
        cols.append("(SELECT c.seq FROM %s c WHERE c.tablename = %s AND c.record_id = t.id)" % (
            changes.CHANGE, changes.literal(table._tablename)))
    return "SELECT %s FROM %s t %s %s ORDER BY t.id" % (", ".join(cols), table._rname, " ".join(joins), where)


class TableExporter:
    """Turns the raw rows of one table into CSV rows (fields, then @uuid annotations)."""

    def __init__(self, db, tablename):
        self.db, self.table = db, db[tablename]
        self.notes = annotations(db, self.table)
        self.fields = travelling_fields(db, self.table)  # secrets and local ids never travel (tables.py)
        self.columns = self.fields + [n[0] for n in self.notes]
        self.formats = [formatter(self.table[f].type) for f in self.fields]
        self.as_text = set()
        if dialect.is_sqlite(db) or dialect.is_postgres(db):
            # dates read as text (see _select_sql): no conversion to datetime and back to the same text
            for i, f in enumerate(self.fields):
                fmt = stored_text_formatter(self.table[f].type)
                if fmt:
                    self.formats[i] = fmt
                    self.as_text.add(f)

    def sql(self, where="", seq=False):
        return _select_sql(self.db, self.table, self.notes, where, self.as_text, seq, self.fields)

    def columns_of(self, raw_rows, seq=False):
        """The cells of a batch of raw rows (field values, then joined uuids), column by column: the
        one cell builder, behind both the file's lines and wire_rows.

        Columns in the file's order (self.columns, then with `seq` the ROW_SEQ
        cell, from rows of sql(seq=True)); each column formatted in one pass.
        """
        if not raw_rows:
            return [[] for _ in range(len(self.columns) + (1 if seq else 0))]
        lookups = self._batch_lookups(raw_rows)
        cols = list(zip(*raw_rows))
        n, formats = len(self.fields), self.formats
        out = [column_values(cols[i], formats[i]) for i in range(n)]
        joined = n
        for _, fname, ref, kind in self.notes:
            if kind == "ref":
                out.append(column_values(cols[joined]))
                joined += 1
            elif kind == "list":
                out.append([self._list_uuids(text, lookups[ref]) for text in cols[self.fields.index(fname)]])
            else:
                out.append([self._fk_uuids(text, lookups) if text else NULL for text in cols[self.fields.index(fname)]])
        if seq:
            out.append(column_values(cols[-1]))
        return out

    def cells(self, raw_rows, seq=False):
        """CSV rows (unquoted cells) for a batch of raw rows: columns_of() as rows."""
        return list(map(list, zip(*self.columns_of(raw_rows, seq))))

    def lines(self, raw_rows, seq=False):
        """The CSV lines (as csv.writer writes them, without line ends) of the same cells, each column
        turned to text and quoted in one pass (C-level maps and joins), then the lines joined by zip."""
        return list(map(",".join, zip(*map(quoted_cells, self.columns_of(raw_rows, seq)))))

    @staticmethod
    def _list_uuids(text, uuids):
        ids = bar_decode(text)
        if not ids:
            return NULL
        return "|%s|" % "|".join(u for u in (uuids.get(i) for i in ids) if u)

    def _batch_lookups(self, raw_rows):
        """uuid of every id named by list:references and deleted_fk in this batch: one query per table."""
        wanted = {}
        for _, fname, ref, kind in self.notes:
            idx = self.fields.index(fname)
            if kind == "list":
                for raw in raw_rows:
                    wanted.setdefault(ref, set()).update(bar_decode(raw[idx]))
            elif kind == "fk":
                for text in [raw[idx] for raw in raw_rows if raw[idx]]:  # deleted_fk: mostly empty
                    for f, i in _fk_items(text):
                        target = _fk_target(self.table, f)
                        if target and isinstance(i, int):
                            wanted.setdefault(target, set()).add(i)
        return {t: uuid_map_by_id(self.db, t, ids) for t, ids in wanted.items()}

    def _fk_uuids(self, text, lookups):
        items = _fk_items(text)
        if not items:
            return NULL
        out = {}
        for f, i in items:
            target = _fk_target(self.table, f)
            out[f] = lookups.get(target, {}).get(i) if target else None
        return json.dumps(out, sort_keys=True)


def _cell(v):
    return NULL if v is None else v


def _fk_items(text):
    if not text:
        return []
    try:
        data = json.loads(text)
    except ValueError:
        return []
    return list(data.items()) if isinstance(data, dict) else []


def _fk_target(table, fname):
    if fname in table.fields and table[fname].type.startswith("reference "):
        return table[fname].type[10:].strip()
    return None


def uuid_map_by_id(db, tablename, ids):
    """{local id: uuid} for the given ids of a table, in chunks."""
    table, out, ids, key = db[tablename], {}, list(ids), key_of(db, tablename)
    if key is None:
        return out
    for k in range(0, len(ids), 900):
        chunk = ids[k:k + 900]
        rows = db.executesql("SELECT %s, %s FROM %s WHERE %s IN (%s)" % (
            table._id._rname, table[key]._rname, table._rname, table._id._rname, ",".join(str(int(i)) for i in chunk)))
        out.update(dict(rows))
    return out


def raw_cursor(db, named=True):
    """A cursor of its own (the export must not disturb pydal's); server-side on PostgreSQL."""
    conn = db._adapter.connection
    if not dialect.is_sqlite(db) and named:
        cur = conn.cursor(name="plugin_sync_export_%d" % id(conn), withhold=False)
        cur.itersize = BATCH
        return cur
    return conn.cursor()


@paused
def export(db, out, settings, tables=None, since=None, until=None, batch=BATCH, echo_of=None, peers=None, after=None,
           limit=None):
    """Write the synced tables (or `tables`) to the text stream `out`; return counts per table.

    With `since`, only records changed in [since, until) are written (the
    change log makes that cost proportional to the changes); `until` defaults
    to the current checkpoint and is written into the file, so that the
    receiver can acknowledge it.  `echo_of`: the receiver's base_uuid, whose
    own versions are left out (see changes.changed_where).  `peers`: the
    base_uuids whose rows (URL, checkpoint `merged@seq`) the header may name:
    a peer's `changes` or a push names its receiver alone, never the others;
    None (a file for anyone, e.g. on a USB stick) names every peer we merged.
    `limit` (with `since`): one batch of the range, at most this many records
    after the position `after` (batches.py); the header names both ends, and
    counts["next"] where the next batch starts (None: this one ends the range).
    """
    names = synced_tables(db, settings, only=tables)
    begin_snapshot(db)
    partial = bar_encode(names) if tables and set(names) != set(synced_tables(db, settings)) else NULL
    if until is None:
        until = changes.checkpoint(db)  # written into the file: the receiver's next `since`
    if since is None or (after is not None and after.table not in names):
        after = None  # a whole export; a position in a table that no longer syncs: from the range's start
    # an incremental export reads the tables with changes in the range only (the host defines just those)
    walk = define_tables(settings, names if since is None else changes.tables_in_range(
        db, names, since, until, keep=after and after.table))
    parts, next_ = plan(db, walk, since, until, after, limit, echo_of) if since is not None else (
        [(name, None) for name in walk], None)
    writer = Writer(out)
    me = identity_record(db)
    me.update(url=getattr(settings, "url", None) or None, last_update=utcnow())
    positions = [AFTER, NEXT] if (limit or after) and since is not None else []  # a batch: its two ends
    writer.begin_table(IDENTITY_TABLE, list(IDENTITY_COLUMNS) + [SINCE, UNTIL, MERGED, PARTIAL] + positions)
    rows = [[_cell(_fmt_any(me.get(c))) for c in IDENTITY_COLUMNS] + [_cell(since), _cell(until), NULL, partial]
            + [_cell(p and str(p)) for p in (after, next_)][:len(positions)]]
    known = db.sync_instance.checkpoint_received > 0
    if peers is not None:
        known &= db.sync_instance.base_uuid.belongs(list(peers) or [""])
    for peer in db(known).select(orderby=db.sync_instance.id):
        rows.append([_cell(_fmt_any(peer[c])) for c in IDENTITY_COLUMNS] + [NULL, NULL, peer.checkpoint_received,
                                                                             NULL] + [NULL] * len(positions))
    writer.writerows(rows)
    writer.end_table()
    counts = {}
    for name, ids in parts:
        counts[name] = export_table(db, writer, name, since, until, batch, echo_of, ids)
    counts["tombstones"] = export_tombstones(db, writer, names, since, until) if next_ is None else 0
    writer.close()
    return dict(tables=counts, since=since, until=until, base_uuid=me["base_uuid"], next=next_,
                parts=parts if limit and since is not None else None)


def begin_snapshot(db):
    """Start the export's read transaction: every table it reads, and its checkpoint, come from one
    snapshot of the database (the caller's commit, e.g. fileio.export_to's, ends it).  A caller that
    takes its checkpoint before the export (replicate) calls it first: the same snapshot then.

    PostgreSQL: a REPEATABLE READ transaction (READ COMMITTED, the default, takes a new snapshot per
    statement: an export overlapping an import could hold the import's human resources and not their
    persons); what the caller had open is committed first.  SQLite: one read transaction (in WAL mode
    a snapshot that writers do not wait for); a transaction the caller holds is that snapshot already.
    """
    conn = db._adapter.connection
    if dialect.is_sqlite(db):
        if not conn.in_transaction:
            conn.execute("BEGIN")
        return
    if conn.info.transaction_status != 0:  # in a transaction: a snapshot already (begun here)?
        if db.executesql("SELECT current_setting('transaction_isolation')")[0][0] == "repeatable read":
            return
        db.commit()
    db.executesql("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")


def export_table(db, writer, tablename, since=None, until=None, batch=BATCH, echo_of=None, ids=None):
    """Stream one table into `writer`; return the number of rows written.  `ids` (lo, hi): a batch's part.

    An incremental export (`since`) leaves out the section of a table without changes: in Eden a
    hundred synced tables' headers would be most of a small sync's bytes.  A full export keeps
    every section (the file shows every table synced)."""
    te = TableExporter(db, tablename)
    where, params = "", ()
    if since is not None:
        where, params = changes.changed_where(db, tablename, since, until, alias="t", echo_of=echo_of, ids=ids)
    cur = raw_cursor(db)
    cur.execute(te.sql(where, seq=True), params)  # ROW_SEQ joined: one query
    raw = cur.fetchmany(batch)
    if not raw and since is not None:
        cur.close()
        return 0
    writer.begin_table(tablename, te.columns + [ROW_SEQ])
    count = 0
    while raw:
        writer.writelines(te.lines(raw, seq=True))
        count += len(raw)
        progress.batch(len(raw))  # a page's progress bar (progress.py): a no-op unless a job watches
        raw = cur.fetchmany(batch)
    cur.close()
    writer.end_table()
    return count


def export_tombstones(db, writer, names, since=None, until=None):
    """The tombstones of hard-deleted records of the exported tables."""
    rows = changes.tombstones(db, since or 0, until, names)
    writer.begin_table(TOMBSTONE_TABLE, list(TOMBSTONE_COLUMNS))
    writer.writerows([[_cell(_fmt_any(r[c])) for c in TOMBSTONE_COLUMNS] for r in rows])
    writer.end_table()
    return len(rows)


def _fmt_any(value):
    if isinstance(value, (datetime.date, datetime.datetime)):
        return value.isoformat()[:19].replace("T", " ")
    return value


def wire_rows(db, tablename, ids):
    """{local id: {column: cell}} in export form (references as uuids): for conflict logs and tie-breaks."""
    te = TableExporter(db, tablename)
    out = {}
    ids = list(ids)
    for k in range(0, len(ids), 900):
        where = "WHERE t.id IN (%s)" % ",".join(str(int(i)) for i in ids[k:k + 900])
        raw = db.executesql(te.sql(where))
        for row in te.cells(raw):
            out[int(row[0])] = dict(zip(te.columns, row))
    return out
