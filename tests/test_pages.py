"""plugin_sync's admin pages over real HTTP: who may see them, export, import (form and JSON), CSRF, peers.

Each test talks to real web2py servers (conftest.start_server) with the stdlib
only: urllib, a cookie jar for browser sessions, multipart bodies by hand.
"""
import base64
import http.cookiejar
import json
import os
import re
import sqlite3
import urllib.error
import urllib.parse
import urllib.request
import uuid

import pytest

import eden
from synchelpers import seed_small

ADMIN = (eden.ADMIN_EMAIL, eden.ADMIN_PASSWORD)
CLERK = ("clerk@eden.local", "clerk-pw-123")  # a logged-in user who is not an administrator
PAGES = ("index", "export", "import_and_sync", "instances", "log", "conflicts")
NEVER = ("auth_user", "auth_group", "auth_membership", "s3_setting", "gis_config", "org_organisation_type")


# -- HTTP helpers -----------------------------------------------------------------

class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


class Client:
    """A browser (cookie jar) or a script (HTTP Basic); never follows redirects, so 303s are seen."""

    def __init__(self, server, basic=None):
        self.server, self.basic = server, basic
        self.jar = http.cookiejar.CookieJar()
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(self.jar), _NoRedirect)

    def request(self, path, data=None, headers=None, method=None):
        url = path if path.startswith("http") else self.server.url + path
        headers = dict(headers or {})
        if self.basic:
            headers["Authorization"] = "Basic " + base64.b64encode(("%s:%s" % self.basic).encode()).decode()
        if isinstance(data, dict):
            data = urllib.parse.urlencode(data, doseq=True).encode()
        req = urllib.request.Request(url, data=data, headers=headers, method=method)
        try:
            with self.opener.open(req, timeout=60) as r:
                return r.status, r.headers, r.read()
        except urllib.error.HTTPError as e:
            return e.code, e.headers, e.read()

    def get(self, path):
        return self.request(path)

    def post(self, path, fields=None, files=None, headers=None):
        body, ctype = multipart(fields or {}, files or {})
        return self.request(path, body, dict(headers or {}, **{"Content-Type": ctype}))

    def login(self, email, password):
        status, _, page = self.get("/default/user/login")
        key = formkey(page, "login")
        status, headers, _ = self.request("/default/user/login", dict(
            email=email, password=password, _formkey=key, _formname="login"))
        assert status == 303, "login failed"
        return self


def multipart(fields, files):
    """A multipart/form-data body: fields {name: value}, files {name: (filename, bytes)}."""
    boundary = uuid.uuid4().hex
    out = []
    for name, value in fields.items():
        out += [b"--" + boundary.encode(), ('Content-Disposition: form-data; name="%s"' % name).encode(), b"",
                str(value).encode()]
    for name, (filename, content) in files.items():
        out += [b"--" + boundary.encode(),
                ('Content-Disposition: form-data; name="%s"; filename="%s"' % (name, filename)).encode(),
                b"Content-Type: application/octet-stream", b"", content]
    out += [b"--" + boundary.encode() + b"--", b""]
    return b"\r\n".join(out), "multipart/form-data; boundary=" + boundary


def formkey(page, formname):
    """The _formkey of the form named `formname` in an HTML page."""
    page = page.decode() if isinstance(page, bytes) else page
    for form in re.findall(r"<form.*?</form>", page, re.S):
        if 'name="_formname" type="hidden" value="%s"' % formname in form or \
                'name="_formname" value="%s"' % formname in form:
            found = re.search(r'name="_formkey" type="hidden" value="([^"]+)"', form) or \
                re.search(r'name="_formkey" value="([^"]+)"', form)
            return found.group(1)
    raise AssertionError("no form %s in the page" % formname)


# -- direct database access (the server's own SQLite file) -------------------------------

def app_env(server):
    """The app's environment on a running server's database (to seed it, add users)."""
    saved = {k: os.environ.get(k) for k in ("EDEN_DB_URI", "EDEN_INSTANCE")}
    os.environ.update(EDEN_DB_URI=server.uri, EDEN_INSTANCE=server.name)
    try:
        env = eden.app_env(server.folder)
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    return env


