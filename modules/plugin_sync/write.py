"""Writing a batch: INSERT and UPDATE in one statement each, captured set-based.

`Writer.write(plan, inserts, updates)` writes one batch of a table and
returns what it wrote (`Written`: the ids created and updated), the one
place after which the merge may act on a written batch (Merger.after_write).
SQLite gets executemany; PostgreSQL ids from the table's sequence and a COPY
(text made column by column, `copy_columns`).  A batch the database refuses
is retried row by row to name the line.  Upload files of a bundle are stored
here too, and removed again by `remove_files` when the import is undone.
"""
import io
import os
from collections import namedtuple

from . import changes
from .dialect import copy_escape
from .errors import BadValue, SyncError
from .uploads import path_of


Insert = namedtuple("Insert", "row values")  # a row the merge creates: the Incoming row, its values as written
Update = namedtuple("Update", "row values id")  # a record it updates: the same, and the record's local id


class Written:
    """What one write put in a table: the ids created (read on SQLite only when asked) and updated."""

    def __init__(self, tablename, created=0, updated=(), new_ids=None, fetch=None):
        self.tablename, self.created, self.updated = tablename, created, list(updated)
        self._new_ids, self._fetch = new_ids, fetch

    @property
    def created_ids(self):
        if self._new_ids is None:
            self._new_ids = self._fetch() if self._fetch and self.created else []
        return self._new_ids


