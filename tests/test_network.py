"""Instance-to-instance sync over the network: real web2py servers, HTTP and XML-RPC.

Each test starts its own servers (start_server: own runtime folder, database
and identity; one of them on PostgreSQL), registers them as peers of each
other with the seeded admin account (or a sync-group account), writes records
through an app env on each server's database, and has the *servers* sync
(POST sync_now.json: the server runs replicate.sync against its peer).
Failures in transit go through a small TCP proxy on 127.0.0.1 that cuts a
connection after N bytes or holds it until released.
"""
import base64
import datetime
import json
import os
import re
import socket
import subprocess
import sys
import threading
import urllib.error
import urllib.parse
import urllib.request
import xmlrpc.client

import pytest

import eden
from conftest import free_port
from synchelpers import assert_converged, count, seed_lookups, seed_small

from applications.eden.modules.plugin_sync import cli, replicate
from applications.eden.modules.plugin_sync.accounts import peer_account
from applications.eden.modules.plugin_sync.errors import Locked, PeerError

ADMIN = (eden.ADMIN_EMAIL, eden.ADMIN_PASSWORD)
FAST = dict(retries=3, backoff=0.05, max_wait=0.1, timeout=20)  # in-process runs: short waits between tries


# ---------------------------------------------------------------------------- helpers


def basic(credentials):
    return "Basic " + base64.b64encode(("%s:%s" % credentials).encode()).decode()


def http(method, url, data=None, auth=ADMIN, headers=None):
    """(status, headers, body) of one request; HTTP errors are answers too."""
    req = urllib.request.Request(url, data=data, method=method, headers=dict(headers or {}))
    if auth:
        req.add_header("Authorization", basic(auth))
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            return r.status, r.headers, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read()


class Node:
    """A running server plus an app env on its database, in this process, to write and check records."""

    def __init__(self, server, skew=None):
        self.server, self.name, self.url, self.skew = server, server.name, server.url, skew
        self._env = None
        self.base_uuid = json.loads(http("GET", self.url + "/plugin_sync/identity.json")[2])["base_uuid"]

    @property
    def env(self):
        if self._env is None:
            keys = ("EDEN_DB_URI", "EDEN_INSTANCE", "EDEN_CLOCK_SKEW")
            saved = {k: os.environ.get(k) for k in keys}
            os.environ.update(EDEN_DB_URI=self.server.uri, EDEN_INSTANCE=self.name)
            os.environ.pop("EDEN_CLOCK_SKEW", None)
            if self.skew:
                os.environ["EDEN_CLOCK_SKEW"] = str(self.skew)  # this env's utcnow(): the server's clock
            try:
                self._env = eden.app_env(self.server.folder)
            finally:
                for k, v in saved.items():
                    os.environ.pop(k, None) if v is None else os.environ.__setitem__(k, v)
            self._env["db"].commit()
        return self._env

    @property
    def db(self):
        return self.env["db"]

    @property
    def settings(self):
        return self.env["plugin_sync_settings"]

    def peer(self, other):
        """This node's sync_instance row of `other` (fresh)."""
        self.db.commit()
        row = self.db(self.db.sync_instance.base_uuid == other.base_uuid).select().first()
        self.db.commit()
        return row

    def register(self, other, credentials=ADMIN, url=None, **kw):
        return replicate.register_peer(self.db, self.settings, url or other.url, *credentials, **kw)

    def sync_now(self, other, mode=None, status=200):
        """The server syncs with `other` now (an admin's POST sync_now.json); its JSON answer."""
        data = urllib.parse.urlencode(dict(peer=other.base_uuid, mode=mode or "")).encode()
        code, _, body = http("POST", self.url + "/plugin_sync/sync_now.json", data=data)
        answer = json.loads(body)
        assert code == status, (code, answer)
        return answer

    def count(self, table, **where):
        return count(self.env, table, **where)

    def last_log(self, operation):
        db = self.db
        db.commit()
        row = db(db.plugin_sync_log.operation == operation).select(orderby=~db.plugin_sync_log.id).first()
        db.commit()
        return row

    def close(self):
        if self._env is not None:
            try:
                self._env["db"].rollback()
                self._env["db"].close()
            except Exception:
                pass