def prepare(server, data=True, clerk=True):
    """Seed a small graph of records and a non-admin user into a server's database."""
    env = app_env(server)
    db = env["db"]
    if data:
        seed_small(env)
    if clerk:
        db.auth_user.insert(first_name="Clerk", last_name="Eden", email=CLERK[0],
                            password=db.auth_user.password.validate(CLERK[1])[0])
    db.commit()
    db.close()


def sql(server, query):
    con = sqlite3.connect(server.uri[len("sqlite://"):])
    try:
        rows = con.execute(query).fetchall()
        con.commit()
        return rows
    finally:
        con.close()


def count(server, table):
    return sql(server, "SELECT count(*) FROM %s" % table)[0][0]


def synced_counts(server):
    return {t: count(server, t) for t in ("org_organisation", "gis_location", "pr_person", "hms_hospital")}


def base_uuid(server):
    return sql(server, "SELECT base_uuid FROM plugin_sync_identity")[0][0]


def assert_no_data(server, body):
    """A refusal names no record, no identity, no file."""
    text = body.decode("utf-8", "replace")
    assert "TABLE " not in text and "urn:uuid:" not in text and base_uuid(server) not in text, text[:500]
    assert "Red Cross" not in text and "pbkdf2" not in text


@pytest.fixture
def server(start_server):
    """A seeded server of its own, for a test that writes to it."""
    srv = start_server("pages")
    prepare(srv)
    return srv


@pytest.fixture(scope="module")
def reader(start_module_server):
    """A seeded server the module's tests only read (and export from): started once per module."""
    srv = start_module_server("pages-read")
    prepare(srv)
    return srv


# -- who may see the pages ----------------------------------------------------------

def test_anonymous_browsers_are_sent_to_login_and_see_no_data(reader):
    anon = Client(reader)
    for page in PAGES:
        status, headers, body = anon.get("/plugin_sync/%s" % page)
        assert status == 303, (page, status)
        assert "/eden/default/user/login" in headers["Location"] and "_next=" in headers["Location"]
        assert_no_data(reader, body)
    # the same for an export asked with its format, and a conflict's detail
    for path in ("/plugin_sync/export?fmt=csv", "/plugin_sync/export.csv", "/plugin_sync/conflicts/1"):
        status, _, body = anon.get(path)
        assert status == 303 and b"TABLE" not in body


def test_scripts_get_401_without_valid_credentials(reader):
    for page in PAGES:
        status, headers, body = Client(reader).get("/plugin_sync/%s.json" % page)
        assert status == 401, (page, status)
        assert json.loads(body)["ok"] is False
        assert headers["WWW-Authenticate"].startswith("Basic ")
        assert_no_data(reader, body)
    wrong = Client(reader, basic=(ADMIN[0], "not-the-password"))
    for path in ("/plugin_sync/export", "/plugin_sync/export.csv", "/plugin_sync/index", "/plugin_sync/index.json"):
        status, _, body = wrong.get(path)
        assert status == 401, (path, status)
        assert_no_data(reader, body)
    status, _, body = wrong.post("/plugin_sync/import_and_sync.json", files=dict(data=("x.csv", b"TABLE x\n")))
    assert status == 401 and json.loads(body)["error"]["error"] == "Unauthorized"


def test_non_admins_get_403_and_no_data(reader):
    before = synced_counts(reader)
    export = Client(reader, basic=ADMIN).get("/plugin_sync/export.csv")[2]
    for clerk in (Client(reader, basic=CLERK), Client(reader).login(*CLERK)):
        for page in PAGES:
            status, _, body = clerk.get("/plugin_sync/%s" % page)
            assert status == 403, (page, status)
            assert_no_data(reader, body)
        for path in ("/plugin_sync/export.csv", "/plugin_sync/export?fmt=zip", "/plugin_sync/index.json"):
            status, _, body = clerk.get(path)
            assert status == 403, (path, status)
            assert_no_data(reader, body)
        status, _, body = clerk.post("/plugin_sync/import_and_sync.json", files=dict(data=("a.csv", export)))
        assert status == 403
        assert_no_data(reader, body)
    assert synced_counts(reader) == before
    # the logged-in clerk is told why, in the layout
    status, _, body = Client(reader).login(*CLERK).get("/plugin_sync/export")
    assert status == 403 and b"is not a member of the" in body and b"Log out" in body


