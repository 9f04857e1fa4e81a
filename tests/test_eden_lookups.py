"""Lookups that every Eden prepopulates, under uuids of its own, meet in a first sync (issue 22).

Two fresh instances, each prepopulated with the default template's data through
Eden's own importer (default/base and default/users in the prepared database, the
template's own tasks.cfg on top: markers, the "Default" supply catalogue with its
items, organisation and office types, sectors, project statuses, skills...).  An
independent first run gives every such record a uuid of the instance's own; the
prepared database is copied, so B's copies of what it made (the markers, the
"Default" catalogue) get new uuids here, as B's own first run would have given them.

A then edits some of the prepopulated records and adds records that refer to them.
B's file into A first: no conflict, A's edits stay.  A's first sync into B: no UNIQUE error (the names are unique: Eden's model and
database say so), no conflict (B never touched its copies: nothing of B's to lose),
one record per name with A's edits, A's uuids kept as aliases, and A's records
referring to the lookups refer to B's (catalogue items keep their catalogue); the
catalogue's items, which have no unique key, meet by Eden's own rules (one each).

Cheap by default (SQLite; the template without StandardItems.csv, whose 278 items take 7 s per
instance); EDEN_LOOKUPS_FULL=1 runs the whole template on SQLite and PostgreSQL.
"""
import datetime
import io
import os
import uuid

import pytest

from edenseed import PEOPLE_AND_PLACES, later, make, prepopulate_template, row

from applications.eden.modules.plugin_sync import fileio
from applications.eden.modules.plugin_sync.changes import install_triggers
from applications.eden.modules.plugin_sync.eden import model as plugin_eden
from applications.eden.modules.plugin_sync.schema import ensure_uuid_indexes

LOOKUPS = ("gis_marker", "supply_catalog", "supply_item_category", "supply_item", "supply_item_pack",
           "supply_catalog_item", "org_sector", "project_status", "project_theme", "project_hazard",
           "project_activity_type", "project_beneficiary_type", "hrm_skill_type", "hrm_skill",
           "hrm_competency_rating", "hrm_certificate", "supply_person_item_status")
TABLES = list(PEOPLE_AND_PLACES) + list(LOOKUPS)
FULL = bool(os.environ.get("EDEN_LOOKUPS_FULL"))


def fresh(eden_instance, name):
    """A prepopulated instance syncing the template's lookups too (what plugins.sync.tables = [...] gives)."""
    env = eden_instance(name)
    prepopulate_template(env, leave_out=() if FULL else ("StandardItems.csv",))
    db = env["db"]
    env["plugin_sync_settings"] = settings = plugin_eden.configure(dict(env["plugin_sync_settings"], tables=TABLES), db)
    plugin_eden.load_tables(db, settings)
    names = [t for t in TABLES if t in db.tables]
    ensure_uuid_indexes(db, names)  # what setup() does for the synced tables
    install_triggers(db, names)
    db.commit()
    return env


def own_first_run(env, other, tables):
    """B's copies of what the prepared database made (shared with A by the copy: the markers, the "Default"
    catalogue) as B's own first run would have made them: under uuids of B's own, made (and never edited) now."""
    db, made = env["db"], datetime.datetime.utcnow().replace(microsecond=0)
    for name in tables:
        table = db[name]
        theirs = {r.uuid for r in other["db"](other["db"][name]).select(other["db"][name].uuid)}
        for r in db(table.uuid.belongs(theirs)).select(table.id):
            db(table.id == r.id).update(uuid=uuid.uuid4().urn, created_on=made, modified_on=made)
    db.commit()


def sync_file(source, target):
    from gluon import current

    data = io.BytesIO()
    fileio.export_to(source["db"], source["plugin_sync_settings"], data, fmt="gz")
    # Eden's deduplicate rules read current.db: the receiver's, as in its own request
    current.db, current.s3db = target["db"], target["s3db"]
    return fileio.import_from(target["db"], target["plugin_sync_settings"], data.getvalue(),
                              name="%s.csv.gz" % source["name"])


def conflicts(report):
    return {t: c for t, c in report.tables.items() if c["conflicts_kept_local"] + c["conflicts_took_incoming"]}


