"""Reading a table's section: one row's cells into values, and what each reference names.

`SectionPlan` says which cell feeds which field, which fields are
references (`Ref`) and which rules a cell keeps (`Check`, each in a row
form and a column form); `Parser` turns a batch of (line, cells) into
`Incoming` rows, column by column when the batch is ordinary (`parse_cols`),
else row by row (`parse`), which names table, line and column of a bad cell.
What a reference names is one rule, `ref_key` (used row by row and column by
column): ('u', uuid) from its `@uuid` annotation, ('f', file id) in a plain
pydal file, ('dangling', id) when the sender's own reference pointed
nowhere, a list of these, or None.  Nothing here reads or writes the
database but the upload check.
"""
import json
from collections import namedtuple
from itertools import repeat
from operator import itemgetter
from typing import NamedTuple

from .entities import creation_values, is_super_table
from .errors import BadValue, FormatError
from .fileformat import NULL, ROW_SEQ, UUID
from .tables import LOCAL_META, OWNER_FIELDS, accepts_owners, annotations, local_fields
from .uploads import path_of, unsafe
from .values import column_parser, flag_parser, for_plain_pydal, is_canonical, is_text, normaliser, parser

# local, not content: modified_on is decided apart; created_on is each copy's own (two instances prepopulated
# from one template hold the same records created seconds apart: the same content, not a conflict)
NOT_COMPARED = LOCAL_META + ("created_on", "modified_on")


class Ref(NamedTuple):
    """A reference field of a section: what it names, and where its @uuid annotation is."""

    pos: int  # its position in plan.fields (and Incoming.values)
    field: str
    target: object  # the referenced table; None for deleted_fk (a JSON of several)
    kind: str  # 'ref', 'list' (list:reference) or 'fk' (deleted_fk)
    note: object  # index of its `@uuid` column in the file's rows, or None
    notnull: bool
    synced: bool  # the target syncs (or is this table): a record not here yet may still come


# one rule a cell keeps (its value's position `at` in plan.fields; for plan.cell_checks its cell's in the row), in
# the forms of the two paths: `row`, what is wrong with a value (None: nothing; parse() raises BadValue naming
# table, line and `column`), and `batch`, whether a whole column surely keeps it (else parse() decides)
Check = namedtuple("Check", "column at row batch")
# a batch parsed column by column (parse_cols): a column of values per field (plan.fields order), the
# file's columns of cells, and the uuids, modified_on and mci of its rows
Columns = namedtuple("Columns", "values cells uuids mods mcis")


class Incoming:
    """One parsed row of the file."""

    __slots__ = ("line", "uuid", "values", "refs", "mci", "modified_on", "cells", "nulls", "defers", "missing",
                 "future", "owners")

    def __init__(self, line, uuid, values, refs, mci, modified_on, cells):
        self.line, self.uuid, self.values, self.refs = line, uuid, values, refs
        self.mci, self.modified_on, self.cells = mci, modified_on, cells
        self.nulls, self.defers, self.missing, self.future = [], [], None, None
        self.owners = False  # the file changes the record's owners (read only with accept_owners)


