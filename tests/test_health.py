"""Peer health and the picture of the flows (issue 15), on the engine: states, lateness, changes waiting."""
import datetime
import re

from synchelpers import hub_peers, instances, seed_small, settings

from applications.eden.modules.plugin_sync import graph, health

NOW = datetime.datetime(2030, 1, 1, 12, 0, 0)


def _peer(db, name, url="http://127.0.0.1:9/eden", interval=0, mode="both"):
    base_uuid = "uuid-%d" % (db(db.sync_instance).count() + 1)
    db.sync_instance.insert(base_uuid=base_uuid, owner=name, url=url, sync_interval=interval, mode=mode)
    return base_uuid


def _run(db, peer, minutes_ago, error=None, op="pull"):
    db.plugin_sync_log.insert(started_on=NOW - datetime.timedelta(minutes=minutes_ago), operation=op, peer=peer,
                              result="error" if error else "ok", error=error, docs_read=3, docs_written=2)


def test_peer_states_lateness_and_changes_waiting(new_instance):
    (a,) = instances(new_instance, "a")
    seed_small(a)
    db = a["db"]
    failing, late, fine, never, files = (_peer(db, "failing", interval=5), _peer(db, "late", interval=10),
                                         _peer(db, "fine", interval=10), _peer(db, "never", interval=10),
                                         _peer(db, "files", url=None))
    _run(db, failing, 3)
    _run(db, failing, 1, error="wrong credentials for peer failing")  # a success before does not hide it
    _run(db, late, 30)
    _run(db, fine, 5)
    db.commit()
    got = {h.peer.base_uuid: h for h in health.peer_health(db, settings(a), now=NOW)}
    assert {p: h.state for p, h in got.items()} == {
        failing: "failing", late: "overdue", fine: "ok", never: "never", files: "file"}
    assert got[failing].error == "wrong credentials for peer failing" and got[failing].success is not None
    assert got[late].overdue == datetime.timedelta(minutes=20, seconds=-90)
    assert got[fine].overdue is None
    # to go: everything seeded (never sent) waits for every peer; after a checkpoint at the log's end, nothing
    assert got[fine].to_go >= 10 and got[fine].to_come is None
    from applications.eden.modules.plugin_sync import changes
    db(db.sync_instance.base_uuid == fine).update(checkpoint_sent=changes.checkpoint(db), peer_pending=4)
    db.commit()
    again = {h.peer.base_uuid: h for h in health.peer_health(db, settings(a), now=NOW)}
    assert again[fine].to_go == 0 and again[fine].to_come == 4


def test_the_picture_marks_failing_and_overdue_edges_and_escapes_names(new_instance):
    (a,) = instances(new_instance, "a")
    db = a["db"]
    bad = _peer(db, "<script>alert(1)</script>", interval=5, mode="pull")
    late = _peer(db, "late", interval=10, mode="push")
    ok = _peer(db, "ok", interval=10)
    _run(db, bad, 1, error="offline")
    _run(db, late, 60)
    _run(db, ok, 2)
    db.commit()
    me = db.plugin_sync_identity(1) or db(db.plugin_sync_identity).select().first()
    svg = graph.svg(me, health.peer_health(db, settings(a), now=NOW), NOW)
    assert svg.startswith("<svg") and "<script>" not in svg and "&lt;script&gt;" in svg
    failing = svg.split('<g class="ps-edge ps-edge-failing" data-peer="%s">' % bad)[1].split("</g>")[0]
    assert 'stroke="#b91c1c"' in failing and "stroke-dasharray" in failing and "FAILING" in failing
    assert "marker-start" in failing and "marker-end" not in failing  # pull: towards us only
    overdue = svg.split('<g class="ps-edge ps-edge-overdue" data-peer="%s">' % late)[1].split("</g>")[0]
    assert "stroke-dasharray" in overdue and "OVERDUE by 48 min" in overdue and "last ok 1 h ago" in overdue
    assert "marker-end" in overdue and "marker-start" not in overdue  # push: towards the peer
    healthy = svg.split('<g class="ps-edge ps-edge-ok" data-peer="%s">' % ok)[1].split("</g>")[0]
    assert "stroke-dasharray" not in healthy and "marker-start" in healthy and "marker-end" in healthy
    assert "3 in, 2 out" in healthy and "last ok 2 min ago" in healthy


