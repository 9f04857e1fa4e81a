"""The synced set follows the deployment (issue 22): by default every table of Eden's enabled modules that holds
data people enter, read from Eden's own model, not from a hand list.

On A, through Eden's own model (s3db, update_super, Eden's affiliation function as the branch link's onaccept
calls it): a warehouse with a stock item of a supply item, a request for it, a project, a shelter, a facility
with its type, a branch of an organisation, a country's ISO2 tag.  A's file, with no setting, carries each of
them, and none of the derived tables (affiliations, roles), the super-entities or the never-listed ones; B,
a second instance, holds them after the import, and the branch's affiliation that Eden's onaccept made on A
is made on B too (B's own entities, not A's row).  The dashboard (index.json's `modules`, as the controller
makes them) groups the tables by Eden's modules under Eden's names, says which sync, and why each other one
does not.
"""
import io
import json

from edenseed import country, make, row
from gluon.storage import Storage

from applications.eden.modules.plugin_sync import fileio, overview
from applications.eden.modules.plugin_sync.eden import model as plugin_eden
from applications.eden.modules.plugin_sync.peers import this_instance

# (table, Eden module's name in the default template) of what A enters: each must travel by default
ENTERED = (("inv_warehouse", "Warehouses"), ("inv_inv_item", "Warehouses"), ("inv_req", "Warehouses"),
           ("inv_req_item", "Warehouses"), ("supply_item", "Supply Chain Management"),
           ("project_project", "Projects"), ("cr_shelter", "Shelters"), ("org_site_facility_type", "Organizations"),
           ("org_organisation_branch", "Organizations"), ("gis_location_tag", "Map"))
STAY_HOME = ("pr_affiliation", "pr_role", "pr_pentity", "org_site", "auth_user", "pr_person_user")


def seed_deployment(env):
    """A's records in the modules beyond organisations and people, made as Eden makes them."""
    db, s3db = env["db"], env["s3db"]
    org = make(env, "org_organisation", name="Depot Relief", acronym="DR")
    branch = make(env, "org_organisation", name="Depot Relief North")
    link = make(env, "org_organisation_branch", organisation_id=org, branch_id=branch)
    s3db.org_update_affiliations("org_organisation_branch", db.org_organisation_branch[link])  # its onaccept
    place = make(env, "gis_location", name="Depot Town", level="L1", parent=country(env))
    make(env, "gis_location_tag", location_id=country(env), tag="ISO2", value="XA")
    store = make(env, "inv_warehouse", name="Depot Store", organisation_id=org, location_id=place)
    site = db.inv_warehouse[store].site_id
    item = make(env, "supply_item", name="Depot tarpaulin", um="pc")
    pack = make(env, "supply_item_pack", item_id=item, name="bale", quantity=10)
    make(env, "inv_inv_item", site_id=site, item_id=item, item_pack_id=pack, quantity=7)
    req = make(env, "inv_req", site_id=site, comments="Depot request")
    make(env, "inv_req_item", req_id=req, item_id=item, item_pack_id=pack, quantity=3)
    make(env, "project_project", name="Depot Project", organisation_id=org)
    make(env, "cr_shelter", name="Depot Shelter", organisation_id=org, location_id=place)
    kind = make(env, "org_facility_type", name="Depot kind")
    facility = make(env, "org_facility", name="Depot Point", organisation_id=org, location_id=place)
    make(env, "org_site_facility_type", site_id=db.org_facility[facility].site_id, facility_type_id=kind)
    db.commit()
    return org, branch


def branch_affiliations(env, org_uuid, branch_uuid):
    """The pr_affiliation rows that make the branch an OU of the organisation's "Branches" role, here."""
    db = env["db"]
    org, branch = row(env, "org_organisation", uuid=org_uuid), row(env, "org_organisation", uuid=branch_uuid)
    rt, at = db.pr_role, db.pr_affiliation
    return db((rt.pe_id == org.pe_id) & (rt.role == "Branches") & (rt.deleted == False) & (at.role_id == rt.id)  # noqa: E712
              & (at.pe_id == branch.pe_id) & (at.deleted == False)).select(at.uuid)  # noqa: E712


def test_default_set_carries_every_module_and_keeps_derived_rows_home(eden_instance):
    a = eden_instance("a")
    org, branch = seed_deployment(a)
    org_uuid, branch_uuid = (a["db"].org_organisation[i].uuid for i in (org, branch))
    made_on_a = branch_affiliations(a, org_uuid, branch_uuid)
    assert len(made_on_a) == 1  # Eden made it on A
    entered = {t: [r.uuid for r in a["db"](a["db"][t].deleted == False).select(a["db"][t].uuid)]  # noqa: E712
               for t, _ in ENTERED}
    data = io.BytesIO()
    fileio.export_to(a["db"], a["plugin_sync_settings"], data, fmt="csv")
    text = data.getvalue().decode("utf-8")
    carried = {line[6:].strip() for line in text.splitlines() if line.startswith("TABLE ")}
    assert {t for t, _ in ENTERED} <= carried, sorted({t for t, _ in ENTERED} - carried)
    assert not carried & set(STAY_HOME), sorted(carried & set(STAY_HOME))
    assert made_on_a[0].uuid not in text  # A's derived row does not travel

    b = eden_instance("b")
    fileio.import_from(b["db"], b["plugin_sync_settings"], data.getvalue(), name="a.csv")
    for t, uuids in entered.items():
        assert uuids and all(row(b, t, uuid=u) is not None for u in uuids), t
    stock = row(b, "inv_inv_item", uuid=entered["inv_inv_item"][0])
    assert row(b, "org_site", site_id=stock.site_id).uuid == entered["inv_warehouse"][0] and stock.quantity == 7
    # the branch's affiliation is B's own, made on arrival as Eden's onaccept makes it, not A's copy
    made_on_b = branch_affiliations(b, org_uuid, branch_uuid)
    assert len(made_on_b) == 1 and made_on_b[0].uuid != made_on_a[0].uuid

    # the dashboard (index.json's modules, as the controller makes them): tables under Eden's modules, what
    # syncs, why the rest does not
    db, settings = b["db"], b["plugin_sync_settings"]
    counts = overview.synced_counts(db, settings)
    body = json.loads(json.dumps(overview.as_json(this_instance(db), counts, [], [], Storage(), 0, overview.by_module(
        db, settings, plugin_eden.module_names(db), counts)), default=str))
    modules = {m["name"]: m["tables"] for m in body["modules"]}
    for t, name in ENTERED:
        assert modules[name][t]["syncs"] is True and modules[name][t]["rows"] >= 1, (t, name)
    for t, kind in (("pr_affiliation", "derived"), ("pr_role", "derived"), ("pr_pentity", "never"),
                    ("inv_stock_log", "derived"), ("gis_marker", "site-specific")):
        where = [m for m in modules.values() if t in m]
        assert len(where) == 1 and where[0][t]["syncs"] is False and where[0][t]["kind"] == kind, (t, where)
        assert where[0][t]["reason"]
    assert modules["Person Registry"]["pr_affiliation"]["rows"] >= 1
    assert json.dumps(body["modules"]).count('"syncs": true') == len(body["tables"])
