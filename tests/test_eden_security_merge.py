"""Issue 19 against real Eden (SQLite and PostgreSQL), as a hostile bound peer pushes to B's server.

Finding 1: a push that names a plain local Eden user as a record's owner (`owned_by_user@email`) and
one of B's roles as its owner group (`owned_by_group@uuid`) grants that user nothing: under Eden's
security policy 5 the user's update page of the record stays 303, for a record B had (whose owners
stay) and for one the push creates (owned by the peer's account, as Eden's own import would own it);
the report counts no owner change.  Only an administrator's setting (`accept_owners`) takes a file's
owners, and then the change is counted and said, never "unchanged".
Finding 2: a pushed record whose `deleted` column is missing, empty or `<NULL>` is not hidden from
Eden: B's administrator reads `org/organisation/<id>/read` (200).
"""
import copy
import csv
import gzip
import io
import json
import os

from conftest import add_eden_user
from edenseed import http, later, make, peer_login, row
from test_network import Browser
from test_security_merge import damaged_upload

from applications.eden.modules.plugin_sync import fileio

PUSH_HEADERS = {"Content-Type": "application/gzip",  # Eden parses every POST: a file name keeps the body binary
                "Content-Disposition": 'attachment; filename="changes.csv.gz"'}
PLAIN = ("plain@example.org", "Plain-pass-1")


def settings(env):
    return env["plugin_sync_settings"]


def export(a):
    out = io.BytesIO()
    fileio.export_to(a["db"], settings(a), out, fmt="csv")
    a["db"].commit()
    return out.getvalue().decode("utf-8")


def edit(text, table, uuid, **cells):
    """The file with cells of `table`'s row of `uuid` replaced (a column given None is dropped from the table)."""
    rows = list(csv.reader(io.StringIO(text, newline="")))
    head = [i for i, r in enumerate(rows) if r and r[0].startswith(table + ".")][0]
    end = head + 1
    while rows[end]:
        end += 1
    columns = rows[head]
    for column, value in cells.items():
        k = columns.index("%s.%s" % (table, column))
        for r in rows[head:end]:
            if value is None:
                del r[k]
            elif r is not columns and r[columns.index(table + ".uuid")] == uuid:
                r[k] = value
    out = io.StringIO(newline="")
    csv.writer(out).writerows(rows)
    return out.getvalue().rstrip("\r\n")


def naming_owners(text, uuid):
    """`text` with the plain user and B's role named as owners of the organisation `uuid` (the id cells
    are the sender's own, any number; the annotations name the account and the role)."""
    return edit(text, "org_organisation", uuid, owned_by_user="1", owned_by_group="1",
                **{"owned_by_user@email": PLAIN[0], "owned_by_group@uuid": "FIELD_TEAM"})


def push(server, account, text):
    code, _, body = http("POST", server.url + "/plugin_sync/receive.json", data=gzip.compress(text.encode("utf-8")),
                         auth=account, headers=PUSH_HEADERS)
    assert code == 200, body[:1000]
    return json.loads(body)["report"]


def pair(eden_instance, policy=None):
    """A with an organisation, B (loaded last) with a plain user and a role of its own, and A's
    organisation merged into B by file; B's server to run Eden's security `policy`."""
    a = eden_instance("a")
    org = make(a, "org_organisation", name="Alpha Relief", acronym="AR")
    b = eden_instance("b")
    auth = b["auth"]
    plain = add_eden_user(b, *PLAIN)
    auth.s3_create_role("Field Team", uid="FIELD_TEAM")
    # what makes ownership count under policy 5: a role that reads every organisation and updates its own
    acl = auth.permission
    reader = auth.s3_create_role("Organisation reader", None,
                                 dict(c="org", uacl=acl.READ, oacl=acl.READ | acl.UPDATE),
                                 dict(t="org_organisation", uacl=acl.READ, oacl=acl.READ | acl.UPDATE),
                                 uid="ORG_READER")
    auth.s3_assign_role(plain, reader)
    b["db"].commit()
    fileio.import_from(b["db"], settings(b), export(a).encode("utf-8"), name="a.csv")
    if policy:  # the site's own config: the launcher rewrites 000_config.py when the server starts
        config = os.path.join(b["folder"], "applications", "eden", "models", "000_config_site.py")
        with open(config, "w") as f:
            f.write("settings.security.policy = %d\n" % policy)
    return a, b, row(a, "org_organisation", id=org).uuid


def new_org(a, name):
    """A's organisation made after B was loaded (then Eden's `current` is B's: a plain insert on A's db;
    its super record does not travel anyway): its uuid."""
    db = a["db"]
    uuid = db.org_organisation[db.org_organisation.insert(name=name)].uuid
    db.commit()
    return uuid