class Writer:
    """Writes the batches of one import (and the upload files of a bundle)."""

    def __init__(self, ctx, ids, files=None):
        self.ctx, self.db, self.report = ctx, ctx.db, ctx.report
        self.sqlite, self.ph = ctx.sqlite, ctx.ph
        self.ids, self.files = ids, files or {}
        self.sequences = {}  # PostgreSQL: {table: its id sequence}
        self.written_files = []

    def write(self, plan, inserts, updates):
        """Write one batch of a table: inserts [Insert], updates [Update].

        Returns what it wrote (Written), for what the merge does after each batch.
        """
        written = Written(plan.tablename)
        if inserts:
            written = self.write_inserts(plan, list(zip(*[i.values + [i.row.mci + 1] for i in inserts])),
                                         [i.row.line for i in inserts], [i.row.uuid for i in inserts])
        if updates:
            self.write_updates(plan, [u.values + [u.row.mci + 1, u.id] for u in updates], [u.row.line for u in updates])
        if plan.upload_fields:
            for w in inserts + updates:
                for pos in plan.upload_fields:
                    self.store_upload(plan, plan.fields[pos], w.values[pos], w.row)
        written.updated = [u.id for u in updates]
        return written

    def write_inserts(self, plan, columns, lines, uuids, optimistic=False):
        """INSERT the rows, given as columns (values in plan.fields order, then mci); `lines` name them in errors.

        Returns Written (the new ids), or None when `optimistic` and a uuid is here already.

        SQLite: the new rows are those above the table's max(id) (one writer).
        PostgreSQL: the rows get their ids from the table's sequence here, so
        that the capture and the uuid -> id cache need no look at the table.
        `optimistic`: the uuids were not looked up; the table's UNIQUE uuid
        index refuses the batch if one is here already: then nothing is
        written and this returns None.
        """
        self.ctx.checks.check(plan, columns, lines, created=True)  # the host's validators refuse before a write
        table = plan.table
        cols = [table[f]._rname for f in plan.fields] + [table.mci._rname]
        if plan.insert_defaults:  # what a new record gets where the file says nothing (parse.new_record_defaults)
            cols += [table[f]._rname for f, _ in plan.insert_defaults]
            columns = list(columns) + [[value] * len(lines) for _, value in plan.insert_defaults]
        ids = self.new_ids(table, len(lines)) if not self.sqlite else None
        if ids is not None:
            cols = [table._id._rname] + cols
            columns = [ids] + list(columns)
            after, capture = None, dict(new_ids=ids)
        else:
            after = self.ctx.execute("SELECT coalesce(max(id), 0) FROM %s" % table._rname)[0][0]
            capture = dict(inserted_after=after) if self.sqlite else dict(new_uuids=uuids)
        sql = "INSERT INTO %s (%s) VALUES (%s)" % (table._rname, ", ".join(cols), ",".join([self.ph] * len(cols)))
        copy = "COPY %s (%s) FROM STDIN" % (table._rname, ", ".join(cols))  # PostgreSQL
        params = list(zip(*columns)) if self.sqlite else None  # PostgreSQL: COPY text made from the columns
        if not self.executemany(plan, sql, params, lines, capture, copy, columns, optimistic):
            return None
        if ids is not None:
            if self.ids.is_referenced(table):
                self.ids.cache_ids(table._tablename, dict(zip(uuids, ids)))
            return Written(plan.tablename, len(lines), new_ids=ids)
        self.ids.learn_inserted(table, after)
        return Written(plan.tablename, len(lines), fetch=lambda: self.ids.inserted_after(table, after))

    def new_ids(self, table, n):
        """PostgreSQL: n new ids from the table's sequence (None if its id has none)."""
        name = table._tablename
        if name not in self.sequences:
            self.sequences[name] = self.ctx.execute("SELECT pg_get_serial_sequence(%s, %s)",
                                                (table._rname, table._id._rname.strip('"')))[0][0]
        if not self.sequences[name]:
            return None
        return [r[0] for r in self.ctx.execute("SELECT nextval(%s) FROM generate_series(1, %s)",
                                           (self.sequences[name], n))]

    def write_updates(self, plan, params, lines):
        """UPDATE the rows (values in plan.fields order, mci, then the local id)."""
        self.ctx.checks.check(plan, list(zip(*params)), lines, created=False)
        table = plan.table
        sets = ", ".join("%s=%s" % (table[f]._rname, self.ph) for f in plan.fields + ["mci"])
        sql = "UPDATE %s SET %s WHERE id=%s" % (table._rname, sets, self.ph)
        self.executemany(plan, sql, params, lines, dict(ids=[p[-1] for p in params]))

    def set_references(self, tablename, field, params):
        """Point deferred references at their targets: params [(value, uuid of the row that refers)]."""
        table = self.db[tablename]
        sql = "UPDATE %s SET %s=%s WHERE %s=%s" % (table._rname, table[field]._rname, self.ph, table.uuid._rname, self.ph)
        changes.bulk_begin(self.db, tablename)  # captured set-based, as in executemany()
        if self.sqlite:
            self.many(sql, params)
        else:  # PostgreSQL: one UPDATE ... FROM unnest(...), the last value of a uuid as the UPDATEs in turn
            last = {u: v for v, u in params}
            kind = "text[]" if table[field].type.startswith("list:") or table[field].type == "text" else "bigint[]"
            self.ctx.execute("UPDATE %s SET %s = v.val FROM unnest(%%s::%s, %%s::text[]) AS v(val, uuid) "
                             "WHERE %s.%s = v.uuid" % (table._rname, table[field]._rname, kind, table._rname,
                                                       table.uuid._rname), (list(last.values()), list(last)))
        changes.bulk_end(self.db, tablename, uuids=[p[1] for p in params], origin=self.ctx.tag_origin)
        self.ctx.entities.references_set(tablename, field, {p[1] for p in params})

    def store_upload(self, plan, fieldname, filename, row):
        """Write an uploaded file that travelled in the bundle, unless it is here already."""
        if not filename or filename not in self.files or self.report.dry_run:
            return
        path = path_of(self.db, plan.table[fieldname], filename)
        if path is None:
            raise BadValue("unsafe upload file name %r" % filename, table=plan.tablename, line=row.line, column=fieldname)
        if os.path.exists(path):
            return
        os.makedirs(os.path.dirname(path), exist_ok=True)
        self.written_files.append(path)
        try:
            self.files.copy_to(filename, path)
        except SyncError as e:
            e.table, e.line, e.column = plan.tablename, row.line, fieldname
            raise

    def remove_files(self):
        """The import is undone: remove the upload files it wrote."""
        for path in self.written_files:
            try:
                os.remove(path)
            except OSError:
                pass
        self.written_files = []

    def executemany(self, plan, sql, params, lines, capture, copy=None, columns=None, optimistic=False):
        """Write a batch; if the database refuses it, find the row and say where.

        The batch's changes are captured set-based (changes.bulk_begin/bulk_end):
        on SQLite the per-row triggers would cost more than the writes themselves.
        `params` may be None when `columns` holds the rows column by column (for a COPY).
        `optimistic`: if the database refuses the batch, undo it and return False.
        """
        cur = self.db._adapter.cursor
        self.ctx.execute("SAVEPOINT plugin_sync_batch")
        changes.bulk_begin(self.db, plan.tablename)
        try:
            self.many(sql, params, copy, columns)
        except Exception:
            self.ctx.execute("ROLLBACK TO SAVEPOINT plugin_sync_batch")
            if optimistic:  # the caller looks the rows up and tries again; any real error shows then
                self.ctx.execute("RELEASE SAVEPOINT plugin_sync_batch")
                return False
            if params is None:
                params = list(zip(*columns))
            for p, line in zip(params, lines):
                try:
                    cur.execute(sql, p)
                except Exception as e:
                    raise BadValue("the database refused the row: %s" % str(e).strip().splitlines()[0],
                                   table=plan.tablename, line=line)
            raise
        changes.bulk_end(self.db, plan.tablename, origin=self.ctx.tag_origin, **capture)
        self.ctx.execute("RELEASE SAVEPOINT plugin_sync_batch")
        return True

    def many(self, sql, params, copy=None, columns=None):
        """executemany; on PostgreSQL in pages (psycopg2's executemany is one round trip per row).

        On PostgreSQL an INSERT that comes with its `copy` statement ("COPY t
        (cols) FROM STDIN", text format) is sent as one COPY: about 2.5x
        the rows/s of multi-row VALUES (nothing to parse and plan per row);
        triggers and constraints apply as for INSERT.
        """
        cur = self.db._adapter.cursor
        if self.sqlite:
            cur.executemany(sql, params)
        elif copy:
            cur.copy_expert(copy, copy_columns(columns) if columns is not None else copy_text(params))
        else:
            from psycopg2.extras import execute_batch

            execute_batch(cur, sql, params, page_size=500)


