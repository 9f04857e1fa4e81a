"""Real Sahana Eden instances syncing: over HTTP and XML-RPC (pull and push), and by file.

Three Eden instances (each a copy of the session's prepared Eden on the test's
backend, SQLite then PostgreSQL), the plugin installed.  A and B each create an
organisation with its type, an office, a location, a person with contact,
address and staff record (Eden's update_super links them to their
super-entities); A syncs with B's server over HTTP (pull, then push), C with B's
over XML-RPC, A takes C's changes by file.  Records created and edited on each
side arrive; a concurrent edit is decided by the newest version on both sides
and the losing version is kept (plugin_sync_conflict); a record's own super-entity
keys and other local ids (pe_id, site_id, realm_entity...) never travel: the receiver
links what arrives to super records of its own (test_eden_entities.py checks them all),
and its own links stay as they are.
"""
import io

import eden  # the launcher (scripts/): a request's environment of an Eden folder
from edenseed import as_json, country, http, later, make, peer_login, row, seed_org, uuids

from applications.eden.modules.plugin_sync import fileio, replicate
from applications.eden.modules.plugin_sync.tables import synced_tables

SHARED = ("org_organisation", "org_organisation_type", "org_office", "gis_location", "pr_person", "pr_contact",
          "pr_address", "hrm_job_title", "hrm_human_resource", "org_organisation_organisation_type", "med_hospital")


def settings(env):
    return env["plugin_sync_settings"]


