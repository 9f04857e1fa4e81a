"""The merge: import a pydal-format CSV stream into this instance, by uuid.

One import is one transaction: the engine rolls back on any error (and at the
end of a dry run) and never commits; the outermost caller commits.

For each batch of rows of a table: parse and check every cell (errors name
table, line and column), look the uuids up in one query, resolve references
(from the `@uuid` annotations, or from the file's own ids for plain pydal
files) in one query per referenced table, decide each row, and write with
executemany.  References whose target is not here yet (forward references,
self references, cycles) are written as NULL and fixed after the rest is in;
a row whose NOT NULL reference cannot be resolved yet waits until the end.

Every incoming version is classified in one place, Merger.classify (created,
unchanged, a later stamp, older, merged already, conflict kept local / took
incoming, a future stamp that waits, tombstoned, waiting for a reference);
COUNTER says what each outcome counts as.  Batches that are all new or all
unchanged are merged column by column (fast_batch), which may only take those
two outcomes, for whole batches it can prove so, and hands everything else to
the row-wise merge; `paths="rows"` sends every batch row by row (the tests hold
the two paths to each other).  References, deferred references and waiting
rows travel as named records (Ref, Deferred, Pending).

Deciding a row that exists on both sides (see `classify` and `decide`):
- same content (modified_on aside): unchanged (a later modified_on is taken,
  so that the instances agree on it too);
- a version the sender had sent us before (its `id@seq`, the sender's change
  seq of it, is below our checkpoint of the sender: a full or a stale file
  carries it again) is an older copy: merged already, nothing new;
- otherwise the table's policy picks the winner: `newer` modified_on (default;
  a tie between concurrent versions is broken by a hash of the content, so
  that both sides pick the same), `this` (local), `other` (incoming),
  `master` (the master instance's);
- a modified_on further ahead of our clock than the tolerance is suspect: it
  would win every later conflict.  Such a version is flagged and stamped with
  our clock; it may create a record or update one the sender had seen, but
  never wins against a concurrent local version: it waits in the conflict
  list for review;
- it is a *conflict* when the local version is one the sender has not seen
  (see changes.unseen_by: neither written by the sender nor older than the
  checkpoint up to which the sender merged our changes; local sequences, not
  clocks); the losing version then goes to plugin_sync_conflict.  Otherwise
  the incoming version simply updates the record: the sender had our version
  and wrote its own after it, whatever the clocks say (a file without
  `id@seq` may be stale: there an older modified_on is an older copy).

Hard deletes (the file's tombstones, applied at the end; the later of two
deletions of a uuid is the one kept): a record changed here after the
deletion stays, and so does one that refers to the deleted record (its
reference set to NULL) where the database would cascade; a local version the
deleter never saw, and an incoming version that our own later deletion beats,
go to the conflict log; the deleted ids leave the list:references here; a
record that comes back (changed after its deletion) drops its stale tombstone.
"""
import datetime
import hashlib
import io
import json
import os
import sqlite3
import time
from operator import itemgetter
from typing import NamedTuple

from . import changes, dialect, entities
from .csvstream import Reader
from .entities import is_super_table, key_of
from .errors import BadValue, Busy, FormatError, Refused, SyncError, UnresolvedReference
from .export import wire_rows
from .fileformat import (CHECKPOINTS, IDENTITY_TABLE, MERGED, NULL, PARTIAL, ROW_SEQ, SINCE, TOMBSTONE_TABLE,
                         UNTIL, UUID, annotations)
from .gcpause import paused
from .peers import find_peer, is_http_url, record_sync, this_instance, utcnow
from .names import record_name
from .report import Report
from .schema import unique_uuid_index
from .tables import LOCAL_META, conflict_policy, exclusion, local_fields, synced_tables
from .uploads import path_of, unsafe, upload_folder  # noqa: F401 (upload_folder: merge's old name for it)
from .values import (bar_encode, column_parser, copy_escape, for_plain_pydal, is_canonical, is_text, normaliser,
                     parser)

BATCH = 2000
READ_AHEAD = True  # PostgreSQL: read and parse the next batches in a thread (see _ReadAhead)
ID_CACHE = 100000  # uuid -> id mappings kept during an import (about 15 MB at most)
CHUNK = 900  # ids/uuids per IN (...): under every SQLite build's variable limit
NOT_COMPARED = LOCAL_META + ("modified_on",)  # local, not content; modified_on is decided apart
EPOCH = datetime.datetime(1970, 1, 1)
# What the merge makes of an incoming version (Merger.classify), and the report counter of each.
# The column-wise path (fast_batch) takes only CREATED and UNCHANGED, for whole batches it can prove so.
CREATED, UNCHANGED, LATER_STAMP = "created", "unchanged", "later stamp"
UPDATED, OLDER, MERGED_ALREADY = "updated", "older", "merged already"
FILE_NEWER, FILE_OLDER = "later in the file", "earlier in the file"
CONFLICT_KEPT, CONFLICT_TAKEN, FUTURE_WAITS = "conflict kept local", "conflict took incoming", "future waits"
TOMBSTONED, WAITS = "tombstoned", "waits"
SAMPLED = ("created", "updated", "conflicts_kept_local", "conflicts_took_incoming")  # what a preview names
COUNTER = {CREATED: "created", UNCHANGED: "unchanged", LATER_STAMP: "unchanged", UPDATED: "updated", OLDER: "older",
           MERGED_ALREADY: "older", FILE_NEWER: "older", FILE_OLDER: "older", CONFLICT_KEPT: "conflicts_kept_local",
           CONFLICT_TAKEN: "conflicts_took_incoming", FUTURE_WAITS: "conflicts_kept_local", TOMBSTONED: "tombstoned",
           WAITS: None}  # a waiting row counts when it is written (retry_pending)
PATHS = ("auto", "rows")  # auto: column-wise where it can prove the outcome; rows: always row by row


@paused
def import_and_sync(db, source, settings, dry_run=False, files=None, batch=BATCH, now=None, origin_hint=None,
                    sender=None, paths="auto"):
    """Merge the CSV `source` (path, bytes or stream; gzip allowed) into `db`; return a Report.

    `files`: the upload files of a bundle (bundle.BundleFiles).  `sender`: the
    instance a peer's login speaks for; the file must be its own.  `paths`:
    "auto" merges ordinary batches column by column (see Merger.fast_batch),
    "rows" every row through the row-wise merge (the same result, slower: for
    tests that hold the two to each other).  Raises a SyncError subclass
    (with table, line, column) after rolling back.
    """
    report = Report(dry_run=dry_run)
    started = time.time()
    merger = Merger(db, settings, report, files=files, batch=batch, now=now, paths=paths)
    merger.sender = sender
    if sender and not origin_hint:
        origin_hint = dict(base_uuid=sender)  # a plain file from a peer is still that peer's
    try:
        for section in Reader(source, settings):
            merger.section(section)
        merger.finish(origin_hint)
    except SyncError as e:
        merger.abort()
        report.error = e.as_dict()
        raise
    except Exception:
        merger.abort()
        raise
    if dry_run:
        merger.abort()
    report.seconds = round(time.time() - started, 3)
    return report


IMPORT_WAIT = 3600  # seconds an import waits for another one holding SQLite's write lock (setting import_wait)


def begin_write(db, settings):
    """SQLite: BEGIN IMMEDIATE, waiting up to `import_wait` seconds for a writer that holds the lock
    (another import: it waits its turn); Busy if it is still held then."""
    wait = getattr(settings, "import_wait", None)
    wait = IMPORT_WAIT if wait is None else wait
    cur = db._adapter.connection.cursor()
    before = cur.execute("PRAGMA busy_timeout").fetchone()[0]
    cur.execute("PRAGMA busy_timeout = %d" % int(wait * 1000))
    try:
        cur.execute("BEGIN IMMEDIATE")
    except sqlite3.OperationalError as e:
        if "locked" not in str(e) and "busy" not in str(e):
            raise
        raise Busy("another import is writing to this database (waited %s s for it): nothing was changed; "
                   "try again when it has finished" % wait) from None
    finally:
        cur.execute("PRAGMA busy_timeout = %d" % before)


class Ref(NamedTuple):
    """A reference field of a section: what it names, and where its @uuid annotation is."""

    pos: int  # its position in plan.fields (and Incoming.values)
    field: str
    target: object  # the referenced table; None for deleted_fk (a JSON of several)
    kind: str  # 'ref', 'list' (list:reference) or 'fk' (deleted_fk)
    note: object  # index of its `@uuid` column in the file's rows, or None
    notnull: bool
    synced: bool  # the target syncs (or is this table): a record not here yet may still come


class Deferred(NamedTuple):
    """A reference written as NULL (a list without the id) until its target is in: see fix_deferred."""

    table: str
    uuid: str  # of the row that refers
    field: str
    kind: str  # 'ref' or 'list'
    target: str
    keys: object  # what it names: a key, or a list of keys for 'list' (see reference_keys)
    line: int


class Pending(NamedTuple):
    """A row waiting for a NOT NULL reference: written by retry_pending once its target is in."""

    plan: object  # its SectionPlan
    row: object  # the Incoming row
    local: object  # (local id, local values) of the record here, or None for a new one


class Incoming:
    """One parsed row of the file."""

    __slots__ = ("line", "uuid", "values", "refs", "mci", "modified_on", "cells", "nulls", "defers", "missing",
                 "future")

    def __init__(self, line, uuid, values, refs, mci, modified_on, cells):
        self.line, self.uuid, self.values, self.refs = line, uuid, values, refs
        self.mci, self.modified_on, self.cells = mci, modified_on, cells
        self.nulls, self.defers, self.missing, self.future = [], [], None, None


