"""The client side of instance-to-instance sync: talk to a peer over HTTP or XML-RPC.

A peer is its `sync_instance` row (url, username, password, transport).  Its
url is the root of its Eden app, e.g. http://10.0.0.2:8000/eden; the endpoints
are that url's plugin_sync/identity, plugin_sync/changes, plugin_sync/receive
(HTTP) and plugin_sync/call/xmlrpc (the same three operations over XML-RPC).

Three operations, the same on both transports:

    identity(me)          -> dict: base_uuid, owner, contact, now, checkpoint,
                             received (what the peer has merged of `me`'s changes)
    changes(since)        -> Changes: the peer's changes since `since` (gzip'd CSV
                             or, with uploaded files, a zip bundle), since, until
    receive(data)         -> dict: the peer's import report (answered after its commit)

Data travels gzip'd both ways (the CSV itself is gzip'd or a zip bundle), the
caller authenticates with HTTP Basic, and every download is checked against
its length and SHA-256 before anyone reads it.  Connection errors, timeouts,
cut transfers and 5xx answers are retried with exponential backoff (bounded:
`retries` tries, waits of backoff, 2*backoff, ... capped at `max_wait`); a
401/403 or a 4xx is final.  Every failure is a PeerError naming the peer.
"""
import base64
import datetime
import hashlib
import http.client
import json
import re
import socket
import time
import urllib.error
import urllib.parse
import urllib.request
import xml.parsers.expat
import xmlrpc.client

from .errors import PeerError

RETRIES = 4  # tries in all
BACKOFF = 1.0  # seconds before the 2nd try; doubled for each further try
MAX_WAIT = 8.0  # cap of one wait: 4 tries wait 1 + 2 + 4 = 7 s at most
TIMEOUT = 30.0  # seconds of silence before a short request (identity) counts as failed
TRANSFER_TIMEOUT = 300.0  # the same for a transfer: the peer may take long to export or merge
PROTOCOL = 1
USER_AGENT = "plugin_sync/%d" % PROTOCOL


class Changes:
    """What a peer answered to `changes`: the file (bytes) and the range it covers."""

    def __init__(self, data, since, until, fmt):
        self.data, self.since, self.until, self.fmt = data, since, until, fmt

    def __repr__(self):
        return "<Changes %s..%s %s, %d bytes>" % (self.since, self.until, self.fmt, len(self.data))


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
                 transfer_timeout=None, sleep=time.sleep):
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
        raise PeerError("%s: peer %s at %s failed %d times: %s" % (what, self.name, self.url, self.retries, last))

    def refused(self, status, detail=""):
        """The final error for an HTTP status that no retry can fix."""
        if status == 401:
            return PeerError("wrong credentials for peer %s: %s was refused at %s (HTTP 401)%s"
                             % (self.name, self.username or "(no login set)", self.url, _detail(detail)))
        if status == 403:
            return PeerError("peer %s refused %s: the account is not in its sync (or admin) group (HTTP 403)%s"
                             % (self.name, self.username, _detail(detail)))
        if status == 404:
            return PeerError("peer %s has no plugin_sync endpoint at %s (HTTP 404): the URL should be the "
                             "app's root, e.g. http://host:8000/eden" % (self.name, self.url))
        return PeerError("peer %s refused the request (HTTP %s)%s" % (self.name, status, _detail(detail)))

    def bad_answer(self, what, why):
        return PeerError("%s: peer %s at %s answered something that is not plugin_sync's: %s"
                         % (what, self.name, self.url, why))


class HTTPTransport(Transport):
    """plugin_sync's JSON/CSV endpoints over HTTP(S)."""

    kind = "http"

    def endpoint(self, name, **params):
        query = urllib.parse.urlencode({k: v for k, v in params.items() if v is not None})
        return "%s/plugin_sync/%s%s" % (self.url, name, "?" + query if query else "")

    def request(self, what, url, data=None, content_type=None, timeout=None, filename=None):
        """(status, headers, body) of a request; retried on transient failures; 4xx raise PeerError."""
        headers = dict(self.auth_header(), **{"User-Agent": USER_AGENT, "Accept-Encoding": "gzip"})
        if content_type:
            headers["Content-Type"] = content_type
        if filename:  # see body_disposition()
            headers["Content-Disposition"] = body_disposition(filename)

        def once():
            req = urllib.request.Request(url, data=data, headers=headers, method="POST" if data is not None else "GET")
            try:
                with urllib.request.urlopen(req, timeout=timeout or self.timeout) as resp:
                    body = resp.read()  # raises IncompleteRead when cut short of Content-Length
                    info = resp.headers
                    status = resp.status
            except urllib.error.HTTPError as e:
                body = _read_quietly(e)
                if e.code >= 500:
                    raise Retry("HTTP %d %s" % (e.code, _first_line(body)))
                raise self.refused(e.code, _error_message(body))
            except (urllib.error.URLError, http.client.HTTPException, ConnectionError, socket.timeout,
                    TimeoutError, OSError) as e:
                raise Retry("%s: %s" % (type(e).__name__, getattr(e, "reason", None) or e))
            if info.get("Content-Encoding", "").lower() == "gzip":
                try:
                    import gzip

                    body = gzip.decompress(body)
                except (OSError, EOFError) as e:
                    raise Retry("cut gzip transfer: %s" % e)
            digest = info.get("X-Sync-Sha256")
            if digest and hashlib.sha256(body).hexdigest() != digest:
                raise Retry("the transfer was corrupted or cut (%d bytes, SHA-256 mismatch)" % len(body))
            return status, info, body

        return self.retrying(what, once)

    def json(self, what, url, data=None, content_type=None, timeout=None, filename=None):
        _, _, body = self.request(what, url, data, content_type, timeout, filename)
        try:
            answer = json.loads(body.decode("utf-8"))
        except ValueError as e:
            raise self.bad_answer(what, "not JSON (%s): %r" % (e, body[:80]))
        if not isinstance(answer, dict):
            raise self.bad_answer(what, "not a JSON object")
        return answer

    def identity(self, me=None):
        return check_identity(self, self.json("identity", self.endpoint("identity.json", peer=me)))

    def changes(self, since, tables=None, me=None):
        url = self.endpoint("changes", since=int(since or 0), tables=",".join(tables) if tables else None, peer=me)
        _, info, body = self.request("changes", url, timeout=self.transfer_timeout)
        try:
            until = int(info["X-Sync-Until"])
            since_ = int(info.get("X-Sync-Since") or 0)
        except (KeyError, TypeError, ValueError):
            raise self.bad_answer("changes", "no X-Sync-Until header")
        return Changes(body, since_, until, info.get("X-Sync-Format") or "gz")

    def receive(self, data, fmt="gz", me=None):
        ctype = "application/zip" if fmt == "zip" else "application/gzip"
        answer = self.json("receive", self.endpoint("receive.json", peer=me), data=data, content_type=ctype,
                           timeout=self.transfer_timeout, filename="changes.%s" % ("zip" if fmt == "zip" else "csv.gz"))
        return check_receipt(self, answer)


