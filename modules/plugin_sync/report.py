"""The report of an import: per-table counts, warnings, the origin, and a summary line.

Vocabulary (CouchDB's replication log where it fits): docs_read, docs_written
(created + updated + deleted), doc_write_failures; plus what a Sahana
administrator asks after a sync: what was new, what changed, what stayed,
which conflicts were decided which way, which references had to be nulled.
"""
import collections

COUNTERS = (
    "read",  # rows in the file for this table
    "created",  # new here
    "updated",  # incoming was newer and nobody changed it here since the last sync
    "unchanged",  # same content already here
    "older",  # incoming was an older version of what is here (ignored)
    "conflicts_kept_local",  # both sides changed it: the local version won
    "conflicts_took_incoming",  # both sides changed it: the incoming version won
    "deleted",  # hard-deleted here by a tombstone in the file
    "tombstoned",  # rows ignored because they were hard-deleted here
    "refs_nulled",  # references set to NULL: their target is neither in the file nor here
    "future",  # modified_on further in the future than the clock tolerance
    "owners_changed",  # records whose owners the file changed (only with the setting accept_owners)
)
MAX_WARNINGS = 200
SAMPLE_LIMIT = 10  # a dry run names this many records per table and kind; the rest are counted
SAMPLED = ("created", "updated", "conflicts_kept_local", "conflicts_took_incoming")


class Report:
    """Accumulates the counts and warnings of one import (or a dry run of it)."""

    def __init__(self, dry_run=False):
        self.dry_run = dry_run
        self.tables = collections.OrderedDict()
        self.warnings = []
        self.warning_count = 0
        self.notes = []
        self.skipped_tables = {}
        self.origin = None
        self.plain_pydal = False
        self.seconds = None
        self.checkpoint = None
        self.error = None
        self.column_batches = 0  # batches merged column-wise (Merger.fast_batch): a diagnostic, not in as_dict
        self.samples = collections.OrderedDict()  # dry runs: {table: {kind: [names]}} (first SAMPLE_LIMIT)

    def table(self, name):
        if name not in self.tables:
            self.tables[name] = dict.fromkeys(COUNTERS, 0)
        return self.tables[name]

    def count(self, table, counter, n=1):
        self.table(table)[counter] += n

    def wants_sample(self, table, kind):
        """Does a dry run still name records of this table and kind? (bounded: cheap on large files)"""
        return self.dry_run and len(self.samples.get(table, {}).get(kind, ())) < SAMPLE_LIMIT

    def sample(self, table, kind, name):
        """Name one record a dry run would create, update or decide a conflict about."""
        if self.wants_sample(table, kind):
            self.samples.setdefault(table, collections.OrderedDict()).setdefault(kind, []).append(name)

    def sample_dict(self):
        """{table: {kind: {"names": [...], "more": n}}}: the names and how many more the counts hold."""
        out = collections.OrderedDict()
        for table, kinds in self.samples.items():
            counts = self.tables.get(table, {})
            out[table] = {k: dict(names=names, more=max(0, counts.get(k, 0) - len(names))) for k, names in kinds.items()}
        return out

    def warn(self, message, table=None, line=None, column=None, **extra):
        self.warning_count += 1
        if len(self.warnings) < MAX_WARNINGS:
            self.warnings.append(dict(message=message, table=table, line=line, column=column, **extra))

    def note(self, message):
        if message not in self.notes:
            self.notes.append(message)

    def add(self, other):
        """Fold the report of the next batch of a sync into this one (counts summed, warnings kept); self."""
        for name, counts in other.tables.items():
            mine = self.table(name)
            for k, v in counts.items():
                mine[k] += v
        for w in other.warnings:
            if len(self.warnings) < MAX_WARNINGS:
                self.warnings.append(w)
        self.warning_count += other.warning_count
        for n in other.notes:
            self.note(n)
        self.skipped_tables.update(other.skipped_tables)
        self.origin, self.checkpoint = other.origin or self.origin, other.checkpoint
        self.seconds = (self.seconds or 0) + (other.seconds or 0)
        self.plain_pydal = self.plain_pydal or other.plain_pydal
        return self

    def totals(self):
        total = dict.fromkeys(COUNTERS, 0)
        for counts in self.tables.values():
            for k, v in counts.items():
                total[k] += v
        total["conflicts"] = total["conflicts_kept_local"] + total["conflicts_took_incoming"]
        total["docs_read"] = total["read"]
        total["docs_written"] = total["created"] + total["updated"] + total["conflicts_took_incoming"] + total["deleted"]
        return total

    @property
    def changed(self):
        """Did this import write anything?"""
        t = self.totals()
        return bool(t["docs_written"])

    def summary(self):
        t = self.totals()
        head = "Dry run: would have" if self.dry_run else "Imported:"
        return "%s read %d, created %d, updated %d, unchanged %d, conflicts %d (kept local %d, took incoming %d), deleted %d, references nulled %d%s" % (
            head, t["read"], t["created"], t["updated"], t["unchanged"], t["conflicts"],
            t["conflicts_kept_local"], t["conflicts_took_incoming"], t["deleted"], t["refs_nulled"],
            ", owners changed %d" % t["owners_changed"] if t["owners_changed"] else "",
        )

    def as_dict(self):
        return dict(
            ok=self.error is None,
            dry_run=self.dry_run,
            origin=self.origin,
            plain_pydal_file=self.plain_pydal,
            tables=self.tables,
            totals=self.totals(),
            skipped_tables=self.skipped_tables,
            warnings=self.warnings,
            warning_count=self.warning_count,
            notes=self.notes,
            checkpoint=self.checkpoint,
            seconds=self.seconds,
            summary=self.summary(),
            error=self.error,
            samples=self.sample_dict(),
        )