# -- export -------------------------------------------------------------------

def test_export_over_basic_is_a_pydal_csv_without_local_tables(reader):
    admin = Client(reader, basic=ADMIN)
    status, headers, body = admin.get("/plugin_sync/export")  # a script gets the file directly
    assert status == 200
    assert headers["Content-Type"].startswith("text/csv")
    assert re.match(r'attachment; filename="eden-%s-\d{8}T\d{6}Z\.csv"' % base_uuid(reader)[:8],
                    headers["Content-Disposition"])
    text = body.decode("utf-8")
    assert text.startswith("TABLE sync_instance\r\n") and text.rstrip().endswith("END")  # pydal's CSV: CRLF
    sections = re.findall(r"^TABLE (\S+)", text, re.M)
    assert "org_organisation" in sections and "hms_hospital" in sections
    for table in NEVER:
        assert table not in sections
    assert "pbkdf2" not in text and CLERK[0] not in text  # no password hash, no account
    assert "A Red Cross" in text
    # the same through the explicit URLs; compressed and bundled formats
    assert admin.get("/plugin_sync/export.csv")[2].startswith(b"TABLE sync_instance")
    status, headers, body = admin.get("/plugin_sync/export?fmt=gz")
    assert status == 200 and headers["Content-Type"] == "application/gzip" and body[:2] == b"\x1f\x8b"
    assert headers["Content-Disposition"].endswith('.csv.gz"')
    status, headers, body = admin.get("/plugin_sync/export.zip?tables=doc_document&tables=org_organisation")
    assert status == 200 and headers["Content-Type"] == "application/zip" and body[:4] == b"PK\x03\x04"
    # a choice of tables
    text = admin.get("/plugin_sync/export?fmt=csv&tables=org_organisation,gis_location")[2].decode()
    assert re.findall(r"^TABLE (\S+)", text, re.M) == ["sync_instance", "org_organisation", "gis_location",
                                                        "plugin_sync_tombstone"]
    # the run is logged
    assert sql(reader, "SELECT count(*) FROM plugin_sync_log WHERE operation='export'")[0][0] >= 4


def test_export_of_a_never_synced_table_is_refused_with_400(reader):
    admin = Client(reader, basic=ADMIN)
    for path in ("/plugin_sync/export?tables=auth_user", "/plugin_sync/export.csv?tables=auth_user",
                 "/plugin_sync/export?fmt=zip&tables=org_organisation&tables=auth_user"):
        status, _, body = admin.get(path)
        assert status == 400, path
        text = body.decode()
        assert "auth_user" in text and "never synced" in text
        assert "TABLE" not in text and "pbkdf2" not in text and ADMIN[0] + "," not in text
    status, _, body = admin.get("/plugin_sync/export.json?tables=s3_setting")
    error = json.loads(body)
    assert status == 400 and error["ok"] is False and error["error"]["error"] == "TableNotSynced"
    assert error["error"]["table"] == "s3_setting"
    # a browser (the page's form, a POST with its key) gets a page in the layout; an empty choice is refused too
    browser = Client(reader).login(*ADMIN)

    def post(tables):
        key = formkey(browser.get("/plugin_sync/export")[2], "plugin_sync_export")
        return browser.request("/plugin_sync/export", dict(fmt="csv", tables=tables, _formname="plugin_sync_export",
                                                           _formkey=key))

    status, _, body = post("auth_user")
    assert status == 400 and b"never synced" in body and b"<html" in body and b"TABLE" not in body
    status, _, body = post("")
    assert status == 400 and b"Choose at least one table" in body