@pytest.fixture
def nodes(start_server, postgres, monkeypatch):
    """Factory: nodes("a", pg=False, skew=seconds) -> a Node on a new server; all stopped at the end."""
    made = []

    def make(name, pg=False, skew=None):
        with monkeypatch.context() as m:
            if skew:
                m.setenv("EDEN_CLOCK_SKEW", str(skew))
            server = start_server(name, uri=postgres.new_database() if pg else None)
        node = Node(server, skew)
        made.append(node)
        return node

    yield make
    for node in made:
        node.close()


def register_all(*nodes, **kw):
    for a in nodes:
        for b in nodes:
            if a is not b:
                a.register(b, **kw)


def converged(*nodes):
    for n in nodes:
        n.db.commit()
    try:
        assert_converged(*(n.env for n in nodes))
    finally:
        for n in nodes:
            n.db.commit()


def written(answer):
    """Records a sync_now answer says were written, on either side."""
    pulled = answer.get("pull", {}).get("totals", {}).get("docs_written", 0)
    pushed = answer.get("push", {}).get("totals", {}).get("docs_written", 0)
    return pulled + pushed


def edit(node, changes):
    """Commit a few edits through the node's own app env (its clock, its triggers)."""
    db = node.db
    for (table, name), values in changes.items():
        db(db[table].name == name).update(**values)
    db.commit()


class Proxy:
    """A TCP proxy on 127.0.0.1 in front of a server, that can cut or hold the connections of one path.

    cut(path, request_bytes=N): forward only the first N bytes of the request, then drop both sides;
    cut(path, response_bytes=N): forward the whole request, then only N bytes of the answer, then drop;
    hold(path): keep the request until release() (`arrived` is set when it came).
    """

    def __init__(self, port):
        self.target = port
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.url = "http://127.0.0.1:%d/eden" % self.port
        self.rule, self.hits = None, 0
        self.arrived, self.gate = threading.Event(), threading.Event()
        self.closed = False
        threading.Thread(target=self.serve, daemon=True).start()

    def cut(self, path, request_bytes=None, response_bytes=None):
        self.rule, self.hits = ("cut", path, request_bytes, response_bytes), 0

    def hold(self, path):
        self.arrived.clear()
        self.gate.clear()
        self.rule, self.hits = ("hold", path, None, None), 0

    def release(self):
        self.gate.set()

    def clear(self):
        self.rule = None
        self.gate.set()

    def close(self):
        self.closed = True
        self.gate.set()
        self.sock.close()

    def serve(self):
        while not self.closed:
            try:
                client, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self.handle, args=(client,), daemon=True).start()

    def handle(self, client):
        upstream = socket.create_connection(("127.0.0.1", self.target))
        try:
            first = client.recv(65536)
            rule = self.rule
            if rule and rule[1] in first.split(b"\r\n", 1)[0].decode("latin-1"):
                self.hits += 1
            else:
                rule = None
            if rule and rule[0] == "hold":
                self.arrived.set()
                self.gate.wait(60)
            limit_up = rule[2] if rule else None
            limit_down = rule[3] if rule else None
            done = threading.Event()
            threading.Thread(target=self.pump, args=(client, upstream, first, limit_up, done), daemon=True).start()
            self.pump(upstream, client, b"", limit_down, done)
        finally:
            for s in (client, upstream):
                try:
                    s.close()
                except OSError:
                    pass

    @staticmethod
    def pump(src, dst, first, limit, done):
        sent = 0
        data = first
        try:
            while not done.is_set():
                if data:
                    if limit is not None and sent + len(data) >= limit:
                        dst.sendall(data[: max(0, limit - sent)])
                        break
                    dst.sendall(data)
                    sent += len(data)
                data = src.recv(65536)
                if not data:
                    break
        except OSError:
            pass
        Proxy.hang_up(src, dst, done)

    @staticmethod
    def hang_up(src, dst, done):
        """A cut (or the end): both sides see the connection drop."""
        done.set()
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


@pytest.fixture
def proxies():
    made = []

    def make(node):
        p = Proxy(node.server.port)
        made.append(p)
        return p

    yield make
    for p in made:
        p.close()


def many_people(node, n, prefix):
    """Enough records that a transfer is many packets long."""
    db = node.db
    for i in range(n):  # random text: gzip cannot shrink it to a few packets
        db.pr_person.insert(first_name="%s person %d" % (prefix, i), comments=os.urandom(100).hex())
    db.commit()


