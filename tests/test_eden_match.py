"""match = "eden" on real Eden: every table's own deduplicate rule is asked as Eden's importer asks it.

A peer's organisation under its own uuid, named as one of B's: Eden's rule for
organisations (org_OrganisationDuplicate, by name, reading the import job's other
items for a parent branch) matches it, and B keeps one record with the peer's uuid
as its alias: from a file, and pushed by the peer to B's Eden server.  A rule that
needs what only Eden's XML import has (the XML element) cannot be used: the import
stops with a message naming the table, the line and the rule, nothing written.
"""
import io
import os

import pytest
from edenseed import count, make, peer_login, row

from applications.eden.modules.plugin_sync.eden import model as plugin_eden
from applications.eden.modules.plugin_sync import fileio, replicate
from applications.eden.modules.plugin_sync.errors import SyncError


def settings(env):
    return env["plugin_sync_settings"]


def a_file(a):
    data = io.BytesIO()
    fileio.export_to(a["db"], settings(a), data, fmt="csv")
    return data.getvalue()


def matching(env):
    """What plugins.sync.match = "eden" in the instance's 000_config.py gives (configure adds Eden's matcher)."""
    env["plugin_sync_settings"] = plugin_eden.configure(dict(settings(env), match="eden"), env["db"])


@pytest.fixture
def two(eden_instance):
    a = eden_instance("a")
    a_org = make(a, "org_organisation", name="Cruz Vermelha Dili", acronym="CVD")
    make(a, "org_office", name="Dili Office", organisation_id=a_org)
    b = eden_instance("b")
    make(b, "org_organisation", name="Cruz Vermelha Dili")  # the same organisation, B's own uuid
    make(b, "org_office", name="Baucau Office", organisation_id=row(b, "org_organisation",
                                                                   name="Cruz Vermelha Dili").id)
    matching(b)
    return a, b


def test_an_organisation_matches_by_eden_s_rule_and_its_uuid_becomes_an_alias(two):
    a, b = two
    a_uuid = row(a, "org_organisation", name="Cruz Vermelha Dili").uuid
    b_uuid = row(b, "org_organisation", name="Cruz Vermelha Dili").uuid

    report = fileio.import_from(b["db"], settings(b), a_file(a), name="a.csv")

    assert report.tables["org_organisation"]["created"] == 0, report.as_dict()
    assert count(b, "org_organisation", name="Cruz Vermelha Dili") == 1
    alias = row(b, "plugin_sync_alias", alias_uuid=a_uuid)
    assert alias is not None and alias.tablename == "org_organisation" and alias.local_uuid == b_uuid
    # A's office hangs off B's organisation (A's reference to it resolved through the alias)
    assert row(b, "org_office", name="Dili Office").organisation_id == row(b, "org_organisation", uuid=b_uuid).id


def test_a_peer_pushes_an_organisation_that_eden_s_rule_matches(two, eden_server):
    a, b = two
    a_uuid = row(a, "org_organisation", name="Cruz Vermelha Dili").uuid
    b_uuid = row(b, "org_organisation", name="Cruz Vermelha Dili").uuid
    # B's administrator matches records by Eden's rules, in a model of its own (the launcher rewrites 000_config)
    with open(os.path.join(b["folder"], "applications", "eden", "models", "0_plugins.py"), "w") as f:
        f.write("from gluon.tools import PluginManager\nplugins = PluginManager()\nplugins.sync.match = \"eden\"\n")
    server_b = eden_server("b", env=b)
    peer = replicate.register_peer(a["db"], settings(a), server_b.url, *peer_login(b, speaks_for=a))

    results = replicate.sync(a["db"], settings(a), peer.id, mode="push")  # before: HTTP 500 (AttributeError)

    assert results["push"].totals()["created"] >= 1, results["push"].as_dict()  # A's office
    assert count(b, "org_organisation", name="Cruz Vermelha Dili") == 1
    alias = row(b, "plugin_sync_alias", alias_uuid=a_uuid)
    assert alias is not None and alias.local_uuid == b_uuid
    assert row(b, "org_office", name="Dili Office").organisation_id == row(b, "org_organisation", uuid=b_uuid).id


def test_a_rule_that_needs_eden_s_xml_element_is_refused_by_table_and_line(two):
    a, b = two
    # a template's own rule for offices, reading the S3XML element a sync does not have
    b["s3db"].configure("org_office", deduplicate=lambda item: item.element.get("name"))
    before = count(b, "org_office"), count(b, "org_organisation"), count(b, "plugin_sync_alias")

    with pytest.raises(SyncError) as failed:
        fileio.import_from(b["db"], settings(b), a_file(a), name="a.csv")

    error = failed.value
    assert error.table == "org_office" and error.line is not None
    assert "deduplicate" in error.message and 'match = "eden"' in error.message
    assert (count(b, "org_office"), count(b, "org_organisation"), count(b, "plugin_sync_alias")) == before