def test_export_form_lists_synced_tables_only(reader):
    status, _, body = Client(reader).login(*ADMIN).get("/plugin_sync/export")
    page = body.decode()
    assert status == 200
    boxes = re.findall(r'name="tables" value="([^"]+)"', page)
    assert "org_organisation" in boxes and "doc_document" in boxes
    assert not set(boxes) & set(NEVER)
    assert 'value="gz"' in page and 'value="zip"' in page


# -- import -------------------------------------------------------------------

def test_import_json_between_two_servers_then_unchanged(reader, start_server):
    data = Client(reader, basic=ADMIN).get("/plugin_sync/export.csv")[2]
    other = start_server("pages-b")
    prepare(other, data=False, clerk=False)
    admin_b = Client(other, basic=ADMIN)
    status, headers, body = admin_b.post("/plugin_sync/import_and_sync.json", files=dict(data=("a.csv", data)))
    assert status == 200 and headers["Content-Type"].startswith("application/json")
    report = json.loads(body)
    assert report["ok"] is True and report["dry_run"] is False
    assert report["totals"]["created"] > 0 and report["tables"]["org_organisation"]["created"] == 2
    assert report["origin"]["base_uuid"] == base_uuid(reader)
    assert synced_counts(other)["org_organisation"] == 2
    # the same file again changes nothing
    report = json.loads(admin_b.post("/plugin_sync/import_and_sync.json", files=dict(data=("a.csv", data)))[2])
    assert report["totals"]["created"] == 0 and report["totals"]["docs_written"] == 0
    assert report["totals"]["unchanged"] == report["totals"]["read"] > 0
    # the sender is now a known peer, listed on the dashboard
    status, _, page = Client(other).login(*ADMIN).get("/plugin_sync/index")
    assert status == 200 and base_uuid(reader).encode() in page


def test_import_json_dry_run_and_errors_write_nothing(reader, start_server):
    data = Client(reader, basic=ADMIN).get("/plugin_sync/export.csv")[2]
    other = start_server("pages-b")
    admin_b = Client(other, basic=ADMIN)
    before, logs = synced_counts(other), count(other, "plugin_sync_log")
    status, _, body = admin_b.post("/plugin_sync/import_and_sync.json", fields=dict(dry_run="1"),
                                   files=dict(data=("a.csv", data)))
    report = json.loads(body)
    assert status == 200 and report["dry_run"] is True and report["totals"]["created"] > 0
    assert report["summary"].startswith("Dry run")
    assert synced_counts(other) == before and count(other, "plugin_sync_log") == logs
    # a truncated file (no END): 400, where it broke, and nothing written
    cut = data[: data.index(b"TABLE hms_hospital")] + b"TABLE hms_hospital\nhms_hospital.id,hms_hospital.uuid\n"
    status, _, body = admin_b.post("/plugin_sync/import_and_sync.json", files=dict(data=("cut.csv", cut)))
    error = json.loads(body)
    assert status == 400 and error["ok"] is False
    assert error["error"]["error"] in ("TruncatedFile", "FormatError") and error["error"]["message"]
    assert synced_counts(other) == before
    # no file at all
    status, _, body = admin_b.post("/plugin_sync/import_and_sync.json", fields=dict(dry_run="1"))
    assert status == 400 and "data" in json.loads(body)["error"]["message"]
    # a raw body (curl --data-binary) works too
    status, _, body = admin_b.request("/plugin_sync/import_and_sync.json", data, {"Content-Type": "text/csv"})
    assert status == 200 and json.loads(body)["totals"]["created"] > 0


