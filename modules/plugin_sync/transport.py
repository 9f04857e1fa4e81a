"""The client side of instance-to-instance sync: talk to a peer over HTTP or XML-RPC.

A peer is its `sync_instance` row (url, username, password, transport).  Its
url is the root of its Eden app, e.g. http://10.0.0.2:8000/eden; the endpoints
are that url's plugin_sync/identity, plugin_sync/changes, plugin_sync/receive
(HTTP) and plugin_sync/call/xmlrpc (the same three operations over XML-RPC).

Three operations, the same on both transports:

    identity(me)          -> dict: base_uuid, owner, contact, now, checkpoint,
                             received (what the peer has merged of `me`'s changes)
    changes(since)        -> Changes: the peer's changes since `since` (gzip'd CSV
                             or, with uploaded files, a zip bundle), since, until;
                             with `limit` one batch of the range [since, until)
                             after the position `after`, and `next` (batches.py)
    receive(data)         -> dict: the peer's import report (answered after its commit)

Data travels gzip'd both ways (the CSV itself is gzip'd or a zip bundle; an
answer a proxy sent in Content-Encoding gzip is un-gzipped, within the size
bound), the caller authenticates with HTTP Basic, and every download is checked
against its length and SHA-256 before anyone reads it.  Connection errors, timeouts,
cut transfers and 5xx answers are retried with exponential backoff (bounded:
`retries` tries, waits of backoff, 2*backoff, ... capped at `max_wait`); a
401/403 or a 4xx is final.  Every failure is a PeerError naming the peer.

Each request is bounded as a whole, not only per read: a watchdog shuts its
socket at the deadline (`sync_deadline`, `sync_transfer_deadline`), so a peer
trickling a byte now and then cannot hold a run (and the peer's lock) open; a
request cut by its deadline is final (not retried).
An answer is read within max_request_size into a spooled temporary file
(limits.py), never whole into memory; XML-RPC, whose answers are one XML
document, is bounded the same way but does hold its file in memory.
"""
import base64
import datetime
import gzip
import hashlib
import http.client
import json
import io
import re
import socket
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import xml.parsers.expat
import xmlrpc.client

from .errors import PeerError, TooLarge
from .limits import Limits, read_bounded

RETRIES = 4  # tries in all
BACKOFF = 1.0  # seconds before the 2nd try; doubled for each further try
MAX_WAIT = 8.0  # cap of one wait: 4 tries wait 1 + 2 + 4 = 7 s at most
TIMEOUT = 30.0  # seconds of silence before a short request (identity) counts as failed
TRANSFER_TIMEOUT = 300.0  # the same for a transfer: the peer may take long to export or merge
DEADLINE = 120.0  # seconds a short request (identity) may take in all
TRANSFER_DEADLINE = 1800.0  # the same for a transfer (changes, receive)
PROTOCOL = 1
USER_AGENT = "plugin_sync/%d" % PROTOCOL


class Changes:
    """What a peer answered to `changes`: the file (a binary file object), the range it covers, and
    where the next batch of the range starts (`next`, None: this file ends the range)."""

    def __init__(self, data, since, until, fmt, next_=None):
        self.file = io.BytesIO(data) if isinstance(data, bytes) else data
        self.since, self.until, self.fmt, self.next = since, until, fmt, next_ or None

    @property
    def data(self):
        self.file.seek(0)
        return self.file.read()

    def stream(self):
        self.file.seek(0)
        return self.file

    def __repr__(self):
        return "<Changes %s..%s %s>" % (self.since, self.until, self.fmt)


