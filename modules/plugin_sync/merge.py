"""The merge: import a pydal-format CSV stream into this instance, by uuid.

One import is one transaction: the engine rolls back on any error (and at the
end of a dry run) and never commits; the outermost caller commits.  On SQLite
a dry run merges into a copy of the database (scratch.py), so that a preview
never holds the database's write lock.

For each batch of rows of a table: parse and check every cell (parse.py;
errors name table, line and column), look the uuids up in one query,
resolve references (resolve.py: from the `@uuid` annotations, or from the
file's own ids for plain pydal files) in one query per referenced table,
decide each row (here, classify), and write (write.py); Merger.after_write is
the one place after each batch is written.  References whose target is not
here yet (forward references, self references, cycles) are written as NULL
and fixed after the rest is in; a row whose NOT NULL reference cannot be
resolved yet waits, and is decided by classify like any row once its target
is in (retry_pending).  The losing versions go to conflictlog.py; hard
deletes are tombstones.py's; context.py holds what the pieces share.

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
  clocks), unless one of the two versions is of a record made on both
  instances on its own and never edited since (made_here: no change, the
  edit wins); the losing version then goes to plugin_sync_conflict.  Otherwise
  the incoming version simply updates the record: the sender had our version
  and wrote its own after it, whatever the clocks say (a file without
  `id@seq` may be stale: there an older modified_on is an older copy).

Hard deletes (the file's tombstones, applied at the end): see tombstones.py.
"""
import hashlib
import json
import sqlite3
import time

from . import changes, dialect, progress, scratch
from .aliases import Aliases
from .conflictlog import ConflictLog, Loser
from .context import EPOCH, Context
from .csvstream import Reader
from .errors import BadValue, Busy, Refused, SyncError
from .export import wire_rows
from .batches import Resume, position, resume_point
from .fileformat import (AFTER, CHECKPOINTS, IDENTITY_TABLE, MERGED, NEXT, NULL, PARTIAL, ROW_SEQ, SINCE,
                         TOMBSTONE_TABLE, UNTIL)
from .gcpause import paused
from .local import Locals, same
from .names import record_name
from .parse import NOT_COMPARED, UNUSUAL, Parser, SectionPlan, canonical_text
from .peers import find_peer, is_http_url, record_sync
from .readahead import ReadAhead
from .report import SAMPLED, Report
from .resolve import Deferred, IdCache, Pending, Resolver
from .schema import unique_uuid_index
from .tables import annotations, conflict_policy, exclusion
from .tombstones import Tombstones
from .write import Insert, Update, Writer

BATCH = 2000
READ_AHEAD = True  # PostgreSQL: read and parse the next batches in a thread (see readahead.py)
# What the merge makes of an incoming version (Merger.classify), and the report counter of each.
# The column-wise path (fast_batch) takes only CREATED and UNCHANGED, for whole batches it can prove so.
CREATED, UNCHANGED, LATER_STAMP = "created", "unchanged", "later stamp"
UPDATED, OLDER, MERGED_ALREADY = "updated", "older", "merged already"
FILE_NEWER, FILE_OLDER = "later in the file", "earlier in the file"
CONFLICT_KEPT, CONFLICT_TAKEN, FUTURE_WAITS = "conflict kept local", "conflict took incoming", "future waits"
TOMBSTONED, WAITS = "tombstoned", "waits"
OWNERS = "owners only"  # the same content, other owners, taken (setting accept_owners): a write, never "unchanged"
COUNTER = {CREATED: "created", UNCHANGED: "unchanged", LATER_STAMP: "unchanged", UPDATED: "updated", OLDER: "older",
           OWNERS: "updated",
           MERGED_ALREADY: "older", FILE_NEWER: "older", FILE_OLDER: "older", CONFLICT_KEPT: "conflicts_kept_local",
           CONFLICT_TAKEN: "conflicts_took_incoming", FUTURE_WAITS: "conflicts_kept_local", TOMBSTONED: "tombstoned",
           WAITS: None}  # a waiting row counts when it is written (retry_pending)
PATHS = ("auto", "rows")  # auto: column-wise where it can prove the outcome; rows: always row by row


