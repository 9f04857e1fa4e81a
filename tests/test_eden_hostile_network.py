"""Issue 19 against real Sahana Eden (SQLite, then PostgreSQL): what a hostile caller at the network can do.

- finding 3: an Eden instance syncing with a fake peer that trickles its answer after the headers ends
  the run at the deadline, its lock free;
- finding 4: wrong HTTP Basic logins for a peer's account from another address do not lock the
  real peer out (its syncs go on); the guessing address is blocked;
- finding 8: the `changes` answer's header tells a peer only about itself, never about the others
  (their URLs, this instance's checkpoints of them), over HTTP and XML-RPC;
- finding 9: an export starts only on a POST with the page's form key: cross-site GETs carrying the
  administrator's session make no job, no file, no log row.
"""
import base64
import gzip
import http.client
import re
import urllib.parse
import xmlrpc.client

import pytest
from edenseed import http as eden_http
from edenseed import peer_login, wait_for_worker
from synchelpers import count
from test_pages import Client, formkey

from applications.eden.modules.plugin_sync import fileio, replicate
from applications.eden.modules.plugin_sync.errors import PeerError
from applications.eden.modules.plugin_sync.peers import this_instance

A_UUID = "a0a0a0a0-0000-4000-8000-00000000000a"
A_URL = "http://10.9.8.7:8000/eden"


def from_address(address, url, credentials=None):
    """The status of a GET sent from the local address `address` (127.0.0.x: another caller on this host)."""
    parts = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=60, source_address=(address, 0))
    headers = {}
    if credentials:
        headers["Authorization"] = "Basic " + base64.b64encode(("%s:%s" % credentials).encode()).decode()
    try:
        conn.request("GET", parts.path + ("?" + parts.query if parts.query else ""), headers=headers)
        resp = conn.getresponse()
        resp.read()
        return resp.status
    finally:
        conn.close()


def test_wrong_logins_from_elsewhere_do_not_lock_the_peer_out(eden_instance, eden_server):
    a, b = eden_instance("a"), eden_instance("b")
    login = peer_login(b, speaks_for=a)
    server_b = eden_server("b", env=b)
    identity = server_b.url + "/plugin_sync/identity.json"
    # someone at 127.0.0.2 who knows the account's name, not its password: 12 guesses
    statuses = [from_address("127.0.0.2", identity, (login[0], "guess-%d" % k)) for k in range(12)]
    assert statuses[:6] == [401] * 6 and set(statuses[6:]) <= {401, 429} and 429 in statuses, statuses
    # the real peer (at 127.0.0.1) registers and syncs 12 times: never refused
    peer = replicate.register_peer(a["db"], a["plugin_sync_settings"], server_b.url, *login)
    for _ in range(12):
        replicate.sync(a["db"], a["plugin_sync_settings"], peer.id)
    assert count(a, "plugin_sync_log", operation="pull", result="ok") == 12
    # an address guessing many accounts is blocked for new ones; the peer that logged in right from that
    # same address before (behind a proxy every caller shares one) is not
    for k in range(25):
        from_address("127.0.0.1", identity, ("nobody%d@example.org" % k, "guess"))
    assert from_address("127.0.0.1", identity, ("someone@example.org", "guess")) == 429
    assert from_address("127.0.0.1", identity, login) == 200
    replicate.sync(a["db"], a["plugin_sync_settings"], peer.id)


def header_rows(csv_text):
    """The lines of a file's header block (TABLE sync_instance up to its blank line)."""
    lines = csv_text.split("\r\n") if "\r\n" in csv_text else csv_text.split("\n")
    assert lines[0] == "TABLE sync_instance", lines[:2]
    return lines[1:lines.index("")]


def test_the_changes_header_tells_a_peer_only_about_itself(eden_instance, eden_server):
    b, c = eden_instance("b"), eden_instance("c")
    db = b["db"]
    c_uuid = this_instance(c["db"]).base_uuid
    login_c = peer_login(b, speaks_for=c, email="peer-c@example.org")
    # B syncs with A too: it knows A's URL and has merged A's changes up to 41, and C's up to 5
    db.sync_instance.insert(base_uuid=A_UUID, uuid="urn:uuid:" + A_UUID, owner="Instance A", url=A_URL,
                            checkpoint_received=41)
    db(db.sync_instance.base_uuid == c_uuid).update(checkpoint_received=5)
    db.commit()
    server_b = eden_server("b", env=b)

    status, headers, body = eden_http("GET", server_b.url + "/plugin_sync/changes?since=0&format=gz", auth=login_c)
    assert status == 200
    rows = header_rows(gzip.decompress(body).decode("utf-8"))
    rpc = xmlrpc.client.dumps(("0", "", ""), "changes").encode()
    status, _, answer = eden_http("POST", server_b.url + "/plugin_sync/call/xmlrpc", data=rpc, auth=login_c,
                                  headers={"Content-Type": "text/xml",  # Eden parses every POST body:
                                           "Content-Disposition": 'attachment; filename="call.xml"'})
    data = xmlrpc.client.loads(answer)[0][0]["data"].data
    rows_rpc = header_rows((gzip.decompress(data) if data[:2] == b"\x1f\x8b" else data).decode("utf-8"))
    for header in (rows, rows_rpc):
        text = "\n".join(header)
        assert A_UUID not in text and A_URL not in text and "Instance A" not in text, text
        assert len(header) == 3 and header[2].startswith(c_uuid + ",") and ",5," in header[2], header
    # a file for anyone (the Export page, a USB stick) still tells every peer's checkpoint: its reader is unknown
    out = gzip.decompress(fileio.export_bytes(db, b["plugin_sync_settings"], fmt="gz")).decode("utf-8")
    assert A_UUID in "\n".join(header_rows(out))


