"""Replication between instances over the network: pull, push, sync (CouchDB's vocabulary).

The *source* sends the changes of its change log (changes.py) in a sequence
range [since, until); the *target* merges them (fileio.import_from) in one
transaction.  Each instance keeps two checkpoints per peer in the peer's
`sync_instance` row (each in the sequence space of the side whose changes it counts):

- checkpoint_received (the peer's sequence): up to where we have merged the
  peer's changes.  The merge itself advances it, inside our import's
  transaction (merge.acknowledge), so it moves only when the data is committed.
- checkpoint_sent (our sequence): up to where we know the peer has merged our
  changes.  A push sets it only after the peer answered that it committed.
  A push starts at the peer's own word (its checkpoint_received of us, from
  its identity), falling back to checkpoint_sent: a peer restored from a
  backup gets again what it lost.

`pull(db, settings, peer)` asks the peer for its changes since our
checkpoint_received of it and merges them; `push` sends ours since the
peer's checkpoint; `sync` = pull, then push.  A large range goes in batches
of `sync_batch` records (batches.py), each merged and committed in its own
transaction with the receiver's resume point (checkpoint_resume): a run cut
short resumes at the last committed batch, never at the range's start.  A run first asks the peer for
its identity: the base_uuid must be the registered one (a URL that now
answers as another instance is refused), and the peer's clock is compared
with ours (sync_instance.clock_offset; a warning beyond clock_tolerance).
Runs against one peer never overlap (plugin_sync_lock, a lease: lease.py); every run is logged.

The server side of the same operations (`identity`, `changes`, `receive`)
is here too: the controller and its XML-RPC functions only wrap them.
"""
import datetime
import tempfile

from . import changes as changelog
from .accounts import account_id, bind
from .batches import batch_size, position, resume_point
from .bundle import upload_files
from .errors import PeerError, SyncError, UnresolvedReference
from .export import begin_snapshot
from .fileio import export_to, import_from
from .lease import LEASE, Lease, acquire, release  # noqa: F401  acquire, release: the lock, asked by name
from .log import Run
from .peers import find_peer, this_instance, utcnow
from .tables import synced_tables
from .transport import PROTOCOL, app_url, connect

RUN_TIMEOUT = 3600  # seconds the scheduler lets a run take (a first full sync)
MODES = ("pull", "push", "both")
TIME_FORMAT = "%Y-%m-%d %H:%M:%S"

# ------------------------------------------------------------------ server side


def identity(db, settings, peer=None, since=None):
    """What this instance tells a peer about itself (the `identity` endpoint).

    `peer` (the caller's base_uuid, optional) adds `received`: up to where we
    have merged the caller's changes, the start of the caller's next push.
    The controller passes only the instance the caller's account speaks for.
    Sequence numbers travel as strings (XML-RPC has no 64-bit integers).
    `since` (the caller's checkpoint of us) adds `pending`: how many changes
    wait for the caller, which its pages show as "to come".
    """
    me = this_instance(db)
    out = dict(
        protocol=PROTOCOL,
        base_uuid=me.base_uuid,
        owner=me.owner or settings.owner or "",
        contact=me.contact or settings.contact or "",
        now=utcnow().strftime(TIME_FORMAT),
        checkpoint=str(changelog.checkpoint(db)),
        batches=True,  # it merges a batch of a range as one (batches.py): a push may come in batches
    )
    if peer:
        row = find_peer(db, peer)
        out["received"] = str(row.checkpoint_received or 0) if row else "0"
        resume = resume_point(row.checkpoint_resume) if row else None
        if resume is not None and resume.until > (row.checkpoint_received or 0):
            out["resume"] = str(resume)  # the caller's batched push resumes here
    if since is not None:
        try:
            out["pending"] = changelog.change_count(db, int(since), int(out["checkpoint"]), synced_tables(db, settings))
        except ValueError:  # a checkpoint from another database: unknown
            pass
    db.commit()  # end the read transaction (PostgreSQL: an idle snapshot holds checkpoints back)
    return out


