"""What the dashboard shows of this instance: its synced tables with their counts, what never syncs and why,
the tables by the host's module (synced or not, and why), and the whole as plain JSON for scripts (index.json).  Health of the peers is health.py's."""
import re

from . import dialect
from .tables import exclusion, is_syncable, synced_tables

ORDER = ("lookup list", "site-specific", "derived", "excluded", "not listed", "not here", "no identity", "never")


def synced_counts(db, settings):
    """[(table, records, of which soft-deleted)] of the synced tables, in export order."""
    out = []
    names = synced_tables(db, settings)
    counted = raw_counts(db, [t for t in names if t not in db.tables])
    for t in names:
        if t not in db.tables:  # a host's table not defined in this request (Eden: the dashboard defines none)
            out.append((t,) + counted.get(t, (0, 0)))
            continue
        table = db[t]
        deleted = db(table.deleted == True).count() if "deleted" in table.fields else 0  # noqa: E712 (pydal)
        out.append((t, db(table).count(), deleted))
    return out


def raw_counts(db, names):
    """{table: (records, soft-deleted)} of these tables, by name in SQL (defining a host's hundreds of tables in a
    request costs more than counting them); the names the database does not hold are left out.  The names are
    the host's model's (settings, Eden's model), never a request's."""
    there = dialect.existing_tables(db) if names else set()
    out = {}
    for t in names:
        if t in there and re.match(r"^[A-Za-z_][A-Za-z0-9_]*$", t):
            n, alive = db.executesql("SELECT COUNT(*), SUM(CASE WHEN %s THEN 1 ELSE 0 END) FROM %s t" % (
                dialect.not_deleted(db, "t"), t))[0] if _has_deleted(db, t) else (
                db.executesql("SELECT COUNT(*) FROM %s" % t)[0][0], None)
            out[t] = (n, n - (alive if alive is not None else n))
    return out


def _has_deleted(db, tablename):
    if tablename in db.tables:
        return "deleted" in db[tablename].fields
    return True  # (a host table that syncs or that its model lists: Eden's meta fields have `deleted`)


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


def by_module(db, settings, modules, counts=None):
    """[(module, name, [(table, rows, deleted, syncs, kind, reason)])]: every table of the host's modules that
    could sync (uuid and modified_on) or that the settings name, under its module (`modules`: [(prefix, the
    host's name of it)], the host's order; a table is its module's by its name's prefix, as Eden finds a
    table's model), synced or not and why; the modules without such tables left out.  `counts`: synced_counts,
    if the caller has them."""
    synced = {t: (n, d) for t, n, d in (counts if counts is not None else synced_counts(db, settings))}
    listed = set(settings.get("tables") or ()) | set(settings.get("left_out") or ())
    names = set(synced) | listed | set(db.tables)
    counted = raw_counts(db, [t for t in listed - set(synced) if t not in db.tables])
    out = []
    for prefix, nice in modules:
        rows = []
        for t in sorted(n for n in names if n.split("_", 1)[0] == prefix):
            if t in synced:
                rows.append((t, synced[t][0], synced[t][1], True, None, None))
            elif t in listed or is_syncable(db[t]):
                kind, why = exclusion(db, settings, t)
                rows.append((t, db(db[t]).count() if t in db.tables else counted.get(t, (None,))[0], None, False,
                             kind, why))
        if rows:
            out.append((prefix, nice, rows))
    if modules:  # a synced table of none of them (a setting's): under "Other", not missing
        prefixes = {prefix for prefix, _ in modules}
        rest = [(t, synced[t][0], synced[t][1], True, None, None) for t in sorted(synced)
                if t.split("_", 1)[0] not in prefixes]
        if rest:
            out.append(("", "Other", rest))
    return out


def peer_names(db):
    """{base_uuid: owner} of the known peers (for log and conflict rows)."""
    t = db.sync_instance
    return {p.base_uuid: p.owner or p.base_uuid for p in db(t).select(t.base_uuid, t.owner)}


def as_json(identity, tables, excluded_, health, scheduler, unreviewed, modules=()):
    """The dashboard for scripts: plain values only."""
    return dict(
        modules=[dict(module=m, name=nice, tables={t: dict(rows=n, syncs=syncs, kind=kind, reason=why)
                                                   for t, n, _, syncs, kind, why in rows}) for m, nice, rows in modules],
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
