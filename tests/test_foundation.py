"""The host app, the plugin's model, the identity, the uuid indexes and the table policy."""
import urllib.request

import pytest

from applications.eden.modules.plugin_sync import setup
from applications.eden.modules.plugin_sync.errors import TableNotSynced
from applications.eden.modules.plugin_sync.peers import this_instance
from applications.eden.modules.plugin_sync.schema import ensure_uuid_indexes, uuid_index_name
from applications.eden.modules.plugin_sync.tables import conflict_policy, synced_tables

EXPECTED_SYNCED = {
    "org_organisation", "gis_location", "org_office", "pr_person", "hrm_human_resource",
    "hms_hospital", "event_incident", "doc_document", "pr_contact",
}


def test_host_schema_has_sahana_meta_fields(instance):
    db = instance["db"]
    for t in EXPECTED_SYNCED | {"org_organisation_type", "s3_setting", "gis_config"}:
        for f in ("uuid", "mci", "deleted", "deleted_fk", "deleted_rb", "created_on", "modified_on",
                  "created_by", "modified_by"):
            assert f in db[t].fields, (t, f)
    assert db.gis_location.parent.type == "reference gis_location"
    assert db.event_incident.organisation_ids.type == "list:reference org_organisation"
    assert db.doc_document.file.type == "upload"


def test_new_record_gets_urn_uuid_and_modified_on_moves(instance):
    db = instance["db"]
    oid = db.org_organisation.insert(name="Timor-Leste Red Cross")
    row = db.org_organisation(oid)
    assert row.uuid.startswith("urn:uuid:") and len(row.uuid) == 45
    assert row.deleted is False and row.modified_on is not None
    db(db.org_organisation.id == oid).update(modified_on=row.modified_on.replace(year=2000))
    db(db.org_organisation.id == oid).update(name="CVTL")
    assert db.org_organisation(oid).modified_on.year > 2000


def test_sync_instance_is_the_blueprints_peer_table(instance):
    db = instance["db"]
    for f in ("base_uuid", "owner", "contact", "url", "last_update", "sync_count"):
        assert f in db.sync_instance.fields
    db.sync_instance.insert(base_uuid="abcd", owner="HQ")
    with pytest.raises(Exception):
        db.sync_instance.insert(base_uuid="abcd", owner="duplicate")
    db.rollback()


def test_identity_is_generated_once_and_kept(new_instance):
    a, b = new_instance("a"), new_instance("b")
    ida = this_instance(a["db"]).base_uuid
    assert len(ida) == 36
    assert this_instance(a["db"]).base_uuid == ida
    assert a["db"](a["db"].plugin_sync_identity).count() == 1
    assert this_instance(b["db"]).base_uuid != ida


def test_uuid_indexes_exist_and_are_used(instance, backend):
    db = instance["db"]
    setup(db, instance["plugin_sync_settings"])  # idempotent: a second call is harmless
    for t in EXPECTED_SYNCED:
        db[t].insert(**_minimal(db, t))
    if backend == "sqlite":
        names = {r[0] for r in db.executesql("SELECT name FROM sqlite_master WHERE type='index'")}
        plan = db.executesql("EXPLAIN QUERY PLAN SELECT id FROM pr_person WHERE uuid = 'x'")
        text = " ".join(str(r) for r in plan)
    else:
        names = {r[0] for r in db.executesql("SELECT indexname FROM pg_indexes")}
        db.executesql("SET enable_seqscan = off")
        plan = db.executesql("EXPLAIN SELECT id FROM pr_person WHERE uuid = 'x'")
        text = " ".join(str(r) for r in plan)
    tables = sorted(EXPECTED_SYNCED)
    for t, name in zip(tables, ensure_uuid_indexes(db, tables)):
        assert name in names
        # the host's uuid is UNIQUE (Sahana's meta fields): its index serves, no second index of ours
        assert name != uuid_index_name(t) and uuid_index_name(t) not in names
    print(text)
    assert "index" in text.lower() and "uuid" in text.lower(), text