def test_import_form_needs_the_form_key(reader, start_server):
    data = Client(reader, basic=ADMIN).get("/plugin_sync/export.csv")[2]
    other = start_server("pages-b")
    browser = Client(other).login(*ADMIN)
    status, _, page = browser.get("/plugin_sync/import_and_sync")
    assert status == 200 and b'name="data"' in page and b'name="dry_run"' in page
    key = formkey(page, "plugin_sync_import")
    before = synced_counts(other)
    # a forged POST (no key, a wrong key; the .json URL is no way around it for a session)
    for fields, path in ((dict(_formname="plugin_sync_import"), "/plugin_sync/import_and_sync"),
                         (dict(_formname="plugin_sync_import", _formkey="forged"), "/plugin_sync/import_and_sync"),
                         ({}, "/plugin_sync/import_and_sync"),
                         ({}, "/plugin_sync/import_and_sync.json")):
        status, _, body = browser.post(path, fields=fields, files=dict(data=("a.csv", data)))
        assert status == 403, (fields, path, status)
        assert b"nothing was imported" in body
    assert synced_counts(other) == before
    # with the key: imported, and the report is shown
    status, _, body = browser.post("/plugin_sync/import_and_sync", fields=dict(
        _formname="plugin_sync_import", _formkey=key), files=dict(data=("a.csv", data)))
    page = body.decode()
    assert status == 200 and "Import report" in page and "Imported: read" in page
    assert synced_counts(other)["org_organisation"] == 2
    # a key is good once
    status, _, body = browser.post("/plugin_sync/import_and_sync", fields=dict(
        _formname="plugin_sync_import", _formkey=key), files=dict(data=("a.csv", data)))
    assert status == 403


def test_import_form_preview_then_import_for_real(reader, start_server):
    data = Client(reader, basic=ADMIN).get("/plugin_sync/export.csv")[2]
    other = start_server("pages-b")
    browser = Client(other).login(*ADMIN)
    key = formkey(browser.get("/plugin_sync/import_and_sync")[2], "plugin_sync_import")
    before, logs = synced_counts(other), count(other, "plugin_sync_log")
    status, _, body = browser.post("/plugin_sync/import_and_sync", fields=dict(
        _formname="plugin_sync_import", _formkey=key, dry_run="on"), files=dict(data=("field.csv", data)))
    page = body.decode()
    assert status == 200 and "Dry run: would have read" in page and "Import for real" in page
    assert re.search(r"<td class=\"num ps-created\">2</td>", page)  # org_organisation: 2 would be created
    assert synced_counts(other) == before and count(other, "plugin_sync_log") == logs  # the preview wrote nothing
    # "Import for real" imports the kept upload: no second upload
    pending = re.search(r'name="pending" type="hidden" value="([0-9a-f]+)"', page).group(1)
    confirm = formkey(page, "plugin_sync_confirm")
    status, _, body = browser.request("/plugin_sync/import_and_sync", dict(
        _formname="plugin_sync_confirm", _formkey=confirm, pending=pending))
    assert status == 200 and b"Imported: read" in body
    assert synced_counts(other)["org_organisation"] == 2
    # the kept file is gone: the same confirmation cannot run twice
    status, _, body = browser.request("/plugin_sync/import_and_sync", dict(
        _formname="plugin_sync_confirm", _formkey=confirm, pending=pending))
    assert status == 403


def test_import_form_failure_shows_where_and_writes_nothing(server):
    browser = Client(server).login(*ADMIN)
    key = formkey(browser.get("/plugin_sync/import_and_sync")[2], "plugin_sync_import")
    before = synced_counts(server)
    bad = (b"TABLE org_organisation\norg_organisation.id,org_organisation.uuid,org_organisation.name,"
           b"org_organisation.modified_on\n1,urn:uuid:%s,New org,2020-01-01 00:00:00\n"
           b"2,urn:uuid:%s,Bad date,not-a-date\n\nEND\n" % (uuid.uuid4().hex.encode(), uuid.uuid4().hex.encode()))
    status, _, body = browser.post("/plugin_sync/import_and_sync", fields=dict(
        _formname="plugin_sync_import", _formkey=key), files=dict(data=("bad.csv", bad)))
    page = body.decode()
    assert status == 400 and "Import failed: nothing was written" in page
    assert "org_organisation" in page and "modified_on" in page and "line 4" in page
    assert synced_counts(server) == before
    assert sql(server, "SELECT count(*) FROM org_organisation WHERE name='New org'")[0][0] == 0


