"""Hard deletes: the file's tombstones applied at the end, and the tombstones here.

The later of two deletions of a uuid is the one kept.  Knowledge first,
then clocks, as for versions (Merger.decide): a local version the deleter
had seen goes whatever the clocks say, and a version the sender still sends
after seeing our deletion comes back (local()).  One the deleter never saw
stays if it outlives the deletion (`outlives`: changed here after it, or
the deletion dated ahead of our clock), and so does one that refers to the
deleted record (its reference set to NULL) where the database would
cascade; else it goes to the conflict log (as does an incoming version that
our own later deletion beats: Merger.classify's TOMBSTONED); the deleted
ids leave the list:references here.  While the
rows merge, `local()` says which incoming uuids were deleted here (see
Merger.classify), and `revive()` drops the tombstone of a record that comes
back.
"""
from typing import NamedTuple

from . import changes
from .context import CHUNK, EPOCH, chunks
from .errors import BadValue
from .fileformat import NULL, UNTIL
from .tables import references
from .values import bar_decode, bar_encode, parser


class Deletion(NamedTuple):
    """One row of the file's tombstone block; `future`: the sender's deleted_on, when it was ahead of our
    clock (deleted_on is then our own clock's, and the deletion does not beat a concurrent local version)."""
    tablename: str
    uuid: str
    deleted_on: object
    origin: str
    line: int
    future: object = None


def outlives(modified_on, deleted_on, future):
    """The clock rule of a deletion elsewhere against a local version that the deleter never saw (one it
    had seen goes, whatever the clocks say): that version stays if changed here after the deletion, or
    if the deletion is dated ahead of our clock (`future`, its own date: then it never wins)."""
    return (modified_on or EPOCH) > deleted_on or bool(future)