def _index_names(db, backend):
    if backend == "sqlite":
        return {r[0] for r in db.executesql("SELECT name FROM sqlite_master WHERE type='index'")}
    return {r[0] for r in db.executesql("SELECT indexname FROM pg_indexes")}


def test_uuid_index_only_where_no_unique_one(instance, backend):
    """A redundant index of an older version goes; a table whose uuid is not unique gets ours."""
    db = instance["db"]
    db.executesql("CREATE INDEX IF NOT EXISTS %s ON pr_person (uuid)" % uuid_index_name("pr_person"))
    assert uuid_index_name("pr_person") in _index_names(db, backend)
    names = ensure_uuid_indexes(db, ["pr_person", "auth_user"])  # auth_user.uuid: not unique
    present = _index_names(db, backend)
    assert uuid_index_name("pr_person") not in present and names[0] in present
    assert names[1] == uuid_index_name("auth_user") and names[1] in present
    assert ensure_uuid_indexes(db, ["pr_person", "auth_user"]) == names  # idempotent
    db.rollback()


def _minimal(db, t):
    if t == "pr_person":
        return dict(first_name="x")
    if t == "hrm_human_resource":
        return dict(person_id=db.pr_person.insert(first_name="y"))
    if t == "pr_contact":
        return dict(value="x")
    return dict(name="x")


def test_table_policy_default(instance):
    db, settings = instance["db"], instance["plugin_sync_settings"]
    tables = synced_tables(db, settings)
    assert set(tables) == EXPECTED_SYNCED
    # parents before children
    assert tables.index("org_organisation") < tables.index("hms_hospital")
    assert tables.index("pr_person") < tables.index("hrm_human_resource")
    for never in ("auth_user", "auth_group", "s3_setting", "gis_config", "org_organisation_type",
                  "sync_instance", "plugin_sync_log"):
        assert never not in tables


def test_table_policy_refuses_never_synced_tables_by_name(instance):
    db, settings = instance["db"], instance["plugin_sync_settings"]
    with pytest.raises(TableNotSynced) as e:
        synced_tables(db, settings, only=["pr_person", "auth_user"])
    assert "auth_user" in str(e.value) and "never synced" in str(e.value)
    assert synced_tables(db, settings, only=["pr_person"]) == ["pr_person"]


def test_table_policy_overridable_by_settings(instance):
    db, settings = instance["db"], instance["plugin_sync_settings"]
    old = dict(settings)
    try:
        settings.exclude = ["doc_document"]
        settings.lookup_tables = []
        assert "org_organisation_type" in synced_tables(db, settings)
        assert "doc_document" not in synced_tables(db, settings)
        settings.tables = ["pr_person", "auth_user", "gis_config"]
        assert synced_tables(db, settings) == ["pr_person"]  # auth and site tables stay out
        settings.policy = {"gis_location": "master"}
        assert conflict_policy(settings, "gis_location") == "master"
        assert conflict_policy(settings, "pr_person") == "newer"
    finally:
        settings.update(old)


def test_http_smoke(start_server):
    server = start_server("smoke")
    page = urllib.request.urlopen(server.url + "/default/index", timeout=30).read().decode()
    assert "org_organisation" in page


def test_every_unsynced_table_has_a_reason(instance):
    from applications.eden.modules.plugin_sync.tables import exclusion

    db, settings = instance["db"], instance["plugin_sync_settings"]
    assert exclusion(db, settings, "pr_person") is None
    assert exclusion(db, settings, "auth_user")[0] == "never"
    assert exclusion(db, settings, "sync_instance")[0] == "never"
    assert exclusion(db, settings, "org_organisation_type")[0] == "lookup list"
    # secrets and site configuration: never, whatever the settings say (tables.NEVER_*)
    assert exclusion(db, settings, "gis_config") == ("never", "this site's map configuration and API keys")
    assert exclusion(db, settings, "s3_setting")[0] == "never"
    synced = set(synced_tables(db, settings))
    assert all(exclusion(db, settings, t) for t in db.tables if t not in synced)
