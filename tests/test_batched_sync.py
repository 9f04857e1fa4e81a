"""Resumable, batched syncs over a bad link (issue 23).

A first sync of a field laptop is a large range of changes. Over a link that drops every
few kilobytes (tests/droplink.py: a proxy on 127.0.0.1 that cuts the connection in flight
every N bytes, counted over all connections as a radio link would), one transfer of the
whole range never completes and every retry starts again from zero. In batches, each
committed with the receiver's resume point, every cut costs at most the batch in flight.
"""
import os

import pytest

from droplink import DroppingLink
from test_network import FAST, converged, nodes  # noqa: F401 (the fixture)

from applications.eden.modules.plugin_sync import changes, replicate
from applications.eden.modules.plugin_sync.errors import PeerError

RECORDS = 500  # persons on each side, about 50 KB gzip'd per side
BATCH = 50  # records per batch: about 5 KB gzip'd
EVERY = 15000  # the link drops every 15 KB: a whole side's range never passes in one piece
WASTE = 8000  # bytes a cut may cost at most: the batch in flight (and its request)
RUNS = 30  # runs before the test gives up
ONE_TRY = dict(FAST, retries=1)  # a cut fails the run: the next run must resume where the last one stopped


def people(node, n, prefix):
    """n persons with random text (gzip cannot shrink them away), committed."""
    db = node.db
    for i in range(n):
        db.pr_person.insert(first_name="%s person %d" % (prefix, i), last_name=os.urandom(40).hex())
    db.commit()


def until_done(node, peer, mode):
    """Run the sync again after each failure, as the scheduler would; the runs it took."""
    for run in range(1, RUNS + 1):
        try:
            replicate.sync(node.db, node.settings, peer, mode=mode, **ONE_TRY)
            return run
        except PeerError:
            continue
    pytest.fail("the %s did not complete in %d runs over a link dropping every %d bytes" % (mode, RUNS, EVERY))


def uuids(node):
    db = node.db
    db.commit()
    out = [r.uuid for r in db(db.pr_person).select(db.pr_person.uuid)]
    db.commit()
    return out


def test_a_first_sync_over_a_link_that_drops_every_15kb_resumes_in_batches_and_loses_nothing(nodes):
    a, b = nodes("a"), nodes("b")
    link = DroppingLink(b.server.port)
    try:
        a.register(b, url=link.url)  # a talks to b through the bad link
        b.register(a)
        a.settings.sync_batch = BATCH  # the setting: records per batch
        people(b, RECORDS, "B")
        people(a, RECORDS, "A")
        peer = a.peer(b).id
        b_persons = set(uuids(b))
        first, last = b.db.pr_person(b.db.pr_person.first_name == "B person 0"), \
            b.db.pr_person(b.db.pr_person.first_name == "B person %d" % (RECORDS - 1))
        b.db.commit()
        b_until = changes.checkpoint(b.db)  # b's change log when the pull starts
        b.db.commit()

        # edits on b while the pull runs, after the first cut: one record sent already, one still to come
        def edit_once():
            link.on_cut = None
            b.db(b.db.pr_person.id.belongs([first.id, last.id])).update(phone="edited during the sync")
            b.db.commit()

        link.on_cut = edit_once
        link.reset(every=EVERY)
        runs = until_done(a, peer, "pull")
        assert link.cuts >= 3 and runs == link.cuts + 1  # each drop ended a run; the next one resumed
        pulled = (runs, link.cuts, link.delivered, link.wasted)

        # the checkpoint is exactly where the range ended; every record of b that did not change
        # meanwhile arrived, once (the one edited before its batch left the range: it comes next)
        row = a.peer(b)
        assert row.checkpoint_received == b_until and not row.checkpoint_resume
        assert sorted(uuids(a)) == sorted(set(uuids(a))) and b_persons - {last.uuid} <= set(uuids(a))
        # a cut costs at most the batch in flight: never the range again
        assert link.wasted <= link.cuts * WASTE, (link.wasted, link.cuts)
        assert link.wasted < 0.5 * link.delivered, (link.wasted, link.delivered)

        # the records edited during the pull are not lost: the next pull brings them
        link.reset(every=None)
        replicate.sync(a.db, a.settings, peer, mode="pull", **FAST)
        a.db.commit()
        assert a.db(a.db.pr_person.phone == "edited during the sync").count() == 2
        a.db.commit()
        assert len(uuids(a)) == 2 * RECORDS and b_persons <= set(uuids(a))

        # a push of a's own range over the same link: batches, resumed at the peer's resume point
        a.db.commit()
        a_until = changes.checkpoint(a.db)
        a.db.commit()
        link.reset(every=EVERY)
        pushes = until_done(a, peer, "push")
        assert link.cuts >= 3 and pushes == link.cuts + 1
        assert link.wasted <= link.cuts * WASTE and link.wasted < 0.5 * link.delivered, (link.wasted, link.delivered)
        assert b.peer(a).checkpoint_received == a_until and not b.peer(a).checkpoint_resume
        assert a.peer(b).checkpoint_sent == a_until
        assert len(uuids(b)) == 2 * RECORDS and sorted(uuids(b)) == sorted(set(uuids(b)))
        converged(a, b)
        print("pull: %d runs, %d cuts, %d bytes delivered, %d in cut connections" % pulled)
        print("push: %d runs, %d cuts, %d bytes delivered, %d in cut connections"
              % (pushes, link.cuts, link.delivered, link.wasted))
    finally:
        link.close()


