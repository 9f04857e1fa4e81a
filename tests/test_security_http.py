"""Security over HTTP: real servers (the target on SQLite, then on PostgreSQL) against a hostile peer; a trickling fake peer.

What a peer's account can do is bound to the instance it speaks for; a push
naming a file outside the upload folder is refused and nothing leaks in the
next pull; password guesses are throttled; bodies are bounded before they are
read; the dashboard links only http(s) URLs; session cookies are HttpOnly; a
request to a peer is bounded as a whole (deadline), and so is its size.
"""
import gzip
import io
import json
import socket
import threading
import time
import urllib.error
import urllib.request
import xmlrpc.client
import zipfile

import pytest

import eden
from test_network import ADMIN, FakeServer, http, nodes  # noqa: F401  (the nodes fixture)
from synchelpers import seed_small

from applications.eden.modules.plugin_sync import replicate, transport
from applications.eden.modules.plugin_sync.accounts import peer_account
from applications.eden.modules.plugin_sync.errors import PeerError

PEER_A = ("peer-a@b.local", "s3cret-a")
PEER_C = ("peer-c@b.local", "s3cret-c")
UNBOUND = ("reader@b.local", "s3cret-r")
C_UUID = "c0c0c0c0-0000-4000-8000-00000000000c"


def _gz(text):
    return gzip.compress(text.encode("utf-8"))


@pytest.mark.parametrize("db", ["sqlite", "postgres"])
def test_a_peer_account_speaks_only_for_its_own_instance(nodes, db):  # noqa: F811
    a, b = nodes("a"), nodes("b", pg=db == "postgres")
    seed_small(a.env, prefix="A")
    stored = a.db.doc_document.file.store(io.BytesIO(b"sitrep"), "sitrep.txt")
    a.db.doc_document.insert(name="Sitrep", file=stored)
    a.db.commit()
    peer_account(b.db, b.settings, *PEER_A, peer=a.base_uuid)
    peer_account(b.db, b.settings, *PEER_C, peer=C_UUID)
    peer_account(b.db, b.settings, *UNBOUND)
    text = gzip.decompress(replicate.changes(a.db, a.settings, 0, fmt="gz")[0]).decode("utf-8")
    a.db.commit()
    push = lambda creds, body: http("POST", b.url + "/plugin_sync/receive.json", data=body, auth=creds,  # noqa: E731
                                    headers={"Content-Type": "application/gzip"})

    # finding 2: c's login pushing a's file (a's base_uuid, its until@seq) is refused; so is an unbound login
    code, _, body = push(PEER_C, _gz(text))
    error = json.loads(body)["error"]
    assert code == 400 and error["error"] == "Refused" and error["column"] == "base_uuid", error
    code, _, body = push(UNBOUND, _gz(text))
    assert code == 403 and "bound to no peer instance" in json.loads(body)["error"]["message"]
    rpc = xmlrpc.client.dumps((xmlrpc.client.Binary(_gz(text)), ""), "receive").encode()
    code, _, body = http("POST", b.url + "/plugin_sync/call/xmlrpc", data=rpc, auth=PEER_C,
                         headers={"Content-Type": "text/xml"})
    answer = xmlrpc.client.loads(body)[0][0]
    assert code == 200 and answer["ok"] is False and answer["error"]["error"] == "Refused"
    assert b.count("pr_person") == 0 and (b.peer(a).checkpoint_received or 0) == 0

    # finding 1: a's own login pushing an upload value outside the upload folder: refused, named
    for evil in ("../databases/session.key", "/etc/passwd", "../databases/storage.sqlite"):
        code, _, body = push(PEER_A, _gz(text.replace(stored, evil)))
        error = json.loads(body)["error"]
        assert code == 400 and (error["table"], error["column"]) == ("doc_document", "file"), error
        assert error["line"] and "upload folder" in error["message"]
    assert b.count("doc_document") == 0
    # the honest file goes in, and moves only a's checkpoint
    code, _, body = push(PEER_A, _gz(text))
    assert code == 200, body[:300]
    assert b.count("pr_person") == 2 and b.peer(a).checkpoint_received > 0
    # the next pull carries no file outside the uploads (a stored value that points out is not read)
    b.db.doc_document.insert(name="Careless", file="../databases/session.key")
    b.db.commit()
    code, headers, body = http("GET", b.url + "/plugin_sync/changes?since=0&format=zip", auth=PEER_A)
    assert code == 200 and headers["X-Sync-Format"] == "zip"
    names = zipfile.ZipFile(io.BytesIO(body)).namelist()
    assert not [n for n in names if "session.key" in n or ".." in n or n.startswith("/")]
    assert int(headers["Content-Length"]) == len(body)
    b.db(b.db.doc_document.name == "Careless").delete()  # a peer would refuse that record (README: fix it)
    b.db.commit()

    # finding 6: identity tells a login only its own instance's checkpoint
    ident = lambda creds, peer: json.loads(http(  # noqa: E731
        "GET", b.url + "/plugin_sync/identity.json?peer=" + peer, auth=creds)[2])
    received = str(b.peer(a).checkpoint_received)
    assert ident(PEER_A, a.base_uuid)["received"] == received
    assert ident(PEER_C, a.base_uuid)["received"] == "0"  # c asked for a's: it gets its own
    assert "received" not in ident(UNBOUND, a.base_uuid)
    assert ident(ADMIN, a.base_uuid)["received"] == received  # an administrator sees any
    rpc = xmlrpc.client.dumps((a.base_uuid,), "identity").encode()  # the same over XML-RPC
    code, _, body = http("POST", b.url + "/plugin_sync/call/xmlrpc", data=rpc, auth=PEER_C,
                         headers={"Content-Type": "text/xml"})
    assert code == 200 and xmlrpc.client.loads(body)[0][0]["received"] == "0"

    # the ordinary flow with a bound login still works both ways
    a.register(b, credentials=PEER_A)
    a.db(a.db.doc_document.name == "Sitrep").update(comments="edited at a")
    a.db.commit()
    answer = a.sync_now(b, mode="push")  # the push first: a's edit then meets no older copy of it at a
    assert answer["push"]["totals"]["docs_written"] == 1, answer
    assert a.sync_now(b, mode="pull")["pull"]["totals"]["docs_read"] >= 1
    assert b.count("doc_document", comments="edited at a") == 1