class SectionPlan:
    """How to read one table's section: which cell feeds which field, which are references."""

    def __init__(self, ctx, table, columns, paths="auto"):
        db = ctx.db
        self.table, self.tablename = table, table._tablename
        index = {c: i for i, c in enumerate(columns)}
        if "uuid" not in index:
            raise FormatError("no uuid column: records cannot be merged by identity", table=self.tablename, column="uuid")
        self.file_id = index.get("id")
        self.seq_index = index.get(ROW_SEQ)
        self.columns = columns
        # secrets and local ids never travel: ignored in any file, whoever wrote it (tables.py)
        local = set(local_fields(db, table))
        self.ignored = sorted(f for f in local if f in index)
        # owners grant rights here: the file's are read only where an administrator chose so (accept_owners)
        owners = set() if accepts_owners(ctx.settings) else set(OWNER_FIELDS)
        self.fields = [f for f in table.fields if f in index and f not in ("id", "mci") and f not in local
                       and f not in owners]
        self.cell_index = [index[f] for f in self.fields]
        self.parsers = [flag_parser(ctx.char_bool) if f == "deleted" and table[f].type == "boolean"
                        else parser(table[f].type, ctx.char_bool) for f in self.fields]
        self.owner_pos = [i for i, f in enumerate(self.fields) if f in OWNER_FIELDS]  # (with accept_owners)
        self.insert_defaults = new_record_defaults(ctx, table, self.fields)
        self.pos = {f: i for i, f in enumerate(self.fields)}
        self.mci_index = index.get("mci")
        notes = {n[1]: n for n in annotations(db, table)}
        self.annotated = any(c.endswith(UUID) for c in columns)
        if not self.annotated:
            self.parsers = [for_plain_pydal(p) for p in self.parsers]
        self.refs = []  # [Ref]
        for f in self.fields:
            note = notes.get(f)
            if note is None:
                continue
            _, _, target, kind = note
            if kind == "fk":
                self.refs.append(Ref(self.pos[f], f, None, "fk", index.get(f + UUID), False, False))
                continue
            # a super record (pr_pentity, org_site...) comes with its instance record: may still come
            synced = target in ctx.synced or target == self.tablename or is_super_table(db, target)
            self.refs.append(  # its annotation: `@uuid`, or `@email` for a user account (fileformat)
                Ref(self.pos[f], f, target, kind, index.get(note[0]), bool(table[f].notnull), synced)
            )
        self.compared = [i for i, f in enumerate(self.fields) if f not in NOT_COMPARED]
        self.upload_fields = [self.pos[f] for f in self.fields if table[f].type == "upload"]
        self.types = [table[f].type for f in self.fields]
        self.uuid_pos = self.pos["uuid"]
        self.checks = self.value_checks(db)
        # id@seq: the sender's change seq of the row (merge.row_seq)
        self.cell_checks = [Check(ROW_SEQ, self.seq_index, *SEQ)] if self.seq_index is not None else []
        self.mod_pos = self.pos.get("modified_on")
        self.created_pos = self.pos.get("created_on")
        self.compile(ctx.char_bool)
        self.optimistic = False  # see Merger.merge_table
        self.skip = self.backoff = 0  # see missed()
        # what local.Locals.all_same compares: the compared fields, modified_on and the owners
        self.same_positions = list(self.compared) + ([self.mod_pos] if self.mod_pos is not None else []) + \
            self.owner_pos
        # fast_batch: annotated files whose references all carry their @uuid, no uploads to store
        self.fast_ok = paths == "auto" and self.annotated and not self.upload_fields and all(
            r.note is not None for r in self.refs if r.kind != "fk")
        # date/datetime cells written as they are when canonical (SQLite stores that very text; no adapter)
        self.text_dates = [(pos, self.cell_index[pos]) + CANONICAL[t] for pos, t in enumerate(self.types)
                           if t in CANONICAL]

    def value_checks(self, db):
        """The checks of a row's values, in the order parse() applies them (a batch with uploads goes row by row)."""
        fields, refs = [self.table[f] for f in self.fields], {r.field for r in self.refs}
        return ([Check(f.name, i, *REQUIRED) for i, f in enumerate(fields) if f.notnull and f.name not in refs]
                + [Check(f.name, i, *_length_check(f.length)) for i, f in enumerate(fields)
                   if f.type in ("string", "password") and f.length]
                + [Check(fields[i].name, i, _upload_check(db, fields[i]), _never) for i in self.upload_fields]
                + [Check("uuid", self.uuid_pos, *UUID_GIVEN)])

    def missed(self):
        """The column-wise path looked a batch up in vain (rows differ, or some are new): skip it for
        the next 1, 2, 4... (at most 32) batches of the table, as long as it keeps missing; False."""
        self.backoff = min(self.backoff * 2 or 1, 32)
        self.skip = self.backoff
        return False

    def compile(self, char_bool):
        """Per-section shortcuts for the per-row work (parse, lookup, compare): no per-cell dispatch.

        Text cells only turn <NULL> into None; only typed cells call a parser,
        only stored values of a type that needs it are normalised, and the
        compared fields are fetched by one itemgetter.
        """
        self.typed = [(pos, p) for pos, p in enumerate(self.parsers) if not is_text(p)]
        self.fast = [None if is_text(p) else column_parser(t, p) for p, t in zip(self.parsers, self.types)]
        self.texts = [pos for pos, p in enumerate(self.parsers) if is_text(p)]
        self.normalisers = [(i, fn) for i, fn in ((i, normaliser(t, char_bool)) for i, t in enumerate(self.types)) if fn]
        if "deleted_fk" in self.pos:  # JSON written by the application in any key order; the merge sorts
            self.normalisers.append((self.pos["deleted_fk"], _sorted_json))
        if len(self.compared) > 1:
            self.same = itemgetter(*self.compared)
        else:
            self.same = lambda values: [values[i] for i in self.compared]