# -- peers, log, conflicts ---------------------------------------------------------

def test_peers_create_edit_and_secrets_are_masked(server):
    browser = Client(server).login(*ADMIN)
    page = browser.get("/plugin_sync/instances/new")[2]
    peer = str(uuid.uuid4())
    status, headers, _ = browser.request("/plugin_sync/instances/new", dict(
        _formname="plugin_sync_peer", _formkey=formkey(page, "plugin_sync_peer"), base_uuid=peer,
        save_unverified="on",  # issue 15: a peer that cannot be asked (no such host) is saved only so
        owner="District office", url="http://10.0.0.2:8000/eden", username="sync@district",
        password="peer-secret-pw", mode="both", transport="http", sync_interval="15"))
    assert status == 303
    row = sql(server, "SELECT id, password, uuid FROM sync_instance WHERE base_uuid='%s'" % peer)[0]
    assert row[1] == "peer-secret-pw" and row[2] == "urn:uuid:" + peer
    listing = browser.get("/plugin_sync/instances")[2].decode()
    assert "District office" in listing and "15 min" in listing and "password set" in listing
    edit = browser.get("/plugin_sync/instances/%d" % row[0])[2].decode()
    for page in (listing, edit):
        assert "peer-secret-pw" not in page
    assert 'name="base_uuid"' not in edit  # fixed once registered
    # editing keeps the stored password when the masked value comes back
    status, _, _ = browser.request("/plugin_sync/instances/%d" % row[0], dict(
        _formname="plugin_sync_peer", _formkey=formkey(edit, "plugin_sync_peer"), id=str(row[0]),
        owner="District office 2", url="http://10.0.0.2:8000/eden", username="sync@district",
        password="********", mode="pull", transport="http", sync_interval="0"))
    assert status == 303
    assert sql(server, "SELECT owner, password, mode FROM sync_instance WHERE id=%d" % row[0])[0] == (
        "District office 2", "peer-secret-pw", "pull")
    # our own base_uuid cannot be registered as a peer
    page = browser.get("/plugin_sync/instances/new")[2]
    status, _, body = browser.request("/plugin_sync/instances/new", dict(
        _formname="plugin_sync_peer", _formkey=formkey(page, "plugin_sync_peer"), base_uuid=base_uuid(server), save_unverified="on",
        mode="both", transport="http", sync_interval="0"))
    assert status == 200 and b"own base UUID" in body


def test_peers_page_binds_the_peers_account_and_refuses_non_http_urls(server):
    browser = Client(server).login(*ADMIN)
    admin_id = sql(server, "SELECT id FROM auth_user WHERE email='%s'" % ADMIN[0])[0][0]
    peer = str(uuid.uuid4())
    page = browser.get("/plugin_sync/instances/new")[2]
    assert b'name="account"' in page  # "Its account here"
    fields = dict(_formname="plugin_sync_peer", base_uuid=peer, owner="Camp", username="sync@camp", mode="both",
                  save_unverified="on",
                  transport="http", sync_interval="0", account=str(admin_id))
    status, _, body = browser.request("/plugin_sync/instances/new", dict(
        fields, _formkey=formkey(page, "plugin_sync_peer"), url="javascript:alert(document.cookie)"))
    assert status == 200 and not sql(server, "SELECT id FROM sync_instance WHERE base_uuid='%s'" % peer)
    status, _, _ = browser.request("/plugin_sync/instances/new", dict(
        fields, _formkey=formkey(body, "plugin_sync_peer"), url="https://camp.example.org/eden"))
    assert status == 303
    assert sql(server, "SELECT account, url FROM sync_instance WHERE base_uuid='%s'" % peer)[0] == (
        admin_id, "https://camp.example.org/eden")
    # one account speaks for one instance: a second peer cannot take it
    page = browser.get("/plugin_sync/instances/new")[2]
    status, _, body = browser.request("/plugin_sync/instances/new", dict(
        fields, _formkey=formkey(page, "plugin_sync_peer"), base_uuid=str(uuid.uuid4()), url=""))
    assert status == 200 and b"already the login of another peer" in body