@pytest.mark.parametrize("db", ["sqlite", "postgres"])
def test_password_guesses_are_throttled_per_account_then_per_address(nodes, db):  # noqa: F811
    b = nodes("b", pg=db == "postgres")
    peer_account(b.db, b.settings, *PEER_A)
    url = b.url + "/plugin_sync/identity.json"
    for _ in range(5):  # the free failures: 401 each
        assert http("GET", url, auth=(PEER_A[0], "guess"))[0] == 401
    assert http("GET", url, auth=(PEER_A[0], "guess"))[0] == 401  # the 6th: the account is blocked for 1 s
    code, headers, body = http("GET", url, auth=PEER_A)  # now even the right password waits
    assert code == 429 and int(headers["Retry-After"]) >= 1 and "Too many wrong logins" in body.decode()
    time.sleep(int(headers["Retry-After"]) + 0.5)
    assert http("GET", url, auth=PEER_A)[0] == 200
    # the admin pages' Basic login is throttled the same way
    for k in range(6):
        http("GET", b.url + "/plugin_sync/index.json", auth=(eden.ADMIN_EMAIL, "guess%d" % k))
    assert http("GET", b.url + "/plugin_sync/index.json", auth=ADMIN)[0] == 429
    # an address guessing many accounts is blocked too (4x the free failures)
    for k in range(20):
        http("GET", url, auth=("nobody%d@b.local" % k, "guess"))
    code, _, _ = http("GET", url, auth=("someone-else@b.local", "guess"))
    assert code == 429


@pytest.mark.parametrize("db", ["sqlite", "postgres"])
def test_bodies_are_bounded_before_they_are_read_and_pages_are_safe(nodes, db):  # noqa: F811
    b = nodes("b", pg=db == "postgres")
    peer_account(b.db, b.settings, *PEER_A, peer=C_UUID)
    # finding 3: a push announcing more than max_request_size is refused unread
    with socket.create_connection(("127.0.0.1", b.server.port), timeout=30) as s:
        token = __import__("base64").b64encode(("%s:%s" % PEER_A).encode()).decode()
        s.sendall(("POST /eden/plugin_sync/receive.json HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Basic %s\r\n"
                   "Content-Type: application/gzip\r\nContent-Length: %d\r\n\r\n" % (token, 10 ** 12)).encode()
                  + b"\x1f\x8b")
        answer = b""
        while b"}" not in answer:  # the JSON error, after the headers
            data = s.recv(65536)
            if not data:
                break
            answer += data
        answer = answer.decode("latin-1")
    assert answer.startswith("HTTP/1.1 413") and "max_request_size" in answer
    # finding 4: a javascript: URL stored by an older version is shown, never linked
    b.db.sync_instance.insert(base_uuid="x-peer", uuid="urn:uuid:x-peer", owner="Evil",
                              url="javascript:alert(document.cookie)")
    b.db.commit()
    code, _, page = http("GET", b.url + "/plugin_sync/index", auth=ADMIN)
    assert code == 200 and b"Evil" in page
    assert b'href="javascript:' not in page.lower() and b"javascript:alert(document.cookie)" in page
    # the session cookies are HttpOnly (the login form stores its key in the session)
    with urllib.request.urlopen(b.url + "/default/user/login", timeout=30) as r:
        cookies = r.headers.get_all("Set-Cookie") or []
    session_cookies = [c for c in cookies if c.lower().startswith("session_")]
    assert session_cookies and all("httponly" in c.lower() for c in session_cookies), cookies