class Parser:
    """Parses the batches of one import: cells to values, references to keys."""

    def __init__(self, ctx, file_ids, paths="auto"):
        self.db, self.report, self.settings, self.now = ctx.db, ctx.report, ctx.settings, ctx.now
        self.future_limit = ctx.future_limit
        self.file_ids = file_ids  # plain pydal files: {table: {file id: uuid}}, shared with the resolver
        self.paths = paths

    def try_parse_cols(self, plan, raw):
        """parse_cols(), or UNUSUAL for a batch it leaves to the row-wise parse."""
        try:
            return self.parse_cols(plan, raw)
        except _Unusual:
            return UNUSUAL

    def parse_batch(self, plan, raw, parsed=None):
        """Incoming rows for a batch of (line, cells): column by column when the batch is ordinary.

        Each column goes through its parser in one map() (and a datetime or an
        integer column through the C conversion itself): far less Python per
        cell than parse().  Anything out of the ordinary (a bad or missing
        value, a text too long, a suspect modified_on, a plain pydal file)
        sends the whole batch through parse(), row by row, which decides,
        warns and raises exactly as before.
        """
        if (plan.file_id is not None and not plan.annotated) or plan.upload_fields or self.paths == "rows":
            # parse() checks uploads
            return [self.parse(plan, line, cells) for line, cells in raw]
        if parsed is UNUSUAL:
            return [self.parse(plan, line, cells) for line, cells in raw]
        try:
            return self.parse_columns(plan, raw, parsed)
        except _Unusual:
            return [self.parse(plan, line, cells) for line, cells in raw]

    def parse_columns(self, plan, raw, parsed=None):
        """Incoming rows from parse_cols() (given as `parsed` when the column-wise path tried the batch)."""
        parsed = parsed if parsed is not None else self.parse_cols(plan, raw)
        try:
            plain = not plan.annotated
            keycols = {ref.pos: key_column(ref, parsed.values, parsed.cells, plain) for ref in plan.refs}
        except ValueError:  # a deleted_fk annotation that is not JSON: parse() names it
            raise _Unusual()
        keyrows = zip(*keycols.values()) if keycols else [()] * len(raw)
        return [Incoming(line, uuid, list(values), dict(zip(keycols, keyrow)), mci, mod, cells)
                for (line, cells), values, keyrow, uuid, mci, mod
                in zip(raw, zip(*parsed.values), keyrows, parsed.uuids, parsed.mcis, parsed.mods)]

    def parse_cols(self, plan, raw):
        """The batch parsed column by column (Columns: values, cells, uuids, modified_on, mci); raises
        _Unusual for anything out of the ordinary."""
        columns = list(zip(*[cells for _, cells in raw]))
        cols = []
        for pos, i in enumerate(plan.cell_index):
            col = columns[i]
            fast = plan.fast[pos]
            try:
                if fast is None:  # text: only <NULL> to map
                    if NULL in col:
                        col = [None if c == NULL else c for c in col]
                else:
                    col = fast(col)
            except (ValueError, TypeError):
                raise _Unusual()
            cols.append(col)
        for check in plan.checks:
            if not check.batch(cols[check.at]):
                raise _Unusual()
        for check in plan.cell_checks:
            if not check.batch(columns[check.at]):
                raise _Unusual()  # parse() names the cell
        uuids = cols[plan.uuid_pos]
        mods = cols[plan.mod_pos] if plan.mod_pos is not None else [None] * len(raw)
        if max(filter(None, mods), default=self.future_limit) > self.future_limit:
            raise _Unusual()  # parse() dates it here and warns
        try:  # (<NULL> or a blank too: parse() reads it as 0)
            mcis = list(map(int, columns[plan.mci_index])) if plan.mci_index is not None else [0] * len(raw)
        except ValueError:
            raise _Unusual()
        return Columns(cols, columns, uuids, mods, mcis)

    def parse(self, plan, line, cells):
        values = [cells[i] for i in plan.cell_index]
        has_null = NULL in values
        try:
            for pos, parse in plan.typed:
                values[pos] = parse(values[pos])
        except (ValueError, TypeError):
            self.bad_cell(plan, line, cells)
        if has_null:
            for pos in plan.texts:
                if values[pos] == NULL:
                    values[pos] = None
        self.check(plan, line, plan.checks, values)
        uuid = values[plan.uuid_pos]
        modified_on = values[plan.mod_pos] if plan.mod_pos is not None else None
        future = None
        if modified_on is not None and modified_on > self.future_limit:
            self.report.count(plan.tablename, "future")
            self.report.warn(
                "modified_on %s is ahead of this instance's clock by more than %ss: stamped %s here; "
                "it does not win against a concurrent local version" % (modified_on, self.settings.clock_tolerance, self.now),
                table=plan.tablename, line=line, column="modified_on", uuid=uuid,
            )
            future, modified_on = modified_on, self.now
            values[plan.mod_pos] = modified_on
        self.check(plan, line, plan.cell_checks, cells)
        mci = 0
        if plan.mci_index is not None:
            try:
                mci = int(cells[plan.mci_index]) if cells[plan.mci_index] not in (NULL, "") else 0
            except ValueError:
                raise BadValue("%r is not a valid integer" % cells[plan.mci_index], table=plan.tablename,
                               line=line, column="mci")
        if plan.file_id is not None and not plan.annotated:
            try:
                self.file_ids.setdefault(plan.tablename, {})[int(cells[plan.file_id])] = uuid
            except ValueError:
                raise BadValue("%r is not a valid id" % cells[plan.file_id], table=plan.tablename, line=line,
                               column="id")
        refs = {ref.pos: self.reference_keys(plan, ref, values[ref.pos], cells, line) for ref in plan.refs}
        row = Incoming(line, uuid, values, refs, mci, modified_on, cells)
        row.future = future
        return row

    def check(self, plan, line, checks, values):
        """The row form of the checks: BadValue naming table, line and column of the first value that fails."""
        for check in checks:
            why = check.row(values[check.at])
            if why:
                raise BadValue(why, table=plan.tablename, line=line, column=check.column)

    def bad_cell(self, plan, line, cells):
        """Raise BadValue for the first cell of the row that does not parse (the slow path of parse)."""
        for pos, (i, parse) in enumerate(zip(plan.cell_index, plan.parsers)):
            try:
                parse(cells[i])
            except (ValueError, TypeError):
                raise BadValue(
                    "%r is not a valid %s" % (cells[i][:60], plan.types[pos]),
                    table=plan.tablename, line=line, column=plan.fields[pos],
                )

    def reference_keys(self, plan, ref, value, cells, line):
        """ref_key() of one row's reference; BadValue naming the cell of a deleted_fk that is no JSON object."""
        plain = not plan.annotated
        try:
            return ref_key(ref.kind, value, cells[ref.note] if ref.note is not None else None, plain)
        except ValueError:
            column = ref.field if plain else ref.field + UUID
            raise BadValue("%s is not a JSON object of {field: key}" % column, table=plan.tablename, line=line,
                           column=column)


