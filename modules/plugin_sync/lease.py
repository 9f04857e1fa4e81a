"""The lock of runs against one peer: a lease in the database, kept alive by a heartbeat (issue 23).

One plugin_sync_lock row per peer.  Taking it is one conditional UPDATE
(free, or its lease over), atomic on SQLite and PostgreSQL alike, whichever
app server or worker asks.  The lease runs `lease` seconds in the database's
own clock (never a node's: the servers' clocks may differ); while the run
lives, a heartbeat (a thread with a connection of its own, side.Ticker) moves
it on every quarter of it.  A holder that dies (its process killed, its
machine gone) stops beating: the lease ends at most `lease` seconds later and
the next run takes over.  No process id or host name decides anything: they
are only shown.

A holder that stalled beyond its lease (its heartbeat could not write: SQLite
during its own merge, which holds the database's one write lock for its
transaction; a machine frozen) may find the lock taken over: its heartbeat
then stops, and its run stops before its next step (`Lease.check`).
"""
import os
import socket
import uuid

from . import dialect, side
from .errors import Locked
from .peers import utcnow

LEASE = 60  # seconds a lock outlives its holder's last heartbeat (setting lock_ttl)


def now_sql(db, plus=0):
    """The database's clock as UTC (plus `plus` seconds), in SQL: what a lease is measured in."""
    if dialect.is_sqlite(db):  # to the millisecond (datetime() drops the fraction), as pydal reads it back
        return "strftime('%%Y-%%m-%%d %%H:%%M:%%f', 'now', '%+.3f seconds')" % plus
    return "((clock_timestamp() AT TIME ZONE 'UTC') + interval '%.3f seconds')" % plus


def acquire(db, peer, ttl=LEASE):
    """Take the lock of runs against `peer` (a base_uuid) or raise Locked; return the holder's name.  Commits."""
    lock = db.plugin_sync_lock
    db.commit()
    if db(lock.peer == peer).isempty():
        try:
            lock.insert(peer=peer)
            db.commit()
        except Exception:  # another process inserted it first: fine
            db.rollback()
    holder = "%s:%d:%s" % (socket.gethostname(), os.getpid(), uuid.uuid4().hex[:8])
    ph = dialect.placeholder(db)
    taken = side.write(db, "UPDATE %s SET holder=%s, expires_on=%s, last_started=%s WHERE peer=%s AND "
                           "(holder IS NULL OR expires_on IS NULL OR expires_on < %s)"
                           % (lock._rname, ph, now_sql(db, ttl), ph, ph, now_sql(db)), (holder, utcnow(), peer))
    db.commit()
    if taken:
        return holder
    row = db(lock.peer == peer).select().first()
    db.commit()
    raise Locked("another sync with peer %s is running (%s, started %s UTC; its lease ends %s UTC unless it "
                 "goes on beating)" % (peer, row.holder if row else "?", row.last_started if row else "?",
                                       row.expires_on if row else "?"))


def renew(conn, table, peer, holder, ttl=LEASE):
    """Move the lease on (`conn`: the heartbeat's connection, `table`: the lock table's SQL name); False when
    the lock is no longer this holder's (taken over)."""
    ph = dialect.placeholder(conn)
    return bool(side.write(conn, "UPDATE %s SET expires_on=%s WHERE peer=%s AND holder=%s"
                           % (table, now_sql(conn, ttl), ph, ph), (peer, holder)))


def release(db, peer, holder, result="ok"):
    lock = db.plugin_sync_lock
    db.rollback()
    db((lock.peer == peer) & (lock.holder == holder)).update(
        holder=None, expires_on=None, last_finished=utcnow(), last_result=result)
    db.commit()


class Lease:
    """A held lock and its heartbeat: `Lease(db, peer, ttl).take()`, `.check()` between steps, `.end(result)`."""

    def __init__(self, db, peer, ttl=LEASE):
        self.db, self.peer, self.ttl = db, peer, ttl
        self.holder, self.beat, self.lost = None, None, False

    def take(self):
        self.holder = acquire(self.db, self.peer, self.ttl)
        self.beat = side.Ticker(lambda: _beating_connection(self.db, self.ttl), self._renew, self.ttl / 4.0,
                                name="plugin_sync-lease-%s" % self.peer, final=False).start()
        return self

    def _renew(self, conn):
        if not renew(conn, self.db.plugin_sync_lock._rname, self.peer, self.holder, self.ttl):
            self.lost = True
            self.beat.stopping.set()  # nothing more to keep alive

    def check(self):
        """Raise Locked if another run took the lock over (this one stalled beyond its lease)."""
        if self.lost:
            raise Locked("the lock of peer %s was taken over by another run (this one stalled beyond its "
                         "%s s lease): this run stopped" % (self.peer, self.ttl))

    def end(self, result="ok"):
        """Release the lock (first: the heartbeat may be waiting for this connection's write lock on SQLite),
        then stop the heartbeat (a beat after the release changes nothing: the lock is no longer this holder's)."""
        if self.holder is not None and not self.lost:
            release(self.db, self.peer, self.holder, result)
        if self.beat is not None:
            self.beat.stop()


def _beating_connection(db, ttl):
    """The heartbeat's connection to the main database; on SQLite it waits at most a beat for the write lock
    (a merge holding it: the next beat tries again)."""
    conn = side.same_database(db)
    if dialect.is_sqlite(conn):
        conn.executesql("PRAGMA busy_timeout = %d" % int(ttl / 4.0 * 1000))
    return conn