class Watchdog:
    """Shuts the sockets of one request at its deadline: a bound on the request as a whole.

    It holds a duplicate of each socket from the moment its TCP connection is
    made: http.client lets go of its socket once the headers are read (the
    response reads on through its own file object), and TLS wraps it in
    another object; a shutdown of the duplicate ends the connection for all
    of them, TLS handshake included.  cancel() closes the duplicates.
    """

    def __init__(self, seconds):
        self.seconds, self.expired, self.sockets = seconds, False, []
        self.lock = threading.Lock()
        self.timer = threading.Timer(seconds, self.fire)
        self.timer.daemon = True
        self.timer.start()

    def watch(self, conn):
        """`conn` (an http.client connection), whose connections this watchdog shuts at the deadline."""
        create = conn._create_connection

        def create_watched(*args, **kw):
            if self.expired:  # xmlrpc.client reconnects once when its connection drops: not past the deadline
                raise TimeoutError("the deadline has passed")
            sock = create(*args, **kw)
            with self.lock:
                self.sockets.append(sock.dup())
                late = self.expired
            if late:  # the deadline passed while connecting
                _shut(sock)
            return sock

        conn._create_connection = create_watched
        return conn

    def fire(self):
        with self.lock:
            self.expired = True
            sockets = list(self.sockets)
        for sock in sockets:
            _shut(sock)

    def cancel(self):
        self.timer.cancel()
        with self.lock:
            sockets, self.sockets = self.sockets, []
        for sock in sockets:
            sock.close()


def _shut(sock):
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass


class _HTTPHandler(urllib.request.HTTPHandler):
    def __init__(self, watchdog):
        super().__init__()
        self.watchdog = watchdog

    def http_open(self, req):
        return self.do_open(lambda *a, **kw: self.watchdog.watch(http.client.HTTPConnection(*a, **kw)), req)


class _HTTPSHandler(urllib.request.HTTPSHandler):
    def __init__(self, watchdog):
        super().__init__()
        self.watchdog = watchdog

    def https_open(self, req):
        return self.do_open(lambda *a, **kw: self.watchdog.watch(http.client.HTTPSConnection(*a, **kw)), req,
                            context=self._context)


class Retry(Exception):
    """A failure worth another try (connection, timeout, cut transfer, 5xx)."""


def connect(peer, settings=None, **options):
    """The transport for a peer row (its `transport` column: http or xmlrpc)."""
    kind = (_get(peer, "transport") or "http").lower()
    if kind not in TRANSPORTS:
        raise PeerError("unknown transport %r for peer %s (use http or xmlrpc)" % (kind, _name(peer)))
    return TRANSPORTS[kind](peer, settings, **options)


def app_url(url):
    """The root of a peer's app from what an admin typed: no trailing slash or plugin_sync part."""
    url = (url or "").strip().rstrip("/")
    for tail in ("/plugin_sync/call/xmlrpc", "/plugin_sync/index", "/plugin_sync"):
        if url.endswith(tail):
            url = url[: -len(tail)]
    return url