def ref_key(kind, value, note, plain=False):
    """What a reference names, the one rule (Ref.kind, its value, its annotation cell or None: no annotation;
    `plain`: a plain pydal file, whose references are the sender's ids, deleted_fk's too).

    ('u', uuid) from its `@uuid` annotation; ('f', file id) in a plain pydal
    file; ('dangling', id) when the sender's own reference pointed nowhere
    (its annotation is <NULL>); a list of these for a list:reference;
    {field: ('u', uuid)} for deleted_fk ({field: ('f', id)} in a plain file); None when it names nothing.
    ValueError for a deleted_fk that is not a JSON object.
    """
    if kind == "ref":
        if value is None:
            return None
        if note is None:
            return ("f", value)
        return ("dangling", value) if note == NULL else ("u", note)
    if kind == "list":
        if note is None:
            return [("f", i) for i in (value or [])]
        if note == NULL or not note.strip("|"):
            return []
        return [("u", u) for u in note.strip("|").split("|") if u]
    if note is None and plain and value:  # deleted_fk of a plain pydal file: the sender's ids
        return {k: ("f", v) for k, v in _json_object(value).items() if v}
    if note in (None, NULL, ""):  # deleted_fk
        return None
    return {k: ("u", v) for k, v in _json_object(note).items() if v}


