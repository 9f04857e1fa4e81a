"""Eden's semantics on arrival (issue 22): what B holds after the plugin's merge is what Eden's own import holds.

A's records go to B by the plugin's file and to C by Eden's own import of A's S3XML
(S3Resource.import_xml, with no one logged in, as Eden's first run imports).  Then:
a value Eden's field validators refuse is refused with table, line and column and
nothing written (Eden's import refuses the record too); a record created gets the
approved_by Eden's import gives it; a new site gets its site code, a project location
its name (Eden's onaccept); a text column holding A's local ids (a role's path) is
never copied from A; a person's courses (hrm_trainings) are remade as Eden's onaccept
keeps them; a realm after an update is what Eden's import keeps; a staff record given
a site on both sides keeps one site link (Eden's rule for the link table).
"""
import io

import pytest
from edenseed import PEOPLE_AND_PLACES, count, eden_import, make, row, s3xml

from applications.eden.modules.plugin_sync import fileio
from applications.eden.modules.plugin_sync.eden import model as plugin_eden
from applications.eden.modules.plugin_sync.errors import BadValue


def settings(env):
    return env["plugin_sync_settings"]


def syncing(env, *extra):
    """The instance's settings with these tables synced too (defined through s3db, the model attached):
    only for the instance loaded last."""
    s = plugin_eden.configure(dict(settings(env), tables=list(PEOPLE_AND_PLACES) + list(extra)), env["db"])
    assert not plugin_eden.load_tables(env["db"], s)
    return s


def a_file(a, s=None):
    data = io.BytesIO()
    fileio.export_to(a["db"], s or settings(a), data, fmt="csv", log=False)
    return data.getvalue()


def line_of(data, uuid):
    """The line of the file on which the record of this uuid stands."""
    for n, text in enumerate(data.decode("utf-8").splitlines(), 1):
        if uuid in text:
            return n
    raise AssertionError(uuid)


@pytest.mark.parametrize("backend", ["sqlite"])
def test_a_value_eden_s_validator_refuses_is_refused_where_it_stands(eden_instance, backend):
    a = eden_instance("a")
    people = [make(a, "pr_person", first_name="Ana %d" % k, last_name="Alpha", gender=2) for k in range(3)]
    db = a["db"]
    db(db.pr_person.id == people[2]).update(gender=99)  # not one of Eden's genders (its form never lets it in)
    db.commit()
    bad = db.pr_person[people[2]].uuid
    data, xml = a_file(a), s3xml(a, ["pr_person"])
    b = eden_instance("b")
    before = count(b, "pr_person"), count(b, "pr_pentity")

    with pytest.raises(BadValue) as refused:
        fileio.import_from(b["db"], settings(b), data, name="a.csv")

    error = refused.value
    assert (error.table, error.column, error.line) == ("pr_person", "gender", line_of(data, bad)), error.describe()
    assert "99" in error.message
    assert (count(b, "pr_person"), count(b, "pr_pentity")) == before  # nothing written
    # Eden's own import of the same records refuses that one too
    imported, errors = eden_import(b, xml)
    assert errors and row(b, "pr_person", uuid=bad) is None


@pytest.mark.parametrize("backend", ["sqlite"])
def test_a_latitude_out_of_range_is_refused_column_wise_with_its_line(eden_instance, backend):
    a = eden_instance("a")
    places = [make(a, "gis_location", name="Place %d" % k, lat=-8.5 - k / 100.0, lon=125.5) for k in range(40)]
    db = a["db"]
    db(db.gis_location.id == places[31]).update(lat=1000)
    db.commit()
    data = a_file(a)
    b = eden_instance("b")
    before = count(b, "gis_location")

    with pytest.raises(BadValue) as refused:
        fileio.import_from(b["db"], settings(b), data, name="a.csv")

    error = refused.value
    assert (error.table, error.column) == ("gis_location", "lat"), error.describe()
    assert error.line == line_of(data, db.gis_location[places[31]].uuid)
    assert count(b, "gis_location") == before


