"""Secrets never leave: an Eden instance whose secret-bearing tables are filled exports none of them.

Eden keeps secrets in ordinary tables: its own sync peers (sync_repository:
password, client_secret, refresh_token), messaging channels (msg_email_channel:
password), deployment set-up (setup_aws_cloud: access and secret keys), GIS
layers (gis_layer_bing: API key), user links (pr_person_user), the ACL
(s3_permission).  None of them travels by a full export, by ?tables=, by a
peer's pull (HTTP and XML-RPC), even when the settings list them; a file that
brings them is not written either.  Within a synced table, password-type columns
and secret-named columns never travel.
"""
import io
import re

import pytest
from edenseed import as_json, gunzip, http, make, peer_login, row

from applications.eden.modules.plugin_sync import fileio
from applications.eden.modules.plugin_sync.changes import install_triggers
from applications.eden.modules.plugin_sync.errors import PeerError
from applications.eden.modules.plugin_sync.tables import synced_tables
from applications.eden.modules.plugin_sync.transport import connect

SECRETS = {
    "sync_repository": dict(name="Eden HQ repository", url="http://hq.example.org/eden", username="hq-sync",
                            password="SECRET-repo-password", client_secret="SECRET-client-secret",
                            refresh_token="SECRET-refresh-token"),
    "msg_email_channel": dict(name="Inbox", server="imap.example.org", username="inbox",
                              password="SECRET-mail-password"),
    "setup_aws_cloud": dict(name="AWS", access_key="SECRET-aws-access-key", secret_key="SECRET-aws-secret-key"),
    "gis_layer_bing": dict(name="Bing", apikey="SECRET-bing-api-key"),
}
NEVER = ("sync_repository", "msg_email_channel", "setup_aws_cloud", "gis_layer_bing", "pr_person_user",
         "s3_permission", "auth_user", "auth_group", "sync_instance", "setup_cloud", "msg_channel")


def settings(env):
    return env["plugin_sync_settings"]


def fill_secrets(env):
    for tablename, values in SECRETS.items():
        make(env, tablename, **values)
    person = make(env, "pr_person", first_name="Linked", last_name="User")
    make(env, "pr_person_user", pe_id=row(env, "pr_person", id=person).pe_id, user_id=1)
    make(env, "org_organisation", name="Open Org")  # shared data, to show the export is not empty


def assert_no_secret(data):
    text = gunzip(data)
    assert b"SECRET-" not in text
    for tablename in NEVER:
        if tablename != "sync_instance":  # the sender's identity header: base_uuid, owner, contact only
            assert not re.search(rb"^TABLE %s\r?$" % re.escape(tablename.encode()), text, re.M), tablename
    assert not re.search(rb"^sync_instance\.(username|password)", text, re.M)


def test_eden_secrets_never_leave(eden_instance, eden_server, eden_admin):
    a = eden_instance("a")
    fill_secrets(a)
    db = a["db"]
    assert db(db.sync_repository.password == "SECRET-repo-password").count() == 1  # they are there to leak
    login = peer_login(a)
    # the settings cannot make them sync: listed explicitly, they are still left out
    s = settings(a)
    saved = list(s.tables)
    try:
        s.tables = saved + list(NEVER)
        assert not set(NEVER) & set(synced_tables(db, s))
        out = io.BytesIO()
        fileio.export_to(db, s, out, fmt="csv", log=False)
        assert_no_secret(out.getvalue())
        assert b"Open Org" in out.getvalue()
    finally:
        s.tables = saved
    server = eden_server("a", env=a)

    # full export, every format
    for fmt in ("csv", "gz", "zip"):
        status, _, body = http("GET", server.url + "/plugin_sync/export?format=" + fmt, auth=eden_admin)
        assert status == 200, body[:300]
        if fmt == "zip":
            import zipfile

            with zipfile.ZipFile(io.BytesIO(body)) as z:
                body = b"".join(z.read(n) for n in z.namelist())
        assert_no_secret(body)
        assert b"Open Org" in gunzip(body)
    # ?tables= asking for them: refused, nothing exported
    for asked in ("sync_repository", "msg_email_channel", "setup_aws_cloud", "gis_layer_bing", "pr_person_user",
                  "s3_permission", "org_organisation,sync_repository"):
        status, _, body = http("GET", server.url + "/plugin_sync/export.json?tables=" + asked, auth=eden_admin)
        assert status == 400 and b"SECRET-" not in body, (asked, status, body[:200])
        assert as_json(body)["ok"] is False and "never synced" in as_json(body)["error"]["message"]
    status, _, body = http("GET", server.url + "/plugin_sync/export?format=csv&tables=org_organisation",
                           auth=eden_admin)
    assert status == 200 and b"Open Org" in body
    assert_no_secret(body)
    # a peer's pull, HTTP and XML-RPC; asking for a secret table by name is refused
    for transport in ("http", "xmlrpc"):
        peer = dict(url=server.url, username=login[0], password=login[1], transport=transport, owner="a")
        changes = connect(peer, None, retries=1).changes(0)
        assert_no_secret(changes.data)
        assert b"Open Org" in gunzip(changes.data)
    status, _, body = http("GET", server.url + "/plugin_sync/changes?since=0&tables=sync_repository", auth=login)
    assert status == 400 and b"SECRET-" not in body
    peer = dict(url=server.url, username=login[0], password=login[1], transport="xmlrpc", owner="a")
    with pytest.raises(PeerError) as e:
        connect(peer, None, retries=1).changes(0, tables=["msg_email_channel"])
    assert "never synced" in str(e.value) and "SECRET-" not in str(e.value)