class Transport:
    """Shared by both transports: the peer, its credentials, retries and messages."""

    kind = None

    def __init__(self, peer, settings=None, retries=None, backoff=None, max_wait=None, timeout=None,
                 transfer_timeout=None, sleep=time.sleep, deadline=None, transfer_deadline=None):
        self.peer = peer
        self.url = app_url(_get(peer, "url"))
        if not self.url:
            raise PeerError("peer %s has no URL: it can only exchange files" % _name(peer))
        if urllib.parse.urlsplit(self.url).scheme not in ("http", "https"):
            raise PeerError("peer %s: URL %r is not http(s)://..." % (_name(peer), self.url))
        self.username = _get(peer, "username") or ""
        self.password = _get(peer, "password") or ""
        self.retries = max(1, int(_setting(settings, retries, "sync_retries", RETRIES)))
        self.backoff = float(_setting(settings, backoff, "sync_backoff", BACKOFF))
        self.max_wait = float(_setting(settings, max_wait, "sync_max_wait", MAX_WAIT))
        self.timeout = float(_setting(settings, timeout, "sync_timeout", TIMEOUT))
        self.transfer_timeout = float(_setting(settings, transfer_timeout, "sync_transfer_timeout",
                                               max(TRANSFER_TIMEOUT, self.timeout)))
        self.deadline = float(_setting(settings, deadline, "sync_deadline", DEADLINE))
        self.transfer_deadline = float(_setting(settings, transfer_deadline, "sync_transfer_deadline",
                                                TRANSFER_DEADLINE))
        self.limits = Limits(settings)
        self.sleep = sleep
        self.tries = 0  # requests made, retries included (for reports and tests)

    @property
    def name(self):
        return _name(self.peer)

    def auth_header(self):
        if not self.username:
            return {}
        token = base64.b64encode(("%s:%s" % (self.username, self.password)).encode("utf-8")).decode("ascii")
        return {"Authorization": "Basic " + token}

    def retrying(self, what, fn):
        """Call fn() until it succeeds, a final error, or the tries run out."""
        last = None
        for attempt in range(self.retries):
            if attempt:
                self.sleep(min(self.backoff * 2 ** (attempt - 1), self.max_wait))
            self.tries += 1
            try:
                return fn()
            except Retry as e:
                last = e
        raise PeerError("%s: peer %s at %s failed %d time%s: %s"
                        % (what, self.name, self.url, self.retries, "s" if self.retries > 1 else "", last))

    def refused(self, status, detail=""):
        """The final error for an HTTP status that no retry can fix."""
        if status == 401:
            return PeerError("wrong credentials for peer %s: %s was refused at %s (HTTP 401)%s"
                             % (self.name, self.username or "(no login set)", self.url, _detail(detail)))
        if status == 403:
            return PeerError("peer %s refused %s: the account is not in its sync (or admin) group (HTTP 403)%s"
                             % (self.name, self.username, _detail(detail)))
        if status == 429:
            return PeerError("peer %s refused %s for now: too many wrong logins (HTTP 429)%s"
                             % (self.name, self.username, _detail(detail)))
        if status == 404:
            return PeerError("peer %s has no plugin_sync endpoint at %s (HTTP 404): the URL should be the "
                             "app's root, e.g. http://host:8000/eden" % (self.name, self.url))
        return PeerError("peer %s refused the request (HTTP %s)%s" % (self.name, status, _detail(detail)))

    def bad_answer(self, what, why):
        return PeerError("%s: peer %s at %s answered something that is not plugin_sync's: %s"
                         % (what, self.name, self.url, why))

    def too_large(self, what):
        lim = self.limits
        return PeerError("%s: the answer of peer %s exceeds the limit of %d bytes (setting "
                         "plugins.sync.max_request_size)" % (what, self.name, lim.max_request_size))

    def late(self, what, seconds, waiting="its answer"):
        """The final error of a request whose deadline passed: what we were still waiting for, and the setting.

        Final, not retried: the deadline bounds the operation, and a run that fails releases the
        peer's lock at once (a trickling peer would trickle again); the next run asks again.
        """
        setting = "sync_deadline" if what == "identity" else "sync_transfer_deadline"
        return PeerError("%s: gave up on peer %s at %s at the deadline of %ss (setting %s), still waiting for "
                         "%s; not retried" % (what, self.name, self.url, _num(seconds), setting, waiting))