def test_records_arrive_approved_coded_and_named_as_eden_s_import_makes_them(eden_instance, backend):
    tables = ["gis_location", "org_organisation", "org_office", "project_project", "project_location"]
    a = eden_instance("a")
    s = syncing(a, "project_project", "project_location")
    place = make(a, "gis_location", name="Alpha Town", level="L1")
    org = make(a, "org_organisation", name="Alpha Relief", acronym="AR")
    make(a, "org_office", name="Alpha Head Office", organisation_id=org, location_id=place)
    project = make(a, "project_project", name="Wells for Alpha", organisation_id=org)
    make(a, "project_location", project_id=project, location_id=place)  # (no onaccept ran: no name)
    data, xml = a_file(a, s), s3xml(a, tables)

    b = eden_instance("b")
    fileio.import_from(b["db"], syncing(b, "project_project", "project_location"), data, name="a.csv")
    got_b = held(b, tables)
    c = eden_instance("c")
    imported, errors = eden_import(c, xml)
    assert not errors and all(imported.values()), (imported, errors)
    got_c = held(c, tables)

    # approved_by as Eden's import sets it (no record approval, no one logged in: 0), on every record created
    assert got_b["approved"] == got_c["approved"] and set(got_c["approved"].values()) == {0}
    # the office's site has a code of its own, made by Eden's rule from its name (its suffix is random)
    code_b, code_c = got_b["site code"], got_c["site code"]
    assert code_b and code_b[:6] == code_c[:6] == "ALPHHD"
    # the project location has the name Eden's onaccept gives it
    assert got_b["location name"] and got_b["location name"] == got_c["location name"]


def held(env, tables):
    """What an instance holds of A's records: approved_by by (table, uuid), the office's site code, the
    project location's name."""
    db = env["db"]
    approved = {}
    for name in tables:
        table = db[name]
        for r in db(table.name.like("%Alpha%") if "name" in table.fields and name != "project_location"
                    else table.id > 0).select(table.uuid, table.approved_by):
            approved[(name, r.uuid)] = r.approved_by
    office = row(env, "org_office", name="Alpha Head Office")
    site = db(db.org_site.site_id == office.site_id).select(db.org_site.code).first()
    location = db(db.project_location.id > 0).select(db.project_location.name).first()
    db.commit()
    return {"approved": approved, "site code": site.code, "location name": location.name}


@pytest.mark.parametrize("backend", ["sqlite"])
def test_a_role_s_path_of_local_ids_is_never_copied(eden_instance, backend):
    a = eden_instance("a")
    org = make(a, "org_organisation", name="Alpha Relief")
    for k in range(3):  # A's ids of things run ahead of B's
        make(a, "org_organisation", name="Alpha branch %d" % k)
    s = syncing(a, "pr_role")
    db, s3db = a["db"], a["s3db"]
    parent, branch = db.org_organisation[org].pe_id, db.org_organisation[org + 1].pe_id
    s3db.pr_add_affiliation(parent, branch, role="Branches")
    s3db.pr_add_affiliation(branch, parent, role="Partners")  # a role the branch owns: under its parent
    s3db.pr_rebuild_path(branch)
    db.commit()
    roles = db(db.pr_role.path != None).select()  # noqa: E711
    assert roles, "A's roles have paths of A's entities"
    data = a_file(a, s)
    assert b"pr_role.path" not in data, "the path travels"
    b = eden_instance("b")
    fileio.import_from(b["db"], syncing(b, "pr_role"), data, name="a.csv")
    for r in roles:
        here = row(b, "pr_role", uuid=r.uuid)
        assert here is not None and here.path is None  # never A's path: Eden rebuilds it from B's affiliations


def courses_of(env, person_uuid):
    """The courses (uuids) in the person's hrm_trainings rows, as one sorted list per row."""
    db = env["db"]
    person = row(env, "pr_person", uuid=person_uuid)
    out = []
    for r in db(db.hrm_trainings.person_id == person.id).select(db.hrm_trainings.course_id):
        out.append(sorted(db.hrm_course[c].uuid for c in r.course_id or ()))
    db.commit()
    return out