def changes_file(db, settings, since, tables=None, fmt="auto", peer=None, until=None, after=None, limit=None):
    """Our changes in [since, until or now) as a temporary file: (file at 0, format, since, until) and .next.

    The `changes` endpoint streams it: a bundle of large uploaded files is
    written to disk, never held in memory.  fmt "auto": a zip bundle when
    changed records name uploaded files, else gzip'd CSV.  `limit`: one batch
    of at most that many records after the position `after` ("table:id") of
    the range [since, until) a batched pull walks (batches.py); `next`: where
    the next batch starts, None when this one ends the range.
    """
    since = int(since or 0)
    if since < 0:
        raise SyncError("since must be a checkpoint >= 0, not %d" % since)
    try:
        after = position(after)
    except ValueError as e:
        raise SyncError("after: %s" % e)
    begin_snapshot(db)  # the checkpoint and the data read in one snapshot
    now = changelog.checkpoint(db)
    until = now if until is None else int(until)
    if since > until or until > now:
        raise SyncError("checkpoint %d is ahead of this instance's change log (now at %d): it was taken on "
                        "another database or before a restore; reset the peer's checkpoint to 0"
                        % (max(since, until), now))
    if fmt == "auto":
        fmt = "zip" if next(upload_files(db, settings, tables, since, until), None) else "gz"
    out = tempfile.TemporaryFile(prefix="plugin_sync-changes-")
    try:
        with Run(db, "export", peer=peer, source="changes since %d (%s)" % (since, fmt)) as run:
            counts = export_to(db, settings, out, fmt=fmt, tables=tables, since=since, until=until, log=False,
                               echo_of=peer if since else None,  # incremental: not the peer's own versions back
                               peers=[peer] if peer else [],  # the header names the caller alone
                               after=after, limit=limit if limit and limit > 0 else None)
            run.counts = dict(docs_read=sum(v for k, v in counts["tables"].items() if k != "tombstones")
                              + counts["tables"].get("tombstones", 0), warnings=counts.get("warnings") or [])
            run.dry_run = not run.counts["docs_read"] and not run.counts["warnings"]  # an empty poll: no log row
    except BaseException:
        out.close()
        raise
    out.seek(0)
    return Answer(out, fmt, since, until, counts["next"])


def changes(db, settings, since, tables=None, fmt="auto", peer=None, **batch):
    """changes_file() as bytes: (bytes, format, since, until) and .next (XML-RPC sends one document)."""
    answer = changes_file(db, settings, since, tables, fmt, peer, **batch)
    with answer[0] as out:
        return Answer(out.read(), *answer[1:], next_=answer.next)


class Answer(tuple):
    """(file or bytes, format, since, until) of a `changes` answer, and `next`: where the next batch of the
    range starts (a batches.Position; None: this answer ends the range)."""

    def __new__(cls, data, fmt, since, until, next_=None):
        self = tuple.__new__(cls, (data, fmt, since, until))
        self.next = next_
        return self


def receive(db, settings, source, peer=None, name=None, sender=None, account=None):
    """Merge a file a peer pushed (the `receive` endpoint); return the report (a dict) after the commit.

    `sender`: the base_uuid the caller's account speaks for; the file must be
    that instance's own (None: an administrator's account, see accounts.py).
    `account`: the caller's account here, owner of the records the push creates (as in Eden's import).
    """
    report = import_from(db, settings, source, name=name or "push from %s" % (sender or peer or "a peer"),
                         sender=sender, account=account)
    return report.as_dict()


# ------------------------------------------------------------------ client side


def probe(db, settings, url, username, password, transport=None, **options):
    """Ask the instance at `url` who it is (its identity endpoint, logged in as `username`); nothing is stored.

    The Peers page's "Test connection" and register_peer's first step: returns the
    identity (base_uuid, owner, contact, now, checkpoint) plus `clock_offset`;
    raises PeerError when it cannot be reached, refuses the login, or is this instance.
    """
    me = this_instance(db).base_uuid
    peer = dict(url=url, username=username, password=password, transport=transport or "http", owner=url)
    before = utcnow()
    ident = connect(peer, settings, **options).identity(me=me)
    ident["clock_offset"] = _offset(ident.get("now"), before, utcnow())
    if ident["base_uuid"] == me:
        raise PeerError("%s is this instance itself (base_uuid %s)" % (url, me))
    return ident


def register_peer(db, settings, url, username, password, mode=None, transport=None, sync_interval=None, account=None,
                  **options):
    """Register (or update) the instance at `url`: fetch its identity, create its sync_instance row.

    The first step of network sync: `url` is the peer's app root (e.g.
    http://10.0.0.2:8000/eden), `username`/`password` an account there in its
    sync (or admin) group.  `account`: the e-mail of the account *here* that
    the peer logs in with (accounts.bind).  Returns the row.  Commits.
    """
    ident = probe(db, settings, url, username, password, transport, **options)
    offset = ident["clock_offset"]
    table = db.sync_instance
    values = dict(url=app_url(url), username=username, password=password, owner=ident.get("owner") or None,
                  contact=ident.get("contact") or None, clock_offset=offset)
    for key, value in (("mode", mode), ("transport", transport), ("sync_interval", sync_interval)):
        if value is not None:
            values[key] = value
    if values.get("mode", "both") not in MODES:
        raise ValueError("mode must be one of %s" % ", ".join(MODES))
    row = find_peer(db, ident["base_uuid"])
    if row is None:
        table.insert(base_uuid=ident["base_uuid"], uuid="urn:uuid:%s" % ident["base_uuid"], **values)
    else:
        row.update_record(**values)
    if account:
        bind(db, ident["base_uuid"], account_id(db, account))
    db.commit()
    return find_peer(db, ident["base_uuid"])