def owners(b, uuid):
    record = row(b, "org_organisation", uuid=uuid)
    return record.id, record.owned_by_user, record.owned_by_group


def test_a_peer_cannot_make_a_local_user_owner_of_a_record(eden_instance, eden_server):
    a, b, uuid = pair(eden_instance, policy=5)
    peer = peer_login(b, speaks_for=a)
    server = eden_server("b", env=b)
    user = Browser(server.url).login(*PLAIN)
    org_id, owner_before, group_before = owners(b, uuid)
    assert user.open("/org/organisation/%d/read" % org_id)[0] == 200
    assert user.open("/org/organisation/%d/update" % org_id)[0] == 303  # Eden's policy 5: not the user's

    # the same content, stamped later, now naming the plain user and B's role as owners
    hostile = edit(naming_owners(export(a), uuid), "org_organisation", uuid, modified_on=later(60).isoformat(" "))
    report = push(server, peer, hostile)
    assert user.open("/org/organisation/%d/update" % org_id)[0] == 303
    assert owners(b, uuid) == (org_id, owner_before, group_before)
    assert report["tables"]["org_organisation"].get("owners_changed", 0) == 0, report["summary"]

    # a record the push creates is owned as Eden's import would own it: by the peer's account, no role
    two = new_org(a, "Alpha Two")
    report = push(server, peer, naming_owners(export(a), two))
    assert report["tables"]["org_organisation"]["created"] == 1
    two_id, owner, group = owners(b, two)
    assert (owner, group) == (row(b, "auth_user", email=peer[0]).id, None)
    assert user.open("/org/organisation/%d/update" % two_id)[0] == 303

    # an administrator who chose to take a file's owners: taken, and counted as a change, not "unchanged"
    chosen = copy.copy(settings(b))
    chosen.accept_owners = True
    hostile = naming_owners(export(a), uuid)
    taken = fileio.import_from(b["db"], chosen, hostile.encode("utf-8"), name="chosen.csv").as_dict()
    counts = taken["tables"]["org_organisation"]
    assert (counts["owners_changed"], counts["updated"], counts["unchanged"]) == (1, 1, 1), counts
    assert "owners changed 1" in taken["summary"]
    assert any("accept_owners" in w["message"] for w in taken["warnings"])
    assert owners(b, uuid)[1] == row(b, "auth_user", email=PLAIN[0]).id


def test_a_pushed_record_is_never_hidden_by_its_deleted_cell(eden_instance, eden_server, eden_admin):
    a, b, _ = pair(eden_instance)
    peer = peer_login(b, speaks_for=a)
    server = eden_server("b", env=b)
    admin = Browser(server.url).login(*eden_admin)
    for name, cell in (("Omitted", None), ("Empty", ""), ("Null", "<NULL>")):
        uuid = new_org(a, name)
        report = push(server, peer, edit(export(a), "org_organisation", uuid, deleted=cell))
        assert report["tables"]["org_organisation"]["created"] == 1, report["summary"]
        record = row(b, "org_organisation", uuid=uuid)
        assert record.deleted is False, (name, record.deleted)
        status, _, page = admin.open("/org/organisation/%d/read" % record.id)
        assert status == 200 and name in page, (name, status)


def test_a_pushed_bundle_with_a_damaged_upload_entry_is_a_located_400(eden_instance, eden_server):
    """Finding 10 against Eden: an organisation's logo whose zip entry fails its CRC; the push is refused
    with a 400 naming the entry (before: a 500), and B's record stays as it was."""
    a, b, uuid = pair(eden_instance)
    db, table = a["db"], a["db"].org_organisation
    name = table.logo.store(io.BytesIO(b"field report of the day"), "logo.png")
    db(table.uuid == uuid).update(logo=name, modified_on=later(60))
    db.commit()
    out = io.BytesIO()
    fileio.export_to(db, settings(a), out, fmt="zip")
    db.commit()
    data = damaged_upload(out.getvalue())
    before = row(b, "org_organisation", uuid=uuid)
    server = eden_server("b", env=b)
    peer = peer_login(b, speaks_for=a)
    code, _, body = http("POST", server.url + "/plugin_sync/receive.json", data=data, auth=peer,
                         headers={"Content-Type": "application/zip",
                                  "Content-Disposition": 'attachment; filename="changes.zip"'})
    error = json.loads(body)["error"]
    assert code == 400 and error["error"] == "FormatError", body[:500]
    assert "uploads/%s" % name in error["message"] and "CRC" in error["message"], error["message"]
    after = row(b, "org_organisation", uuid=uuid)
    assert (after.logo, after.modified_on) == (before.logo, before.modified_on)