@pytest.mark.parametrize("backend", ["sqlite", "postgres"] if FULL else ["sqlite"])
def test_first_sync_of_two_prepopulated_instances_matches_lookups_without_conflicts(eden_instance):
    a = fresh(eden_instance, "a")
    b = fresh(eden_instance, "b")
    own_first_run(b, a, LOOKUPS)
    a_marker, a_catalog = row(a, "gis_marker", name="marker_red"), row(a, "supply_catalog", name="Default")
    b_marker, b_catalog = row(b, "gis_marker", name="marker_red"), row(b, "supply_catalog", name="Default")
    assert a_marker.uuid != b_marker.uuid and a_catalog.uuid != b_catalog.uuid
    assert b_catalog.created_on == b_catalog.modified_on  # B never touched its copy
    items = b["db"](b["db"].supply_catalog_item.catalog_id == b_catalog.id).count()
    assert items == 10  # the template's DefaultItems.csv
    if FULL:  # and StandardItems.csv, in a catalogue of its own
        standard = row(b, "supply_catalog", name="Standard")
        assert b["db"](b["db"].supply_catalog_item.catalog_id == standard.id).count() > 200

    # A edits prepopulated records (later than its prepopulate) and adds records that refer to lookups
    db = a["db"]
    when = later(2)
    db(db.gis_marker.id == a_marker.id).update(height=40, modified_on=when)
    db(db.supply_catalog.id == a_catalog.id).update(comments="A's catalogue, checked", modified_on=when)
    db(db.org_organisation_type.name == "Government").update(comments="Ministries", modified_on=when)
    db.commit()
    from gluon import current
    current.db, current.s3db = a["db"], a["s3db"]  # make() works on the instance loaded last
    item = make(a, "supply_item", name="Water filter", um="piece")
    make(a, "supply_catalog_item", catalog_id=a_catalog.id, item_id=item, comments="A's new item")
    org = make(a, "org_organisation", name="Lookup Relief")
    government = row(a, "org_organisation_type", name="Government").id
    make(a, "org_organisation_organisation_type", organisation_id=org, organisation_type_id=government)
    current.db, current.s3db = b["db"], b["s3db"]

    # B's never-edited copies reaching A first are no conflict either: A's edits stay
    first = sync_file(b, a)
    assert first.totals()["conflicts"] == 0, conflicts(first)
    assert row(a, "gis_marker", name="marker_red").height == 40
    assert row(a, "supply_catalog", name="Default").comments == "A's catalogue, checked"

    # before: "UNIQUE constraint failed: org_organisation_type.name" (then gis_marker.name, supply_catalog.name);
    # with the names matched but B's untouched copies taken for local edits: 3 conflicts
    report = sync_file(a, b)

    totals = report.totals()
    assert totals["conflicts"] == 0, conflicts(report)
    assert totals["refs_nulled"] == 0, report.as_dict()["warnings"][:5]
    assert row(b, "plugin_sync_conflict") is None
    # one record per unique name, B's own uuid, A's edits taken (B had never edited its copy)
    marker = b["db"](b["db"].gis_marker.name == "marker_red").select()
    assert len(marker) == 1 and marker[0].uuid == b_marker.uuid and marker[0].height == 40
    catalog = b["db"](b["db"].supply_catalog.name == "Default").select()
    assert len(catalog) == 1 and catalog[0].uuid == b_catalog.uuid and catalog[0].comments == "A's catalogue, checked"
    assert row(b, "org_organisation_type", name="Government").comments == "Ministries"
    # A's uuids are aliases of B's records
    for name, theirs, ours in (("gis_marker", a_marker, b_marker), ("supply_catalog", a_catalog, b_catalog)):
        alias = row(b, "plugin_sync_alias", alias_uuid=theirs.uuid)
        assert alias is not None and (alias.tablename, alias.local_uuid) == (name, ours.uuid)
    assert report.tables["org_organisation_type"]["created"] == 0
    # references to the lookups kept: A's catalogue items (the template's and the new one) are in B's catalogue
    new_item = row(b, "supply_catalog_item", comments="A's new item")
    assert new_item.catalog_id == b_catalog.id
    # the template's items, B's under uuids of its own, matched by Eden's rules (the item's function, the catalogue
    # item's S3Duplicate): one record each, not two; A's new item is new
    assert b["db"](b["db"].supply_catalog_item.catalog_id == b_catalog.id).count() == items + 1
    for name in ("supply_item", "supply_catalog_item"):
        assert report.tables[name]["created"] == 1, report.tables[name]
    a_items = {(r.name, r.code): r.uuid for r in a["db"](a["db"].supply_item).select()}
    b_items = {(r.name, r.code): r.uuid for r in b["db"](b["db"].supply_item).select()}
    a["db"].commit()
    shared = sorted(set(a_items) & set(b_items) - {("Water filter", None)})
    assert len(shared) >= 10 and all(a_items[n] != b_items[n] for n in shared)
    assert all(row(b, "plugin_sync_alias", alias_uuid=a_items[n]).local_uuid == b_items[n] for n in shared)
    assert b["db"](b["db"].supply_catalog_item.catalog_id == None).count() == 0  # noqa: E711
    link = row(b, "org_organisation_organisation_type", organisation_id=row(b, "org_organisation",
                                                                             name="Lookup Relief").id)
    assert link.organisation_type_id == row(b, "org_organisation_type", name="Government").id

    # and back: B's copies (now A's versions) are no news to A, A's edits stay
    back = sync_file(b, a)
    assert back.totals()["conflicts"] == 0, conflicts(back)
    assert row(a, "gis_marker", name="marker_red").height == 40
    assert row(a, "plugin_sync_alias", alias_uuid=b_marker.uuid).local_uuid == a_marker.uuid