@paused
def import_and_sync(db, source, settings, dry_run=False, files=None, batch=BATCH, now=None, origin_hint=None,
                    sender=None, paths="auto", account=None):
    """Merge the CSV `source` (path, bytes or stream; gzip allowed) into `db`; return a Report.

    `files`: the upload files of a bundle (bundle.BundleFiles).  `sender`: the
    instance a peer's login speaks for; the file must be its own.  `paths`:
    "auto" merges ordinary batches column by column (see Merger.fast_batch),
    "rows" every row through the row-wise merge (the same result, slower: for
    tests that hold the two to each other).  `account`: the local account
    that imports (a peer's login): it owns the records created, as in Eden's
    own import.  Raises a SyncError subclass (with table, line, column) after
    rolling back.  A dry run on SQLite merges into a copy of the database
    (scratch.py): the database is never write-locked by a preview.
    """
    if dry_run and dialect.is_sqlite(db):
        with scratch.copy_of(db):
            return _merge(db, source, settings, True, files, batch, now, origin_hint, sender, paths, account)
    return _merge(db, source, settings, dry_run, files, batch, now, origin_hint, sender, paths, account)


def _merge(db, source, settings, dry_run, files, batch, now, origin_hint, sender, paths, account):
    report = Report(dry_run=dry_run)
    started = time.time()
    merger = Merger(db, settings, report, files=files, batch=batch, now=now, paths=paths)
    merger.ctx.sender, merger.ctx.account = sender, account
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


