"""Lookups every instance makes on its own, under uuids of its own (issue 22), on the minihost.

Each instance makes the type "Government" itself (as every Eden's prepopulate makes
its markers, catalogues, types...): its own uuid, its own stamps, never edited
since.  The host's model declares the name unique (here IS_NOT_IN_DB, as Eden's
org_organisation_type does): the receiver cannot hold a second "Government", so the
incoming one is its own (setting `match`, default "keys": aliases.py), its uuid
kept as an alias.  A record made here and never edited since is no local change:
the other's edit of it simply wins, no conflict (merge.made_here); a record edited
here is still a conflict.  The same on both merge paths (column-wise and row-wise).
"""
import datetime
import io

import pytest
from synchelpers import export, instances, settings

from gluon.validators import IS_NOT_IN_DB

from applications.eden.modules.plugin_sync import merge
from applications.eden.modules.plugin_sync.changes import install_triggers

T0 = datetime.datetime(2025, 3, 1, 12, 0, 0)


def lookup_instance(env, made):
    """Types sync here (no lookup list), their name is unique, and this instance made "Government" at `made`."""
    db = env["db"]
    settings(env).lookup_tables = []
    db.org_organisation_type.name.requires = IS_NOT_IN_DB(db, "org_organisation_type.name")
    install_triggers(db, ["org_organisation_type"])  # what setup() does for a synced table
    db.org_organisation_type.insert(name="Government", created_on=made, modified_on=made)
    db.commit()
    return db(db.org_organisation_type.name == "Government").select().first()


@pytest.fixture
def two(new_instance):
    a, b = instances(new_instance)
    return a, b, lookup_instance(a, T0), lookup_instance(b, T0 + datetime.timedelta(minutes=3))


def merge_into(env, data, paths):
    return merge.import_and_sync(env["db"], io.BytesIO(data), settings(env), paths=paths)


def edit_and_refer(a, a_type):
    """A edits its Government (later than B made its own) and adds an organisation of that type."""
    db = a["db"]
    db(db.org_organisation_type.id == a_type.id).update(comments="Ministries", modified_on=T0 + datetime.timedelta(hours=1))
    db.org_organisation.insert(name="Ministry of Health", organisation_type_id=a_type.id)
    db.commit()


def types(env):
    db = env["db"]
    return db(db.org_organisation_type.name == "Government").select()


@pytest.mark.parametrize("paths", ["auto", "rows"])
def test_a_lookup_made_on_both_matches_by_its_unique_key_and_the_edit_wins_without_conflict(two, paths):
    a, b, a_type, b_type = two
    edit_and_refer(a, a_type)

    report = merge_into(b, export(a), paths)  # before: a second "Government" (and then a conflict)

    db = b["db"]
    assert [(t.uuid, t.comments) for t in types(b)] == [(b_type.uuid, "Ministries")]
    assert report.totals()["conflicts"] == 0 and db(db.plugin_sync_conflict).isempty()
    assert report.tables["org_organisation_type"]["updated"] == 1
    alias = db(db.plugin_sync_alias.alias_uuid == a_type.uuid).select().first()
    assert (alias.tablename, alias.local_uuid) == ("org_organisation_type", b_type.uuid)
    org = db(db.org_organisation.name == "Ministry of Health").select().first()
    assert org.organisation_type_id == b_type.id
    # and back: B's record, now A's version, is no news to A
    back = merge_into(a, export(b), paths)
    assert back.totals()["conflicts"] == back.totals()["created"] == 0
    assert [(t.uuid, t.comments) for t in types(a)] == [(a_type.uuid, "Ministries")]


@pytest.mark.parametrize("paths", ["auto", "rows"])
def test_a_lookup_edited_on_both_is_still_a_conflict(two, paths):
    a, b, a_type, b_type = two
    edit_and_refer(a, a_type)
    db = b["db"]
    db(db.org_organisation_type.id == b_type.id).update(comments="Line ministries", modified_on=T0 + datetime.timedelta(hours=2))
    db.commit()

    report = merge_into(b, export(a), paths)

    assert report.tables["org_organisation_type"]["conflicts_kept_local"] == 1  # B's edit is newer: kept
    assert [(t.uuid, t.comments) for t in types(b)] == [(b_type.uuid, "Line ministries")]
    assert "Ministries" in db(db.plugin_sync_conflict).select().first().loser