class HTTPTransport(Transport):
    """plugin_sync's JSON/CSV endpoints over HTTP(S)."""

    kind = "http"

    def endpoint(self, name, **params):
        query = urllib.parse.urlencode({k: v for k, v in params.items() if v is not None})
        return "%s/plugin_sync/%s%s" % (self.url, name, "?" + query if query else "")

    def request(self, what, url, data=None, content_type=None, timeout=None, deadline=None, filename=None):
        """(status, headers, body file) of a request; retried on transient failures; 4xx raise PeerError.

        `data`: bytes or a binary file (sent from its start on every try).
        """
        headers = dict(self.auth_header(), **{"User-Agent": USER_AGENT, "Accept-Encoding": "gzip"})
        if content_type:
            headers["Content-Type"] = content_type
        if filename:  # see body_disposition()
            headers["Content-Disposition"] = body_disposition(filename)
        if hasattr(data, "seek"):
            data.seek(0, 2)
            headers["Content-Length"] = str(data.tell())
        deadline = deadline or self.deadline

        def once():
            if hasattr(data, "seek"):
                data.seek(0)
            req = urllib.request.Request(url, data=data, headers=headers, method="POST" if data is not None else "GET")
            watchdog = Watchdog(deadline)
            opener = urllib.request.build_opener(_HTTPHandler(watchdog), _HTTPSHandler(watchdog))
            waiting = "its answer"
            try:
                with opener.open(req, timeout=min(timeout or self.timeout, deadline)) as resp:
                    waiting = "the rest of its answer (the headers came)"
                    body = self.read(what, resp)  # IncompleteRead when cut short of Content-Length
                    info = resp.headers
                    status = resp.status
                if watchdog.expired:
                    raise self.late(what, deadline, waiting)
            except urllib.error.HTTPError as e:
                body = _read_quietly(e)
                if e.code >= 500:
                    raise Retry("HTTP %d %s" % (e.code, _first_line(body)))
                raise self.refused(e.code, _error_message(body))
            except (urllib.error.URLError, http.client.HTTPException, ConnectionError, socket.timeout,
                    TimeoutError, OSError) as e:
                if watchdog.expired:
                    raise self.late(what, deadline, waiting)
                raise Retry("%s: %s" % (type(e).__name__, getattr(e, "reason", None) or e))
            finally:
                watchdog.cancel()
            if info.get("Content-Encoding", "").lower() == "gzip":
                body = self.gunzip(what, body)
            digest = info.get("X-Sync-Sha256")
            if digest and _sha256(body) != digest:
                raise Retry("the transfer was corrupted or cut (SHA-256 mismatch)")
            body.seek(0)
            return status, info, body

        return self.retrying(what, once)

    def read(self, what, stream):
        """A response body into a spooled file, within max_request_size."""
        return read_bounded(stream, self.limits.max_request_size, lambda: self.too_large(what))

    def gunzip(self, what, body):
        """An answer in Content-Encoding gzip (a proxy may compress any answer), un-gzipped within the limit.

        mode "rb": the spooled file is opened w+b, which GzipFile would take for writing.
        """
        try:
            return self.read(what, gzip.GzipFile(fileobj=body, mode="rb"))
        except (OSError, EOFError) as e:
            raise Retry("cut gzip transfer: %s" % e)

    def json(self, what, url, data=None, content_type=None, timeout=None, deadline=None, filename=None):
        _, _, body = self.request(what, url, data, content_type, timeout, deadline, filename)
        body = body.read()
        try:
            answer = json.loads(body.decode("utf-8"))
        except ValueError as e:
            raise self.bad_answer(what, "not JSON (%s): %r" % (e, body[:80]))
        if not isinstance(answer, dict):
            raise self.bad_answer(what, "not a JSON object")
        return answer

    def identity(self, me=None, since=None):
        return check_identity(self, self.json("identity", self.endpoint("identity.json", peer=me, since=since)))

    def changes(self, since, tables=None, me=None, until=None, after=None, limit=None):
        url = self.endpoint("changes", since=int(since or 0), tables=",".join(tables) if tables else None, peer=me,
                            until=until, after=after, limit=limit)
        _, info, body = self.request("changes", url, timeout=self.transfer_timeout, deadline=self.transfer_deadline)
        try:
            until = int(info["X-Sync-Until"])
            since_ = int(info.get("X-Sync-Since") or 0)
        except (KeyError, TypeError, ValueError):
            raise self.bad_answer("changes", "no X-Sync-Until header")
        return Changes(body, since_, until, info.get("X-Sync-Format") or "gz", info.get("X-Sync-Next"))

    def receive(self, data, fmt="gz", me=None):
        ctype = "application/zip" if fmt == "zip" else "application/gzip"
        answer = self.json("receive", self.endpoint("receive.json", peer=me), data=data, content_type=ctype,
                           timeout=self.transfer_timeout, deadline=self.transfer_deadline,
                           filename="changes.%s" % ("zip" if fmt == "zip" else "csv.gz"))
        return check_receipt(self, answer)


