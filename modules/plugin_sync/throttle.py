"""A throttle on password guesses at the peer endpoints (and the admin pages' HTTP Basic): what fails, where.

HTTP Basic checks a password on every request, so an endpoint answers as
many guesses as a client sends.  Wrong logins are counted under two keys:

- the account *from that address* ("user:<email> ip:<address>"): after
  `login_free_failures` wrong logins, each further one blocks that pair for
  a delay that doubles (2, 4, 8 ... s, capped at `login_max_delay`);
- the address ("ip:<address>"): the same after IP_FACTOR times as many, for
  an address guessing many accounts (one office may hold many accounts).

A blocked key is refused (HTTP 429) before its password is even checked, so
a blocked guesser learns nothing.  Wrong logins from one address never block
the same account at another address: nobody can lock a peer out by guessing
its account's password from elsewhere.  An account that has logged in right
from an address before ("ok:" key) is not held by that address's block
either (behind a proxy every caller shares one address); only its own
pair's count applies there.  The price: guesses spread over many addresses
are slowed per address, not per account, so peer accounts need strong
(generated) passwords.  A right login clears its pair's count.  The counts
live in plugin_sync_throttle, so they hold across processes and restarts.
"""
import datetime

from . import dialect
from .peers import utcnow

FREE_FAILURES = 5
IP_FACTOR = 4
MAX_DELAY = 300
KNOWN = "ok:"  # prefix of the mark of an account that logged in right from an address


def keys(email, address):
    """The keys a login is counted under: the account from this address (if named), and the address."""
    address = (address or "")[:45]
    account = (email or "").strip().lower()[:190]
    return [k for k in ("user:%s ip:%s" % (account, address) if account else None,
                        "ip:%s" % address if address else None) if k]


def wait(db, who, now=None):
    """Seconds until a login for `who` may be tried again (0: now).

    The address's block does not hold an account that has logged in right from that address before.
    """
    now = now or utcnow()
    t = db.plugin_sync_throttle
    pairs = [k for k in who if not k.startswith("ip:")]
    rows = db(t.who.belongs(who + [KNOWN + k for k in pairs])).select(t.who, t.blocked_until)
    known = any(r.who.startswith(KNOWN) for r in rows)
    blocked = [r.blocked_until for r in rows if r.blocked_until and r.blocked_until > now
               and not r.who.startswith(KNOWN) and not (known and r.who.startswith("ip:"))]
    return max([int((b - now).total_seconds()) + 1 for b in blocked] or [0])


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
            _insert(db, who=key, failures=failures, blocked_until=blocked)
    db.commit()


def succeeded(db, who):
    """A right login clears its pair's count and marks the account known at the address (the address's
    count stays: it may guess other accounts).  No write on the common path (SQLite: no write lock)."""
    t = db.plugin_sync_throttle
    pairs = [k for k in who if not k.startswith("ip:")]
    found = {r.who for r in db(t.who.belongs(pairs + [KNOWN + k for k in pairs])).select(t.who)}
    for pair in pairs:
        if pair in found:
            db(t.who == pair).delete()
            db.commit()
        if KNOWN + pair not in found:
            _mark_known(db, KNOWN + pair)


def _mark_known(db, key):
    """The mark of an account known at an address: not worth a wait. Under another writer's lock (SQLite:
    an import) it is left for a later login, so that a peer's login answers at once (not after the busy
    timeout, twice per request)."""
    if not dialect.is_sqlite(db):
        return _insert(db, who=key, failures=0, blocked_until=None)
    wait = db.executesql("PRAGMA busy_timeout")[0][0]
    db.executesql("PRAGMA busy_timeout = 0")
    try:
        _insert(db, who=key, failures=0, blocked_until=None)
    finally:
        db.executesql("PRAGMA busy_timeout = %d" % int(wait))


def _insert(db, **values):
    try:
        db.plugin_sync_throttle.insert(**values)
        db.commit()
    except Exception:  # another request inserted the key first: its row stands
        db.rollback()