def pull(db, settings, peer, **options):
    """Merge the peer's changes since our checkpoint of it; return the import Report."""
    return sync(db, settings, peer, mode="pull", **options)["pull"]


def push(db, settings, peer, **options):
    """Send our changes to the peer; return its answer (a PushReport)."""
    return sync(db, settings, peer, mode="push", **options)["push"]


def sync(db, settings, peer, mode=None, **options):
    """Pull then push (or only one: mode pull|push|both; default the peer's `mode`), under the peer's lock.

    `peer` is a sync_instance id, base_uuid or Row.  Returns {"pull": Report,
    "push": PushReport} for the operations run.  Raises Locked when another
    run against this peer is in progress, PeerError when the peer cannot be
    reached or refuses us, SyncError when its data cannot be merged; each
    run is logged (plugin_sync_log) whatever its outcome.
    """
    row = _peer_row(db, peer)
    mode = mode or row.mode or "both"
    if mode not in MODES:
        raise ValueError("mode must be one of %s, not %r" % (", ".join(MODES), mode))
    ops = ("pull", "push") if mode == "both" else (mode,)
    session = Session(db, settings, row, **options)
    results, lease, outcome = {}, None, "error"
    try:
        for op in ops:
            with Run(db, op, peer=row.base_uuid, source=row.url) as run:
                if lease is None:
                    lease = Lease(db, row.base_uuid, ttl=settings.get("lock_ttl") or LEASE).take()
                    session.hello()
                lease.check()
                results[op] = getattr(session, op)(run)
        outcome = "ok"
    finally:
        if lease is not None:
            lease.end(outcome)
    return results


