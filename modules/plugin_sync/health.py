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


def _last(db, base_uuid, ok=None):
    """The newest pull/push log row with this peer (only successes: ok=True)."""
    t = db.plugin_sync_log
    query = (t.peer == base_uuid) & t.operation.belongs(OPS)
    if ok:
        query &= t.result == "ok"
    return db(query).select(orderby=~t.id, limitby=(0, 1)).first()


def _to_go(db, settings, peer, until, tables):
    """Changes of ours the peer has not got yet (our change log since its checkpoint_sent); None if unknown."""
    try:
        return changelog.change_count(db, int(peer.checkpoint_sent or 0), until, tables)
    except Exception:  # a checkpoint from another database, or no change capture here
        db.rollback()
        return None


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
    out = []
    for p in peers:
        attempt, success = _last(db, p.base_uuid), _last(db, p.base_uuid, ok=True)
        failing = attempt is not None and attempt.result != "ok"
        overdue = _overdue(p, success, now)
        to_come = p.peer_pending if p.get("peer_pending") is not None else None
        state = ("failing" if failing else "overdue" if overdue is not None else
                 "file" if not p.url else "ok" if success else "never")
        out.append(Storage(peer=p, attempt=attempt, success=success, failing=failing,
                           error=attempt.error if failing else None, overdue=overdue,
                           to_go=_to_go(db, settings, p, until, tables) if until is not None else None,
                           to_come=to_come, state=state))
    db.commit()  # end the read transaction (PostgreSQL: an idle snapshot holds checkpoints back)
    return out


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