def test_log_and_conflicts_pages(server):
    admin = Client(server, basic=ADMIN)
    admin.get("/plugin_sync/export.csv")
    env = app_env(server)
    db = env["db"]
    org = db(db.org_organisation.acronym == "RC").select().first()
    loser = dict(id="99", uuid=org.uuid, name=org.name, phone="+670 111", modified_on="2020-01-01 00:00:00")
    conflict = db.plugin_sync_conflict.insert(
        tablename="org_organisation", record_uuid=org.uuid, origin="0f0f0f0f-peer", resolution="kept_local",
        reason="changed on both sides", local_modified_on=org.modified_on, loser=json.dumps(loser),
        created_on=org.modified_on)
    db.commit()
    db.close()
    browser = Client(server).login(*ADMIN)
    log = browser.get("/plugin_sync/log")[2].decode()
    assert "export" in log and "<details>" in log and "&quot;docs_read&quot;" not in log  # a table, not raw JSON (issue 15)
    assert re.search(r"<table class=\"table ps-kv small\"><tbody>.*<th>docs_read</th>", log)
    listing = browser.get("/plugin_sync/conflicts")[2].decode()
    assert org.uuid in listing and "kept local" in listing
    detail = browser.get("/plugin_sync/conflicts/%d" % conflict)[2].decode()
    assert "+670 111" in detail and org.name in detail
    assert re.search(r'<tr class="ps-diff"><th><code>phone</code>', detail)  # the differing field is marked
    assert not re.search(r'<tr class="ps-diff"><th><code>name</code>', detail)
    # "mark reviewed" needs the form key
    status, _, _ = browser.request("/plugin_sync/conflicts/%d" % conflict, dict(
        _formname="plugin_sync_review", _formkey="forged", id=str(conflict), reviewed="1"))
    assert status == 403
    assert sql(server, "SELECT reviewed FROM plugin_sync_conflict")[0][0] in (0, "F", None)
    status, _, _ = browser.request("/plugin_sync/conflicts/%d" % conflict, dict(
        _formname="plugin_sync_review", _formkey=formkey(detail, "plugin_sync_review"), id=str(conflict),
        reviewed="1"))
    assert status == 303
    assert sql(server, "SELECT reviewed FROM plugin_sync_conflict")[0][0] in (1, "T")
    assert "No unreviewed conflicts" in browser.get("/plugin_sync/conflicts")[2].decode()
    # "restore this version" writes the losing version back (form key needed), the replaced one is listed
    detail = browser.get("/plugin_sync/conflicts/%d" % conflict)[2].decode()
    assert "Restore this version" in detail
    status, _, _ = browser.request("/plugin_sync/conflicts/%d" % conflict, dict(
        _formname="plugin_sync_restore", _formkey="forged", id=str(conflict)))
    assert status == 403
    assert sql(server, "SELECT phone FROM org_organisation WHERE uuid = '%s'" % org.uuid)[0][0] == org.phone
    status, _, _ = browser.request("/plugin_sync/conflicts/%d" % conflict, dict(
        _formname="plugin_sync_restore", _formkey=formkey(detail, "plugin_sync_restore"), id=str(conflict)))
    assert status == 303
    assert sql(server, "SELECT phone FROM org_organisation WHERE uuid = '%s'" % org.uuid)[0][0] == "+670 111"
    assert "Version restored" in browser.get("/plugin_sync/conflicts/%d" % conflict)[2].decode()
    replaced = sql(server, "SELECT reason, loser FROM plugin_sync_conflict WHERE id <> %d" % conflict)
    assert len(replaced) == 1 and replaced[0][0] == "replaced by the restore of #%d" % conflict
    assert org.phone is None or org.phone in replaced[0][1]