@pytest.mark.parametrize("backend", ["sqlite"])
def test_a_person_s_courses_are_remade_on_arrival_as_eden_makes_them(eden_instance, backend):
    import datetime

    tables = ["pr_person", "hrm_course", "hrm_training"]
    a = eden_instance("a")
    s = syncing(a, "hrm_course", "hrm_training")
    person = make(a, "pr_person", first_name="Ana", last_name="Alpha")
    first, second = (make(a, "hrm_course", name=name) for name in ("First Aid", "Logistics"))
    trainings = [make(a, "hrm_training", person_id=person, course_id=c) for c in (first, second, first)]
    db = a["db"]
    who = db.pr_person[person].uuid
    courses = sorted(db.hrm_course[c].uuid for c in (first, second))
    data, xml = a_file(a, s), s3xml(a, tables)  # (A ran no onaccept: its hrm_trainings is empty, and never sent)
    # then the Logistics training is deleted at A
    db(db.hrm_training.id == trainings[1]).update(deleted=True, modified_on=datetime.datetime.utcnow()
                                                  + datetime.timedelta(seconds=5))
    db.commit()
    later = a_file(a, s)

    c = eden_instance("c")
    imported, errors = eden_import(c, xml)
    assert not errors, errors
    assert courses_of(c, who) == [courses]  # what Eden's own import makes: one row, each course once
    b = eden_instance("b")
    sb = syncing(b, "hrm_course", "hrm_training")
    fileio.import_from(b["db"], sb, data, name="a.csv")
    assert courses_of(b, who) == [courses]
    fileio.import_from(b["db"], sb, later, name="a-later.csv")
    assert courses_of(b, who) == [[db.hrm_course[first].uuid]]  # the list follows the deletion


def realm_of(env, tablename, uuid):
    """The name of the organisation whose entity is the record's realm (None: no realm)."""
    db = env["db"]
    record = row(env, tablename, uuid=uuid)
    org = db(db.org_organisation.pe_id == record.realm_entity).select(db.org_organisation.name).first()
    db.commit()
    return org and org.name


@pytest.mark.parametrize("backend", ["sqlite"])
def test_a_realm_after_an_update_is_what_eden_s_import_keeps(eden_instance, backend):
    import datetime

    tables = ["org_organisation", "pr_person", "hrm_human_resource", "supply_catalog"]
    a = eden_instance("a")
    s = syncing(a, "supply_catalog")
    alpha, beta = (make(a, "org_organisation", name=name) for name in ("Alpha Relief", "Beta Aid"))
    person = make(a, "pr_person", first_name="Ana", last_name="Alpha")
    staff = make(a, "hrm_human_resource", person_id=person, organisation_id=alpha, type=1)
    catalogue = make(a, "supply_catalog", name="Alpha Catalogue", organisation_id=alpha)
    db = a["db"]
    uuids = {"hrm_human_resource": db.hrm_human_resource[staff].uuid, "supply_catalog": db.supply_catalog[catalogue].uuid}
    before = a_file(a, s), s3xml(a, tables)
    # both move to Beta: Eden sets a staff record's realm again on update (update_realm), a catalogue's it keeps
    later = datetime.datetime.utcnow() + datetime.timedelta(seconds=5)
    for name in uuids:
        db(db[name].uuid == uuids[name]).update(organisation_id=beta, modified_on=later)
    db.commit()
    after = a_file(a, s), s3xml(a, tables)

    c = eden_instance("c")
    for _, xml in (before, after):
        imported, errors = eden_import(c, xml)
        assert not errors, errors
    b = eden_instance("b")
    sb = syncing(b, "supply_catalog")
    for data, _ in (before, after):
        fileio.import_from(b["db"], sb, data, name="a.csv")

    assert row(c, "supply_catalog", uuid=uuids["supply_catalog"]).organisation_id == row(c, "org_organisation", name="Beta Aid").id
    assert {name: realm_of(c, name, u) for name, u in uuids.items()} == {"hrm_human_resource": "Beta Aid",
                                                                       "supply_catalog": "Alpha Relief"}
    assert {name: realm_of(b, name, u) for name, u in uuids.items()} == {"hrm_human_resource": "Beta Aid",
                                                                       "supply_catalog": "Alpha Relief"}


def site_links(env, hr_uuid):
    """The sites (names) of the staff record's site links not deleted."""
    db = env["db"]
    hr = row(env, "hrm_human_resource", uuid=hr_uuid)
    link, office = db.hrm_human_resource_site, db.org_office
    found = db((link.human_resource_id == hr.id) & (link.deleted != True) & (office.site_id == link.site_id)).select(
        office.name)
    db.commit()
    return [r.name for r in found]