def test_eden_instances_sync_over_http_xmlrpc_and_by_file(eden_instance, eden_server):
    a = eden_instance("a")
    seed_org(a, "Alpha", country(a))
    b = eden_instance("b")
    beta = seed_org(b, "Beta", country(b))
    c = eden_instance("c")
    seed_org(c, "Gamma", country(c))
    login = peer_login(b, speaks_for=a)  # A's account at B
    login_c = peer_login(b, speaks_for=c, email="peer-c@example.org")  # C's: one instance per account
    # the synced set is Eden's default, read from Eden's model and loaded through s3db
    for env in (a, b, c):
        assert synced_tables(env["db"], settings(env)) and set(synced_tables(env["db"], settings(env))) == set(
            settings(env).tables)
        assert set(SHARED) <= set(synced_tables(env["db"], settings(env)))
    a_org_pe = row(a, "org_organisation", name="Alpha Relief").pe_id
    assert a_org_pe  # Eden's update_super made its person entity
    server_b = eden_server("b", env=b)

    # A <-> B over HTTP: pull B's changes, push A's
    peer = replicate.register_peer(a["db"], settings(a), server_b.url, *login, transport="http")
    results = replicate.sync(a["db"], settings(a), peer.id)
    assert results["pull"].totals()["created"] >= 10 and results["push"].totals()["created"] >= 10
    for env, name in ((a, "Beta Relief"), (b, "Alpha Relief")):
        org = row(env, "org_organisation", name=name)
        assert org is not None
        office = row(env, "org_office", organisation_id=org.id)
        assert office.name == name.replace("Relief", "HQ") and row(env, "gis_location", id=office.location_id)
    # the person, the contact and the address, the staff record, all arrived and linked by uuid
    ana = row(b, "pr_person", first_name="Alpha")
    hr = row(b, "hrm_human_resource", person_id=ana.id)
    assert row(b, "hrm_job_title", id=hr.job_title_id).name == "Alpha Coordinator"
    assert row(b, "org_organisation", id=hr.organisation_id).name == "Alpha Relief"
    assert row(b, "pr_contact", value="alpha@example.org") is not None
    hospital = row(b, "med_hospital", name="Alpha Hospital")
    assert row(b, "org_organisation", id=hospital.organisation_id).name == "Alpha Relief"
    # super-entity keys are A's local ids: they never travel, B links what arrives to its own
    alpha_at_b = row(b, "org_organisation", name="Alpha Relief")
    assert row(b, "org_site", site_id=hospital.site_id).uuid == hospital.uuid
    for record in (alpha_at_b, ana):
        assert row(b, "pr_pentity", pe_id=record.pe_id).uuid == record.uuid
    assert row(b, "pr_contact", value="alpha@example.org").pe_id == ana.pe_id
    assert row(b, "org_organisation", name="Beta Relief").pe_id  # B's own links untouched
    # the country both have under one uuid stays one record
    assert len([u for u in uuids(b, "gis_location") if u.endswith(":AT")]) == 1

    # concurrent edits of Beta Relief: A's is older, B's newer -> B's wins on both sides, A's is kept
    beta_uuid = row(b, "org_organisation", id=beta).uuid
    a["db"](a["db"].org_organisation.uuid == beta_uuid).update(acronym="BETA-by-A", modified_on=later(60))
    a["db"].commit()
    b["db"](b["db"].org_organisation.uuid == beta_uuid).update(acronym="BETA-by-B", modified_on=later(120))
    # and one edit on B alone: the contact of A's person
    b["db"](b["db"].pr_contact.value == "alpha@example.org").update(value="alpha@new.example.org",
                                                                      modified_on=later(120))
    b["db"].commit()
    results = replicate.sync(a["db"], settings(a), peer.id)
    assert results["pull"].totals()["conflicts"] == 1
    for env in (a, b):
        assert row(env, "org_organisation", uuid=beta_uuid).acronym == "BETA-by-B"
    assert row(a, "pr_contact", value="alpha@new.example.org") is not None
    assert row(a, "pr_contact", value="alpha@example.org") is None
    conflict = row(a, "plugin_sync_conflict", record_uuid=beta_uuid)
    assert conflict.tablename == "org_organisation" and conflict.resolution == "took_incoming"
    assert "BETA-by-A" in conflict.loser
    # A's own person entity link was not touched by any of this
    assert row(a, "org_organisation", name="Alpha Relief").pe_id == a_org_pe

    # C <-> B over XML-RPC: C gets A's records relayed by B, B gets C's
    peer_c = replicate.register_peer(c["db"], settings(c), server_b.url, *login_c, transport="xmlrpc")
    results = replicate.sync(c["db"], settings(c), peer_c.id)
    assert results["pull"].totals()["created"] >= 20 and results["push"].totals()["created"] >= 10
    assert row(c, "org_organisation", name="Alpha Relief") is not None
    assert row(c, "org_organisation", uuid=beta_uuid).acronym == "BETA-by-B"
    assert row(b, "org_organisation", name="Gamma Relief") is not None
    # an edit on C pushed over XML-RPC
    c["db"](c["db"].pr_person.first_name == "Alpha").update(middle_name="Maria", modified_on=later(180))
    c["db"].commit()
    results = replicate.sync(c["db"], settings(c), peer_c.id, mode="push")
    assert results["push"].totals()["updated"] == 1
    assert row(b, "pr_person", first_name="Alpha").middle_name == "Maria"

    # C -> A by file (a USB stick): everything C holds, once; the second import changes nothing
    data = io.BytesIO()
    fileio.export_to(c["db"], settings(c), data, fmt="gz")
    report = fileio.import_from(a["db"], settings(a), data.getvalue(), name="from-c.csv.gz")
    assert row(a, "org_organisation", name="Gamma Relief") is not None
    assert row(a, "pr_person", first_name="Alpha").middle_name == "Maria"
    assert report.totals()["created"] >= 10
    again = fileio.import_from(a["db"], settings(a), data.getvalue(), name="from-c.csv.gz")
    assert again.totals()["created"] == again.totals()["updated"] == again.totals()["conflicts"] == 0
    for table in SHARED:
        assert uuids(a, table) == uuids(c, table), table
    # the conflict stays kept on A for review
    assert row(a, "plugin_sync_conflict", record_uuid=beta_uuid).reviewed is False

    # a script's push into Eden: multipart upload (curl -F data=@file) of a new record of A's
    a["db"].org_organisation.insert(name="Delta Partner")  # (make() is for the instance loaded last)
    a["db"].commit()
    data = io.BytesIO()
    fileio.export_to(a["db"], settings(a), data, fmt="gz", log=False)
    boundary = "plugin-sync-test-boundary"
    body = b"".join([b"--%s\r\n" % boundary.encode(),
                     b'Content-Disposition: form-data; name="data"; filename="a.csv.gz"\r\n',
                     b"Content-Type: application/gzip\r\n\r\n", data.getvalue(),
                     b"\r\n--%s--\r\n" % boundary.encode()])
    status, _, answer = http("POST", server_b.url + "/plugin_sync/receive.json", data=body, auth=login,
                             headers={"Content-Type": "multipart/form-data; boundary=%s" % boundary})
    assert status == 200 and as_json(answer)["ok"], answer[:300]
    assert row(b, "org_organisation", name="Delta Partner") is not None


def forge_pe_id(text, value):
    """The same file with a pe_id column (a sender's local id) in its org_organisation section."""
    out, inside = [], False
    for line in text.splitlines():
        if line.startswith("org_organisation.id,"):
            inside = True
            out.append("org_organisation.pe_id," + line)
            continue
        if inside and not line.strip():
            inside = False
        out.append(("%s,%s" % (value, line)) if inside else line)
    return ("\n".join(out) + "\n").encode("utf-8")