class Tombstones:
    """The tombstones of one import: the file's, applied by apply(), and those here."""

    def __init__(self, ctx, ids, conflicts, writer):
        self.ctx, self.db, self.report = ctx, ctx.db, ctx.report
        self.ids, self.conflicts, self.writer = ids, conflicts, writer
        self.rows = []  # the file's deletions (Deletion)
        self.tombstoned_tables = {}  # {table: has tombstones here}, see local()
        self.nulled = {}  # {table: ids} kept against a deletion, a reference nulled here: see untag()

    def read(self, section):
        """The file's tombstone block."""
        for line, cells in section.rows():
            row = dict(zip(section.columns, cells))
            try:
                deleted_on = parser("datetime", False)(row.get("deleted_on", NULL)) or EPOCH
            except ValueError:
                raise BadValue("bad date %r" % row.get("deleted_on"), table=section.tablename, line=line, column="deleted_on")
            future = None
            if deleted_on > self.ctx.future_limit:  # the clock rule of modified_on (parse.py), for deletions
                future, deleted_on = deleted_on, self.ctx.now
                self.report.count(row.get("tablename") or section.tablename, "future")
                self.report.warn(
                    "deleted_on %s is ahead of this instance's clock by more than %ss: dated %s here; "
                    "the deletion does not win against a concurrent local version"
                    % (future, self.ctx.settings.clock_tolerance, self.ctx.now),
                    table=section.tablename, line=line, column="deleted_on", uuid=row.get("record_uuid"))
            self.rows.append(Deletion(row.get("tablename"), row.get("record_uuid"), deleted_on, row.get("origin"),
                                      line, future))

    def apply(self):
        """Hard-delete what the sender hard-deleted, unless a version the deleter never saw outlives it; remember
        the uuid."""
        self.ids.clear()  # deleted records' uuids must not resolve any more
        if self.merged_already():
            return
        me, gone = self.ctx.me.base_uuid, False
        for tablename, uuid, deleted_on, origin, line, future in self.rows:
            if tablename not in self.ctx.synced or not uuid:
                continue
            table = self.db[tablename]
            row = self.db(table.uuid == uuid).select(table.id, table.modified_on).first()
            concurrent = row is not None and self.concurrent(tablename, row.id)
            if concurrent and outlives(row.modified_on, deleted_on, None):
                self.report.warn("kept: changed here after it was deleted elsewhere", table=tablename, line=line,
                                 uuid=uuid)
                continue
            if concurrent and outlives(row.modified_on, deleted_on, future):
                self.report.count(tablename, "conflicts_kept_local")
                self.report.warn("kept: changed here, unseen by the deleter, whose deletion is dated %s, ahead of "
                                 "this instance's clock" % future, table=tablename, line=line, uuid=uuid)
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
                if concurrent:  # changed here, unknown to the deleter: a conflict
                    self.conflicts.deleted(tablename, uuid, row, deleted_on)
                else:
                    self.report.count(tablename, "deleted")
                self.before_cascade(tablename, row.id, deleted_on, future, origin or me, line)
                self.db(table.id == row.id).delete()
                gone = True
        if gone:
            self.drop_from_lists({d.tablename for d in self.rows})

    def merged_already(self):
        """A file no newer than what we merged of its sender (its `until` within our checkpoint): its
        deletions were decided when they first came (applied, or kept against), as its rows were
        (Merger.classify's MERGED_ALREADY).  Decided again, they would meet versions the sender wrote
        later, tagged as seen by it."""
        until = (self.ctx.origin or {}).get(UNTIL)
        return until is not None and self.ctx.merged_until and int(until) <= self.ctx.merged_until

    def concurrent(self, tablename, record_id):
        """Was the local version of this record changed here without the deleter having seen it?"""
        unseen = self.ctx.unseen(tablename, [record_id])
        return unseen is None or record_id in unseen

    def before_cascade(self, tablename, record_id, deleted_on, future, origin, line):
        """The synced records the database would delete along (ON DELETE CASCADE), recursively.

        One changed here after the deletion is kept, like the deleted record
        itself would be: its reference is set to NULL, so that the cascade
        passes it by.  One the deleter never saw goes, into the conflict log.
        The tombstone of one that goes carries the deletion's time and origin
        (written first: the delete trigger keeps it), as on the deleter, not
        this instance's clock: every instance then dates the deletion alike.
        """
        todo, fate = [(tablename, {record_id})], {(tablename, record_id): "gone"}
        while todo:
            target, ids = todo.pop()
            for name in self.ctx.synced:
                table = self.db[name]
                for field, ref, is_list in references(table):
                    if is_list or ref != target or (table[field].ondelete or "").upper() != "CASCADE":
                        continue
                    doomed = set()
                    for r in self.db(table[field].belongs(ids)).select(table.id, table.uuid, table.modified_on):
                        kept = fate.get((name, r.id)) == "kept"
                        if (name, r.id) not in fate:
                            concurrent = self.concurrent(name, r.id)
                            kept = concurrent and outlives(r.modified_on, deleted_on, future) and not table[field].notnull
                            fate[(name, r.id)] = "kept" if kept else "gone"
                            if not kept:
                                doomed.add(r.id)
                                self.tombstone_first(name, r.uuid, deleted_on, origin)
                                if concurrent:
                                    self.conflicts.deleted(name, r.uuid, r, deleted_on)
                        if kept:
                            self.ctx.execute("UPDATE %s SET %s = NULL WHERE id = %d" % (
                                table._rname, table[field]._rname, r.id))
                            self.nulled.setdefault(name, set()).add(r.id)
                            self.report.warn("kept: changed here after the %s it refers to was deleted elsewhere "
                                             "(%s set to NULL)" % (target, field), table=name, line=line, uuid=r.uuid)
                    if doomed:
                        todo.append((name, doomed))

    def untag(self):
        """After the import's writes are tagged as the sender's: a record kept against a deletion, its
        reference nulled here, holds a version of ours that the sender never had (else a re-sent
        tombstone, finding it 'seen', would delete it)."""
        for tablename, ids in self.nulled.items():
            changes.untag(self.db, tablename, ids)

    def tombstone_first(self, tablename, uuid, deleted_on, origin):
        """The tombstone of a record about to be deleted here for a deletion elsewhere (replacing a stale one)."""
        tomb = self.db.plugin_sync_tombstone
        self.db((tomb.tablename == tablename) & (tomb.record_uuid == uuid)).delete()
        tomb.insert(tablename=tablename, record_uuid=uuid, deleted_on=deleted_on, origin=origin)

    def drop_from_lists(self, tablenames):
        """Take the ids just hard-deleted out of the list:references to these tables.

        The database cascades plain references, not lists; left in, a deleted id
        would dangle here, while the sender's export of the same version no longer
        names it.  The record's modified_on stays: its version is the sender's.
        """
        for name in self.ctx.synced:
            table = self.db[name]
            for field, target, is_list in references(table):
                if not is_list or target not in tablenames:
                    continue
                rows = [(r[0], bar_decode(r[1])) for r in self.ctx.execute(
                    "SELECT id, %s FROM %s WHERE %s IS NOT NULL" % (table[field]._rname, table._rname, table[field]._rname))]
                listed = {i for _, ids in rows for i in ids}
                here = set()
                for chunk in chunks(listed, CHUNK):
                    here.update(r[0] for r in self.ctx.execute("SELECT id FROM %s WHERE id IN (%s)" % (
                        self.db[target]._rname, ",".join(str(int(i)) for i in chunk))))
                fixes = [(bar_encode([i for i in ids if i in here]) if here & set(ids) else None, rid)
                         for rid, ids in rows if set(ids) - here]
                if fixes:
                    self.writer.many("UPDATE %s SET %s=%s WHERE id=%s" % (table._rname, table[field]._rname, self.ctx.ph, self.ctx.ph),
                              fixes)

    def local(self, tablename, uuids):
        """{uuid: deleted_on} for incoming uuids that were hard-deleted here.

        A deletion the sender had seen (its seq below the sender's checkpoint of
        ours) counts as older than any version the sender still sends: the sender
        kept that version against it (changed there, unseen by us, or dated ahead
        of the sender's clock), a successor whatever the clocks say, as in
        Merger.decide.  Raw SQL (pydal's belongs() renders each uuid in Python),
        and none at all for a table without tombstones: the merge writes
        tombstones only in finish().
        """
        out, t = {}, self.db.plugin_sync_tombstone
        if tablename not in self.tombstoned_tables:
            rows = self.ctx.execute("SELECT 1 FROM %s WHERE %s = %s" % (t._rname, t.tablename._rname, self.ctx.ph)
                                + " LIMIT 1", (tablename,))
            self.tombstoned_tables[tablename] = bool(rows)
        if not self.tombstoned_tables[tablename]:
            return out
        seen_until = int(self.ctx.seen_until) if self.ctx.origin_uuid and self.ctx.seen_until else None
        for chunk in chunks(uuids, CHUNK):
            sql = "SELECT %s, %s, %s FROM %s WHERE %s = %s AND %s IN (%s)" % (
                t.record_uuid._rname, t.deleted_on._rname, t.seq._rname, t._rname, t.tablename._rname, self.ctx.ph,
                t.record_uuid._rname, ",".join([self.ctx.ph] * len(chunk)))
            for record_uuid, deleted_on, seq in self.ctx.execute(sql, [tablename] + list(chunk)):
                seen = seen_until is not None and seq is not None and seq < seen_until
                out[record_uuid] = EPOCH if seen else deleted_on or EPOCH
        return out

    def revive(self, tablename, uuids):
        """Records changed elsewhere after their deletion here came back: their tombstones are stale
        (a later delete here must be stamped anew, not keep the old time)."""
        tomb = self.db.plugin_sync_tombstone
        for chunk in chunks(uuids, CHUNK):
            self.db((tomb.tablename == tablename) & tomb.record_uuid.belongs(chunk)).delete()