@pytest.mark.parametrize("paths", ["auto", "rows"])
def test_the_never_edited_copy_arriving_first_is_no_conflict_either(two, paths):
    a, b, a_type, b_type = two
    edit_and_refer(a, a_type)

    report = merge_into(a, export(b), paths)  # B's copy, only made (and later than A's), into A that edited

    db = a["db"]
    assert report.totals()["conflicts"] == 0 and db(db.plugin_sync_conflict).isempty()
    assert [(t.uuid, t.comments) for t in types(a)] == [(a_type.uuid, "Ministries")]  # A's edit stays
    assert db(db.plugin_sync_alias.alias_uuid == b_type.uuid).select().first().local_uuid == a_type.uuid
    merge_into(b, export(a), paths)
    assert [(t.uuid, t.comments) for t in types(b)] == [(b_type.uuid, "Ministries")]
    assert b["db"](b["db"].plugin_sync_conflict).isempty()


def test_a_table_without_a_unique_key_matches_by_the_hosts_field_rule(new_instance):
    """A host's field rule (Eden's S3Duplicate: settings.key_rules -> aliases.FieldRule) matches what no unique
    key can: the primary fields equal (case aside), the secondary ones where the incoming record has a value
    (a reference compared as the record it names here)."""
    from applications.eden.modules.plugin_sync.aliases import FieldRule

    a, b = instances(new_instance)
    rule = FieldRule(("name",), ("level", "parent"))
    for env in (a, b):
        settings(env).key_rules = lambda t: rule if t == "gis_location" else None
    da, dbb = a["db"], b["db"]
    timor = da.gis_location.insert(name="Timor", level="L0", created_on=T0, modified_on=T0)
    da.gis_location.insert(name="Dili", level="L1", parent=timor, created_on=T0, modified_on=T0)
    da.gis_location.insert(name="Baucau", level="L1", parent=timor, created_on=T0, modified_on=T0)
    da.gis_location.insert(name="Aileu", created_on=T0, modified_on=T0)  # no level, no parent: only the name counts
    da.commit()
    later = T0 + datetime.timedelta(minutes=5)
    b_timor = dbb.gis_location.insert(name="TIMOR", level="L0", created_on=later, modified_on=later)
    b_dili = dbb.gis_location.insert(name="Dili", level="L1", parent=b_timor, created_on=later, modified_on=later)
    dbb.gis_location.insert(name="Dili", level="L2", created_on=later, modified_on=later)  # another level: another place
    b_aileu = dbb.gis_location.insert(name="Aileu", level="L2", created_on=later, modified_on=later)
    dbb.commit()
    before = dbb(dbb.gis_location).count()

    report = merge_into(b, export(a), "auto")

    assert report.totals()["conflicts"] == 0
    assert report.tables["gis_location"]["created"] == 1  # Baucau
    assert dbb(dbb.gis_location).count() == before + 1
    aliases = {r.alias_uuid: r.local_uuid for r in dbb(dbb.plugin_sync_alias).select()}
    a_uuid = {r.name: r.uuid for r in da(da.gis_location.name != None).select()}  # noqa: E711
    assert aliases[a_uuid["Timor"]] == dbb.gis_location(b_timor).uuid
    assert aliases[a_uuid["Dili"]] == dbb.gis_location(b_dili).uuid  # not the other level's Dili
    assert aliases[a_uuid["Aileu"]] == dbb.gis_location(b_aileu).uuid
    baucau = dbb(dbb.gis_location.name == "Baucau").select().first()
    assert baucau.parent == b_timor  # A's Timor is B's TIMOR: what refers to it, refers to B's
