"""What the dashboard shows of this instance: its synced tables with their counts, what never syncs and why,
and the whole as plain JSON for scripts (index.json).  Health of the peers is health.py's."""
from .tables import exclusion, synced_tables

ORDER = ("lookup list", "site-specific", "excluded", "not listed", "not here", "no identity", "never")


def synced_counts(db, settings):
    """[(table, records, of which soft-deleted)] of the synced tables, in export order."""
    out = []
    for t in synced_tables(db, settings):
        table = db[t]
        deleted = db(table.deleted == True).count() if "deleted" in table.fields else 0  # noqa: E712 (pydal)
        out.append((t, db(table).count(), deleted))
    return out


def excluded(db, settings):
    """[(kind, reason, [(table, rows)])]: the tables that do not sync, grouped by why (a listed table this
    instance lacks: "not here")."""
    synced = set(synced_tables(db, settings))
    groups = {}
    for t in sorted(set(db.tables) | set(settings.get("tables") or ())):
        if t not in synced:
            kind, why = exclusion(db, settings, t)
            groups.setdefault((kind, why), []).append((t, db(db[t]).count() if t in db.tables else 0))
    return sorted(((k, w, ts) for (k, w), ts in groups.items()), key=lambda g: (ORDER.index(g[0]), g[2][0][0]))


def peer_names(db):
    """{base_uuid: owner} of the known peers (for log and conflict rows)."""
    t = db.sync_instance
    return {p.base_uuid: p.owner or p.base_uuid for p in db(t).select(t.base_uuid, t.owner)}


def as_json(identity, tables, excluded_, health, scheduler, unreviewed):
    """The dashboard for scripts: plain values only."""
    return dict(
        ok=True, identity=dict(base_uuid=identity.base_uuid, owner=identity.owner, contact=identity.contact),
        tables={t: dict(rows=n, deleted=d) for t, n, d in tables},
        excluded={t: dict(kind=k, reason=why) for k, why, ts in excluded_ for t, _ in ts},
        peers=[dict(base_uuid=h.peer.base_uuid, owner=h.peer.owner, url=h.peer.url, last_update=h.peer.last_update,
                    sync_count=h.peer.sync_count, state=h.state, error=h.error, to_go=h.to_go, to_come=h.to_come,
                    last_attempt=h.attempt.started_on if h.attempt else None,
                    last_success=h.success.started_on if h.success else None) for h in health],
        scheduler=dict(known=scheduler.known, alive=scheduler.alive, last_heartbeat=scheduler.last_heartbeat),
        unreviewed_conflicts=unreviewed,
    )