class SectionPlan:
    """How to read one table's section: which cell feeds which field, which are references."""

    def __init__(self, merger, table, columns):
        db = merger.db
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
        self.fields = [f for f in table.fields if f in index and f not in ("id", "mci") and f not in local]
        self.cell_index = [index[f] for f in self.fields]
        self.parsers = [parser(table[f].type, merger.char_bool) for f in self.fields]
        self.pos = {f: i for i, f in enumerate(self.fields)}
        self.mci_index = index.get("mci")
        notes = {n[1]: n for n in annotations(db, table)}
        self.annotated = any(c.endswith(UUID) for c in columns)
        if not self.annotated:
            self.parsers = [for_plain_pydal(p) for p in self.parsers]
        self.refs = []  # [Ref]
        for f in self.fields:
            ftype = table[f].type
            note = notes.get(f)
            if note is None:
                continue
            _, _, target, kind = note
            if kind == "fk":
                self.refs.append(Ref(self.pos[f], f, None, "fk", index.get(f + UUID), False, False))
                continue
            # a super record (pr_pentity, org_site...) comes with its instance record: may still come
            synced = target in merger.synced or target == self.tablename or is_super_table(db, target)
            self.refs.append(
                Ref(self.pos[f], f, target, kind, index.get(note[0]), bool(table[f].notnull), synced)
            )
        self.compared = [i for i, f in enumerate(self.fields) if f not in NOT_COMPARED]
        self.lengths = [
            (i, table[f].length) for i, f in enumerate(self.fields)
            if table[f].type in ("string", "password") and table[f].length
        ]
        self.required = [
            i for i, f in enumerate(self.fields)
            if table[f].notnull and not any(r.field == f for r in self.refs)
        ]
        self.upload_fields = [self.pos[f] for f in self.fields if table[f].type == "upload"]
        self.types = [table[f].type for f in self.fields]
        self.uuid_pos = self.pos["uuid"]
        self.mod_pos = self.pos.get("modified_on")
        self.compile(merger.char_bool)
        self.optimistic = False  # see Merger.merge_table
        self.skip = self.backoff = 0  # see missed()
        # what Merger.all_same compares: the compared fields and modified_on
        self.same_positions = list(self.compared) + ([self.mod_pos] if self.mod_pos is not None else [])
        # fast_batch: annotated files whose references all carry their @uuid, no uploads to store
        self.fast_ok = merger.paths == "auto" and self.annotated and not self.upload_fields and all(
            r.note is not None for r in self.refs if r.kind != "fk")
        # date/datetime cells written as they are when canonical (SQLite stores that very text; no adapter)
        self.text_dates = [(pos, self.cell_index[pos]) + CANONICAL[t] for pos, t in enumerate(self.types)
                           if t in CANONICAL]

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