# ---------------------------------------------------------------------------- convergence


@pytest.mark.parametrize("transport", ["http", "xmlrpc"])
def test_ring_then_star_converge_on_sqlite_and_postgres(nodes, transport):
    a, b, c = nodes("a"), nodes("b"), nodes("c", pg=True)
    register_all(a, b, c, transport=transport)
    assert a.peer(c).owner.startswith("Sahana Eden instance c") and a.peer(c).transport == transport
    ids = {n.name: seed_small(n.env, prefix=n.name.upper()) for n in (a, b, c)}

    # a ring: a-b, b-c, c-a (each pull then push)
    first = a.sync_now(b)
    assert first["pull"]["totals"]["created"] == 12 and first["push"]["totals"]["created"] == 12, first
    b.sync_now(c)
    c.sync_now(a)
    converged(a, b, c)
    assert a.count("org_organisation") == 6 and c.count("hms_hospital") == 3

    # edits everywhere: an update, a soft delete, a hard delete, a new record, and one record
    # edited on two instances at once (the newer edit must win everywhere, the other be kept)
    t0 = datetime.datetime.utcnow().replace(microsecond=0)
    edit(a, {("org_organisation", "A Ministry of Health"): dict(phone="+670 331 0001"),
               ("org_organisation", "B Red Cross"): dict(phone="111", modified_on=t0 - datetime.timedelta(minutes=1))})
    edit(c, {("org_organisation", "B Red Cross"): dict(phone="333", modified_on=t0)})
    c.db(c.db.pr_person.first_name == "Mariano").update(deleted=True)  # Sahana's soft delete, of all three
    c.db.gis_location.insert(name="C new district", level="L2", parent=ids["c"]["l1"])
    c.db.commit()
    b.db(b.db.hms_hospital.name.startswith("B Hospital")).delete()  # a hard delete: a tombstone travels
    b.db.commit()

    # the ring again, in another order
    c.sync_now(b)
    b.sync_now(a)
    a.sync_now(c)
    converged(a, b, c)
    for n in (a, b, c):
        assert n.count("org_organisation", name="B Red Cross", phone="333") == 1
        assert n.count("org_organisation", name="A Ministry of Health", phone="+670 331 0001") == 1
        assert n.count("pr_person", first_name="Mariano", deleted=True) == 3
        assert n.count("hms_hospital") == 2 and n.count("gis_location", name="C new district") == 1
    assert sum(n.count("plugin_sync_conflict") for n in (a, b, c)) >= 1  # the losing "111" is kept

    # a star around c (PostgreSQL): new edits on the leaves, leaves sync with the hub in turn
    edit(a, {("gis_location", "A Aileu"): dict(population=40000)})
    edit(b, {("org_office", "B head office"): dict(phone="+670 222")})
    b.sync_now(c)
    a.sync_now(c)
    b.sync_now(c)
    converged(a, b, c)
    assert b.count("gis_location", name="A Aileu", population=40000) == 1

    # converged: one more round changes nothing anywhere, and nothing was duplicated
    assert sum(written(x.sync_now(y)) for x, y in ((a, b), (b, c), (c, a))) == 0
    for n in (a, b, c):
        assert n.count("org_organisation") == 6 and n.count("pr_person") == 6
        log = n.last_log("push")
        assert log.result == "ok" and log.peer in (a.base_uuid, b.base_uuid, c.base_uuid)