class XMLRPCTransport(Transport):
    """The same operations through the peer's @service.xmlrpc functions (plugin_sync/call/xmlrpc)."""

    kind = "xmlrpc"

    def proxy(self, timeout, watchdog=None):
        kind = _RPCTransport if self.url.startswith("http:") else _SafeRPCTransport
        return xmlrpc.client.ServerProxy(self.url + "/plugin_sync/call/xmlrpc",
                                         transport=kind(self, timeout, watchdog), allow_none=True)

    def call(self, what, method, *args, timeout=None, deadline=None):
        deadline = deadline or self.deadline

        def once():
            watchdog = Watchdog(deadline)
            try:
                answer = getattr(self.proxy(min(timeout or self.timeout, deadline), watchdog), method)(*args)
                if watchdog.expired:
                    raise self.late(what, deadline)
                return answer
            except TooLarge:
                raise self.too_large(what)
            except xmlrpc.client.ProtocolError as e:
                if e.errcode >= 500:
                    raise Retry("HTTP %d %s" % (e.errcode, e.errmsg))
                raise self.refused(e.errcode, e.errmsg)
            except xmlrpc.client.Fault as e:
                raise PeerError("%s: peer %s failed: %s" % (what, self.name, e.faultString))
            except (http.client.HTTPException, ConnectionError, socket.timeout, TimeoutError, OSError, EOFError,
                    xml.parsers.expat.ExpatError) as e:
                if watchdog.expired:
                    raise self.late(what, deadline)
                raise Retry("%s: %s" % (type(e).__name__, e))
            finally:
                watchdog.cancel()

        answer = self.retrying(what, once)
        if not isinstance(answer, dict):
            raise self.bad_answer(what, "not a struct")
        return answer

    def identity(self, me=None, since=None):  # XML-RPC's identity(peer) counts no pending changes
        return check_identity(self, self.call("identity", "identity", me or ""))

    def changes(self, since, tables=None, me=None, until=None, after=None, limit=None):
        batch = (str(until or ""), after or "", str(int(limit or 0))) if limit or after else ()  # else 3 args, as before
        answer = self.call("changes", "changes", str(int(since or 0)), ",".join(tables or ()), me or "", *batch,
                           timeout=self.transfer_timeout, deadline=self.transfer_deadline)
        data = answer.get("data")
        if not isinstance(data, xmlrpc.client.Binary):
            raise self.bad_answer("changes", "no data")
        body = data.data
        if answer.get("sha256") and hashlib.sha256(body).hexdigest() != answer["sha256"]:
            raise PeerError("changes: peer %s sent a corrupted file (SHA-256 mismatch)" % self.name)
        try:
            return Changes(body, int(answer.get("since") or 0), int(answer["until"]), answer.get("format") or "gz",
                           answer.get("next"))
        except (KeyError, TypeError, ValueError):
            raise self.bad_answer("changes", "no until")

    def receive(self, data, fmt="gz", me=None):
        if hasattr(data, "read"):
            data.seek(0)
            data = data.read()  # XML-RPC sends one document: the file travels in memory
        answer = self.call("receive", "receive", xmlrpc.client.Binary(data), me or "", timeout=self.transfer_timeout,
                           deadline=self.transfer_deadline)
        if isinstance(answer.get("report"), str):  # XML-RPC has no 64-bit ints: the report travels as JSON
            try:
                answer["report"] = json.loads(answer["report"])
            except ValueError:
                raise self.bad_answer("receive", "report is not JSON")
        return check_receipt(self, answer)


class _RPCTransport(xmlrpc.client.Transport):
    """xmlrpc.client's transport with our Basic credentials, user agent, timeout, deadline and size bound."""

    def __init__(self, owner, timeout, watchdog=None):
        super().__init__()
        self.owner, self.timeout, self.watchdog = owner, timeout, watchdog
        self.user_agent = USER_AGENT

    def make_connection(self, host):
        conn = super().make_connection(host)
        conn.timeout = self.timeout
        if self.watchdog is not None and conn.sock is None:
            self.watchdog.watch(conn)
        return conn

    def send_headers(self, connection, headers):
        headers = list(headers) + list(self.owner.auth_header().items())
        headers.append(("Content-Disposition", body_disposition("call.xml")))  # see body_disposition()
        super().send_headers(connection, headers)

    def parse_response(self, response):
        """The answer read within max_request_size, and so is its inflation when it came gzip'd."""
        limit = self.owner.limits.max_request_size
        stream = _Bounded(response, limit)
        if (response.getheader("Content-Encoding") or "").lower() == "gzip":
            stream = _Bounded(gzip.GzipFile(fileobj=stream, mode="rb"), limit)
        return super().parse_response(stream)  # a stream without getheader(): read as it is