class Merger:
    """The state of one import: caches, deferred references, pending rows, files written."""

    def __init__(self, db, settings, report, files=None, batch=BATCH, now=None, paths="auto"):
        if paths not in PATHS:
            raise ValueError("paths must be one of %s, not %r" % (PATHS, paths))
        self.db, self.settings, self.report = db, settings, report
        self.paths = paths
        self.files, self.batch = files or {}, batch
        self.sqlite = dialect.is_sqlite(db)  # else PostgreSQL: COPY, sequences, the reader thread
        self.ph, self.char_bool = dialect.placeholder(db), dialect.char_bool(db)
        self.now = now or utcnow()
        self.future_limit = self.now + datetime.timedelta(seconds=settings.clock_tolerance or 0)
        self.synced = set(synced_tables(db, settings))
        self.origin = None
        self.seen_until = None  # our change seq up to which the sender has merged our data
        self.merged_until = 0  # the sender's change seq up to which we have merged its data
        self.file_ids = {}  # plain pydal files: {table: {file id: uuid}}
        self.deferred = []  # [Deferred]: references written as NULL until their target is in
        self.pending = []  # [Pending]: rows waiting for a NOT NULL reference
        self.tombstones = []
        self.tombstoned_tables = {}  # {table: has tombstones here}, see local_tombstones
        self.merged_tables = set()  # tables whose section is merged: a uuid of theirs not here now never will be
        self.id_cache = {}  # {table: {uuid: local id}}, see uuid_to_id
        self.tag_origin = None  # the sender's base_uuid, when its writes here are tagged as its own
        self.sequences = {}  # PostgreSQL: {table: its id sequence}
        self.id_cached = 0
        self.referenced = None  # tables some synced table refers to (computed at the first insert)
        self.written_files = []
        self.me = this_instance(db)
        self.sender = None  # the instance a peer's login speaks for (see read_origin)
        self.master = settings.master
        conn = db._adapter.connection
        if self.sqlite and not conn.in_transaction:
            # SQLite: take the write lock now (a concurrent writer waits instead of failing midway),
            # and the savepoints below must not open (and so commit) the transaction themselves
            begin_write(db, settings)
        self.mark = changes.write_mark(db)
        # issue 12: the host's data model (super-entities, realms, paths); does nothing without one
        self.entities = entities.Hooks(db, lambda: self.tag_origin)

    # -- sections -------------------------------------------------------
    def section(self, section):
        name = section.tablename
        if not section.columns:  # an empty table in a pydal export: no header, no rows
            return
        if name == IDENTITY_TABLE and UNTIL in section.columns:
            self.read_origin(section)
        elif name == TOMBSTONE_TABLE:
            self.read_tombstones(section)
        elif name not in self.db.tables:
            self.skip(section, "no such table here")
        elif name not in self.synced:
            kind, why = exclusion(self.db, self.settings, name) or ("not synced", "table policy")
            self.skip(section, "%s: %s" % (kind, why))
        else:
            self.merge_table(section)

    def skip(self, section, why):
        """Ignore a table's rows, but learn their id -> uuid: a plain pydal file refers to them by id."""
        cols = section.columns
        learn = "id" in cols and "uuid" in cols and section.tablename in self.db.tables
        ids = self.file_ids.setdefault(section.tablename, {}) if learn else None
        n = 0
        for _, cells in section.rows():
            n += 1
            if learn:
                try:
                    ids[int(cells[cols.index("id")])] = cells[cols.index("uuid")]
                except ValueError:
                    pass
        self.report.skipped_tables[section.tablename] = "%s: %d rows ignored" % (why, n)

    def read_origin(self, section):
        """The sender (first row) and what it has merged of each of its peers (the other rows).

        What a file may claim: a peer's login may send only its own instance's
        file (`sender`); the sender's checkpoint of our changes is capped at
        what we have ever exported (exported_until): no one can have merged
        more of ours, and a larger claim would turn our unseen local edits
        into versions the sender overwrites without a conflict.
        """
        rows = []
        for line, cells in section.rows():
            row = {k: (None if v == NULL or v == "" else v) for k, v in zip(section.columns, cells)}
            for k in CHECKPOINTS:  # checkpoints: whole numbers or nothing
                if row.get(k) is not None and not (row[k].isascii() and row[k].strip().isdigit()):
                    raise BadValue("%r is not a change sequence (a whole number)" % row[k][:60],
                                   table=section.tablename, line=line, column=k)
            rows.append((line, row))
        if not rows:
            return
        line, row = rows[0]
        self.check_origin(row, line)
        self.origin = row
        self.report.origin = dict((k, row.get(k)) for k in ("base_uuid", "owner", "contact", "url", SINCE, UNTIL))
        if row.get("base_uuid") == self.me.base_uuid:
            self.report.note("this file was exported by this instance itself")
        peer = find_peer(self.db, row["base_uuid"]) if row.get("base_uuid") else None
        self.merged_until = (peer.checkpoint_received or 0) if peer else 0
        for line, peer in rows[1:]:
            if peer.get("base_uuid") == self.me.base_uuid and peer.get(MERGED):
                self.seen_until = self.capped_claim(peer[MERGED], line)
        if self.tags_writes(row):
            self.tag_origin = row["base_uuid"]  # the batch captures tag their changes at once

    def check_origin(self, row, line):
        """Refuse a sender row that is not the logged-in peer's, or whose URL is not http(s)."""
        where = dict(table=IDENTITY_TABLE, line=line)
        if self.sender and row.get("base_uuid") != self.sender:
            raise Refused("the file names instance %s as its sender, but it came from instance %s: a peer may "
                          "only send its own changes" % (row.get("base_uuid"), self.sender), column="base_uuid",
                          **where)
        url = row.get("url")
        if url and not is_http_url(url):
            raise Refused("the sender's URL %r is not http(s)://...: refused" % url[:80], column="url", **where)

    def capped_claim(self, claim, line):
        """The sender's claim of how much of our change log it has merged, at most what we exported.

        (read_origin has refused a claim that is not a whole number.)"""
        claim = int(claim)
        cap = min(int(self.me.exported_until or 0), changes.checkpoint(self.db))
        if claim > cap:
            self.report.warn("the sender claims to have merged this instance's changes up to %d, beyond the %d "
                             "this instance has ever exported: taken as %d" % (claim, cap, cap),
                             table=IDENTITY_TABLE, line=line, column=MERGED)
            return cap
        return claim

    def read_tombstones(self, section):
        for line, cells in section.rows():
            row = dict(zip(section.columns, cells))
            try:
                deleted_on = parser("datetime", False)(row.get("deleted_on", NULL)) or EPOCH
            except ValueError:
                raise BadValue("bad date %r" % row.get("deleted_on"), table=section.tablename, line=line, column="deleted_on")
            self.tombstones.append((row.get("tablename"), row.get("record_uuid"), deleted_on, row.get("origin"), line))

    # -- one table -------------------------------------------------------
    def merge_table(self, section):
        plan = SectionPlan(self, self.db[section.tablename], section.columns)
        if not plan.annotated:
            self.report.plain_pydal = True
            self.report.note(
                "plain pydal file: references were resolved through the file alone "
                "(a reference to a record not in the file is set to NULL)"
            )
        self.report.table(plan.tablename)
        for column in plan.ignored:  # a secret or a local id in the file: never written here
            self.report.warn("column ignored: %s.%s never syncs (a secret or a local id)" % (plan.tablename, column),
                             table=plan.tablename, column=column)
        known = set(plan.table.fields) | {n[0] for n in annotations(self.db, plan.table)} | {ROW_SEQ}
        for column in section.columns:
            if column not in known:  # a field only the sender has, or a misspelt header: said, not silent
                self.report.warn("column %s is not a field of %s here: its values are ignored"
                                 % (column, plan.tablename), table=plan.tablename, line=section.line + 1,
                                 column=column)
        # a table empty so far whose uuid is UNIQUE: its batches are tried as all new without a lookup
        # (the index refuses one that is not); after the first refusal they are looked up
        plan.optimistic = plan.fast_ok and not self.execute("SELECT 1 FROM %s LIMIT 1" % plan.table._rname) \
            and unique_uuid_index(self.db, plan.table) is not None
        chunks = section.chunks(self.batch)
        if not self.sqlite and plan.fast_ok and READ_AHEAD:
            # PostgreSQL: the next batches are read and parsed in a thread while the server works on this one
            chunks = _ReadAhead(chunks, lambda raw: self.try_parse_cols(plan, raw))
        try:
            while True:
                try:
                    item = next(chunks, None)
                except SyncError as e:  # a bad value in an earlier row of the batch is the first error
                    [self.parse(plan, line, cells) for line, cells in getattr(e, "partial", ())]
                    raise
                if item is None:
                    break
                raw, parsed = item if isinstance(chunks, _ReadAhead) else (item, None)
                if parsed is None and plan.fast_ok:
                    parsed = self.try_parse_cols(plan, raw)
                if self.fast_batch(plan, raw, parsed):
                    self.report.column_batches += 1
                else:
                    self.merge_batch(plan, self.parse_batch(plan, raw, parsed))
        finally:
            if isinstance(chunks, _ReadAhead):
                chunks.close()
        self.merged_tables.add(plan.tablename)

    def try_parse_cols(self, plan, raw):
        """parse_cols(), or _UNUSUAL for a batch it leaves to the row-wise parse."""
        try:
            return self.parse_cols(plan, raw)
        except _Unusual:
            return _UNUSUAL

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
        if parsed is _UNUSUAL:
            return [self.parse(plan, line, cells) for line, cells in raw]
        try:
            return self.parse_columns(plan, raw, parsed)
        except _Unusual:
            return [self.parse(plan, line, cells) for line, cells in raw]

    def parse_columns(self, plan, raw, parsed=None):
        """Incoming rows from parse_cols() (given as `parsed` when the column-wise path tried the batch)."""
        cols, columns, uuids, mods, mcis = parsed if parsed is not None else self.parse_cols(plan, raw)
        keycols = [(pos, self.key_column(plan, pos, kind, cols[pos], columns, note_index, raw, f))
                   for pos, f, target, kind, note_index, notnull, synced in plan.refs]
        ref_pos = [pos for pos, _ in keycols]
        keyrows = zip(*[keys for _, keys in keycols]) if keycols else [()] * len(raw)
        return [Incoming(line, uuid, list(values), dict(zip(ref_pos, keyrow)), mci, mod, cells)
                for (line, cells), values, keyrow, uuid, mci, mod in zip(raw, zip(*cols), keyrows, uuids, mcis, mods)]

    def parse_cols(self, plan, raw):
        """The batch parsed column by column: (columns of values in plan.fields order, the file's
        columns of cells, uuids, modified_on, mci); raises _Unusual for anything out of the ordinary."""
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
        for pos in plan.required:
            if None in cols[pos]:
                raise _Unusual()
        for pos, length in plan.lengths:
            col = cols[pos]
            if max(map(len, columns[plan.cell_index[pos]])) > length and any(
                    v is not None and len(v) > length for v in col):
                raise _Unusual()
        uuids = cols[plan.uuid_pos]
        if None in uuids or "" in uuids:
            raise _Unusual()
        mods = cols[plan.mod_pos] if plan.mod_pos is not None else [None] * len(raw)
        if plan.mod_pos is not None and None not in mods:
            if max(mods) > self.future_limit:
                raise _Unusual()
        else:
            known = [m for m in mods if m is not None]
            if known and max(known) > self.future_limit:
                raise _Unusual()
        if plan.mci_index is not None:
            try:
                mcis = list(map(int, columns[plan.mci_index]))
            except ValueError:
                raise _Unusual()
        else:
            mcis = [0] * len(raw)
        return cols, columns, uuids, mods, mcis

    def key_column(self, plan, pos, kind, values, columns, note_index, raw, field):
        """reference_keys() for a whole column (the annotated reference inline)."""
        if kind == "ref" and note_index is not None:
            notes = columns[note_index]
            return [None if v is None else ("dangling", v) if n == NULL else ("u", n) for v, n in zip(values, notes)]
        return [self.reference_keys(plan, kind, v, cells, note_index, line, field)
                for v, (line, cells) in zip(values, raw)]

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
        for i in plan.required:
            if values[i] is None:
                raise BadValue("a value is required", table=plan.tablename, line=line, column=plan.fields[i])
        for i, length in plan.lengths:
            if values[i] is not None and len(values[i]) > length:
                raise BadValue("text longer than %d characters" % length, table=plan.tablename, line=line,
                               column=plan.fields[i])
        for i in plan.upload_fields:
            self.check_upload(plan, line, i, values[i])
        uuid = values[plan.uuid_pos]
        if not uuid:
            raise BadValue("empty uuid", table=plan.tablename, line=line, column="uuid")
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
        refs = {}
        for pos, f, target, kind, note_index, notnull, synced in plan.refs:
            value = values[pos]
            if kind == "ref" and note_index is not None and value is not None:  # the common case, inline
                note = cells[note_index]
                refs[pos] = ("dangling", value) if note == NULL else ("u", note)
            else:
                refs[pos] = self.reference_keys(plan, kind, value, cells, note_index, line, f)
        row = Incoming(line, uuid, values, refs, mci, modified_on, cells)
        row.future = future
        return row

    def check_upload(self, plan, line, pos, value):
        """Refuse an upload value that is not a plain file name inside the field's upload folder."""
        if not value:
            return
        field = plan.table[plan.fields[pos]]
        why = unsafe(value) or (None if path_of(self.db, field, value) else "resolves outside the folder")
        if why:
            raise BadValue("upload value %r %s: only a plain file name inside %s's upload folder is accepted"
                           % (value[:80], why, field), table=plan.tablename, line=line, column=plan.fields[pos])

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

    def reference_keys(self, plan, kind, value, cells, note_index, line, field):
        """What a reference names: ('u', uuid) or ('f', file id), a list of them, or None."""
        note = cells[note_index] if note_index is not None else None
        if kind == "fk":
            if note in (None, NULL, ""):
                return None
            try:
                data = json.loads(note)
            except ValueError:
                raise BadValue("deleted_fk annotation is not JSON", table=plan.tablename, line=line, column=field + UUID)
            return {k: ("u", v) for k, v in data.items() if v}
        if kind == "list":
            if note is not None:
                if note == NULL or not note.strip("|"):
                    return []
                return [("u", u) for u in note.strip("|").split("|") if u]
            return [("f", i) for i in (value or [])]
        if value is None:
            return None
        if note is not None:
            if note == NULL:  # the sender's reference was already dangling
                return ("dangling", value)
            return ("u", note)
        return ("f", value)

    # -- one batch, column by column -----------------------------------------
    def fast_batch(self, plan, raw, parsed=None):
        """Merge a batch column by column, without a Python object per row; False if it cannot.

        The two batches of a bulk load and of a re-sync: every row new here
        (no uuid here, none tombstoned), or every row here already with the
        same content.  Cells are parsed per column (parse_cols), references
        resolved per column (one query per referenced table, dict lookups),
        and the write's parameters zipped from the columns.  Anything else (a
        row that differs, a mix, a reference nulled or waiting for a NOT NULL
        target, a uuid twice, uploads, plain pydal files, any bad value) is
        left to merge_batch, row by row: this returns False before it has
        written or reported anything.
        """
        if not plan.fast_ok:
            return False
        if plan.skip:  # recent batches of this table needed the row-wise merge: so may this one
            plan.skip -= 1
            return False
        if parsed is None:
            parsed = self.try_parse_cols(plan, raw)
        if parsed is _UNUSUAL:
            return False
        cols, columns, uuids, mods, mcis = parsed
        cols = list(cols)
        n, name = len(raw), plan.tablename
        if len(set(uuids)) != n:
            return False
        if not plan.optimistic:
            here = self.local_rows(plan, uuids)
            if here and len(here) != n:
                return plan.missed()
            if not here and self.local_tombstones(name, uuids):
                return False
        elif self.local_tombstones(name, uuids):
            plan.optimistic = False
            return False
        else:
            here = None  # not looked up: the insert itself finds out (see write_inserts)
        resolved = self.resolve_columns(plan, cols, columns)
        if resolved is None:
            return False
        cols, defers, nulls = resolved
        texts = {}  # canonical date/datetime columns as their text (None for <NULL>): the stored text itself
        for pos, i, width, marks in plan.text_dates:
            text = _canonical_text(columns[i], width, marks)
            if text is not None:
                texts[pos] = text
        counts = self.report.table(name)
        if here:  # every row here already: unchanged, or back to the row-wise merge
            if defers or not self.all_same(plan, cols, texts, uuids, here, nulls):
                return plan.missed()
            plan.backoff = 0
            counts["read"] += n
            counts[COUNTER[UNCHANGED]] += n
            self.fix_deferred(only_table=name)
            return True
        for pos, text in texts.items():
            cols[pos] = text
        cols.append([m + 1 for m in mcis])
        if not self.write_inserts(plan, cols, [line for line, _ in raw], uuids, optimistic=plan.optimistic):
            plan.optimistic = False  # a uuid of the batch is here already: look them up from now on
            return self.fast_batch(plan, raw, parsed)
        counts["read"] += n
        counts[COUNTER[CREATED]] += n
        for line, cells in raw:
            if not self.report.wants_sample(name, "created"):  # bounded: a dry run names the first few only
                break
            self.sample(plan, "created", cells)
        for i, pos, field, why in sorted(nulls):  # as keep_references() reports them, row by row
            self.nulled(plan, field, why, raw[i][0], uuids[i])
        for i, field, kind, target, keys in defers:
            self.deferred.append(Deferred(name, uuids[i], field, kind, target, keys, raw[i][0]))
        self.fix_deferred(only_table=name)
        return True

    def local_rows(self, plan, uuids):
        """The records of these uuids here, as rows of what all_same() compares: the uuid, then the
        fields of plan.same_positions as stored (on SQLite dates as their stored text: no converter).

        Of a table that others refer to, the same query reads the ids too, for the uuid -> id cache:
        the tables merged after it then resolve their references without a query of their own.
        """
        table, sqlite = plan.table, self.sqlite
        dates = {pos for pos, _, _, _ in plan.text_dates} if sqlite else ()
        cols = ", ".join(("CAST(%s AS TEXT)" if pos in dates else "%s") % table[plan.fields[pos]]._rname
                         for pos in plan.same_positions)
        with_ids = self.is_referenced(table)
        if with_ids:
            cols += ", %s" % table._id._rname
        rows = []
        for where, params in self.in_list(table.uuid._rname, uuids):
            rows.extend(self.execute("SELECT %s, %s FROM %s WHERE %s" % (table.uuid._rname, cols, table._rname, where),
                                     params))
        if with_ids:
            self.cache_ids(plan.tablename, {r[0]: r[-1] for r in rows})
            rows = [r[:-1] for r in rows]
        return rows

    def all_same(self, plan, cols, texts, uuids, here, nulls):
        """Whether every incoming row equals its record here (content and modified_on).

        Both sides as tuples (uuid first) sorted by uuid, compared in one
        list equality (in C).  Stored values are compared as the driver
        returns them, not normalised: equal raw values are equal normalised
        ones, and a value stored in another form (a boolean kept as 't', a
        date with a time) only sends the batch to the row-wise merge, which
        normalises.  On SQLite a date/datetime column compares as text when
        the incoming one is canonical (equal canonical texts are equal values).
        """
        positions = plan.same_positions
        if any(pos in positions for _, pos, _, _ in nulls):  # keep_local_unsynced would take the local value
            return False
        if self.sqlite:
            for pos, _, _, _ in plan.text_dates:
                if pos in positions and pos not in texts:
                    return False
            incoming = [texts.get(pos) or cols[pos] for pos in positions]
        else:
            incoming = [cols[pos] for pos in positions]
        here.sort(key=_first)  # by uuid alone: unique on both sides, and cheaper than whole tuples
        return here == sorted(zip(uuids, *incoming), key=_first)

    def resolve_columns(self, plan, cols, columns):
        """(cols with references as local ids, [(row index, field, kind, target, keys)] deferred,
        [(row index, position, field, why)] nulled), or None when a reference waits for a NOT NULL
        target or dangled at the sender (the row-wise merge does these)."""
        cols, defers, nulls, n = list(cols), [], [], len(cols[0]) if cols else 0
        for pos, f, target, kind, note_index, notnull, synced in plan.refs:
            if kind == "fk":  # deleted_fk: {field: uuid}; mostly empty
                notes = columns[note_index] if note_index is not None else ()
                if any(nt != NULL and nt for nt in notes):
                    return None
                cols[pos] = [None] * n
                continue
            notes = columns[note_index]
            if kind == "list":
                keylists = [[u for u in nt.strip("|").split("|") if u] if nt != NULL else [] for nt in notes]
                found = self.uuid_to_id(target, {u for keys in keylists for u in keys})
                out = []
                cells = cols[pos]
                for i, keys in enumerate(keylists):
                    if not keys:
                        out.append(None if cells[i] is None else "||")  # an empty list stays one
                        continue
                    ids = [found.get(u) for u in keys]
                    out.append(bar_encode([x for x in ids if x is not None]))
                    if None in ids:
                        defers.append((i, f, "list", target, [("u", u) for u in keys]))
                cols[pos] = out
                continue
            values = cols[pos]
            if None in values:
                wanted = {nt for v, nt in zip(values, notes) if v is not None}
            else:
                wanted = set(notes)
            if NULL in wanted or "" in wanted:  # the sender's own reference dangled
                return None
            found = self.uuid_to_id(target, wanted) if wanted else {}
            get = found.get
            if None in values:
                out = [None if v is None else get(nt) for v, nt in zip(values, notes)]
            else:
                out = [get(nt) for nt in notes]
            if len(found) < len(wanted):  # not here (yet)
                if notnull:
                    return None
                missing = [(i, nt) for i, (v, nt) in enumerate(zip(values, notes)) if v is not None and nt not in found]
                if synced:
                    defers.extend((i, f, "ref", target, ("u", nt)) for i, nt in missing)
                else:  # not in this file by policy: nulled (a record here keeps its own value)
                    nulls.extend((i, pos, f, "%s %s is not here" % (target, nt)) for i, nt in missing)
            cols[pos] = out
        return cols, defers, nulls

    def sample(self, plan, kind, cells):
        """A dry run names the record (name-like cells of the file, else its uuid): first few per table and kind."""
        if self.report.wants_sample(plan.tablename, kind):
            values = dict(zip(plan.columns, cells))
            self.report.sample(plan.tablename, kind, record_name(self.db, plan.tablename, values=values)
                               or values.get("uuid"))

    # -- one batch ---------------------------------------------------------
    def merge_batch(self, plan, batch):
        name, counts = plan.tablename, self.report.table(plan.tablename)
        counts["read"] += len(batch)
        batch = self.dedupe(plan, batch)
        locals_ = self.lookup_locals(plan, [r.uuid for r in batch])
        dead = self.local_tombstones(name, [r.uuid for r in batch if r.uuid not in locals_])
        resolved_ids = self.resolve_batch(plan, batch)
        changed_here = self.unseen_later(name, [loc[0] for loc in locals_.values()])
        # records this import wrote already: the same uuid in an earlier batch of the file
        from_file = _Later(lambda: changes.written_since(self.db, name, [loc[0] for loc in locals_.values()],
                                                         self.mark))
        inserts, updates, losers, back = [], [], [], []
        sampling = self.report.dry_run
        for row in batch:
            local = locals_.get(row.uuid)
            outcome, values = self.classify(plan, row, local, dead, resolved_ids, changed_here, from_file)
            counter = COUNTER[outcome]
            if counter:
                counts[counter] += 1
                if sampling and counter in SAMPLED:  # a dry run names the first few records of each kind
                    self.sample(plan, counter, row.cells)
            if outcome == TOMBSTONED:
                if _row_seq(plan, row) >= self.merged_until:  # not merged before: it may be news to us
                    self.log_tombstoned(plan, row, dead[row.uuid])
            elif outcome == WAITS:  # for a NOT NULL reference
                self.pending.append(Pending(plan, row, local))
            elif outcome == CREATED:
                inserts.append((row, values))
                self.keep_references(plan, row)
                if row.uuid in dead:  # changed elsewhere after it was deleted here: it comes back
                    back.append(row.uuid)
            elif outcome == LATER_STAMP:  # the same content, stamped later: take the stamp
                updates.append((row, values, local[0]))
            elif outcome in (FILE_NEWER, UPDATED, CONFLICT_TAKEN):
                updates.append((row, values, local[0]))
                self.keep_references(plan, row)
            if outcome in (CONFLICT_KEPT, FUTURE_WAITS, CONFLICT_TAKEN):
                losers.append(("took_incoming" if outcome == CONFLICT_TAKEN else "kept_local", row) + tuple(local))
        self.log_conflicts(plan, losers)
        self.write(plan, inserts, updates)
        if back:  # its tombstone is stale: a later delete here must be stamped anew, not keep the old time
            tomb = self.db.plugin_sync_tombstone
            for chunk in _chunks(back, CHUNK):
                self.db((tomb.tablename == name) & tomb.record_uuid.belongs(chunk)).delete()
        self.fix_deferred(only_table=name)

    def classify(self, plan, row, local, dead, resolved, changed_here, from_file):
        """(outcome, values): what to make of an incoming version against the local one.

        The one place where the merge decides (the column-wise path only takes
        CREATED and UNCHANGED, for whole batches it proves so).  `local`: (id,
        values) here or None; `dead`: {uuid: deletion time} of tombstones here;
        `changed_here`: local ids the sender has not seen (None: all);
        `from_file`: ids this import wrote already.  `values`, the row's values
        as they would be written, is None for TOMBSTONED and WAITS.
        """
        if local is None and row.uuid in dead and dead[row.uuid] >= (row.modified_on or EPOCH):
            return TOMBSTONED, None
        values = self.resolved_values(plan, row, resolved)
        if values is None:
            return WAITS, None
        if local is None:
            return CREATED, values
        local_id, local_values = local
        self.keep_local_unsynced(plan, row, values, local_values)
        if not row.defers and plan.same(values) == plan.same(local_values):  # a deferred reference differs
            if plan.mod_pos is not None and not row.future and row.modified_on and \
                    row.modified_on > (local_values[plan.mod_pos] or EPOCH):
                return LATER_STAMP, values
            return UNCHANGED, values
        if local_id in from_file:  # an earlier row of this file: the two decided as if together
            earlier = local_values[plan.mod_pos] if plan.mod_pos is not None else None
            # the record counts once (as the earlier row did), the version that lost as older
            return (FILE_NEWER if (row.modified_on or EPOCH) > (earlier or EPOCH) else FILE_OLDER), values
        if self.merged_until and _row_seq(plan, row) < self.merged_until:
            return MERGED_ALREADY, values  # a version of the sender's that we merged already: nothing new
        concurrent = changed_here is None or local_id in changed_here
        if row.future and concurrent:
            return FUTURE_WAITS, values
        if self.decide(plan, row, local_values, concurrent):
            return (CONFLICT_TAKEN if concurrent else UPDATED), values
        return (CONFLICT_KEPT if concurrent else OLDER), values

    def keep_references(self, plan, row):
        """For a row that is written: count its nulled references, queue its deferred ones."""
        for field, why, _ in row.nulls:
            self.nulled(plan, field, why, row.line, row.uuid)
        for field, kind, target, keys in row.defers:
            self.deferred.append(Deferred(plan.tablename, row.uuid, field, kind, target, keys, row.line))

    def nulled(self, plan, field, why, line, uuid):
        """Count a reference set to NULL and say so; user accounts missing here are said once per table and
        field, with their count (entities.Hooks.unmapped: Eden's created_by, owned_by_user...)."""
        self.report.count(plan.tablename, "refs_nulled")
        if not self.entities.unmapped(plan.table, field, why):
            self.report.warn("reference set to NULL: %s" % why, table=plan.tablename, line=line, column=field,
                             uuid=uuid)

    def dedupe(self, plan, batch):
        """A uuid twice in one file: the newer row counts, the other is an older copy."""
        out, index = [], {}
        for row in batch:
            if row.uuid in index:
                other = out[index[row.uuid]]
                if (row.modified_on or EPOCH) > (other.modified_on or EPOCH):
                    out[index[row.uuid]] = row
                self.report.count(plan.tablename, "older")
                continue
            index[row.uuid] = len(out)
            out.append(row)
        return out

    def lookup_locals(self, plan, uuids):
        """{uuid: (id, [normalised values in plan.fields order])} of the records already here."""
        table, out = plan.table, {}
        cols = ", ".join(table[f]._rname for f in plan.fields)
        normalisers, uuid_pos = plan.normalisers, plan.uuid_pos
        for where, params in self.in_list(table.uuid._rname, uuids):
            sql = "SELECT id, %s FROM %s WHERE %s" % (cols, table._rname, where)
            for raw in self.execute(sql, params):
                vals = list(raw[1:])
                for i, fn in normalisers:
                    if vals[i] is not None:
                        vals[i] = fn(vals[i])
                out[vals[uuid_pos]] = (raw[0], vals)
        return out

    def in_list(self, column, values):
        """(`column IN (...)` condition, its parameters) per chunk: SQLite's variable limit; on
        PostgreSQL one `= ANY(array)` (one parameter: nothing to parse and plan per value)."""
        values = list(values)
        if not values:
            return []
        if not self.sqlite:
            return [("%s = ANY(%%s)" % column, [values])]
        return [("%s IN (%s)" % (column, ",".join("?" * len(chunk))), chunk) for chunk in _chunks(values, CHUNK)]

    def uuid_to_id(self, tablename, uuids):
        """{uuid: local id} for records of a table here.

        Mappings read or written during the import are cached (bounded by
        ID_CACHE entries): a uuid keeps its id until a record is deleted, and
        the merge deletes only at the end (apply_tombstones drops the cache).
        """
        table, out, key = self.db[tablename], {}, key_of(self.db, tablename)  # uuid; a user's email (Eden)
        if key is None:
            return out
        cache = self.id_cache.get(tablename)
        if cache:
            uuids = set(uuids)
            hits = uuids & cache.keys()
            out = {u: cache[u] for u in hits}
            uuids -= hits
        for where, params in self.in_list(table[key]._rname, uuids):
            sql = "SELECT %s, %s FROM %s WHERE %s" % (table[key]._rname, table._id._rname, table._rname, where)
            found = dict(self.execute(sql, params))
            out.update(found)
            self.cache_ids(tablename, found)
        return out

    def cache_ids(self, tablename, found):
        if found and self.id_cached + len(found) <= ID_CACHE:
            self.id_cache.setdefault(tablename, {}).update(found)
            self.id_cached += len(found)

    def is_referenced(self, table):
        """Whether a synced table refers to this one (its uuid -> id mappings are worth caching)."""
        if self.referenced is None:
            from .tables import references

            self.referenced = {ref for name in self.synced for _, ref, _ in references(self.db[name])}
        return table._tablename in self.referenced and self.id_cached < ID_CACHE

    def learn_inserted(self, table, after):
        """Cache uuid -> id of the rows just inserted (ids above `after`), if other records refer to them."""
        if not self.is_referenced(table):
            return
        self.cache_ids(table._tablename, dict(self.execute("SELECT %s, id FROM %s WHERE id > %d" % (
            table.uuid._rname, table._rname, int(after)))))

    def resolve_batch(self, plan, batch):
        """{target table: {uuid: local id}} for every reference in the batch that resolves now."""
        wanted = {}
        for pos, f, target, kind, _, _, _ in plan.refs:
            if kind == "ref":  # the common case: one key per row, mostly ('u', uuid)
                uuids = wanted.setdefault(target, set())
                for row in batch:
                    key = row.refs.get(pos)
                    if key:
                        u = key[1] if key[0] == "u" else self.key_uuid(target, key)
                        if u:
                            uuids.add(u)
                continue
            for row in batch:
                keys = row.refs.get(pos)
                if not keys:
                    continue
                if kind == "fk":
                    for fk_field, key in keys.items():
                        t = _fk_target(plan.table, fk_field)
                        if t:
                            wanted.setdefault(t, set()).add(key[1])
                    continue
                for key in keys:
                    u = self.key_uuid(target, key)
                    if u:
                        wanted.setdefault(target, set()).add(u)
        return {t: self.uuid_to_id(t, uuids) for t, uuids in wanted.items() if uuids}

    def key_uuid(self, target, key):
        if key[0] == "u":
            return key[1]
        if key[0] == "f":
            return self.file_ids.get(target, {}).get(key[1])
        return None

    def resolved_values(self, plan, row, resolved):
        """The row's values with references turned into local ids; None if it must wait.

        References nulled or deferred are noted on the row; they count only if it is written.
        """
        values = list(row.values)
        row.nulls, row.defers, row.missing = [], [], None
        for pos, f, target, kind, _, notnull, synced in plan.refs:
            keys = row.refs.get(pos)
            if kind == "fk":
                values[pos] = self.resolve_fk(plan, row, keys, resolved)
                continue
            if kind == "list":
                if not keys:
                    values[pos] = None if row.values[pos] is None else "||"  # an empty list stays one
                    continue
                ids = [resolved.get(target, {}).get(self.key_uuid(target, key)) for key in keys]
                values[pos] = bar_encode([i for i in ids if i is not None])
                if None in ids:
                    if not self.final_now(plan, target):
                        row.defers.append((f, "list", target, keys))
                        continue
                    for key, i in zip(keys, ids):
                        if i is None:
                            self.null_ref(plan, row, f, "%s %s is neither in the file nor here (dropped from the list)"
                                          % (target, self.key_uuid(target, key) or key[1]))
                continue
            if keys is None:
                continue
            if keys[0] == "dangling":
                values[pos] = None
                self.null_ref(plan, row, f, "the sender's own reference (id %s) pointed nowhere" % keys[1], notnull)
                continue
            local = resolved.get(target, {}).get(self.key_uuid(target, keys))
            if local is not None:
                values[pos] = local
                continue
            values[pos] = None
            if not synced:  # not in this file by policy: resolve by uuid here or null it
                self.null_ref(plan, row, f, "%s %s is not here" % (target, keys[1]), notnull, pos)
                continue
            if notnull:
                row.missing = (f, target, keys)
                return None
            if self.final_now(plan, target):
                self.null_ref(plan, row, f, "%s %s is neither in the file nor here" % (target, self.key_uuid(target, keys)
                                                                                     or "id %s" % keys[1]))
                continue
            row.defers.append((f, "ref", target, keys))
        return values

    def final_now(self, plan, target):
        """An unresolved reference into a table whose section is merged (none of its rows still
        waiting) cannot resolve later in this file: it is NULL now, as at the end, so that a record
        whose only difference is such a reference compares as unchanged."""
        return (target != plan.tablename and target in self.merged_tables
                and not any(p.plan.tablename == target for p in self.pending))

    def resolve_fk(self, plan, row, keys, resolved):
        """deleted_fk travels as {field: uuid}; ids that do not resolve here are dropped."""
        if not keys:
            return None
        out = {}
        for fk_field, key in keys.items():
            t = _fk_target(plan.table, fk_field)
            local = resolved.get(t, {}).get(key[1]) if t else None
            if local is not None:
                out[fk_field] = local
        return json.dumps(out, sort_keys=True) if out else None

    def null_ref(self, plan, row, field, why, notnull=False, pos=None):
        """`pos` marks a reference into an unsynced table: an existing record keeps its own value."""
        if notnull:
            raise UnresolvedReference(
                "required reference cannot be resolved: %s" % why, table=plan.tablename, line=row.line, column=field
            )
        row.nulls.append((field, why, pos))

    def keep_local_unsynced(self, plan, row, values, local_values):
        """A reference into an unsynced table (a lookup list, auth_user) that is empty or does not
        resolve here says nothing about the record (the sender may just lack that lookup row):
        keep what the local record points to rather than null it."""
        for pos, f, target, kind, _, _, synced in plan.refs:
            if not synced and kind == "ref" and values[pos] is None:
                values[pos] = local_values[pos]
        row.nulls = [n for n in row.nulls if n[2] is None]

    # -- deciding --------------------------------------------------------
    def decide(self, plan, row, local_values, concurrent):
        """True when the incoming version wins.

        Timestamps have one-second resolution: two versions of the same second
        are common.  If the sender had seen our version, its version is the
        later one; only between concurrent versions is a tie broken by hash.
        """
        policy = conflict_policy(self.settings, plan.tablename)
        if policy == "this":
            return False
        if policy == "other":
            return True
        if policy == "master" and self.master:
            if self.origin and self.origin.get("base_uuid") == self.master:
                return True
            if self.me.base_uuid == self.master:
                return False
        local_mod = local_values[plan.mod_pos] if plan.mod_pos is not None else None
        a, b = row.modified_on or EPOCH, local_mod or EPOCH
        if not concurrent and _row_seq(plan, row) != UNKNOWN_SEQ:
            # the sender had our version and wrote its own after it (what it had sent us
            # before is skipped, see merged_until): a successor, whatever the clocks say
            return True
        if a != b:
            return a > b
        if not concurrent:
            return True
        return self.content_hash_incoming(plan, row) > self.content_hash_local(plan, row.uuid)

    def content_hash_incoming(self, plan, row):
        return _hash({c: row.cells[i] for i, c in enumerate(plan.columns)}, plan)

    def content_hash_local(self, plan, uuid):
        local_id = self.uuid_to_id(plan.tablename, [uuid])[uuid]
        return _hash(wire_rows(self.db, plan.tablename, [local_id])[local_id], plan)

    def unseen_later(self, tablename, ids):
        """unseen(), asked only if a row of the batch differs (a re-sync of the same file never asks)."""
        if not (self.origin or {}).get("base_uuid"):
            return None
        return _Later(lambda: self.unseen(tablename, ids))

    def unseen(self, tablename, ids):
        """Local ids whose version the sender has not seen; None (all of them) for an anonymous file."""
        base_uuid = (self.origin or {}).get("base_uuid")
        if not base_uuid:
            return None
        return changes.unseen_by(self.db, tablename, ids, base_uuid, self.seen_until) if ids else set()

    def log_conflicts(self, plan, losers):
        if not losers or self.report.dry_run:
            return
        local_wire = wire_rows(self.db, plan.tablename, [l[2] for l in losers if l[0] == "took_incoming"])
        origin = (self.origin or {}).get("base_uuid")
        rows = []
        for resolution, row, local_id, local_values in losers:
            incoming = {c: row.cells[i] for i, c in enumerate(plan.columns)}
            local = local_wire.get(local_id) if resolution == "took_incoming" else None
            loser, winner = (local, incoming) if resolution == "took_incoming" else (incoming, None)
            if row.future and self.already_logged(plan.tablename, row.uuid, row.future, origin):
                continue
            rows.append(dict(
                tablename=plan.tablename, record_uuid=row.uuid, origin=origin, resolution=resolution,
                reason="future timestamp" if row.future else "changed on both sides", local_modified_on=local_values[plan.mod_pos] if plan.mod_pos is not None else None,
                incoming_modified_on=row.future or row.modified_on, loser=json.dumps(loser, default=str),
                winner=json.dumps(winner, default=str) if winner else None, created_on=self.now,
            ))
        self.db.plugin_sync_conflict.bulk_insert(rows)

    def already_logged(self, tablename, uuid, incoming_modified_on, origin):
        """A suspect version is logged once, not at every re-import of the same file."""
        c = self.db.plugin_sync_conflict
        return bool(self.db((c.tablename == tablename) & (c.record_uuid == uuid) & (c.origin == origin)
                            & (c.incoming_modified_on == incoming_modified_on)).count())

    # -- writing ---------------------------------------------------------
    def write(self, plan, inserts, updates):
        if inserts:
            self.write_inserts(plan, list(zip(*[values + [row.mci + 1] for row, values in inserts])),
                               [r.line for r, _ in inserts], [row.uuid for row, _ in inserts])
        if updates:
            self.write_updates(plan, [values + [row.mci + 1, lid] for row, values, lid in updates],
                               [r.line for r, _, _ in updates])
        if plan.upload_fields:
            for row, values in [(r, v) for r, v in inserts] + [(r, v) for r, v, _ in updates]:
                for pos in plan.upload_fields:
                    self.store_upload(plan, plan.fields[pos], values[pos], row)

    def write_inserts(self, plan, columns, lines, uuids, optimistic=False):
        """INSERT the rows, given as columns (values in plan.fields order, then mci); `lines` name them in errors.

        SQLite: the new rows are those above the table's max(id) (one writer).
        PostgreSQL: the rows get their ids from the table's sequence here, so
        that the capture and the uuid -> id cache need no look at the table.
        `optimistic`: the uuids were not looked up; the table's UNIQUE uuid
        index refuses the batch if one is here already: then nothing is
        written and this returns False.
        """
        table = plan.table
        cols = [table[f]._rname for f in plan.fields] + [table.mci._rname]
        ids = self.new_ids(table, len(lines)) if not self.sqlite else None
        if ids is not None:
            cols = [table._id._rname] + cols
            columns = [ids] + list(columns)
            after, capture = None, dict(new_ids=ids)
        else:
            after = self.execute("SELECT coalesce(max(id), 0) FROM %s" % table._rname)[0][0]
            capture = dict(inserted_after=after) if self.sqlite else dict(new_uuids=uuids)
        sql = "INSERT INTO %s (%s) VALUES (%s)" % (table._rname, ", ".join(cols), ",".join([self.ph] * len(cols)))
        copy = "COPY %s (%s) FROM STDIN" % (table._rname, ", ".join(cols))  # PostgreSQL
        params = list(zip(*columns)) if self.sqlite else None  # PostgreSQL: COPY text made from the columns
        if not self.executemany(plan, sql, params, lines, capture, copy, columns, optimistic):
            return False
        if ids is not None:
            if self.is_referenced(table):
                self.cache_ids(table._tablename, dict(zip(uuids, ids)))
        else:
            self.learn_inserted(table, after)
        self.entities.written(table._tablename, uuids=uuids)  # issue 12: super records made and linked
        return True

    def new_ids(self, table, n):
        """PostgreSQL: n new ids from the table's sequence (None if its id has none)."""
        name = table._tablename
        if name not in self.sequences:
            self.sequences[name] = self.execute("SELECT pg_get_serial_sequence(%s, %s)",
                                                (table._rname, table._id._rname.strip('"')))[0][0]
        if not self.sequences[name]:
            return None
        return [r[0] for r in self.execute("SELECT nextval(%s) FROM generate_series(1, %s)",
                                           (self.sequences[name], n))]

    def write_updates(self, plan, params, lines):
        """UPDATE the rows (values in plan.fields order, mci, then the local id)."""
        table = plan.table
        sets = ", ".join("%s=%s" % (table[f]._rname, self.ph) for f in plan.fields + ["mci"])
        sql = "UPDATE %s SET %s WHERE id=%s" % (table._rname, sets, self.ph)
        self.executemany(plan, sql, params, lines, dict(ids=[p[-1] for p in params]))
        self.entities.written(table._tablename, ids=[p[-1] for p in params])  # issue 12: super records kept

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

    def executemany(self, plan, sql, params, lines, capture, copy=None, columns=None, optimistic=False):
        """Write a batch; if the database refuses it, find the row and say where.

        The batch's changes are captured set-based (changes.bulk_begin/bulk_end):
        on SQLite the per-row triggers would cost more than the writes themselves.
        `params` may be None when `columns` holds the rows column by column (for a COPY).
        `optimistic`: if the database refuses the batch, undo it and return False.
        """
        cur = self.db._adapter.cursor
        self.execute("SAVEPOINT plugin_sync_batch")
        changes.bulk_begin(self.db, plan.tablename)
        try:
            self.many(sql, params, copy, columns)
        except Exception:
            self.execute("ROLLBACK TO SAVEPOINT plugin_sync_batch")
            if optimistic:  # the caller looks the rows up and tries again; any real error shows then
                self.execute("RELEASE SAVEPOINT plugin_sync_batch")
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
        changes.bulk_end(self.db, plan.tablename, origin=self.tag_origin, **capture)
        self.execute("RELEASE SAVEPOINT plugin_sync_batch")
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
            cur.copy_expert(copy, _copy_columns(columns) if columns is not None else _copy_text(params))
        else:
            from psycopg2.extras import execute_batch

            execute_batch(cur, sql, params, page_size=500)

    def execute(self, sql, params=()):
        cur = self.db._adapter.cursor
        cur.execute(sql, params)
        try:
            return cur.fetchall()
        except Exception:  # statements without a result set
            return []

    # -- after the last row ----------------------------------------------
    def fix_deferred(self, only_table=None, final=False):
        """Point NULL-ed references at their targets now that these are written."""
        keep, by_table = [], {}
        todo = [d for d in self.deferred if only_table is None or d.target == only_table or d.table == only_table]
        if not todo:
            return
        rest = [d for d in self.deferred if not (only_table is None or d.target == only_table or d.table == only_table)]
        wanted = {}
        for d in todo:
            keys = d.keys if d.kind == "list" else [d.keys]
            for key in keys:
                u = self.key_uuid(d.target, key)
                if u:
                    wanted.setdefault(d.target, set()).add(u)
        resolved = {t: self.uuid_to_id(t, us) for t, us in wanted.items()}
        for d in todo:
            tablename, row_uuid, field, kind, target, keys, line = d
            if kind == "list":
                ids = [resolved.get(target, {}).get(self.key_uuid(target, k)) for k in keys]
                if None in ids and not final:
                    keep.append(d)
                    continue
                for k, i in zip(keys, ids):
                    if i is None:
                        self.report.count(tablename, "refs_nulled")
                        self.report.warn("list reference dropped: %s %s is neither in the file nor here"
                                         % (target, self.key_uuid(target, k) or k[1]), table=tablename, line=line,
                                         column=field, uuid=row_uuid)
                by_table.setdefault((tablename, field), []).append((bar_encode([i for i in ids if i is not None]), row_uuid))
                continue
            local = resolved.get(target, {}).get(self.key_uuid(target, keys))
            if local is None:
                if not final:
                    keep.append(d)
                    continue
                self.report.count(tablename, "refs_nulled")
                self.report.warn("reference set to NULL: %s %s is neither in the file nor here"
                                 % (target, self.key_uuid(target, keys) or "id %s" % keys[1]),
                                 table=tablename, line=line, column=field, uuid=row_uuid)
                continue
            by_table.setdefault((tablename, field), []).append((local, row_uuid))
        for (tablename, field), params in by_table.items():
            table = self.db[tablename]
            sql = "UPDATE %s SET %s=%s WHERE %s=%s" % (table._rname, table[field]._rname, self.ph, table.uuid._rname, self.ph)
            changes.bulk_begin(self.db, tablename)  # captured set-based, as in executemany()
            if self.sqlite:
                self.many(sql, params)
            else:  # PostgreSQL: one UPDATE ... FROM unnest(...), the last value of a uuid as the UPDATEs in turn
                last = {u: v for v, u in params}
                kind = "text[]" if table[field].type.startswith("list:") else "bigint[]"
                self.execute("UPDATE %s SET %s = v.val FROM unnest(%%s::%s, %%s::text[]) AS v(val, uuid) "
                             "WHERE %s.%s = v.uuid" % (table._rname, table[field]._rname, kind, table._rname,
                                                       table.uuid._rname), (list(last.values()), list(last)))
            changes.bulk_end(self.db, tablename, uuids=[p[1] for p in params], origin=self.tag_origin)
        self.deferred = rest + keep

    def retry_pending(self, final):
        """Rows that waited for a NOT NULL reference: write them once their target is in."""
        pending, self.pending = self.pending, []
        by_plan = {}
        for plan, row, local in pending:
            by_plan.setdefault(id(plan), (plan, []))[1].append((row, local))
        progress = False
        for plan, items in by_plan.values():
            resolved = self.resolve_batch(plan, [r for r, _ in items])
            inserts, updates = [], []
            for row, local in items:
                values = self.resolved_values(plan, row, resolved)
                if values is None:
                    if final:
                        f, target, key = row.missing
                        raise UnresolvedReference(
                            "required reference to %s %s is neither in the file nor here"
                            % (target, self.key_uuid(target, key) or "id %s" % key[1]),
                            table=plan.tablename, line=row.line, column=f)
                    self.pending.append(Pending(plan, row, local))
                    continue
                progress = True
                if local is not None:
                    self.keep_local_unsynced(plan, row, values, local[1])
                self.keep_references(plan, row)
                if local is None:
                    inserts.append((row, values))
                else:
                    updates.append((row, values, local[0]))
            self.write(plan, inserts, updates)
        return progress

    def finish(self, origin_hint=None):
        while self.pending and self.retry_pending(final=False):
            self.fix_deferred()
        if self.pending:
            self.retry_pending(final=True)
        self.fix_deferred(final=True)
        self.entities.finish(self.report)  # issue 12: realms, super records' shared fields, location paths
        self.apply_tombstones()
        origin = self.origin or origin_hint
        if origin and origin.get("base_uuid") and origin["base_uuid"] != self.me.base_uuid:
            if self.tags_writes(origin):
                changes.tag_writes(self.db, self.mark, origin["base_uuid"])
            peer_id = record_sync(self.db, origin, when=self.now)
            self.acknowledge(peer_id, origin)
        self.report.checkpoint = (self.origin or {}).get(UNTIL)

    def tags_writes(self, origin):
        """Whether this import's writes are tagged as the sender's (see changes.tag_writes)."""
        if not (origin and origin.get("base_uuid") and origin["base_uuid"] != self.me.base_uuid):
            return False
        # not after a gap: an older file of the sender's, arriving later, would be newer than
        # what the tags say the sender had seen (merged_until could not skip its rows)
        since = origin.get(SINCE)
        return since is None or int(since) <= self.merged_until

    def acknowledge(self, peer_id, origin):
        """Remember up to where we merged the sender's changes, if the file left no gap."""
        since, until = origin.get(SINCE), origin.get(UNTIL)
        if until is None:
            return
        if origin.get(PARTIAL):  # the changes of the tables left out are still to come
            self.report.note("this file holds only some tables (%s): the sender's checkpoint stays at what "
                             "a file of all tables brought" % ", ".join(t for t in origin[PARTIAL].split("|") if t))
            return
        peer = self.db.sync_instance(peer_id)
        have = peer.checkpoint_received or 0
        if since is None or int(since) <= have:
            peer.update_record(checkpoint_received=max(have, int(until)))
        else:
            self.report.warn("this file starts at the sender's change %s but we had merged only up to %s: "
                             "changes in between are missing (sync the full data once)" % (since, have))

    def apply_tombstones(self):
        """Hard-delete what the sender hard-deleted, unless it changed here afterwards; remember the uuid."""
        self.id_cache, self.id_cached = {}, 0  # deleted records' uuids must not resolve any more
        me, gone = self.me.base_uuid, False
        for tablename, uuid, deleted_on, origin, line in self.tombstones:
            if tablename not in self.synced or not uuid:
                continue
            table = self.db[tablename]
            row = self.db(table.uuid == uuid).select(table.id, table.modified_on).first()
            if row is not None and (row.modified_on or EPOCH) > deleted_on:
                self.report.warn("kept: changed here after it was deleted elsewhere", table=tablename, line=line,
                                 uuid=uuid)
                continue
            tomb = self.db.plugin_sync_tombstone
            mine = self.db((tomb.tablename == tablename) & (tomb.record_uuid == uuid))
            old = mine.select(tomb.deleted_on).first()
            if old is not None and (old.deleted_on or EPOCH) < deleted_on:
                mine.delete()  # the later deletion is the one to keep (and to pass on, with a new seq)
                old = None
            if old is None:
                # first, so that the delete trigger keeps the sender's origin and time
                tomb.insert(tablename=tablename, record_uuid=uuid, deleted_on=deleted_on, origin=origin or me)
            if row is not None:
                unseen = self.unseen(tablename, [row.id])
                if unseen is None or row.id in unseen:  # changed here, unknown to the deleter: a conflict
                    self.log_deleted(tablename, uuid, row, deleted_on)
                else:
                    self.report.count(tablename, "deleted")
                self.before_cascade(tablename, row.id, deleted_on, origin or me, line)
                self.db(table.id == row.id).delete()
                gone = True
        if gone:
            self.drop_from_lists({t[0] for t in self.tombstones})

    def before_cascade(self, tablename, record_id, deleted_on, origin, line):
        """The synced records the database would delete along (ON DELETE CASCADE), recursively.

        One changed here after the deletion is kept, like the deleted record
        itself would be: its reference is set to NULL, so that the cascade
        passes it by.  One the deleter never saw goes, into the conflict log.
        The tombstone of one that goes carries the deletion's time and origin
        (written first: the delete trigger keeps it), as on the deleter, not
        this instance's clock: every instance then dates the deletion alike.
        """
        from .tables import references

        todo, fate = [(tablename, {record_id})], {(tablename, record_id): "gone"}
        while todo:
            target, ids = todo.pop()
            for name in self.synced:
                table = self.db[name]
                for field, ref, is_list in references(table):
                    if is_list or ref != target or (table[field].ondelete or "").upper() != "CASCADE":
                        continue
                    doomed = set()
                    for r in self.db(table[field].belongs(ids)).select(table.id, table.uuid, table.modified_on):
                        kept = fate.get((name, r.id)) == "kept"
                        if (name, r.id) not in fate:
                            kept = (r.modified_on or EPOCH) > deleted_on and not table[field].notnull
                            fate[(name, r.id)] = "kept" if kept else "gone"
                            if not kept:
                                doomed.add(r.id)
                                self.tombstone_first(name, r.uuid, deleted_on, origin)
                                unseen = self.unseen(name, [r.id])
                                if unseen is None or r.id in unseen:
                                    self.log_deleted(name, r.uuid, r, deleted_on)
                        if kept:
                            self.execute("UPDATE %s SET %s = NULL WHERE id = %d" % (
                                table._rname, table[field]._rname, r.id))
                            self.report.warn("kept: changed here after the %s it refers to was deleted elsewhere "
                                             "(%s set to NULL)" % (target, field), table=name, line=line, uuid=r.uuid)
                    if doomed:
                        todo.append((name, doomed))

    def tombstone_first(self, tablename, uuid, deleted_on, origin):
        """The tombstone of a record about to be deleted here for a deletion elsewhere (replacing a stale one)."""
        tomb = self.db.plugin_sync_tombstone
        self.db((tomb.tablename == tablename) & (tomb.record_uuid == uuid)).delete()
        tomb.insert(tablename=tablename, record_uuid=uuid, deleted_on=deleted_on, origin=origin)

    def log_tombstoned(self, plan, row, deleted_on):
        """An incoming version that our (later) hard delete beats: keep it in the conflict log, once."""
        c = self.db.plugin_sync_conflict
        if self.db((c.tablename == plan.tablename) & (c.record_uuid == row.uuid) & (c.reason == "deleted here")
                   & (c.incoming_modified_on == row.modified_on)).count():
            return
        self.report.count(plan.tablename, "conflicts_kept_local")
        if self.report.dry_run:
            return
        c.insert(tablename=plan.tablename, record_uuid=row.uuid, origin=(self.origin or {}).get("base_uuid"),
                 resolution="kept_local", reason="deleted here", local_modified_on=deleted_on,
                 incoming_modified_on=row.modified_on, created_on=self.now,
                 loser=json.dumps({col: row.cells[i] for i, col in enumerate(plan.columns)}, default=str))

    def log_deleted(self, tablename, uuid, row, deleted_on):
        """A local version the deleter never saw loses to its deletion: keep it in the conflict log."""
        self.report.count(tablename, "conflicts_took_incoming")
        if self.report.dry_run:
            return
        loser = wire_rows(self.db, tablename, [row.id]).get(row.id)
        self.db.plugin_sync_conflict.insert(
            tablename=tablename, record_uuid=uuid, origin=(self.origin or {}).get("base_uuid"),
            resolution="took_incoming", reason="deleted elsewhere", local_modified_on=row.modified_on,
            incoming_modified_on=deleted_on, loser=json.dumps(loser, default=str), created_on=self.now)

    def drop_from_lists(self, tablenames):
        """Take the ids just hard-deleted out of the list:references to these tables.

        The database cascades plain references, not lists; left in, a deleted id
        would dangle here, while the sender's export of the same version no longer
        names it.  The record's modified_on stays: its version is the sender's.
        """
        from .tables import references
        from .values import bar_decode

        for name in self.synced:
            table = self.db[name]
            for field, target, is_list in references(table):
                if not is_list or target not in tablenames:
                    continue
                rows = [(r[0], bar_decode(r[1])) for r in self.execute(
                    "SELECT id, %s FROM %s WHERE %s IS NOT NULL" % (table[field]._rname, table._rname, table[field]._rname))]
                listed = {i for _, ids in rows for i in ids}
                here = set()
                for chunk in _chunks(listed, CHUNK):
                    here.update(r[0] for r in self.execute("SELECT id FROM %s WHERE id IN (%s)" % (
                        self.db[target]._rname, ",".join(str(int(i)) for i in chunk))))
                fixes = [(bar_encode([i for i in ids if i in here]) if here & set(ids) else None, rid)
                         for rid, ids in rows if set(ids) - here]
                if fixes:
                    self.many("UPDATE %s SET %s=%s WHERE id=%s" % (table._rname, table[field]._rname, self.ph, self.ph),
                              fixes)

    def local_tombstones(self, tablename, uuids):
        """{uuid: deleted_on} for incoming uuids that were hard-deleted here.

        Raw SQL (pydal's belongs() renders each uuid in Python), and none at all
        for a table without tombstones: the merge writes tombstones only in finish().
        """
        out, t = {}, self.db.plugin_sync_tombstone
        if tablename not in self.tombstoned_tables:
            rows = self.execute("SELECT 1 FROM %s WHERE %s = %s" % (t._rname, t.tablename._rname, self.ph)
                                + " LIMIT 1", (tablename,))
            self.tombstoned_tables[tablename] = bool(rows)
        if not self.tombstoned_tables[tablename]:
            return out
        for chunk in _chunks(uuids, CHUNK):
            sql = "SELECT %s, %s FROM %s WHERE %s = %s AND %s IN (%s)" % (
                t.record_uuid._rname, t.deleted_on._rname, t._rname, t.tablename._rname, self.ph,
                t.record_uuid._rname, ",".join([self.ph] * len(chunk)))
            for record_uuid, deleted_on in self.execute(sql, [tablename] + list(chunk)):
                out[record_uuid] = deleted_on or EPOCH
        return out

    def abort(self):
        """Undo everything: the transaction and the upload files this import wrote."""
        self.db.rollback()
        for path in self.written_files:
            try:
                os.remove(path)
            except OSError:
                pass
        self.written_files = []