class XMLRPCTransport(Transport):
    """The same operations through the peer's @service.xmlrpc functions (plugin_sync/call/xmlrpc)."""

    kind = "xmlrpc"

    def proxy(self, timeout):
        kind = _RPCTransport if self.url.startswith("http:") else _SafeRPCTransport
        return xmlrpc.client.ServerProxy(self.url + "/plugin_sync/call/xmlrpc", transport=kind(self, timeout),
                                         allow_none=True)

    def call(self, what, method, *args, timeout=None):
        def once():
            try:
                return getattr(self.proxy(timeout or self.timeout), method)(*args)
            except xmlrpc.client.ProtocolError as e:
                if e.errcode >= 500:
                    raise Retry("HTTP %d %s" % (e.errcode, e.errmsg))
                raise self.refused(e.errcode, e.errmsg)
            except xmlrpc.client.Fault as e:
                raise PeerError("%s: peer %s failed: %s" % (what, self.name, e.faultString))
            except (http.client.HTTPException, ConnectionError, socket.timeout, TimeoutError, OSError,
                    xml.parsers.expat.ExpatError) as e:
                raise Retry("%s: %s" % (type(e).__name__, e))

        answer = self.retrying(what, once)
        if not isinstance(answer, dict):
            raise self.bad_answer(what, "not a struct")
        return answer

    def identity(self, me=None):
        return check_identity(self, self.call("identity", "identity", me or ""))

    def changes(self, since, tables=None, me=None):
        answer = self.call("changes", "changes", str(int(since or 0)), ",".join(tables or ()), me or "",
                           timeout=self.transfer_timeout)
        data = answer.get("data")
        if not isinstance(data, xmlrpc.client.Binary):
            raise self.bad_answer("changes", "no data")
        body = data.data
        if answer.get("sha256") and hashlib.sha256(body).hexdigest() != answer["sha256"]:
            raise PeerError("changes: peer %s sent a corrupted file (SHA-256 mismatch)" % self.name)
        try:
            return Changes(body, int(answer.get("since") or 0), int(answer["until"]), answer.get("format") or "gz")
        except (KeyError, TypeError, ValueError):
            raise self.bad_answer("changes", "no until")

    def receive(self, data, fmt="gz", me=None):
        answer = self.call("receive", "receive", xmlrpc.client.Binary(data), me or "", timeout=self.transfer_timeout)
        if isinstance(answer.get("report"), str):  # XML-RPC has no 64-bit ints: the report travels as JSON
            try:
                answer["report"] = json.loads(answer["report"])
            except ValueError:
                raise self.bad_answer("receive", "report is not JSON")
        return check_receipt(self, answer)


class _RPCTransport(xmlrpc.client.Transport):
    """xmlrpc.client's transport with our Basic credentials, user agent and timeout."""

    def __init__(self, owner, timeout):
        super().__init__()
        self.owner, self.timeout = owner, timeout
        self.user_agent = USER_AGENT

    def make_connection(self, host):
        conn = super().make_connection(host)
        conn.timeout = self.timeout
        return conn

    def send_headers(self, connection, headers):
        headers = list(headers) + list(self.owner.auth_header().items())
        headers.append(("Content-Disposition", body_disposition("call.xml")))  # see body_disposition()
        super().send_headers(connection, headers)


class _SafeRPCTransport(xmlrpc.client.SafeTransport):
    def __init__(self, owner, timeout):
        super().__init__()
        self.owner, self.timeout = owner, timeout
        self.user_agent = USER_AGENT

    make_connection = _RPCTransport.make_connection
    send_headers = _RPCTransport.send_headers


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
    for key in ("checkpoint", "received"):
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


def _first_line(body):
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else str(body or "")
    text = re.sub(r"<[^>]+>", " ", text)  # an HTML error page (a web2py ticket): its text
    return text.strip().splitlines()[0][:200] if text.strip() else ""


def _detail(text):
    return ": %s" % text if text else ""