def copy_text(params):
    """Rows in COPY's text format: tab-separated, NULL as \\N, backslash escapes.

    A row whose joined text holds no backslash but its NULLs', no line break
    and no tab but the separators needs no escaping; any other is escaped cell by cell.
    """
    lines = []
    for row in params:
        line = "\t".join(["\\N" if v is None else v if type(v) is str else str(v) for v in row])
        if (line.count("\\") != row.count(None) or line.count("\t") != len(row) - 1
                or "\n" in line or "\r" in line):
            line = "\t".join(["\\N" if v is None else copy_escape(v) for v in row])
        lines.append(line)
    lines.append("")
    return io.StringIO("\n".join(lines))


def copy_columns(columns):
    """copy_text() of the rows whose columns these are, built column by column (no Python per row):
    each column to text in one map(), escaped only if its joined text holds a character to escape."""
    out = []
    for col in columns:
        types = set(map(type, col))
        nulls = type(None) in types
        if types - {str, type(None)}:
            col = [None if v is None else v if type(v) is str else str(v) for v in col] if nulls else list(map(str, col))
        text = "".join([v for v in col if v is not None]) if nulls else "".join(col)
        if "\\" in text or "\t" in text or "\n" in text or "\r" in text:
            col = [None if v is None else copy_escape(v) for v in col]
        if nulls:
            col = ["\\N" if v is None else v for v in col]
        out.append(col)
    lines = list(map("\t".join, zip(*out)))
    lines.append("")
    return io.StringIO("\n".join(lines))
