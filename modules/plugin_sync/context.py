"""What the pieces of one import share: the database and how to talk to it, and who sent the file.

The merge's pieces (parse.py, resolve.py, write.py, conflictlog.py,
tombstones.py) each get this one small object instead of the whole Merger:
the `db`, settings and report, the dialect answers (`sqlite`, `ph`), the
import's clock, the synced tables, this instance, and what the file's
sender row said (`origin`, the checkpoints), which Merger.read_origin sets.
"""
import datetime

from . import changes, dialect, entities, validators
from .peers import this_instance, utcnow
from .tables import synced_tables

CHUNK, chunks = dialect.CHUNK, dialect.chunks  # (the merge's pieces import them from here)
EPOCH = datetime.datetime(1970, 1, 1)


def future_limit(settings, now):
    """The latest stamp (modified_on, a deletion's deleted_on) taken at face value: later ones come from a
    clock that runs ahead, and would otherwise beat every version made here until their date."""
    return now + datetime.timedelta(seconds=settings.clock_tolerance or 0)


class Context:
    """The import's shared state: set up once, the sender's part filled in by Merger.read_origin."""

    def __init__(self, db, settings, report, now=None):
        self.db, self.settings, self.report = db, settings, report
        self.sqlite = dialect.is_sqlite(db)  # else PostgreSQL: COPY, sequences, the reader thread
        self.ph, self.char_bool = dialect.placeholder(db), dialect.char_bool(db)
        self.now = now or utcnow()
        self.future_limit = future_limit(settings, self.now)  # one clock rule for modified_on and deleted_on
        self.synced = set(synced_tables(db, settings))
        self.me = this_instance(db)
        self.origin = None  # the file's sender row (see Merger.read_origin)
        self.seen_until = None  # our change seq up to which the sender has merged our data
        self.merged_until = 0  # the sender's change seq up to which we have merged its data
        self.tag_origin = None  # the sender's base_uuid, when its writes here are tagged as its own
        self.sender = None  # the instance a peer's login speaks for (see Merger.check_origin)
        self.account = None  # the local account that imports (a peer's login; None: no one): owner of what is new
        # issue 12: the host's data model (super-entities, realms, paths); does nothing without one
        self.entities = entities.Hooks(db, lambda: self.tag_origin)
        self.checks = validators.Checks(db, self.char_bool)  # the host's field validators (does nothing without)

    @property
    def origin_uuid(self):
        """The sender's base_uuid, or None for an anonymous file."""
        return (self.origin or {}).get("base_uuid")

    def execute(self, sql, params=()):
        """Raw SQL on the import's connection; the rows, or [] for a statement without a result."""
        cur = self.db._adapter.cursor
        cur.execute(sql, params)
        try:
            return cur.fetchall()
        except Exception:  # statements without a result set
            return []

    def in_list(self, column, values):
        """(`column IN (...)` condition, its parameters) per chunk: SQLite's variable limit; on
        PostgreSQL one `= ANY(array)` (one parameter: nothing to parse and plan per value)."""
        values = list(values)
        if not values:
            return []
        if not self.sqlite:
            return [("%s = ANY(%%s)" % column, [values])]
        return [("%s IN (%s)" % (column, ",".join("?" * len(chunk))), chunk) for chunk in chunks(values, CHUNK)]

    def unseen(self, tablename, ids):
        """Local ids whose version the sender has not seen; None (all of them) for an anonymous file."""
        base_uuid = self.origin_uuid
        if not base_uuid:
            return None
        return changes.unseen_by(self.db, tablename, ids, base_uuid, self.seen_until) if ids else set()