# ------------------------------------------------------------------ finding 5: a deadline per request


class TricklingPeer:
    """A fake peer that answers one byte every `pause` seconds, forever (or a body of `flood` bytes at once).

    `headers_first`: its headers come at once, then the body trickles (http.client has then let go of
    the connection's socket: only the response's file object holds it).
    """

    def __init__(self, pause=0.3, flood=0, headers_first=False):
        self.pause, self.flood, self.headers_first, self.stop = pause, flood, headers_first, threading.Event()
        self.connections = 0
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.url = "http://127.0.0.1:%d/eden" % self.sock.getsockname()[1]
        threading.Thread(target=self.serve, daemon=True).start()

    def serve(self):
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self.answer, args=(conn,), daemon=True).start()

    def answer(self, conn):
        try:
            conn.recv(65536)
            if self.flood:
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/gzip\r\nX-Sync-Until: 5\r\n\r\n")
                chunk = b"\x00" * 65536
                for _ in range(self.flood // len(chunk)):
                    conn.sendall(chunk)
                return
            headers = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\r\n"
            if self.headers_first:
                conn.sendall(headers)
                headers = b""
            for byte in headers + b" " * 10000:
                if self.stop.is_set():
                    return
                conn.sendall(bytes([byte]))
                time.sleep(self.pause)
        except OSError:
            pass
        finally:
            conn.close()

    def close(self):
        self.stop.set()
        self.sock.close()


@pytest.mark.parametrize("kind", ["http", "xmlrpc"])
def test_a_trickling_peer_is_cut_at_the_deadline_not_per_read(kind):
    slow = TricklingPeer(pause=0.2)
    try:
        peer = dict(url=slow.url, username="x", password="y", owner="Slow peer", transport=kind)
        client = transport.connect(peer, dict(sync_deadline=2), retries=1, timeout=5)
        started = time.time()
        with pytest.raises(PeerError) as e:
            client.identity()
        took = time.time() - started
        assert took < 6, took  # each read came within the 5 s timeout: only the deadline stops it
        assert "deadline of 2s" in str(e.value) and "Slow peer" in str(e.value)
    finally:
        slow.close()


@pytest.mark.parametrize("kind", ["http", "xmlrpc"])
def test_a_peer_trickling_its_body_after_the_headers_fails_the_sync_at_the_deadline_and_frees_the_lock(
        instance, kind):
    """Issue 19, finding 3: headers at once, then a byte now and then: the sync fails at its deadline,
    naming the peer and what it waited for, and the peer's lock is free for the next run."""
    slow = TricklingPeer(pause=0.2, headers_first=True)
    db = instance["db"]
    try:
        db.sync_instance.insert(base_uuid=C_UUID, uuid="urn:uuid:" + C_UUID, owner="Trickling peer", url=slow.url,
                                username="x", password="y", transport=kind)
        db.commit()
        settings = instance["plugin_sync_settings"]
        settings.update(sync_deadline=1, sync_retries=2, sync_backoff=0.01, sync_timeout=5)
        with pytest.raises(PeerError) as e:
            replicate.sync(db, settings, C_UUID)
        message = str(e.value)
        assert message.startswith("identity: gave up on peer Trickling peer at %s at the deadline of 1s (setting "
                                  "sync_deadline), still waiting for " % slow.url), message
        assert message.endswith("; not retried") and slow.connections == 1  # the run ends at the deadline
        if kind == "http":
            assert "still waiting for the rest of its answer (the headers came)" in message
        lock = db(db.plugin_sync_lock.peer == C_UUID).select().first()
        assert lock.holder is None and lock.last_result == "error"
        replicate.release(db, C_UUID, replicate.acquire(db, C_UUID))  # free: the next run takes it at once
    finally:
        slow.close()
        for key in ("sync_deadline", "sync_retries", "sync_backoff", "sync_timeout"):
            instance["plugin_sync_settings"].pop(key, None)


@pytest.mark.parametrize("kind", ["http", "xmlrpc"])
@pytest.mark.parametrize("operation", ["changes", "receive"])
def test_a_transfer_trickled_after_the_headers_fails_at_the_transfer_deadline(kind, operation):
    """The same for changes and receive: their deadline (sync_transfer_deadline) bounds the whole answer."""
    slow = TricklingPeer(pause=0.2, headers_first=True)
    try:
        peer = dict(url=slow.url, username="x", password="y", owner="Trickling peer", transport=kind)
        client = transport.connect(peer, dict(sync_transfer_deadline=1), retries=1, timeout=5)
        with pytest.raises(PeerError) as e:
            client.changes(0) if operation == "changes" else client.receive(b"x" * 100)
        message = str(e.value)
        assert message.startswith("%s: gave up on peer Trickling peer at %s at the deadline of 1s (setting "
                                  "sync_transfer_deadline), still waiting for " % (operation, slow.url)), message
    finally:
        slow.close()


def test_a_peers_endless_answer_stops_at_max_request_size():
    flood = TricklingPeer(flood=64 << 20)
    try:
        peer = dict(url=flood.url, username="x", password="y", owner="Flooding peer")
        client = transport.connect(peer, dict(max_request_size=1 << 20), retries=1, timeout=10)
        with pytest.raises(PeerError) as e:
            client.changes(0)
        assert "exceeds the limit of 1048576 bytes" in str(e.value) and "max_request_size" in str(e.value)
    finally:
        flood.close()


# ------------------------------------------------------------------ what held: every caller refused where it should be


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kw):
        return None  # a redirect (to the login page) is the answer itself