def test_relayed_change_arrives_although_clocks_differ_by_hours(nodes):
    """A -> B -> C: change capture, not clocks, decides what travels; skewed clocks are noticed."""
    a, b, c = nodes("a", skew=-3 * 3600), nodes("b", pg=True), nodes("c", skew=2 * 3600)
    a.register(b)
    b.register(a)
    b.register(c)
    c.register(b)
    for n in (a, b, c):
        seed_lookups(n.env)
        n.db.commit()
    c.sync_now(b)  # C has synced with B "now" by its clock (2 h ahead): a clock-based sync would skip older records
    org = a.db.org_organisation.insert(name="Relayed from A", phone="1")
    a.db.commit()
    uuid = a.db.org_organisation(org).uuid
    a.db.commit()
    assert b.sync_now(a, mode="pull")["pull"]["totals"]["created"] == 1
    relayed = c.sync_now(b, mode="pull")
    assert relayed["pull"]["totals"]["created"] == 1
    assert c.count("org_organisation", uuid=uuid, name="Relayed from A") == 1

    # the offsets were measured, and a warning says so in the report and the log
    assert -3 * 3600 - 60 < b.peer(a).clock_offset < -3 * 3600 + 60
    assert 2 * 3600 - 60 < b.peer(c).clock_offset < 2 * 3600 + 60
    assert -2 * 3600 - 60 < c.peer(b).clock_offset < -2 * 3600 + 60
    pull_log = b.last_log("pull")
    assert "clock of peer" in pull_log.report and "behind" in pull_log.report
    assert any("clock of peer" in w["message"] for w in relayed["pull"]["warnings"])

    # and back: C's edit (dated 2 h ahead of B) is flagged at B but still travels to A
    c.db(c.db.org_organisation.uuid == uuid).update(phone="3")
    c.db.commit()
    back = b.sync_now(c, mode="pull")
    assert back["pull"]["totals"]["future"] == 1 and back["pull"]["totals"]["updated"] == 1, back
    a.sync_now(b, mode="pull")
    for n in (a, b, c):
        assert n.count("org_organisation", uuid=uuid, phone="3") == 1


# ---------------------------------------------------------------------------- failures in transit


def test_cut_connection_does_not_advance_checkpoints_and_next_run_completes(nodes, proxies):
    a, b = nodes("a"), nodes("b")
    proxy = proxies(b)
    a.register(b, url=proxy.url)  # a talks to b through the proxy
    b.register(a)
    for n, prefix in ((a, "A"), (b, "B")):
        seed_small(n.env, prefix=prefix)
        many_people(n, 150, prefix)
    peer = a.peer(b)
    a_before, b_before = a.count("pr_person"), b.count("pr_person")

    # a pull whose answer is cut mid-body: nothing merged, checkpoint unchanged, retried, logged
    proxy.cut("/plugin_sync/changes", response_bytes=3000)
    with pytest.raises(PeerError) as e:
        replicate.sync(a.db, a.settings, peer.id, mode="pull", **FAST)
    assert "changes: peer" in str(e.value) and "failed 3 times" in str(e.value)
    assert proxy.hits == 3
    assert a.peer(b).checkpoint_received == 0 and a.count("pr_person") == a_before
    assert a.last_log("pull").result == "error"

    # the next run completes: everything once
    proxy.clear()
    report = replicate.sync(a.db, a.settings, peer.id, mode="pull", **FAST)["pull"]
    assert report.totals()["created"] == b_before + 10
    assert a.peer(b).checkpoint_received > 0 and a.count("pr_person") == a_before + b_before

    # a push cut while uploading: the peer merged nothing, our checkpoint stays
    proxy.cut("/plugin_sync/receive", request_bytes=4000)
    with pytest.raises(PeerError):
        replicate.sync(a.db, a.settings, peer.id, mode="push", **FAST)
    assert a.peer(b).checkpoint_sent == 0 and b.count("pr_person") == b_before

    # a push whose answer is lost after the peer committed: our checkpoint stays; re-sending is harmless
    proxy.cut("/plugin_sync/receive", response_bytes=0)
    with pytest.raises(PeerError):
        replicate.sync(a.db, a.settings, peer.id, mode="push", **FAST)
    assert a.peer(b).checkpoint_sent == 0 and b.count("pr_person") == a_before + b_before

    proxy.clear()
    pushed = replicate.sync(a.db, a.settings, peer.id, mode="push", **FAST)["push"]
    assert pushed.totals()["created"] == 0  # nothing duplicated: the peer had it, and says so
    assert a.peer(b).checkpoint_sent > 0
    replicate.sync(a.db, a.settings, peer.id, **FAST)
    converged(a, b)
    assert b.count("pr_person") == a_before + b_before


# ---------------------------------------------------------------------------- who may sync