class Session:
    """One run against one peer: its transport, what it told us, our warnings."""

    def __init__(self, db, settings, peer, transport=None, batch=None, **options):
        self.db, self.settings, self.peer = db, settings, peer
        self.options = dict(batch=batch)  # batch: records per batch (None: the setting sync_batch)
        self.transport = transport or connect(peer, settings, **options)
        self.me = this_instance(db).base_uuid
        self.ident = None
        self.warnings = []

    def hello(self):
        """Ask the peer who it is and what time it has; check it is the registered instance."""
        before = utcnow()
        ident = self.transport.identity(me=self.me, since=int(self.peer.checkpoint_received or 0))
        after = utcnow()
        if ident["base_uuid"] != self.peer.base_uuid:
            raise PeerError("peer %s: %s now answers as instance %s, not %s; register that URL again if it "
                            "really changed" % (self.transport.name, self.transport.url, ident["base_uuid"],
                                                self.peer.base_uuid))
        offset = _offset(ident.get("now"), before, after)
        self.db(self.db.sync_instance.id == self.peer.id).update(clock_offset=offset, peer_pending=ident.get("pending"))
        self.db.commit()
        tolerance = self.settings.clock_tolerance or 0
        if offset is not None and abs(offset) > tolerance:
            self.warnings.append(
                "the clock of peer %s is %s %s this instance's (tolerance %ss): its modified_on times are "
                "suspect; records dated ahead of our clock are flagged, never let win silently"
                % (self.transport.name, _duration(abs(offset)), "ahead of" if offset > 0 else "behind",
                   tolerance))
        self.ident = ident
        return ident

    def pull(self, run):
        """Merge the peer's changes, batch after batch, each committed with our resume point."""
        limit = batch_size(self.settings, self.options.get("batch"))
        report, asked = None, set()
        peer_now = int((self.ident or {}).get("checkpoint") or 0) or None
        while True:
            peer = self.reload()
            since, until, after = _range_to_resume(peer.checkpoint_received, peer.checkpoint_resume, peer_now)
            if (since, until, after, limit) in asked:  # never ask twice for one batch: that would never end
                raise PeerError("changes: peer %s sent batch %d..%s after %s again; stopped"
                                % (self.transport.name, since, until or "now", after or "the start"))
            asked.add((since, until, after, limit))
            got = self.transport.changes(since, me=self.me, until=until, after=after, limit=limit if limit > 0 else None)
            if got.since != since or (until is not None and got.until != until):
                raise PeerError("changes: asked peer %s for changes %d..%s, got %d..%d"
                                % (self.transport.name, since, until or "now", got.since, got.until))
            peer_now = max(peer_now or 0, got.until)  # its log now: it grows while we pull (its own writes)
            try:
                part = import_from(self.db, self.settings, got.stream(), sender=self.peer.base_uuid,
                                   account=self.peer.account,  # what is new is owned by the peer's account here
                                   name="pull from %s (%s)" % (self.transport.name, self.transport.url))
            except UnresolvedReference:
                if got.next is None:
                    raise
                limit = 0  # a NOT NULL reference into a later batch: the rest of the range in one piece
                continue
            report = part if report is None else report.add(part)
            if got.next is None or not self._moved(peer):  # the range is done (or the peer's batch was refused)
                break
        for warning in self.warnings:
            report.warn(warning)
        run.report = report
        self.db(self.db.sync_instance.id == self.peer.id).update(peer_pending=0)  # what waited has come
        self.db.commit()
        return report

    def _moved(self, before):
        """Did the last batch move our place in the peer's changes? (else another batch would repeat it)"""
        after = self.reload()
        return (after.checkpoint_received, after.checkpoint_resume) != (before.checkpoint_received,
                                                                         before.checkpoint_resume)

    def push(self, run):
        """Send our changes, batch after batch; each moves the peer's resume point, the last our checkpoint."""
        db = self.db
        limit = batch_size(self.settings, self.options.get("batch"))
        if not (self.ident or {}).get("batches"):  # an older peer would take a batch's `until` for the range's
            limit = 0
        peer = self.reload()
        begin_snapshot(db)  # the checkpoint and the data read in one snapshot
        now = changelog.checkpoint(db)  # before exporting: later changes go with the next push
        received = self.ident.get("received") if self.ident else None
        since = received if received is not None else int(peer.checkpoint_sent or 0)
        resume = resume_point(self.ident.get("resume")) if self.ident else None
        until, after = now, None
        if resume is not None and resume.since <= since < resume.until <= now:
            since, until, after = resume.since, resume.until, resume.after  # where the peer's last batch ended
        result = PushReport(since, until, self.warnings)
        if since > until:
            result.note("the peer claims changes up to %d, ahead of this instance's log (%d): "
                        "everything is sent again" % (since, until))
            since = result.since = 0
        tables = synced_tables(db, self.settings)
        if changelog.change_count(db, since, until, tables):
            result.fmt = "zip" if next(upload_files(db, self.settings, None, since, until), None) else "gz"
            while True:
                with tempfile.TemporaryFile(prefix="plugin_sync-push-") as out:  # on disk, not in memory
                    counts = export_to(db, self.settings, out, fmt=result.fmt, since=since, until=until, log=False,
                                       echo_of=peer.base_uuid if since else None, peers=[peer.base_uuid],
                                       after=after, limit=limit if limit > 0 else None)
                    result.sent += sum(counts["tables"].values())
                    result.size += out.tell()
                    result.warnings.extend(dict(message=w) for w in counts.get("warnings") or [])
                    db.rollback()  # end the export's read transaction: the peer may take long to merge
                    result.add(self.transport.receive(out, result.fmt, me=self.me))
                after = counts["next"]
                if after is None:
                    break
        db.rollback()  # end the export's read transaction before writing the checkpoint
        # the peer has committed (or there was nothing to send): only now does the checkpoint move
        db(db.sync_instance.id == peer.id).update(checkpoint_sent=until)
        db.commit()
        run.report = result
        return result

    def reload(self):
        self.peer = self.db.sync_instance(self.peer.id)
        return self.peer


class PushReport:
    """What a push sent and what the peer answered (its import report; of each batch)."""

    def __init__(self, since, until, warnings=()):
        self.since, self.until = since, until
        self.fmt, self.sent, self.size, self.answers = None, 0, 0, []
        self.warnings = [dict(message=w) for w in warnings]
        self.notes = []

    def note(self, message):
        self.notes.append(message)

    def add(self, answer):
        """The peer's answer to one batch (committed there)."""
        self.answers.append(answer)

    @property
    def peer_report(self):
        """The peer's report of the last batch."""
        return (self.answers[-1] if self.answers else {}).get("report") or {}

    def totals(self):
        """The peer's counts, summed over the batches."""
        keys = ("docs_written", "conflicts", "created", "updated", "unchanged", "deleted")
        out = dict.fromkeys(keys, 0)
        for answer in self.answers:
            theirs = (answer.get("report") or {}).get("totals") or {}
            for k in keys:
                out[k] += theirs.get(k, 0)
        return dict(out, docs_read=self.sent)

    def summary(self):
        if not self.sent:
            return "Pushed nothing: no changes since %s" % self.since
        t = self.totals()
        return "Pushed %d changes (%s, %d bytes): the peer created %d, updated %d, unchanged %d, conflicts %d, deleted %d" % (
            self.sent, self.fmt, self.size, t["created"], t["updated"], t["unchanged"], t["conflicts"], t["deleted"])

    def as_dict(self):
        return dict(ok=True, since=self.since, until=self.until, format=self.fmt, sent=self.sent, bytes=self.size,
                    batches=len(self.answers), totals=self.totals(), warnings=self.warnings, notes=self.notes,
                    summary=self.summary(), peer_report=self.peer_report)