def test_scheduler_state_from_eden_s_worker_heartbeats(new_instance):
    (a,) = instances(new_instance, "a")
    db = a["db"]
    assert "scheduler_worker" in db.tables  # the minihost runs web2py's Scheduler, as Eden does
    state = health.scheduler_state(db, now=NOW)
    assert state.known and not state.alive and state.workers == 0
    db.scheduler_worker.insert(worker_name="w1", first_heartbeat=NOW, last_heartbeat=NOW - datetime.timedelta(
        seconds=10), status="ACTIVE")
    db.scheduler_worker.insert(worker_name="w0", first_heartbeat=NOW, last_heartbeat=NOW - datetime.timedelta(
        hours=2), status="ACTIVE")
    db.commit()
    state = health.scheduler_state(db, now=NOW)
    assert state.alive and state.workers == 1 and state.last_heartbeat == NOW - datetime.timedelta(seconds=10)


def test_a_hub_s_peers_most_urgent_first_in_few_queries(new_instance):
    """A hundred peers: failing first, then overdue (the latest first), never synced, fine, file-only;
    their health read in a number of queries that does not grow with the peers."""
    (a,) = instances(new_instance, "a")
    db = a["db"]
    states = hub_peers(db, 100, NOW)
    before = len(db._timings)
    got = health.by_urgency(health.peer_health(db, settings(a), now=NOW))
    queries = len(db._timings) - before
    assert [h.state for h in got] == ["failing"] * 3 + ["overdue"] * 5 + ["never"] * 7 + ["ok"] * 83 + ["file"] * 2
    overdue = [h.peer.base_uuid for h in got if h.state == "overdue"]
    assert overdue == list(reversed(states["overdue"]))  # the latest first
    assert queries < 12, queries


def test_a_hub_s_picture_draws_the_urgent_peers_and_groups_the_rest(new_instance):
    (a,) = instances(new_instance, "a")
    db = a["db"]
    states = hub_peers(db, 100, NOW)
    me = db(db.plugin_sync_identity).select().first()
    svg = graph.svg(me, health.peer_health(db, settings(a), now=NOW), NOW)
    singles = re.findall(r'<g class="ps-edge ps-edge-(\w+)" data-peer="([^"]+)"', svg)
    groups = dict((s, int(n)) for s, n in re.findall(r'ps-group-edge" data-state="(\w+)" data-count="(\d+)"', svg))
    # every failing and overdue peer is drawn on its own; the rest by state; every peer counted once
    assert {p for s, p in singles if s in ("failing", "overdue")} == set(states["failing"] + states["overdue"])
    assert len(singles) + len(groups) <= graph.MAX_NODES
    assert len(singles) + sum(groups.values()) == 100
    assert groups["ok"] >= 80 and "file" in groups
    # the most urgent are painted last (on top): the failing edges come after every other edge
    order = [m.group(1) for m in re.finditer(r'<g class="ps-edge ps-edge-(\w+)', svg)]
    assert order[-3:] == ["failing"] * 3
    assert re.search(r'viewBox="0 0 %d %d"' % graph.WIDE[:2], svg)


def test_one_peer_s_label_stands_beside_its_edge_not_on_it(new_instance):
    (a,) = instances(new_instance, "a")
    db = a["db"]
    peer = _peer(db, "only", interval=10)
    _run(db, peer, 2)
    db.commit()
    me = db(db.plugin_sync_identity).select().first()
    svg = graph.svg(me, health.peer_health(db, settings(a), now=NOW), NOW)
    edge = svg.split('data-peer="%s">' % peer)[1].split("</g>")[0]
    x1, x2 = (int(v) for v in re.search(r'<line x1="(\d+)" y1="\d+" x2="(\d+)"', edge).groups())
    assert x1 == x2  # the one peer sits above us: a vertical edge
    for x, anchor in re.findall(r'<text x="(\d+)" y="\d+" text-anchor="(\w+)"', edge):
        assert anchor == "start" and int(x) > x1  # its text starts to the right of the line