def test_an_export_starts_only_on_a_post_with_the_form_key(eden_instance, eden_server, eden_admin):
    b = eden_instance("b")
    server_b = eden_server("b", env=b)
    admin = Client(server_b).login(*eden_admin)
    jobs, exports, logs = (count(b, "plugin_sync_job"), count(b, "plugin_sync_log", operation="export"),
                           count(b, "plugin_sync_log"))
    # three cross-site GETs carrying the administrator's session (an <img src=...> on another site)
    cross = {"Sec-Fetch-Site": "cross-site", "Referer": "http://evil.example/"}
    for path in ("/plugin_sync/export?fmt=csv", "/plugin_sync/export.zip", "/plugin_sync/export?fmt=gz&tables="
                 "org_organisation"):
        status, _, body = admin.request(path, headers=cross)
        assert status in (403, 405) and b"TABLE" not in body, (path, status)
    # a POST without the form key, and the same from a script's Basic login in a browser, cross-site
    status, _, body = admin.request("/plugin_sync/export", data=dict(fmt="csv"))
    assert status == 403 and b"TABLE" not in body
    script = Client(server_b, basic=eden_admin)
    status, _, body = script.request("/plugin_sync/export.csv", headers=cross)
    assert status == 403 and b"TABLE" not in body
    # nor does a cross-site GET of the other actions that start work: they only show their page
    b["db"].sync_instance.insert(base_uuid=A_UUID, uuid="urn:uuid:" + A_UUID, owner="Instance A", url=A_URL)
    b["db"].commit()
    peer_id = b["db"](b["db"].sync_instance.base_uuid == A_UUID).select().first().id
    for path in ("/plugin_sync/sync_now/%d?mode=pull" % peer_id, "/plugin_sync/import_and_sync?dry_run=0",
                 "/plugin_sync/conflicts?id=1&reviewed=1"):
        status, _, _ = admin.request(path, headers=cross)
        assert status == 200, (path, status)
    assert count(b, "plugin_sync_job") == jobs and count(b, "plugin_sync_log") == logs
    # the page's own form: a POST with its key exports (no worker: the file is the answer)
    status, _, page = admin.get("/plugin_sync/export")
    assert status == 200 and 'method="post"' in page.decode()
    key = formkey(page, "plugin_sync_export")
    status, headers, body = admin.request("/plugin_sync/export", data=dict(
        fmt="csv", tables=["", "org_organisation"], _formname="plugin_sync_export", _formkey=key))
    assert status == 200 and body.startswith(b"TABLE sync_instance"), body[:300]
    # a script (curl: no browser headers) still gets the file with a plain GET
    status, _, body = script.get("/plugin_sync/export.csv")
    assert status == 200 and body.startswith(b"TABLE sync_instance")
    assert count(b, "plugin_sync_log", operation="export") == exports + 2


def test_with_a_live_worker_cross_site_gets_make_no_export_job(eden_instance, eden_server, eden_admin):
    """As `make run` serves Eden (its scheduler worker alive): the GETs make no job; the page's POST makes one."""
    b = eden_instance("b")
    server_b = eden_server("b", env=b, scheduler=True)
    wait_for_worker(server_b, eden_admin)
    admin = Client(server_b).login(*eden_admin)
    for _ in range(3):
        status, _, _ = admin.request("/plugin_sync/export?fmt=csv", headers={"Sec-Fetch-Site": "cross-site"})
        assert status == 405
    assert count(b, "plugin_sync_job") == 0
    key = formkey(admin.get("/plugin_sync/export")[2], "plugin_sync_export")
    status, headers, _ = admin.request("/plugin_sync/export", data=dict(
        fmt="csv", tables=["", "org_organisation"], _formname="plugin_sync_export", _formkey=key))
    assert status == 303 and re.search(r"/plugin_sync/export\?job=\d+$", headers["Location"]), (status, headers)
    assert count(b, "plugin_sync_job", kind="export") == 1


def test_an_eden_sync_with_a_peer_trickling_after_its_headers_ends_at_the_deadline(eden_instance):
    """Finding 3 with Eden as the syncing side: the run ends at sync_deadline and the peer's lock is free."""
    from test_security_http import TricklingPeer

    a = eden_instance("a")
    db, settings = a["db"], a["plugin_sync_settings"]
    slow = TricklingPeer(pause=0.2, headers_first=True)
    try:
        db.sync_instance.insert(base_uuid=A_UUID, uuid="urn:uuid:" + A_UUID, owner="Trickling peer", url=slow.url,
                                username="x", password="y")
        db.commit()
        settings.update(sync_deadline=2)
        with pytest.raises(PeerError) as e:
            replicate.sync(db, settings, A_UUID)
        assert str(e.value).startswith("identity: gave up on peer Trickling peer at %s at the deadline of 2s" % slow.url)
        assert "still waiting for the rest of its answer (the headers came)" in str(e.value)
        assert count(a, "plugin_sync_lock", peer=A_UUID, holder=None) == 1
        assert count(a, "plugin_sync_log", operation="pull", result="error") == 1
    finally:
        slow.close()
        settings.pop("sync_deadline", None)