def _copy_text(params):
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


def _copy_columns(columns):
    """_copy_text() of the rows whose columns these are, built column by column (no Python per row):
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


class _Later:
    """A set computed at the first membership test."""

    def __init__(self, compute):
        self.compute, self.value = compute, None

    def __contains__(self, item):
        if self.value is None:
            self.value = self.compute()
        return item in self.value


class _Unusual(Exception):
    """A batch that the column-wise parse leaves to the row-wise one."""


_UNUSUAL = object()


class _ReadAhead:
    """The chunks of a section, read and parsed (`parse`) in a thread one or two batches ahead.

    For PostgreSQL, where the merge mostly waits for the server (libpq calls
    release the GIL): reading and parsing the next batch overlaps the
    server's work on this one.  next() gives (chunk, parse(chunk)) in file
    order, then None; an exception of the reader (a format error after some
    rows, with its `partial`) is raised by next() in its place in the file,
    so errors come in the same order as without the thread.  Memory stays
    bounded (a queue of 2 batches).  close() stops the thread and waits for it.
    """

    def __init__(self, chunks, parse, depth=2):
        import queue
        import threading

        self.queue, self.empty = queue.Queue(depth), queue.Empty
        self.stop, self.done = threading.Event(), False
        self.thread = threading.Thread(target=self.run, args=(chunks, parse, queue.Full), daemon=True,
                                       name="plugin_sync read-ahead")
        self.thread.start()

    def run(self, chunks, parse, full):
        def put(item):
            while not self.stop.is_set():
                try:
                    self.queue.put(item, timeout=0.1)
                    return True
                except full:
                    continue
            return False

        try:
            for raw in chunks:
                if not put(("chunk", (raw, parse(raw)))):
                    return
            put(("end", None))
        except BaseException as e:  # handed to the merging thread, raised there in its place
            put(("error", e))

    def __iter__(self):
        return self

    def __next__(self):
        if self.done:
            raise StopIteration
        kind, value = self.queue.get()
        if kind == "chunk":
            return value
        self.done = True
        if kind == "error":
            raise value
        raise StopIteration

    def close(self):
        self.stop.set()
        while self.thread.is_alive():
            try:
                self.queue.get(timeout=0.1)
            except self.empty:
                pass
        self.thread.join()


UNKNOWN_SEQ = float("inf")


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


def _canonical_text(cells, width, marks):
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


_first = itemgetter(0)


def _row_seq(plan, row):
    """The sender's change seq of this version (its ROW_SEQ cell); unknown: larger than any checkpoint."""
    cell = row.cells[plan.seq_index] if plan.seq_index is not None else NULL
    return int(cell) if cell.isdigit() else UNKNOWN_SEQ


def _hash(wire, plan):
    # cells as the file has them: the incoming side hashes CSV text, the local side typed values (-8.5)
    keep = sorted((k, v if isinstance(v, str) else str(v)) for k, v in wire.items()
                  if k.split("@")[0] not in NOT_COMPARED and not _is_local_ref(plan, k))
    return hashlib.sha256(json.dumps(keep, default=str).encode("utf-8")).hexdigest()


def _is_local_ref(plan, column):
    """Reference columns hold local ids: only their @uuid annotation is comparable across sites."""
    return any(column == r.field for r in plan.refs) or column in ("deleted_rb", "deleted_fk")


def _fk_target(table, fname):
    if fname in table.fields and table[fname].type.startswith("reference "):
        return table[fname].type[10:].strip()
    return None


def _chunks(seq, n):
    seq = list(seq)
    for k in range(0, len(seq), n):
        yield seq[k:k + n]