def unredirected(method, url, data, credentials, headers):
    """(status, headers, body) like test_network.http, but a redirect is answered, not followed."""
    req = urllib.request.Request(url, data=data, method=method, headers=headers)
    if credentials:
        req.add_header("Authorization", "Basic " + __import__("base64").b64encode(
            ("%s:%s" % credentials).encode()).decode())
    try:
        with urllib.request.build_opener(_NoRedirect()).open(req, timeout=60) as r:
            return r.status, r.headers, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read()


@pytest.mark.parametrize("db", ["sqlite", "postgres"])
def test_every_action_refuses_every_caller_it_should_with_no_data(nodes, db):  # noqa: F811
    a, b = nodes("a"), nodes("b", pg=db == "postgres")
    seed_small(b.env, prefix="B")
    b.db.auth_user.insert(email="clerk@b.local", password=b.db.auth_user.password.validate("clerk-pw")[0],
                          first_name="Clerk", last_name="B")
    b.db.commit()
    peer_account(b.db, b.settings, *PEER_A, peer=a.base_uuid)
    file = replicate.changes(a.db, a.settings, 0)[0]
    a.db.commit()
    gz = {"Content-Type": "application/gzip"}
    admin_actions = [("GET", "/plugin_sync/index.json", None, {}), ("GET", "/plugin_sync/export.csv", None, {}),
                     ("POST", "/plugin_sync/import_and_sync.json", file, gz),
                     ("GET", "/plugin_sync/instances.json", None, {}), ("GET", "/plugin_sync/log.json", None, {}),
                     ("GET", "/plugin_sync/conflicts.json", None, {}),
                     ("POST", "/plugin_sync/sync_now.json", b"peer=1", {"Content-Type": "application/x-www-form-urlencoded"})]
    peer_actions = [("GET", "/plugin_sync/identity.json", None, {}), ("GET", "/plugin_sync/changes?since=0", None, {}),
                    ("POST", "/plugin_sync/receive.json", file, gz),
                    ("POST", "/plugin_sync/call/xmlrpc", xmlrpc.client.dumps(("",), "identity").encode(),
                     {"Content-Type": "text/xml"})]
    refused = []

    def refuse(calls, credentials, statuses, headers=None):
        for method, path, data, h in calls:
            code, _, body = unredirected(method, b.url + path, data, credentials, dict(h, **(headers or {})))
            refused.append((path, credentials, code))
            assert code in statuses, (path, credentials, code, body[:200])
            assert b"TABLE" not in body and b.base_uuid.encode() not in body and b"Maria" not in body

    # the bound peer account: the peer endpoints only
    for method, path, data, h in peer_actions:
        assert http(method, b.url + path, data=data, auth=PEER_A, headers=h)[0] == 200, path
    refuse(admin_actions, PEER_A, (403,))
    refuse(admin_actions + peer_actions, ("clerk@b.local", "clerk-pw"), (403,))  # no group
    refuse(admin_actions + peer_actions, None, (401, 303))  # no credentials: 401 (a page: to the login)
    cross = {"Origin": "http://evil.example"}  # a browser's cross-site POST, with an admin's Basic login
    refuse([c for c in admin_actions + peer_actions if c[0] == "POST" and "xmlrpc" not in c[1]], ADMIN, (403,), cross)
    # wrong credentials: 401, then 429 once the throttle blocks the account or the address
    refuse(admin_actions + peer_actions, (eden.ADMIN_EMAIL, "wrong"), (401, 429))
    refuse(admin_actions + peer_actions, ("nobody@b.local", "clerk-pw"), (401, 429))
    assert len(refused) == 7 + 11 + 11 + 3 + 11 + 11
    assert b.count("pr_person") == 2 and b.count("plugin_sync_log", operation="import") == 1  # only the allowed push merged