def test_eden_super_entity_keys_in_a_file_are_ignored(eden_instance):
    """A record's own pe_id is a local id: never exported, and ignored in any file; the receiver links the
    record to a person entity of its own, and keeps that link whatever a later file says."""
    a = eden_instance("a")
    org = make(a, "org_organisation", name="Linked Org")
    assert row(a, "org_organisation", id=org).pe_id
    b = eden_instance("b")
    data = io.BytesIO()
    fileio.export_to(a["db"], settings(a), data, fmt="csv", tables=["org_organisation"])
    text = data.getvalue().decode("utf-8")
    header = [line for line in text.splitlines() if line.startswith("org_organisation.id,")][0]
    for local in ("pe_id", "realm_entity", "approved_by"):
        assert "org_organisation.%s," % local not in header + ","
    assert "org_organisation.owned_by_group@uuid," in header  # a role travels as its uuid
    fileio.import_from(b["db"], settings(b), data.getvalue(), name="a.csv")
    arrived = row(b, "org_organisation", name="Linked Org")
    linked = arrived.pe_id  # B's own person entity of the record, made on arrival
    assert linked and row(b, "pr_pentity", pe_id=linked).uuid == arrived.uuid
    # A edits the record; the file that brings the edit also carries a pe_id (a foreign exporter's)
    a["db"](a["db"].org_organisation.id == org).update(name="Linked Org (renamed)", modified_on=later(60))
    a["db"].commit()
    data = io.BytesIO()
    fileio.export_to(a["db"], settings(a), data, fmt="csv", tables=["org_organisation"])
    report = fileio.import_from(b["db"], settings(b), forge_pe_id(data.getvalue().decode("utf-8"), 999999),
                                name="forged.csv")
    after = row(b, "org_organisation", id=arrived.id)
    assert after.name == "Linked Org (renamed)" and after.pe_id == linked
    assert any(w["column"] == "pe_id" and "never syncs" in w["message"] for w in report.as_dict()["warnings"])


def test_eden_host_settings_from_000_config(eden_folder):
    """Settings made by the host before the plugin's model (Eden's 000_config.py) are taken; Eden's DAL
    (check_reserved on: migrate) accepts the plugin's tables."""
    import os

    from conftest import load_eden

    folder, _ = eden_folder("a")
    config = os.path.join(folder, "applications", "eden", "models", "000_config.py")
    with open(config, "a") as f:
        f.write("\nfrom gluon.tools import PluginManager\nplugins = PluginManager()\n"
                "plugins.sync.owner = 'Dili HQ'\nplugins.sync.tables = ['org_organisation', 'gis_location',"
                " 'sync_repository']\n")
    env = load_eden(folder, "a")
    try:
        s = settings(env)
        assert s.owner == "Dili HQ" and s.admin_group == "ADMIN" and s.peer_group == "SYNC_PEER"
        assert sorted(synced_tables(env["db"], s)) == ["gis_location", "org_organisation"]  # no sync_repository
        assert "sync_interval" in env["db"].sync_instance.fields and "interval" not in env["db"].sync_instance.fields
        assert "mysql" in env["db"]._check_reserved  # where INTERVAL is a reserved word
        assert replicate.identity(env["db"], s)["owner"] == "Dili HQ"
    finally:
        env["db"].close()


def data_sections(answer):
    """The sections of a `changes` answer but its header (which names the time it was made), by table."""
    import gzip

    text = gzip.decompress(answer[0]).decode("utf-8") if answer[1] == "gz" else answer[0].decode("utf-8")
    sections = {}
    for part in text.replace("\r\n", "\n").split("\nTABLE ")[1:]:
        name, _, body = part.partition("\n")
        sections[name.strip()] = body.strip()
    return sections


def test_a_peers_poll_defines_only_the_tables_with_changes_and_answers_as_a_full_request(eden_instance):
    """A peer's `changes` runs with none of Eden's hundreds of synced tables defined (prepare ON_DEMAND, as the
    controller does for it): the engine defines those with changes in the range (and what they reference),
    and the answer is the one a request with every table defined gives."""
    from applications.eden.modules.plugin_sync import changes as changelog
    from applications.eden.modules.plugin_sync.eden import model

    a = eden_instance("a")
    db = a["db"]
    since = changelog.checkpoint(db)
    db.commit()
    org = make(a, "org_organisation", name="Polled Org")
    make(a, "org_office", name="Polled Office", organisation_id=org)
    full = replicate.changes(db, settings(a), since, fmt="gz")
    db.commit()
    assert "org_office" in data_sections(full) and "Polled Office" in data_sections(full)["org_office"]

    poll = eden.app_env(a["folder"])  # a new request: Eden's models ran, no synced table defined yet
    pdb, psettings = poll["db"], poll["plugin_sync_settings"]
    assert "org_office" not in pdb.tables and "project_project" not in pdb.tables
    assert model.prepare(pdb, psettings, tables=model.ON_DEMAND) == []
    answer = replicate.changes(pdb, psettings, since, fmt="gz")
    pdb.commit()
    assert {"org_organisation", "org_office", "org_site"} <= set(pdb.tables)  # what changed, and what it names
    assert "project_project" not in pdb.tables and "supply_item" not in pdb.tables  # what did not change
    assert answer[2] == full[2] and answer.next is None
    assert data_sections(answer) == data_sections(full)