def test_wrong_or_missing_credentials_get_401_or_403_and_no_data(nodes):
    a, b = nodes("a"), nodes("b")
    seed_small(b.env, prefix="B")
    b.db.auth_user.insert(email="clerk@b.local", password=b.db.auth_user.password.validate("clerk-pw")[0],
                                   first_name="Clerk", last_name="B")
    b.db.commit()
    peer_account(b.db, b.settings, "peer-a@b.local", "s3cret", peer=a.base_uuid)  # it speaks for a
    file = replicate.changes(a.db, a.settings, 0)[0]  # a real file from a, to push without rights
    a.db.commit()

    calls = [
        ("GET", "/plugin_sync/identity.json", None, {}),
        ("GET", "/plugin_sync/changes?since=0", None, {}),
        ("POST", "/plugin_sync/receive.json", file, {"Content-Type": "application/gzip"}),
        ("POST", "/plugin_sync/call/xmlrpc", xmlrpc.client.dumps(("",), "identity").encode(), {"Content-Type": "text/xml"}),
    ]
    for method, path, data, headers in calls:
        for credentials, status in ((None, 401), ((eden.ADMIN_EMAIL, "wrong"), 401), (("nobody@b.local", "clerk-pw"), 401),
                                    (("clerk@b.local", "clerk-pw"), 403)):
            code, h, body = http(method, b.url + path, data=data, auth=credentials, headers=headers)
            assert code == status, (path, credentials, code, body[:200])
            if status == 401:
                assert h["WWW-Authenticate"].startswith("Basic ")
            answer = json.loads(body)
            assert answer["ok"] is False and b.base_uuid not in body.decode() and b"TABLE" not in body
        # the sync group's account may (and so may an admin)
        code, _, body = http(method, b.url + path, data=data, auth=("peer-a@b.local", "s3cret"), headers=headers)
        assert code == 200, (path, code, body[:300])
    assert b.count("pr_person") == 2 + 0  # the refused pushes wrote nothing ...
    assert b.count("plugin_sync_log", operation="import") == 1  # ... only the allowed one was merged
    # a peer account is no admin: the pages and sync_now refuse it
    code, _, _ = http("POST", b.url + "/plugin_sync/sync_now.json", data=b"peer=x", auth=("peer-a@b.local", "s3cret"))
    assert code == 403

    # a client with the wrong password: a clear error, nothing pulled, checkpoint unchanged
    with pytest.raises(PeerError) as e:
        a.register(b, credentials=(eden.ADMIN_EMAIL, "wrong"))
    assert "wrong credentials for peer" in str(e.value) and "401" in str(e.value)
    a.register(b, credentials=("peer-a@b.local", "s3cret"))
    a.db(a.db.sync_instance.base_uuid == b.base_uuid).update(password="changed-at-b")
    a.db.commit()
    refused = a.sync_now(b, status=502)
    assert "wrong credentials for peer" in refused["error"]["message"], refused
    assert a.count("pr_person") == 0 and a.peer(b).checkpoint_received == 0
    assert a.last_log("pull").result == "error" and "wrong credentials" in a.last_log("pull").error
    a.db(a.db.sync_instance.base_uuid == b.base_uuid).update(password="s3cret", transport="xmlrpc")
    a.db.commit()
    assert a.sync_now(b, mode="pull")["pull"]["totals"]["created"] == 12
    clerk = dict(a.peer(b).as_dict(), username="clerk@b.local", password="clerk-pw")
    with pytest.raises(PeerError) as e:
        replicate.sync(a.db, a.settings, a.peer(b), mode="pull", transport=replicate.connect(clerk, a.settings, **FAST))
    assert "not in its sync (or admin) group (HTTP 403)" in str(e.value)


# ---------------------------------------------------------------------------- one run at a time