@pytest.mark.parametrize("backend", ["sqlite"])
def test_a_staff_record_given_a_site_on_both_sides_keeps_one_site_link(eden_instance, backend):
    import datetime

    extra = ("hrm_human_resource", "hrm_human_resource_site")
    a = eden_instance("a")
    s = syncing(a, *extra)
    org = make(a, "org_organisation", name="Alpha Relief")
    offices = [make(a, "org_office", name=name, organisation_id=org) for name in ("North Office", "South Office")]
    person = make(a, "pr_person", first_name="Ana", last_name="Alpha")
    hr = make(a, "hrm_human_resource", person_id=person, organisation_id=org, type=1)
    db = a["db"]
    hr_uuid = db.hrm_human_resource[hr].uuid
    first = a_file(a, s)
    site = {r.id: r.site_id for r in db(db.org_office).select(db.org_office.id, db.org_office.site_id)}
    make(a, "hrm_human_resource_site", human_resource_id=hr, site_id=site[offices[0]])  # A: North, first
    from_a = a_file(a, s)

    b = eden_instance("b")
    sb = syncing(b, *extra)
    fileio.import_from(b["db"], sb, first, name="a.csv")
    bdb = b["db"]
    south = row(b, "org_office", name="South Office")
    link = make(b, "hrm_human_resource_site", human_resource_id=row(b, "hrm_human_resource", uuid=hr_uuid).id,
                site_id=south.site_id)  # B: South, later
    bdb(bdb.hrm_human_resource_site.id == link).update(
        modified_on=datetime.datetime.utcnow() + datetime.timedelta(seconds=5))
    bdb.commit()
    fileio.import_from(bdb, sb, from_a, name="a.csv")  # A's link is the same link (Eden's rule: one per record)
    assert site_links(b, hr_uuid) == ["South Office"]  # one link, the newest
    from_b = a_file(b, sb)

    fileio.import_from(db, s, from_b, name="b.csv")
    assert site_links(a, hr_uuid) == ["South Office"]


def stock_cards(env, warehouse_uuid):
    """[(item name, [(quantity in, balance, comments) of its log])] of the warehouse's stock cards."""
    db, s3db = env["db"], env["s3db"]
    site_id = row(env, "inv_warehouse", uuid=warehouse_uuid).site_id
    cards, log = s3db.inv_stock_card, s3db.inv_stock_log
    out = []
    for card in db(cards.site_id == site_id).select(cards.id, cards.item_id):
        entries = db(log.card_id == card.id).select(log.quantity_in, log.balance, log.comments, orderby=log.id)
        out.append((db.supply_item[card.item_id].name, [(e.quantity_in, e.balance, e.comments) for e in entries]))
    db.commit()
    return out


@pytest.mark.parametrize("backend", ["sqlite"])
def test_stock_cards_are_made_on_arrival_where_the_deployment_keeps_them(eden_instance, backend):
    extra = ("inv_warehouse", "supply_item", "supply_item_pack", "inv_inv_item")
    a = eden_instance("a")
    s = syncing(a, *extra)
    org = make(a, "org_organisation", name="Alpha Relief")
    store = make(a, "inv_warehouse", name="Alpha Store", organisation_id=org)
    item = make(a, "supply_item", name="Tarpaulin", um="pc")
    make(a, "supply_item_pack", item_id=item, name="pc", quantity=1)
    bale = make(a, "supply_item_pack", item_id=item, name="bale", quantity=10)
    db = a["db"]
    make(a, "inv_inv_item", site_id=db.inv_warehouse[store].site_id, item_id=item, item_pack_id=bale, quantity=7)
    warehouse = db.inv_warehouse[store].uuid
    data = a_file(a, s)

    b = eden_instance("b")  # Eden's default: no stock cards
    fileio.import_from(b["db"], syncing(b, *extra), data, name="a.csv")
    assert stock_cards(b, warehouse) == []
    c = eden_instance("c")  # a deployment with stock cards (inv.stock_cards): made as Eden's import makes them
    c["settings"].inv.stock_cards = True
    try:
        fileio.import_from(c["db"], syncing(c, *extra), data, name="a.csv")
    finally:
        c["settings"].inv.stock_cards = False
    assert stock_cards(c, warehouse) == [("Tarpaulin", [(70, 70, "Import")])]  # 7 bales of 10, Eden's "Import"