def summary(results):
    """One line for a flash message or the CLI: what a sync did."""
    parts = []
    if "pull" in results:
        t = results["pull"].totals()
        parts.append("pulled %d (created %d, updated %d, unchanged %d, conflicts %d, deleted %d)"
                     % (t["docs_read"], t["created"], t["updated"], t["unchanged"], t["conflicts"], t["deleted"]))
    if "push" in results:
        p = results["push"]
        t = p.totals()
        parts.append("pushed %d (the peer wrote %d, unchanged %d, conflicts %d)"
                     % (p.sent, t["docs_written"], t["unchanged"], t["conflicts"]))
    warnings = sum(len(r.warnings) for r in results.values())
    return "; ".join(parts) + ("; %d warnings (see the log)" % warnings if warnings else "")


def as_dict(results):
    return {op: r.as_dict() for op, r in results.items()}


# ------------------------------------------------------------------ scheduling


def due_peers(db, now=None):
    """Peers with an interval (minutes) whose last run started at least that long ago (or never)."""
    now = now or utcnow()
    t, lock = db.sync_instance, db.plugin_sync_lock
    started = {r.peer: r.last_started for r in db(lock).select(lock.peer, lock.last_started)}
    due = []
    for peer in db((t.sync_interval > 0) & (t.url != None) & (t.url != "")).select(orderby=t.id):  # noqa: E711
        last = started.get(peer.base_uuid)
        # half a scheduler period of slack: a 1-minute peer is not skipped for being a second early
        if last is None or last + datetime.timedelta(minutes=peer.sync_interval, seconds=-30) <= now:
            due.append(peer)
    db.commit()
    return due


def run_due(db, settings, now=None):
    """Sync every peer that is due (the scheduler's task); {base_uuid: "ok" | "error: ..."}. Never raises."""
    out = {}
    for peer in due_peers(db, now):
        try:
            sync(db, settings, peer)
            out[peer.base_uuid] = "ok"
        except Exception as e:  # logged by the run; the other peers still sync
            db.rollback()
            out[peer.base_uuid] = "error: %s" % getattr(e, "describe", lambda: str(e))()
    return out


# ------------------------------------------------------------------ helpers


def _peer_row(db, peer):
    if hasattr(peer, "base_uuid") and hasattr(peer, "id"):
        peer = peer.id
    table = db.sync_instance
    row = None
    if isinstance(peer, int) or (isinstance(peer, str) and peer.isdigit()):
        row = table(int(peer))
    if row is None and isinstance(peer, str):
        row = find_peer(db, peer) or db(table.owner == peer).select(limitby=(0, 1)).first()
    if row is None:
        raise PeerError("no peer %r: register it first (its base_uuid, id or owner)" % (peer,))
    if not row.url:
        raise PeerError("peer %s has no URL: it can only exchange files" % (row.owner or row.base_uuid))
    return row


def _range_to_resume(received, resume, peer_now=None):
    """(since, until, after) of a pull: the range our resume point walks, or a new one from `received`.

    A range ending beyond the peer's log as it is now (`peer_now`: a peer restored from a backup) is
    not resumed: a new range starts from `received`."""
    received, point = int(received or 0), resume_point(resume)
    if point is not None and point.since <= received < point.until and (peer_now is None or point.until <= peer_now):
        return point.since, point.until, str(point.after)
    return received, None, None


def _offset(peer_now, before, after):
    """Seconds the peer's clock is ahead of ours (negative: behind), from a request's round trip."""
    if peer_now is None:
        return None
    middle = before + (after - before) / 2
    return round((peer_now - middle).total_seconds(), 1)


def _duration(seconds):
    if seconds >= 3600:
        return "%.1f hours" % (seconds / 3600.0)
    if seconds >= 60:
        return "%d minutes" % (seconds // 60)
    return "%d seconds" % seconds