def test_concurrent_runs_against_one_peer_are_refused_by_the_lock(nodes, proxies):
    a, b = nodes("a"), nodes("b")
    proxy = proxies(b)
    a.register(b, url=proxy.url)
    b.register(a)
    seed_small(b.env, prefix="B")
    proxy.hold("/plugin_sync/identity")  # the first request of a run waits at the proxy
    first = {}
    runner = threading.Thread(target=lambda: first.update(a.sync_now(b)))
    runner.start()
    try:
        assert proxy.arrived.wait(30)  # run 1 holds the lock and waits for the peer
        second = a.sync_now(b, status=409)
        assert second["error"]["error"] == "Locked" and "another sync with peer" in second["error"]["message"]
        with pytest.raises(Locked):
            replicate.sync(a.db, a.settings, a.peer(b).id, **FAST)
    finally:
        proxy.release()
        runner.join(60)
    assert first["ok"] and first["pull"]["totals"]["created"] == 12
    refused = a.db(a.db.plugin_sync_log.error.contains("another sync with peer")).select()
    assert len(refused) == 2 and {r.result for r in refused} == {"error"}
    a.db.commit()

    # a lock whose lease ran out (its holder stopped beating) is taken over; one whose lease runs is not,
    # whatever its holder's pid says (another node's pid means nothing here: tests/test_nodes.py)
    proxy.clear()
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    lock = a.db.plugin_sync_lock
    for holder, expires in (("%s:%d:x" % (socket.gethostname(), dead.pid), 3600), ("elsewhere:1:x", -60)):
        a.db(lock.peer == b.base_uuid).update(holder=holder, expires_on=datetime.datetime.utcnow()
                                              + datetime.timedelta(seconds=expires))
        a.db.commit()
        if expires > 0:
            with pytest.raises(Locked):
                replicate.sync(a.db, a.settings, b.base_uuid, **FAST)
        else:
            assert replicate.sync(a.db, a.settings, b.base_uuid, **FAST)
    row = a.db(lock.peer == b.base_uuid).select().first()
    assert row.holder is None and row.last_result == "ok"
    a.db.commit()


def test_sync_now_button_needs_the_form_key(nodes):
    a, b = nodes("a"), nodes("b")
    a.register(b)
    seed_small(b.env, prefix="B")
    peer_id = a.peer(b).id
    browser = Browser(a.url).login(*ADMIN)
    status, _, page = browser.open("/plugin_sync/sync_now/%d" % peer_id)
    assert status == 200 and "Sync now" in page
    key = re.search(r'name="_formkey" type="hidden" value="([^"]+)"', page).group(1)
    form = dict(_formname="plugin_sync_sync_now_%d" % peer_id, mode="")
    status, _, page = browser.open("/plugin_sync/sync_now/%d" % peer_id, dict(form, _formkey="forged"))
    assert status == 403 and "CSRF key missing or wrong" in page
    assert a.count("hms_hospital") == 0  # refused: nothing synced
    status, headers, _ = browser.open("/plugin_sync/sync_now/%d" % peer_id, dict(form, _formkey=key))
    assert status == 303 and headers["Location"].endswith("/plugin_sync/instances")
    assert a.count("hms_hospital") == 1 and a.last_log("pull").result == "ok"
    status, _, _ = browser.open("/plugin_sync/sync_now/%d" % peer_id, dict(form, _formkey=key))
    assert status == 403  # a form key is good for one post


class Browser:
    """A browser session: cookies, no redirects followed."""

    def __init__(self, base):
        import http.cookiejar

        class Stay(urllib.request.HTTPRedirectHandler):
            def redirect_request(self, *args, **kwargs):
                return None

        self.base = base
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()), Stay)

    def open(self, path, fields=None):
        data = urllib.parse.urlencode(fields).encode() if fields is not None else None
        try:
            with self.opener.open(self.base + path, data=data, timeout=60) as r:
                return r.status, r.headers, r.read().decode("utf-8")
        except urllib.error.HTTPError as e:
            return e.code, e.headers, e.read().decode("utf-8")

    def login(self, email, password):
        _, _, page = self.open("/default/user/login")
        key = re.search(r'name="_formkey" type="hidden" value="([^"]+)"', page).group(1)
        status, _, _ = self.open("/default/user/login", dict(email=email, password=password, _formkey=key,
                                                             _formname="login"))
        assert status == 303, "login failed"
        return self


# ---------------------------------------------------------------------------- the client alone


class FakeServer:
    """An HTTP server on 127.0.0.1 (http.server) answering with `handler`; `url` is its app root."""

    def __init__(self, handler):
        import http.server

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.url = "http://127.0.0.1:%d/eden" % self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


class FlakyPeer(FakeServer):
    """A fake peer on 127.0.0.1: answers each request with the next (status, body) of a script."""

    def __init__(self, script):
        import http.server

        owner = self
        self.script, self.requests = list(script), []

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                owner.requests.append((self.path, self.headers.get("Authorization")))
                status, body = owner.script.pop(0) if owner.script else (200, b"{}")
                self.send_response(status)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        super().__init__(Handler)


