"""A throttle on password guesses at the peer endpoints: per account and per address.

HTTP Basic checks a password on every request, so an endpoint answers as
many guesses as a client sends.  After `login_free_failures` wrong logins
for an account (or from an address), each further one blocks that key for a
delay that doubles (2, 4, 8 ... s, capped at `login_max_delay`); a blocked
key is refused (HTTP 429) before its password is even checked.  An address
may fail IP_FACTOR times as often before it is blocked (one office, many
accounts).  A right login clears the account's count.  The counts live in plugin_sync_throttle,
so they hold across processes and restarts.
"""
import datetime

from .peers import utcnow

FREE_FAILURES = 5
IP_FACTOR = 4
MAX_DELAY = 300


def keys(email, address):
    return [k for k in ("user:%s" % (email or "").strip().lower()[:240] if email else None,
                        "ip:%s" % address if address else None) if k]


def wait(db, who, now=None):
    """Seconds until a login for any of `who` may be tried again (0: now)."""
    now = now or utcnow()
    t = db.plugin_sync_throttle
    rows = db(t.who.belongs(who) & (t.blocked_until > now)).select(t.blocked_until)
    return max([int((r.blocked_until - now).total_seconds()) + 1 for r in rows] or [0])


def failed(db, settings, who, now=None):
    """Count a wrong login for each key; block the keys beyond the free failures.  Commits."""
    now = now or utcnow()
    t = db.plugin_sync_throttle
    free = int(settings.get("login_free_failures") if settings.get("login_free_failures") is not None
               else FREE_FAILURES)
    cap = float(settings.get("login_max_delay") or MAX_DELAY)
    for key in who:
        row = db(t.who == key).select(limitby=(0, 1)).first()
        failures = (row.failures if row else 0) + 1
        allowed = free * (IP_FACTOR if key.startswith("ip:") else 1)
        blocked = None
        if failures > allowed:
            # 2, 4, 8 ... s: times are stored to the second, so the first block lasts 1-2 s
            blocked = now + datetime.timedelta(seconds=min(2 ** min(failures - allowed, 30), cap))
        if row:
            row.update_record(failures=failures, blocked_until=blocked)
        else:
            try:
                t.insert(who=key, failures=failures, blocked_until=blocked)
                db.commit()
            except Exception:  # another request inserted the key first: its count stands
                db.rollback()
    db.commit()


def succeeded(db, who):
    """A right login clears its account's count (an address's count stays: it may guess other accounts)."""
    t = db.plugin_sync_throttle
    mine = t.who.belongs([k for k in who if k.startswith("user:")])
    if not db(mine).isempty():  # no write (SQLite: no write lock) on the common path
        db(mine).delete()
        db.commit()