class _SafeRPCTransport(xmlrpc.client.SafeTransport):
    def __init__(self, owner, timeout, watchdog=None):
        super().__init__()
        self.owner, self.timeout, self.watchdog = owner, timeout, watchdog
        self.user_agent = USER_AGENT

    make_connection = _RPCTransport.make_connection
    send_headers = _RPCTransport.send_headers
    parse_response = _RPCTransport.parse_response


class _Bounded:
    """An XML-RPC response that raises TooLarge beyond `limit` bytes read."""

    def __init__(self, response, limit):
        self.response, self.limit, self.count = response, limit, 0

    def read(self, n=-1):
        data = self.response.read(n)
        self.count += len(data)
        if self.count > self.limit:
            raise TooLarge("XML-RPC answer beyond %d bytes" % self.limit)
        return data


TRANSPORTS = {"http": HTTPTransport, "xmlrpc": XMLRPCTransport}


def body_disposition(filename):
    """The Content-Disposition header of every POST body we send (a pushed file, an XML-RPC call).

    A web2py host that reads request.post_vars for every request (Sahana Eden
    does, in its models) has gluon parse any POST body with cgi.FieldStorage;
    for a body that is not a form, FieldStorage writes the raw bytes into a
    *text* temporary file unless the part has a file name, and fails (HTTP 500
    before any controller runs).  gluon passes this header on to FieldStorage:
    with a file name the body is read as binary, and request.body stays intact.
    """
    return 'attachment; filename="%s"' % filename


def check_identity(transport, answer):
    """A peer's identity, checked: it names a base_uuid, and its clock."""
    if not answer.get("base_uuid"):
        raise transport.bad_answer("identity", "no base_uuid")
    try:
        answer["now"] = parse_time(answer.get("now"))
    except ValueError:
        raise transport.bad_answer("identity", "bad time %r" % answer.get("now"))
    for key in ("checkpoint", "received", "pending"):
        if answer.get(key) not in (None, ""):
            try:
                answer[key] = int(answer[key])
            except (TypeError, ValueError):
                raise transport.bad_answer("identity", "bad %s %r" % (key, answer[key]))
        else:
            answer[key] = None
    return answer


def check_receipt(transport, answer):
    if answer.get("ok") is not True:
        error = answer.get("error") or {}
        message = error.get("describe") or error.get("message") or "no reason given"
        raise PeerError("receive: peer %s did not import our changes: %s" % (transport.name, message))
    return answer


def parse_time(text):
    if text is None or text == "":
        return None
    if isinstance(text, datetime.datetime):
        return text
    if isinstance(text, xmlrpc.client.DateTime):
        text = str(text)
    text = str(text).replace("T", " ").rstrip("Z")
    for fmt in ("%Y-%m-%d %H:%M:%S", "%Y%m%d %H:%M:%S"):
        try:
            return datetime.datetime.strptime(text[:19], fmt)
        except ValueError:
            pass
    raise ValueError(text)


def _get(peer, key):
    """A field of a peer given as a sync_instance Row, a Storage or a dict."""
    return peer.get(key) if hasattr(peer, "get") else getattr(peer, key, None)


def _name(peer):
    return _get(peer, "owner") or _get(peer, "base_uuid") or _get(peer, "url") or "?"


def _setting(settings, explicit, name, default):
    if explicit is not None:
        return explicit
    value = settings.get(name) if settings is not None and hasattr(settings, "get") else None
    return default if value is None else value


def _read_quietly(error):
    try:
        return error.read() or b""
    except Exception:
        return b""


def _error_message(body):
    try:
        error = json.loads(body.decode("utf-8")).get("error") or {}
        return error.get("message") or ""
    except Exception:
        return _first_line(body)


def _sha256(f):
    f.seek(0)
    digest = hashlib.sha256()
    for chunk in iter(lambda: f.read(1 << 16), b""):
        digest.update(chunk)
    return digest.hexdigest()


def _num(x):
    return ("%g" % x) if isinstance(x, float) else str(x)


def _first_line(body):
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else str(body or "")
    text = re.sub(r"<[^>]+>", " ", text)  # an HTML error page (a web2py ticket): its text
    return text.strip().splitlines()[0][:200] if text.strip() else ""


def _detail(text):
    return ": %s" % text if text else ""
