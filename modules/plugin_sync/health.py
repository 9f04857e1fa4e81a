"""Peer health for the pages: last attempt and result, last success, overdue, changes waiting, scheduler.

Plain Python over the plugin's tables (and Eden's scheduler_worker when the host
has one): the dashboard, the Peers page and the picture (graph.py) read the same
facts, so a failing peer looks failing everywhere.
"""
import datetime

from gluon.storage import Storage

from . import changes as changelog
from .peers import utcnow
from .tables import synced_tables

OPS = ("pull", "push")
GRACE = datetime.timedelta(seconds=90)  # a scheduler period and a half: a peer is not overdue for a second
HEARTBEAT_DEAD = datetime.timedelta(seconds=60)  # a worker silent this long is not running


def _last_runs(db, peers, ok=None):
    """{base_uuid: the newest pull/push log row with that peer} (only successes: ok=True), for all the
    peers in two queries: a hub's pages show a hundred peers."""
    t = db.plugin_sync_log
    uuids = [p.base_uuid for p in peers]
    if not uuids:
        return {}
    query = t.peer.belongs(uuids) & t.operation.belongs(OPS)
    if ok:
        query &= t.result == "ok"
    newest = t.id.max()
    ids = [r[newest] for r in db(query).select(newest, groupby=t.peer)]
    return {r.peer: r for r in db(t.id.belongs(ids)).select()} if ids else {}


def _to_go(db, settings, peer, until, tables, counted):
    """Changes of ours the peer has not got yet (our change log since its checkpoint_sent); None if unknown.
    `counted` keeps the count of each checkpoint: peers synced together share one."""
    since = int(peer.checkpoint_sent or 0)
    if since not in counted:
        try:
            counted[since] = changelog.change_count(db, since, until, tables)
        except Exception:  # a checkpoint from another database, or no change capture here
            db.rollback()
            counted[since] = None
    return counted[since]


def _overdue(peer, last_ok, now):
    """How long past its interval the peer's last success is (a timedelta), or None when it is not overdue."""
    if not peer.sync_interval or not peer.url:
        return None
    if last_ok is None:  # never synced: "never" or "failing" says more than a lateness
        return None
    late = now - last_ok.started_on - datetime.timedelta(minutes=peer.sync_interval) - GRACE
    return late if late > datetime.timedelta(0) else None


def peer_health(db, settings, peers=None, now=None):
    """[Storage(peer, attempt, success, failing, error, overdue, to_go, to_come, state)] for the peers given (or all).

    state: "failing" (the last attempt failed), "overdue", "ok", "never" (no run yet) or "file" (no URL).
    """
    now = now or utcnow()
    t = db.sync_instance
    peers = peers if peers is not None else db(t).select(orderby=t.owner | t.id)
    tables = synced_tables(db, settings)
    try:
        until = changelog.checkpoint(db)
    except Exception:
        db.rollback()
        until = None
    attempts, successes, counted, out = _last_runs(db, peers), _last_runs(db, peers, ok=True), {}, []
    for p in peers:
        attempt, success = attempts.get(p.base_uuid), successes.get(p.base_uuid)
        failing = attempt is not None and attempt.result != "ok"
        overdue = _overdue(p, success, now)
        to_come = p.peer_pending if p.get("peer_pending") is not None else None
        state = ("failing" if failing else "overdue" if overdue is not None else
                 "file" if not p.url else "ok" if success else "never")
        out.append(Storage(peer=p, attempt=attempt, success=success, failing=failing,
                           error=attempt.error if failing else None, overdue=overdue,
                           to_go=_to_go(db, settings, p, until, tables, counted) if until is not None else None,
                           to_come=to_come, state=state))
    db.commit()  # end the read transaction (PostgreSQL: an idle snapshot holds checkpoints back)
    return out


URGENCY = ("failing", "overdue", "never", "ok", "file")  # a hub's administrator looks at the first ones first


def by_urgency(health):
    """The peers' health, most urgent first: failing, then overdue (the latest first), never synced, fine,
    file-only; within a state the one with most changes to go first, then by name."""
    def key(h):
        late = h.overdue.total_seconds() if h.overdue is not None else 0
        return URGENCY.index(h.state), -late, -(h.to_go or 0), (h.peer.owner or "").lower(), h.peer.id
    return sorted(health, key=key)


def scheduler_state(db, now=None):
    """Storage(known, alive, workers, last_heartbeat, status): is Eden's scheduler worker running?

    Eden's web2py Scheduler writes heartbeats in local time (utc_time off), so they are compared with now().
    """
    if "scheduler_worker" not in db.tables:
        return Storage(known=False, alive=False, workers=0, last_heartbeat=None, status=None)
    now = now or datetime.datetime.now()
    w = db.scheduler_worker
    rows = db(w).select(w.worker_name, w.last_heartbeat, w.status, orderby=~w.last_heartbeat)
    db.commit()
    alive = [r for r in rows if r.last_heartbeat and now - r.last_heartbeat < HEARTBEAT_DEAD]
    last = rows.first()
    return Storage(known=True, alive=bool(alive), workers=len(alive), last_heartbeat=last.last_heartbeat if last else None,
                   status=last.status if last else None)


def age(delta):
    """A short human age of a timedelta ("45 s", "12 min", "3 h", "2 d"): for pages and the picture."""
    if delta is None:
        return ""
    s = max(0, int(delta.total_seconds()))
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if s >= size:
            return "%d %s" % (s // size, unit)
    return "%d s" % s