def key_column(ref, values, cells, plain=False):
    """ref_key() of a reference in each row of a batch parsed column by column (`values`: its columns of
    values, `cells`: the file's columns of cells); ValueError as ref_key."""
    notes = cells[ref.note] if ref.note is not None else repeat(None)
    return list(map(ref_key, repeat(ref.kind), values[ref.pos], notes, repeat(plain)))


def _json_object(text):
    """deleted_fk's {field: key}; ValueError for anything but a JSON object."""
    data = json.loads(text)
    if not isinstance(data, dict):
        raise ValueError("not a JSON object")
    return data


def is_seq(cell):
    """An `id@seq` cell the sender can have written: its change seq (a whole number), or none."""
    return cell.isdigit() and cell.isascii() or cell == NULL or cell == ""


# checks (Check.row: a value -> what is wrong with it, Check.batch: a column -> whether all surely pass)
REQUIRED = (lambda value: "a value is required" if value is None else None, lambda col: None not in col)
UUID_GIVEN = (lambda value: None if value else "empty uuid", lambda col: None not in col and "" not in col)
SEQ = (lambda cell: None if is_seq(cell) else "%r is not a change sequence (a whole number)" % cell[:60],
       lambda col: all(map(is_seq, col)))


def _length_check(length):
    return (lambda value: "text longer than %d characters" % length if value and len(value) > length else None,
            lambda col: max(map(len, filter(None, col)), default=0) <= length)


def _upload_check(db, field):
    """Check.row of an upload: a plain file name inside the field's upload folder, or nothing."""
    def problem(value):
        why = value and (unsafe(value) or (None if path_of(db, field, value) else "resolves outside the folder"))
        return why and ("upload value %r %s: only a plain file name inside %s's upload folder is accepted"
                        % (value[:80], why, field))
    return problem


def new_record_defaults(ctx, table, fields):
    """[(field, value)] a record created by the merge gets for the columns the file does not give
    (`fields`: those it gives): never NULL in `deleted` (see values.flag_parser); owners as Eden's own
    import sets them for the account that imports (ctx.account: the peer's account here, or none);
    owned_by_group by no one (Eden's import sets it only when its record names it)."""
    out = []
    if "deleted" in table.fields and "deleted" not in fields and table.deleted.type == "boolean":
        out.append(("deleted", flag_parser(ctx.char_bool)(NULL)))
    if "owned_by_user" in table.fields and "owned_by_user" not in fields and ctx.account is not None:
        out.append(("owned_by_user", ctx.account))
    return out + creation_values(ctx.db, table, ctx.account)  # approved_by as the host's import sets it


def _never(col):
    return False


class _Unusual(Exception):
    """A batch that the column-wise parse leaves to the row-wise one."""


UNUSUAL = object()


def _sorted_json(text):
    try:
        return json.dumps(json.loads(text), sort_keys=True)
    except (TypeError, ValueError):
        return text


# the text pydal stores for a date/datetime (and SQLite keeps as it is): width, separators at their places
CANONICAL = {
    "datetime": (19, ((4, "-"), (7, "-"), (10, " "), (13, ":"), (16, ":"))),
    "date": (10, ((4, "-"), (7, "-"))),
}


def canonical_text(cells, width, marks):
    """The cells (already parsed fine) with <NULL> as None, if all others have exactly the canonical
    form (then they are what pydal stores, and compare as values do); else None."""
    if NULL in cells:
        cells = [None if c == NULL else c for c in cells]
        given = [c for c in cells if c is not None]
    else:
        given = cells
    if given and not is_canonical(given, width, marks):
        return None
    return cells
