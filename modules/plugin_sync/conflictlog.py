"""The conflict log (plugin_sync_conflict), written here only.

Every version that loses against a concurrent one is kept for review: a
conflict of two edits (`log`), an incoming version our later hard delete
beats (`tombstoned`), a local version the deleter never saw (`deleted`).
A dry run counts them and writes none.
"""
import json
from collections import namedtuple

from .export import wire_rows


# a conflict of two edits as the merge decided it: 'kept_local' (the incoming version lost) or 'took_incoming'
# (the local one), the incoming row (parse.Incoming), the record's local id and values
Loser = namedtuple("Loser", "resolution row local_id local_values")


class ConflictLog:
    """Writes the losing versions of one import."""

    def __init__(self, ctx):
        self.ctx, self.db, self.report = ctx, ctx.db, ctx.report

    def log(self, plan, losers):
        """Conflicts of two edits: [Loser]."""
        if not losers or self.report.dry_run:
            return
        local_wire = wire_rows(self.db, plan.tablename, [l.local_id for l in losers if l.resolution == "took_incoming"])
        origin = self.ctx.origin_uuid
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
                winner=json.dumps(winner, default=str) if winner else None, created_on=self.ctx.now,
            ))
        self.db.plugin_sync_conflict.bulk_insert(rows)

    def already_logged(self, tablename, uuid, incoming_modified_on, origin):
        """A suspect version is logged once, not at every re-import of the same file."""
        c = self.db.plugin_sync_conflict
        return bool(self.db((c.tablename == tablename) & (c.record_uuid == uuid) & (c.origin == origin)
                            & (c.incoming_modified_on == incoming_modified_on)).count())

    def tombstoned(self, plan, row, deleted_on):
        """An incoming version that our (later) hard delete beats: keep it in the conflict log, once."""
        c = self.db.plugin_sync_conflict
        if self.db((c.tablename == plan.tablename) & (c.record_uuid == row.uuid) & (c.reason == "deleted here")
                   & (c.incoming_modified_on == row.modified_on)).count():
            return
        self.report.count(plan.tablename, "conflicts_kept_local")
        if self.report.dry_run:
            return
        c.insert(tablename=plan.tablename, record_uuid=row.uuid, origin=self.ctx.origin_uuid,
                 resolution="kept_local", reason="deleted here", local_modified_on=deleted_on,
                 incoming_modified_on=row.modified_on, created_on=self.ctx.now,
                 loser=json.dumps({col: row.cells[i] for i, col in enumerate(plan.columns)}, default=str))

    def deleted(self, tablename, uuid, row, deleted_on):
        """A local version the deleter never saw loses to its deletion: keep it in the conflict log."""
        self.report.count(tablename, "conflicts_took_incoming")
        if self.report.dry_run:
            return
        loser = wire_rows(self.db, tablename, [row.id]).get(row.id)
        self.db.plugin_sync_conflict.insert(
            tablename=tablename, record_uuid=uuid, origin=self.ctx.origin_uuid,
            resolution="took_incoming", reason="deleted elsewhere", local_modified_on=row.modified_on,
            incoming_modified_on=deleted_on, loser=json.dumps(loser, default=str), created_on=self.ctx.now)