# ---------------------------------------------------------------------------- the receiver's side, in process


def batches_of(src, dst, since=0, limit=2):
    """b's changes since `since` in batches of `limit`, as a pull fetches them: [(file, until, next)]."""
    me = dst["db"](dst["db"].plugin_sync_identity).select().first().base_uuid
    dst["db"].commit()
    out, until, after = [], None, None
    while True:
        answer = replicate.changes(src["db"], src["plugin_sync_settings"], since, peer=me, until=until, after=after,
                                   limit=limit)
        src["db"].commit()
        out.append((answer[0], answer[3], answer.next))
        until, after = answer[3], answer.next and str(answer.next)
        if answer.next is None:
            return out


def test_a_reference_to_a_record_of_a_later_batch_is_resolved_and_batches_out_of_order_move_nothing(new_instance):
    from synchelpers import instances

    from applications.eden.modules.plugin_sync.fileio import import_from

    a, b = instances(new_instance, "a", "b")
    db = b["db"]
    # a district made before its province (a lower id pointing at a higher one: a later batch)
    district = db.gis_location.insert(name="District first", level="L2")
    for i in range(3):
        db.gis_location.insert(name="Filler %d" % i, level="L3")
    province = db.gis_location.insert(name="Province later", level="L1")
    db(db.gis_location.id == district).update(parent=province)
    db.commit()
    sender = db(db.plugin_sync_identity).select().first().base_uuid
    db.commit()
    files = batches_of(b, a, limit=2)
    assert len(files) >= 3

    def merge(data):
        return import_from(a["db"], a["plugin_sync_settings"], data, sender=sender)

    def place():
        row = a["db"](a["db"].sync_instance.base_uuid == sender).select().first()
        a["db"].commit()
        return row.checkpoint_received, row.checkpoint_resume

    # the second batch before the first: merged (idempotent), but the resume point stays where it was
    report = merge(files[1][0])
    assert any("starts after" in w["message"] for w in report.warnings)
    assert place() == (0, None)
    nulled = 0
    for k, (data, until, next_) in enumerate(files):
        nulled += merge(data).totals()["refs_nulled"]
        if next_ is not None:
            assert place() == (0, "0:%d:%s" % (until, next_))  # a batch moves the resume point only
    assert place() == (files[-1][1], None)  # the last one moves the checkpoint to the range's end
    dba = a["db"]
    child = dba(dba.gis_location.name == "District first").select().first()
    parent = dba(dba.gis_location.name == "Province later").select().first()
    assert nulled == 0 and child.parent == parent.id
    assert dba(dba.plugin_sync_deferred).isempty()
    dba.commit()


def test_a_pull_in_batches_ends_while_the_peer_keeps_writing(nodes, monkeypatch):
    """The peer's log grows during our pull (its users work on; on Eden its own requests write): each batch
    answers with the log as it is now, beyond what its identity said at the start.  The pull walks the range
    it began and ends, the checkpoint at that range's end; what was written meanwhile comes with the next."""
    from applications.eden.modules.plugin_sync import transport

    a, b = nodes("a"), nodes("b")
    a.register(b)
    b.register(a)
    a.settings.sync_batch = 10
    people(b, 35, "B")
    asked = []
    fetch = transport.HTTPTransport.changes

    def busy_peer(self, since, **kw):
        asked.append((since, kw.get("after")))
        assert len(asked) <= 8, "the pull asks for the same batches again and again: %s" % asked
        b.db.pr_person.insert(first_name="written during batch %d" % len(asked), last_name="Busy")
        b.db.commit()
        return fetch(self, since, **kw)

    monkeypatch.setattr(transport.HTTPTransport, "changes", busy_peer)
    replicate.sync(a.db, a.settings, a.peer(b).id, mode="pull", **FAST)
    assert len(asked) == 4 and [after for _, after in asked].count(None) == 1, asked  # 35 records, 10 a batch
    row = a.peer(b)
    assert not row.checkpoint_resume and 0 < row.checkpoint_received < changes.checkpoint(b.db)
    b.db.commit()
    assert len(uuids(a)) == 35 + 1  # b's records and the one written before the range was fixed
    monkeypatch.setattr(transport.HTTPTransport, "changes", fetch)
    replicate.sync(a.db, a.settings, a.peer(b).id, mode="pull", **FAST)
    assert sorted(uuids(a)) == sorted(uuids(b))