class Merger:
    """One import, coordinated: per table its batches, the column-wise path or the row-wise one, the
    decision (classify), and after the last row the waiting rows, deferred references and tombstones.

    The pieces it hands the work to share one Context (`ctx`): `parser`
    (parse.py), `ids` and `resolver` (resolve.py), `writer` (write.py),
    `conflicts` (conflictlog.py), `tombstones` (tombstones.py).
    """

    def __init__(self, db, settings, report, files=None, batch=BATCH, now=None, paths="auto"):
        if paths not in PATHS:
            raise ValueError("paths must be one of %s, not %r" % (PATHS, paths))
        self.ctx = ctx = Context(db, settings, report, now=now)
        self.db, self.settings, self.report = db, settings, report
        self.paths, self.batch = paths, batch
        self.sqlite, self.now, self.synced, self.me = ctx.sqlite, ctx.now, ctx.synced, ctx.me
        self.master = settings.master
        self.file_ids = {}  # plain pydal files: {table: {file id: uuid}}
        self.parser = Parser(ctx, self.file_ids, paths)
        self.ids = IdCache(ctx)
        self.locals = Locals(ctx, self.ids)
        self.writer = Writer(ctx, self.ids, files)
        self.resolver = Resolver(ctx, self.ids, self.file_ids, self.writer)
        self.conflicts = ConflictLog(ctx)
        self.tombstones = Tombstones(ctx, self.ids, self.conflicts, self.writer)
        # None: uuids only, and no alias here (aliases.py); else the ids resolve aliases too
        self.aliases = self.ids.aliases = Aliases.for_import(db, settings, ctx.synced)
        conn = db._adapter.connection
        if self.sqlite and not conn.in_transaction:
            # SQLite: take the write lock now (a concurrent writer waits instead of failing midway),
            # and the savepoints below must not open (and so commit) the transaction themselves
            begin_write(db, settings)
        self.mark = changes.write_mark(db)
        self.ctx.entities.mark = self.mark  # the hooks read what this import wrote back from the change log

    def section(self, section):
        name = section.tablename
        if not section.columns:  # an empty table in a pydal export: no header, no rows
            return
        if name == IDENTITY_TABLE and UNTIL in section.columns:
            section.check_header()
            self.read_origin(section)
        elif name == TOMBSTONE_TABLE:
            section.check_header()
            self.tombstones.read(section)
        elif name not in self.db.tables:
            self.skip(section, "no such table here")
        elif name not in self.synced:
            kind, why = exclusion(self.db, self.settings, name) or ("not synced", "table policy")
            self.skip(section, "%s: %s" % (kind, why))
        else:
            self.merge_table(section)

    def skip(self, section, why):
        """Ignore a table's rows, but learn their file ids (resolve.learn_file_ids): a plain pydal file
        refers to them by these."""
        n = self.resolver.learn_file_ids(section)
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
            for k in (AFTER, NEXT):  # a batch's ends: positions (table:id) or nothing
                try:
                    position(row.get(k))
                except ValueError as e:
                    raise BadValue(str(e), table=section.tablename, line=line, column=k)
            rows.append((line, row))
        if not rows:
            return
        line, row = rows[0]
        self.check_origin(row, line)
        self.ctx.origin = row
        self.report.origin = dict((k, row.get(k)) for k in ("base_uuid", "owner", "contact", "url", SINCE, UNTIL))
        if row.get("base_uuid") == self.me.base_uuid:
            self.report.note("this file was exported by this instance itself")
        peer = find_peer(self.db, row["base_uuid"]) if row.get("base_uuid") else None
        self.ctx.merged_until = (peer.checkpoint_received or 0) if peer else 0
        for line, peer in rows[1:]:
            if peer.get("base_uuid") == self.me.base_uuid and peer.get(MERGED):
                self.ctx.seen_until = self.capped_claim(peer[MERGED], line)
        if self.tags_writes(row):
            self.ctx.tag_origin = row["base_uuid"]  # the batch captures tag their changes at once
        self.resolver.more = bool(row.get(NEXT)) and bool(row.get("base_uuid"))  # a batch, more to come

    def check_origin(self, row, line):
        """Refuse a sender row that is not the logged-in peer's, or whose URL is not http(s)."""
        where = dict(table=IDENTITY_TABLE, line=line)
        if self.ctx.sender and row.get("base_uuid") != self.ctx.sender:
            raise Refused("the file names instance %s as its sender, but it came from instance %s: a peer may "
                          "only send its own changes" % (row.get("base_uuid"), self.ctx.sender), column="base_uuid",
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

    def merge_table(self, section):
        section.check_header()
        plan = SectionPlan(self.ctx, self.db[section.tablename], section.columns, self.paths)
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
        plan.optimistic = plan.fast_ok and not self.ctx.execute("SELECT 1 FROM %s LIMIT 1" % plan.table._rname) \
            and unique_uuid_index(self.db, plan.table) is not None
        chunks = section.chunks(self.batch)
        if not self.sqlite and plan.fast_ok and READ_AHEAD:
            # PostgreSQL: the next batches are read and parsed in a thread while the server works on this one
            chunks = ReadAhead(chunks, lambda raw: self.parser.try_parse_cols(plan, raw))
        try:
            while True:
                try:
                    item = next(chunks, None)
                except SyncError as e:  # a bad value in an earlier row of the batch is the first error
                    [self.parser.parse(plan, line, cells) for line, cells in getattr(e, "partial", ())]
                    raise
                if item is None:
                    break
                raw, parsed = item if isinstance(chunks, ReadAhead) else (item, None)
                if self.aliases is not None and self.translate(plan, raw):
                    parsed = None  # parsed before its uuids were translated
                if parsed is None and plan.fast_ok:
                    parsed = self.parser.try_parse_cols(plan, raw)
                if self.fast_batch(plan, raw, parsed):
                    self.report.column_batches += 1
                else:
                    self.merge_batch(plan, self.parser.parse_batch(plan, raw, parsed))
                progress.batch(len(raw))  # a page's progress bar (progress.py): a no-op unless a job watches
        finally:
            if isinstance(chunks, ReadAhead):
                chunks.close()
        self.resolver.merged_tables.add(plan.tablename)

    def translate(self, plan, raw):
        """Incoming uuids that are aliases of local records (or that the host's matcher matches) become
        the local records' uuids in the batch's cells (aliases.py); True if any did."""
        name = plan.tablename

        def here(uuids):
            return set(self.ids.uuid_to_id(name, uuids)) | set(self.tombstones.local(name, uuids))

        return self.aliases.translate(name, plan.columns, raw, here, self.ids.uuid_to_id,
                                      origin=(self.ctx.origin or {}).get("base_uuid"))

    def fast_batch(self, plan, raw, parsed=None):
        """Merge a batch column by column, without a Python object per row; False if it cannot.

        The two batches of a bulk load and of a re-sync: every row new here
        (no uuid here, none tombstoned), or every row here already with the
        same content.  Cells are parsed per column (parse_cols), references
        resolved per column (one query per referenced table, dict lookups),
        and the write's parameters zipped from the columns.  Anything else (a
        row that differs, a mix, a reference waiting for a NOT NULL target or
        refused, a uuid twice, uploads, plain pydal files, any bad value) is
        left to merge_batch, row by row: this returns False before it has
        written or reported anything.
        """
        if not plan.fast_ok:
            return False
        if plan.skip:  # recent batches of this table needed the row-wise merge: so may this one
            plan.skip -= 1
            return False
        if parsed is None:
            parsed = self.parser.try_parse_cols(plan, raw)
        if parsed is UNUSUAL:
            return False
        columns, uuids = parsed.cells, parsed.uuids
        n, name = len(raw), plan.tablename
        if len(set(uuids)) != n:
            return False
        if not plan.optimistic:
            here = self.locals.stored(plan, uuids)
            if here and len(here) != n:
                return plan.missed()
            if not here and self.tombstones.local(name, uuids):
                return False
        elif self.tombstones.local(name, uuids):
            plan.optimistic = False
            return False
        else:
            here = None  # not looked up: the insert itself finds out (see write_inserts)
        resolved = self.resolver.resolve_columns(plan, parsed)
        if resolved is None:
            return False
        cols, said = resolved
        texts = {}  # canonical date/datetime columns as their text (None for <NULL>): the stored text itself
        for pos, i, width, marks in plan.text_dates:
            text = canonical_text(columns[i], width, marks)
            if text is not None:
                texts[pos] = text
        counts = self.report.table(name)
        if here:  # every row here already: unchanged, or back to the row-wise merge
            if any(type(n) is Deferred for _, n in said) or \
                    not self.locals.all_same(plan, cols, texts, uuids, here, said):
                return plan.missed()
            plan.backoff = 0
            counts["read"] += n
            counts[COUNTER[UNCHANGED]] += n
            self.after_write(plan, None)
            return True
        for pos, text in texts.items():
            cols[pos] = text
        cols.append([m + 1 for m in parsed.mcis])
        written = self.writer.write_inserts(plan, cols, [line for line, _ in raw], uuids, optimistic=plan.optimistic)
        if written is None:
            plan.optimistic = False  # a uuid of the batch is here already: look them up from now on
            return self.fast_batch(plan, raw, parsed)
        counts["read"] += n
        counts[COUNTER[CREATED]] += n
        for line, cells in raw:
            if not self.report.wants_sample(name, "created"):  # bounded: a dry run names the first few only
                break
            self.sample(plan, "created", cells)
        for i, note in said:
            self.resolver.keep(plan, raw[i][0], uuids[i], [note])
        self.after_write(plan, written)
        return True

    def sample(self, plan, kind, cells):
        """A dry run names the record (name-like cells of the file, else its uuid): first few per table and kind."""
        if self.report.wants_sample(plan.tablename, kind):
            values = dict(zip(plan.columns, cells))
            self.report.sample(plan.tablename, kind, record_name(self.db, plan.tablename, values=values)
                               or values.get("uuid"))

    def merge_batch(self, plan, batch):
        """Merge a batch row by row: each row decided by classify."""
        self.report.table(plan.tablename)["read"] += len(batch)
        self.merge_rows(plan, self.dedupe(plan, batch))

    def merge_rows(self, plan, batch, final=False):
        """Decide every row (classify), log the losers, write the rest; the number of rows written or
        decided.  A row waiting for a NOT NULL reference is queued (Pending), or refused when `final`."""
        name, counts = plan.tablename, self.report.table(plan.tablename)
        locals_ = self.locals.rows(plan, [r.uuid for r in batch])
        dead = self.tombstones.local(name, [r.uuid for r in batch if r.uuid not in locals_])
        resolved_ids = self.resolver.lookup_rows(plan, batch)
        changed_here = self.unseen_later(name, [loc.id for loc in locals_.values()])
        # records this import wrote already: the same uuid in an earlier batch of the file
        from_file = _Later(lambda: changes.written_since(self.db, name, [loc.id for loc in locals_.values()],
                                                         self.mark))
        inserts, updates, losers, back, waiting = [], [], [], [], 0
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
                if _row_seq(plan, row) >= self.ctx.merged_until:  # not merged before: it may be news to us
                    self.conflicts.tombstoned(plan, row, dead[row.uuid])
            elif outcome == WAITS:  # for a NOT NULL reference
                if final:
                    self.resolver.refuse_missing(plan, row)
                self.resolver.pending.append(Pending(plan, row, local))
                waiting += 1
            elif outcome == CREATED:
                inserts.append(Insert(row, values))
                self.resolver.keep(plan, row.line, row.uuid, row.nulls + row.defers)
                if row.uuid in dead:  # changed elsewhere after it was deleted here: it comes back
                    back.append(row.uuid)
            elif outcome in (LATER_STAMP, OWNERS, FILE_NEWER, UPDATED, CONFLICT_TAKEN):
                updates.append(Update(row, values, local.id))
                if outcome not in (LATER_STAMP, OWNERS):  # (the same content: nothing to say)
                    self.resolver.keep(plan, row.line, row.uuid, row.nulls + row.defers)
            if outcome in (CONFLICT_KEPT, FUTURE_WAITS, CONFLICT_TAKEN):
                losers.append(Loser("took_incoming" if outcome == CONFLICT_TAKEN else "kept_local", row, *local))
        self.conflicts.log(plan, losers)
        counts["owners_changed"] += sum(1 for u in updates if u.row.owners)
        written = self.writer.write(plan, inserts, updates)
        if back:
            self.tombstones.revive(name, back)
        self.after_write(plan, written)
        return len(batch) - waiting

    def after_write(self, plan, written):
        """The one place after each batch of a table is merged (`written`: what Writer.write wrote,
        None for a batch all unchanged): references deferred to its records are fixed now.  Issue 12:
        the super records of what it wrote are made and linked first (entities.Hooks)."""
        if written is not None:
            self.ctx.entities.written(plan.tablename, written)
        self.resolver.fix_deferred(only_table=plan.tablename)

    def classify(self, plan, row, local, dead, resolved, changed_here, from_file):
        """(outcome, values): what to make of an incoming version against the local one.

        The one place where the merge decides (the column-wise path only takes
        CREATED and UNCHANGED, for whole batches it proves so).  `local`: the
        record here (local.Local) or None; `dead`: {uuid: deletion time} of tombstones here;
        `changed_here`: local ids the sender has not seen (None: all);
        `from_file`: ids this import wrote already.  `values`, the row's values
        as they would be written, is None for TOMBSTONED and WAITS.
        """
        if local is None and row.uuid in dead and dead[row.uuid] >= (row.modified_on or EPOCH):
            return TOMBSTONED, None
        values = self.resolver.resolved_values(plan, row, resolved)
        if values is None:
            return WAITS, None
        if local is None:
            return CREATED, values
        local_id, local_values = local
        self.resolver.keep_local_unsynced(plan, row, values, local_values)
        # owners: read only with accept_owners (plan.owner_pos); a change of them is a write, counted
        row.owners = any(values[pos] != local_values[pos] for pos in plan.owner_pos)
        if not row.defers and same(plan, values, local_values):  # a deferred reference differs
            if plan.mod_pos is not None and not row.future and row.modified_on and \
                    row.modified_on > (local_values[plan.mod_pos] or EPOCH):
                if plan.created_pos is not None:  # the stamp only: the record keeps its own created_on
                    values[plan.created_pos] = local_values[plan.created_pos]
                return LATER_STAMP, values
            if row.owners:  # the owners alone: the record keeps its own stamps
                for pos in (plan.mod_pos, plan.created_pos):
                    if pos is not None:
                        values[pos] = local_values[pos]
                return OWNERS, values
            return UNCHANGED, values
        if local_id in from_file:  # an earlier row of this file: the two decided as if together
            earlier = local_values[plan.mod_pos] if plan.mod_pos is not None else None
            # the record counts once (as the earlier row did), the version that lost as older
            return in_file(row.modified_on, earlier), values
        if self.ctx.merged_until and _row_seq(plan, row) < self.ctx.merged_until:
            return MERGED_ALREADY, values  # a version of the sender's that we merged already: nothing new
        concurrent = changed_here is None or local_id in changed_here
        # a version made on its own and never edited since is no change: no conflict with it (made_here)
        made = (made_here(plan, local_values, values), made_here(plan, values, local_values)) if concurrent \
            else (False, False)
        conflict = concurrent and not any(made)
        if row.future and conflict:
            return FUTURE_WAITS, values
        if self.decide(plan, row, local_values, concurrent, made):
            return (CONFLICT_TAKEN if conflict else UPDATED), values
        return (CONFLICT_KEPT if conflict else OLDER), values

    def dedupe(self, plan, batch):
        """A uuid twice in one batch: decided as classify decides a uuid again in a later batch
        (in_file): the newer row counts, the other as the version that lost."""
        out, index = [], {}
        for row in batch:
            if row.uuid in index:
                if in_file(row.modified_on, out[index[row.uuid]].modified_on) == FILE_NEWER:
                    out[index[row.uuid]] = row
                self.report.count(plan.tablename, COUNTER[FILE_OLDER])
                continue
            index[row.uuid] = len(out)
            out.append(row)
        return out

    def decide(self, plan, row, local_values, concurrent, made=(False, False)):
        """True when the incoming version wins.

        Timestamps have one-second resolution: two versions of the same second
        are common.  If the sender had seen our version, its version is the
        later one; only between concurrent versions is a tie broken by hash.
        `made`: whether the (local, incoming) version is one made on its own
        and never edited since (made_here): an edit wins over it.
        """
        policy = conflict_policy(self.settings, plan.tablename)
        if policy == "this":
            return False
        if policy == "other":
            return True
        if policy == "master" and self.master:
            if self.ctx.origin and self.ctx.origin.get("base_uuid") == self.master:
                return True
            if self.me.base_uuid == self.master:
                return False
        local_mod = local_values[plan.mod_pos] if plan.mod_pos is not None else None
        a, b = row.modified_on or EPOCH, local_mod or EPOCH
        if not concurrent and _row_seq(plan, row) != UNKNOWN_SEQ:
            # the sender had our version and wrote its own after it (what it had sent us
            # before is skipped, see merged_until): a successor, whatever the clocks say
            return True
        if made[0] != made[1]:  # an edit beats a version only made (both only made: the usual rule below)
            return made[0]
        if a != b:
            return a > b
        if not concurrent:
            return True
        return self.content_hash_incoming(plan, row) > self.content_hash_local(plan, row.uuid)

    def content_hash_incoming(self, plan, row):
        return _hash({c: row.cells[i] for i, c in enumerate(plan.columns)}, plan)

    def content_hash_local(self, plan, uuid):
        local_id = self.ids.uuid_to_id(plan.tablename, [uuid])[uuid]
        return _hash(wire_rows(self.db, plan.tablename, [local_id])[local_id], plan)

    def unseen_later(self, tablename, ids):
        """unseen(), asked only if a row of the batch differs (a re-sync of the same file never asks)."""
        if not (self.ctx.origin or {}).get("base_uuid"):
            return None
        return _Later(lambda: self.ctx.unseen(tablename, ids))

    def retry_pending(self, final):
        """Rows that waited for a NOT NULL reference, merged again now that their target may be in.

        Through classify like any row, against the record as it is now: a
        waiting version may be older than the local one, or concurrent with it
        (a conflict).  `final`: a row that still waits is refused.  True if
        some row no longer waits.
        """
        pending, self.resolver.pending = self.resolver.pending, []
        by_plan = {}
        for p in pending:
            by_plan.setdefault(id(p.plan), (p.plan, []))[1].append(p.row)
        progress = False
        for plan, rows in by_plan.values():
            if self.merge_rows(plan, rows, final):
                progress = True
        return progress

    def finish(self, origin_hint=None):
        sender = (self.ctx.origin or {}).get("base_uuid")
        if sender and sender != self.me.base_uuid:
            self.resolver.take_over(sender)  # what earlier batches of a batched sync left unresolved
        while self.resolver.pending and self.retry_pending(final=False):
            self.resolver.fix_deferred()
        if self.resolver.pending:
            self.retry_pending(final=True)
        if self.resolver.more:  # a later batch of the range may bring the targets
            self.resolver.fix_deferred()
            self.resolver.carry_over(sender)
        else:
            self.resolver.fix_deferred(final=True)
        self.ctx.entities.finish(self.report)  # issue 12: realms, super records' shared fields, paths
        for name, counts in self.report.tables.items():
            if counts["owners_changed"]:  # said in the report and the log, never silent
                self.report.warn("owners of %d records changed as the file says (setting accept_owners)"
                                 % counts["owners_changed"], table=name, column="owned_by_user")
        self.tombstones.apply()
        origin = self.ctx.origin or origin_hint
        if origin and origin.get("base_uuid") and origin["base_uuid"] != self.me.base_uuid:
            if self.tags_writes(origin):
                changes.tag_writes(self.db, self.mark, origin["base_uuid"])
                self.tombstones.untag()
            peer_id = record_sync(self.db, origin, when=self.now)
            self.acknowledge(peer_id, origin)
        self.report.checkpoint = (self.ctx.origin or {}).get(UNTIL)

    def tags_writes(self, origin):
        """Whether this import's writes are tagged as the sender's (see changes.tag_writes)."""
        if not (origin and origin.get("base_uuid") and origin["base_uuid"] != self.me.base_uuid):
            return False
        # not after a gap: an older file of the sender's, arriving later, would be newer than
        # what the tags say the sender had seen (merged_until could not skip its rows)
        since = origin.get(SINCE)
        return since is None or int(since) <= self.ctx.merged_until

    def acknowledge(self, peer_id, origin):
        """Remember up to where we merged the sender's changes, if the file left no gap.

        A batch of a range (batches.py) moves the resume point (checkpoint_resume) to its end, and
        only when it starts where the last batch committed ended; the range's last batch moves
        checkpoint_received to `until`.
        """
        since, until = origin.get(SINCE), origin.get(UNTIL)
        if until is None:
            return
        if origin.get(PARTIAL):  # the changes of the tables left out are still to come
            self.report.note("this file holds only some tables (%s): the sender's checkpoint stays at what "
                             "a file of all tables brought" % ", ".join(t for t in origin[PARTIAL].split("|") if t))
            return
        peer = self.db.sync_instance(peer_id)
        have = peer.checkpoint_received or 0
        if since is not None and int(since) > have:
            self.report.warn("this file starts at the sender's change %s but we had merged only up to %s: "
                             "changes in between are missing (sync the full data once)" % (since, have))
            return
        after, next_ = position(origin.get(AFTER)), position(origin.get(NEXT))
        resume = resume_point(peer.checkpoint_resume)
        if after is not None and (since is None or resume != Resume(int(since), int(until), after)):
            self.report.warn("this batch of the sender's changes %s..%s starts after %s, but we had merged that "
                             "range up to %s: its records are merged, the checkpoint stays"
                             % (since, until, after, resume.after if resume else "nothing of it"))
            return
        if next_ is not None:
            peer.update_record(checkpoint_resume=str(Resume(int(since), int(until), next_)))
            return
        done = max(have, int(until))
        peer.update_record(checkpoint_received=done,
                           checkpoint_resume=str(resume) if resume is not None and resume.until > done else None)

    def abort(self):
        """Undo everything: the transaction and the upload files this import wrote."""
        self.db.rollback()
        self.writer.remove_files()


class _Later:
    """A set computed at the first membership test."""

    def __init__(self, compute):
        self.compute, self.value = compute, None

    def __contains__(self, item):
        if self.value is None:
            self.value = self.compute()
        return item in self.value


UNKNOWN_SEQ = float("inf")


def in_file(modified_on, earlier):
    """A uuid again in the same file: FILE_NEWER if this row's version is the later one (it is written),
    else FILE_OLDER (an older copy); `earlier`: the modified_on of the row before it."""
    return FILE_NEWER if (modified_on or EPOCH) > (earlier or EPOCH) else FILE_OLDER


def made_only(plan, values):
    """Whether this version of a record is as it was made, never edited since: created_on == modified_on.

    What Eden (and pydal's `update=` stamps) record: both stamps are set when a record is made, in the
    same second (Eden stores seconds), and every later write through the model moves modified_on.
    A table without both stamps has no made-only versions."""
    c, m = plan.created_pos, plan.mod_pos
    return c is not None and m is not None and values[c] is not None and values[c] == values[m]


def made_here(plan, version, other):
    """Whether `version` (the local one, or the incoming one) is no change against `other`: the record was
    made on both instances on its own (the two created_on differ: every Eden's prepopulate makes its
    lookups and countries, a record matched by its key) and this version was never edited since
    (made_only).

    Why this is safe: one making copied around carries one created_on everywhere, so between copies the
    usual rule (change sequences, checkpoints) decides, as before.  Only where both instances made the
    record does this one decide, and there a version only made holds no one's edit: an edit of the
    record simply wins over it, no conflict, whichever side it comes from.  The error is on the safe
    side: a write that moves the stamp (Eden's onaccept a second later, a merge taking a later stamp)
    counts as an edit, and at worst a conflict is logged as before.  Only an edit in the very second the
    record was made, or one that keeps modified_on (raw SQL; Eden's bookkeeping writes keep it on
    purpose: realms, super links), would pass as no edit.
    """
    c = plan.created_pos
    return made_only(plan, version) and other[c] is not None and other[c] != version[c]


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