# ------------------------------------------------------------------ issue 19, finding 6: a proxy that gzips answers


class GzippingProxy(FakeServer):
    """An HTTP proxy on 127.0.0.1 in front of a server that gzips every answer (Content-Encoding: gzip),
    even one that is a gzip already, as a compressing reverse proxy may."""

    def __init__(self, port):
        import http.client
        import http.server

        upstream = port

        class Handler(http.server.BaseHTTPRequestHandler):
            def relay(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                conn = http.client.HTTPConnection("127.0.0.1", upstream, timeout=120)
                headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "accept-encoding")}
                conn.request(self.command, self.path, body=body or None, headers=headers)
                resp = conn.getresponse()
                data = gzip.compress(resp.read())
                self.send_response(resp.status)
                for k, v in resp.getheaders():
                    if k.lower() not in ("content-length", "transfer-encoding", "connection", "content-encoding"):
                        self.send_header(k, v)
                self.send_header("Content-Encoding", "gzip")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
                conn.close()

            do_GET = do_POST = relay

            def log_message(self, *args):
                pass

        super().__init__(Handler)


@pytest.mark.parametrize("kind", ["http", "xmlrpc"])
def test_a_sync_through_a_proxy_that_gzips_every_answer(nodes, kind):  # noqa: F811
    a, b = nodes("a"), nodes("b")
    seed_small(a.env, prefix="A")
    seed_small(b.env, prefix="B")
    peer_account(b.db, b.settings, *PEER_A, peer=a.base_uuid)
    proxy = GzippingProxy(b.server.port)
    try:
        peer = replicate.register_peer(a.db, a.settings, proxy.url, *PEER_A, transport=kind)  # identity, gzip'd
        results = replicate.sync(a.db, a.settings, peer.id)  # changes (a gzip gzip'd again) and receive, gzip'd
        assert results["pull"].totals()["created"] == 12 and results["push"].totals()["created"] == 12
        assert a.count("pr_person") == b.count("pr_person") == 4
    finally:
        proxy.close()


def test_an_xmlrpc_answer_gzip_bomb_stops_at_max_request_size():
    """A small gzip'd XML-RPC answer that inflates beyond max_request_size: refused, not parsed in memory."""
    import http.server

    answer = xmlrpc.client.dumps(({"base_uuid": "x" + " " * (8 << 20)},), methodresponse=True).encode()
    bomb = gzip.compress(answer)

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self):
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            self.send_response(200)
            for k, v in (("Content-Type", "text/xml"), ("Content-Encoding", "gzip"), ("Content-Length", len(bomb))):
                self.send_header(k, str(v))
            self.end_headers()
            self.wfile.write(bomb)

        def log_message(self, *args):
            pass

    server = FakeServer(Handler)
    try:
        assert len(bomb) < (1 << 20) < len(answer)
        peer = dict(url=server.url, username="x", password="y", owner="Bombing peer", transport="xmlrpc")
        client = transport.connect(peer, dict(max_request_size=1 << 20), retries=1, timeout=10)
        with pytest.raises(PeerError) as e:
            client.identity()
        assert "Bombing peer exceeds the limit of 1048576 bytes" in str(e.value), str(e.value)
    finally:
        server.close()