def test_eden_files_cannot_bring_secret_tables(eden_instance):
    """An import that carries never-synced tables writes none of their rows (and says so)."""
    a = eden_instance("a")
    make(a, "org_organisation", name="Carrier Org")
    a["s3db"].table("sync_repository")  # defined in this request, and still never written by an import
    out = io.BytesIO()
    fileio.export_to(a["db"], settings(a), out, fmt="csv", tables=["org_organisation"], log=False)
    text = out.getvalue().decode("utf-8")
    forged = text.replace("\nEND", "\nTABLE sync_repository\nsync_repository.id,sync_repository.uuid,"
                          "sync_repository.name,sync_repository.password,sync_repository.modified_on\n"
                          "1,urn:uuid:forged-repo,Forged,SECRET-forged-password,2030-01-01 00:00:00\n\nEND", 1)
    assert "SECRET-forged-password" in forged
    report = fileio.import_from(a["db"], settings(a), forged.encode("utf-8"), name="forged.csv")
    db = a["db"]
    assert db(db.sync_repository.name == "Forged").isempty()
    assert "sync_repository" in str(report.as_dict())
    db.commit()


def test_password_and_secret_columns_never_travel(new_instance):
    """A synced table's password-type and secret-named columns are neither exported nor imported."""
    a, b = new_instance("a"), new_instance("b")
    for env in (a, b):
        env["db"].define_table(
            "org_partner_api", env["db"].org_organisation.uuid.clone(), env["db"].org_organisation.modified_on.clone(),
            env["db"].org_organisation.deleted.clone(), env["db"].org_organisation.mci.clone(), env["db"].Field("name"),
            env["db"].Field("login_password", "password"), env["db"].Field("api_token"),
            env["db"].Field("endpoint"), migrate=True)
        install_triggers(env["db"], ["org_partner_api"])  # what setup() does for a synced table
        env["db"].commit()
    db = a["db"]
    db.org_partner_api.insert(name="Partner", login_password="SECRET-pw", api_token="SECRET-token",
                              endpoint="https://partner.example.org")
    db.commit()
    assert "org_partner_api" in synced_tables(db, settings(a))
    out = io.BytesIO()
    fileio.export_to(db, settings(a), out, fmt="csv", tables=["org_partner_api"], log=False)
    data = out.getvalue()
    assert b"SECRET-" not in data and b"login_password" not in data and b"api_token" not in data
    assert b"https://partner.example.org" in data
    # a file that does carry them (another exporter's): they are ignored, with a warning
    forged = data.decode("utf-8").replace("org_partner_api.name", "org_partner_api.api_token,org_partner_api.name")
    forged = forged.replace(",Partner,", ",SECRET-token,Partner,")
    assert "SECRET-token" in forged
    report = fileio.import_from(b["db"], settings(b), forged.encode("utf-8"), name="forged.csv")
    got = b["db"](b["db"].org_partner_api.name == "Partner").select().first()
    assert got.endpoint == "https://partner.example.org" and got.api_token is None
    assert any(w["column"] == "api_token" for w in report.as_dict()["warnings"])
