"""Batches of a change range: a large sync in pieces, each committed and checkpointed (CouchDB's replicator).

A range [since, until) of the change log is walked in a fixed order, the
export's table order (parents first), then id, and cut into batches of at
most `limit` records.  A *position* ("table:id") names the last record of a
batch; the next batch starts after it; the tombstones of the range travel in
the batch that reaches its end.  The receiver keeps, per sender, the range it
is walking and the position up to which it has committed (sync_instance.
checkpoint_resume, "since:until:table:id"), so that a cut link resumes
there, and moves its checkpoint to `until` only with the range's last batch.

Why no record is skipped: while a sync runs, the records of [since, until)
can only leave the range (a record changed meanwhile takes a seq >= until and
travels with the next range), never join it; walking a shrinking set in a
fixed order passes every record still in it.
"""
from typing import NamedTuple

from . import changes

BATCH = 1000  # records per batch (setting sync_batch; 0: the whole range in one transfer)


class Position(NamedTuple):
    """The last record of a batch: its table and its id."""

    table: str
    id: int

    def __str__(self):
        return "%s:%d" % (self.table, self.id)


class Resume(NamedTuple):
    """Where a receiver is in a sender's range: [since, until), committed up to `after`."""

    since: int
    until: int
    after: Position

    def __str__(self):
        return "%d:%d:%s" % (self.since, self.until, self.after)


def position(text):
    """A Position from "table:id" (None for nothing); ValueError for anything else."""
    if text is None or text == "":
        return None
    table, _, rid = str(text).rpartition(":")
    if not table or not rid.isdigit() or not all(c.isalnum() or c == "_" for c in table):
        raise ValueError("%r is not a position (table:id)" % str(text)[:80])
    return Position(table, int(rid))


def resume_point(text):
    """A Resume from "since:until:table:id" (a sync_instance.checkpoint_resume); None when empty or unreadable."""
    try:
        since, until, rest = str(text or "").split(":", 2)
        return Resume(int(since), int(until), position(rest))
    except ValueError:
        return None


def batch_size(settings, explicit=None):
    """Records per batch: `explicit`, else the setting sync_batch, else BATCH; 0 or less: no batches."""
    value = explicit if explicit is not None else (settings.get("sync_batch") if settings is not None else None)
    return BATCH if value is None else int(value)


def plan(db, tablenames, since, until, after=None, limit=None, echo_of=None):
    """What one batch of [since, until) holds: ([(table, (lo, hi))], next Position or None).

    Each table's records travel with lo < id <= hi (None: no bound); `next`
    None means the batch reaches the end of the range (the tombstones go with
    it).  `after` must name one of `tablenames` (or be None: the range's start).
    Without a `limit`, every table, whole, and no next.
    """
    start = tablenames.index(after.table) if after is not None else 0
    parts, room = [], limit
    for name in tablenames[start:]:
        lo = after.id if after is not None and name == after.table else None
        if limit:
            if room == 0:  # full: the next batch starts after the last record taken
                return parts, _last(parts)
            n, last = changes.changed_page(db, name, since, until, lo, room, echo_of)
            if n >= room:
                parts.append((name, (lo, last)))
                room = 0
                continue
            room -= n
        parts.append((name, (lo, None)))
    if limit and room == 0:
        return parts, _last(parts)
    return parts, None


def _last(parts):
    name, (_, hi) = parts[-1]
    return Position(name, hi)