def test_transport_retries_with_backoff_and_names_the_peer():
    from applications.eden.modules.plugin_sync.transport import connect

    ident = json.dumps(dict(base_uuid="b-1", owner="B", now="2030-01-02 03:04:05", checkpoint="7")).encode()
    peer = dict(owner="Dili HQ", url=None, username="peer@a", password="pw")
    cases = [
        # (script, waits expected, error expected)
        ([(503, b"busy"), (502, b"gateway"), (200, ident)], [0.5, 1.0], None),
        ([(500, b"<h1>Internal error</h1>")] * 5, [0.5, 1.0, 1.5], "identity: peer Dili HQ at"),
        ([(401, b"no")], [], "wrong credentials for peer Dili HQ: peer@a was refused"),
        ([(403, b"no")], [], "not in its sync (or admin) group (HTTP 403)"),
        ([(404, b"no")], [], "has no plugin_sync endpoint"),
        ([(200, b"<html>not json</html>")], [], "answered something that is not plugin_sync's"),
    ]
    for script, expected_waits, error in cases:
        fake = FlakyPeer(script)
        waits = []
        try:
            t = connect(dict(peer, url=fake.url + "/"), None, retries=4, backoff=0.5, max_wait=1.5, sleep=waits.append)
            if error is None:
                answer = t.identity(me="a-1")
                assert answer["base_uuid"] == "b-1" and answer["checkpoint"] == 7
                assert answer["now"] == datetime.datetime(2030, 1, 2, 3, 4, 5)
                assert fake.requests[-1] == ("/eden/plugin_sync/identity.json?peer=a-1", basic(("peer@a", "pw")))
            else:
                with pytest.raises(PeerError) as e:
                    t.identity()
                assert error in str(e.value), str(e.value)
            assert waits == expected_waits, (script[0], waits)
        finally:
            fake.close()
    with pytest.raises(PeerError) as e:  # nobody listens: connection refused, retried, then a clear error
        connect(dict(peer, url="http://127.0.0.1:%d/eden" % free_port()), None, retries=2, backoff=0.01).identity()
    assert "failed 2 times" in str(e.value) and "Connection refused" in str(e.value)


# ---------------------------------------------------------------------------- scheduler and CLI


def test_scheduler_task_syncs_due_peers_and_cli_registers_and_syncs(nodes):
    a, b = nodes("a"), nodes("b", pg=True)
    seed_small(b.env, prefix="B")
    out = Out()
    assert cli.main(a.db, a.settings, ["register", b.url, "--username", ADMIN[0], "--password", ADMIN[1],
                                        "--interval", "5"], stdout=out) == 0
    assert "registered %s" % b.base_uuid in out.text
    b.register(a)
    # the periodic task row exists once, however often a worker starts
    for _ in range(2):
        a.env["plugin_sync_ensure_task"]()
    task = a.db(a.db.scheduler_task.task_name == "plugin_sync_scheduled").select()
    assert len(task) == 1 and task[0].period == 60 and task[0].repeats == 0
    a.db.commit()
    # the task: b is due (never synced), then not (5 minutes), then due again later
    assert a.env["plugin_sync_scheduled"]() == {b.base_uuid: "ok"}
    assert a.count("hms_hospital") == 1 and b.count("hms_hospital") == 1
    assert a.env["plugin_sync_scheduled"]() == {}
    later = datetime.datetime.utcnow() + datetime.timedelta(minutes=6)
    assert [p.base_uuid for p in replicate.due_peers(a.db, now=later)] == [b.base_uuid]

    out = Out()
    assert cli.main(a.db, a.settings, ["peers"], stdout=out) == 0
    assert b.base_uuid in out.text and "every 5 min" in out.text
    b.db.gis_location.insert(name="B new place")
    b.db.commit()
    out = Out()
    assert cli.main(a.db, a.settings, ["sync", b.base_uuid, "--pull", "--json"], stdout=out) == 0
    assert json.loads(out.text)["pull"]["totals"]["created"] == 1 and "push" not in json.loads(out.text)
    out, err = Out(), Out()
    a.db(a.db.sync_instance.base_uuid == b.base_uuid).update(password="wrong")
    a.db.commit()
    assert cli.main(a.db, a.settings, ["sync", b.base_uuid], stdout=out, stderr=err) == 1
    assert "wrong credentials for peer" in err.text


class Out:
    def __init__(self):
        self.parts = []

    def write(self, text):
        self.parts.append(text)

    @property
    def text(self):
        return "".join(self.parts)
