"""Eden's data model survives a sync (issue 12): super-entities, realms, owners, users, location paths.

Instance A holds an organisation with an office, a facility and a hospital (sites), a person
with contact and address (hanging off the person's entity) and a staff record at the office,
and a chain of locations under a country; owners and writers are A's accounts and roles.
B, whose own records came first (so that every local id differs from A's), takes A's file,
later A's edit over HTTP (merged inside B's Eden server), under Eden's realm-based security
policy 6.  On B then: every synced office, facility and hospital is a site, every
organisation, person and site a person entity, linked both ways under the same uuid;
contacts and addresses hang off B's entity of the person; the staff record's site is B's
office; realms are what Eden's own rule computes on B (never one of A's ids); writers map by
email (or NULL, said once per table), owners are B's own (none for a file no account imported);
each location's path is its chain of B's ids; and Eden's own pages for these records answer 200 to B's administrator.
"""
import http.cookiejar
import io
import json
import os
import re
import urllib.error
import urllib.request

from conftest import add_eden_user
from edenseed import country, eden_login, later, make, peer_login, row

from applications.eden.modules.plugin_sync import fileio, replicate

PAGES = (("org_organisation", "org/organisation"), ("org_office", "org/office"), ("org_facility", "org/facility"),
         ("med_hospital", "med/hospital"), ("pr_person", "pr/person"), ("hrm_human_resource", "hrm/staff"),
         ("gis_location", "gis/location"))
SITES = ("org_office", "org_facility", "med_hospital")
ENTITIES = ("org_organisation", "pr_person", "org_office", "org_facility", "med_hospital")


def settings(env):
    return env["plugin_sync_settings"]


def role(env, uid, name):
    """A role of Eden's, by uid (Eden's auth.s3_create_role): its local id."""
    found = env["db"](env["db"].auth_group.uuid == uid).select().first()
    return found.id if found else env["auth"].s3_create_role(name, uid=uid)


def seed_a(a):
    """A's records, made the Eden way (update_super), and A's owners and writers on them."""
    db = a["db"]
    clerk = add_eden_user(a, "clerk@example.org", "Clerk-pass-1")
    stranger = add_eden_user(a, "only-at-a@example.org", "Only-pass-1")
    team, own = role(a, "FIELD_TEAM", "Field Team"), role(a, "ALPHA_ONLY", "Alpha only")
    l0 = country(a)
    l1 = make(a, "gis_location", name="Alpha Province", level="L1", parent=l0)
    l2 = make(a, "gis_location", name="Alpha District", level="L2", parent=l1)
    l3 = make(a, "gis_location", name="Alpha Village", level="L3", parent=l2)
    org = make(a, "org_organisation", name="Alpha Relief", acronym="AR")
    office = make(a, "org_office", name="Alpha HQ", organisation_id=org, location_id=l2)
    make(a, "org_facility", name="Alpha Depot", organisation_id=org, location_id=l3)
    make(a, "med_hospital", name="Alpha Hospital", organisation_id=org, location_id=l2)
    person = make(a, "pr_person", first_name="Ana", last_name="Alpha")
    pe_id = db.pr_person[person].pe_id
    make(a, "pr_contact", pe_id=pe_id, contact_method="EMAIL", value="ana@alpha.example.org")
    make(a, "pr_address", pe_id=pe_id, type=1, location_id=l3)
    make(a, "hrm_human_resource", person_id=person, organisation_id=org, type=1,
         site_id=db.org_office[office].site_id)
    db(db.org_organisation.id == org).update(owned_by_group=team, created_by=clerk)
    db(db.org_office.id == office).update(owned_by_group=own, owned_by_user=stranger)
    db(db.pr_person.id == person).update(created_by=clerk, modified_by=stranger)
    db.commit()


def seed_b(b):
    """B's own records first: its ids for the same kinds of things are all different from A's."""
    add_eden_user(b, "someone@example.org", "Someone-pass-1")
    add_eden_user(b, "clerk@example.org", "Clerk-pass-1")
    role(b, "B_FIRST", "B first")
    role(b, "FIELD_TEAM", "Field Team")
    # Eden's person form lists nationalities: its countries with an ISO2 code (none: the form fails)
    make(b, "gis_location_tag", location_id=country(b), tag="ISO2", value="AT")
    place = make(b, "gis_location", name="Beta Town", level="L1", parent=country(b))
    for k in range(3):
        make(b, "gis_location", name="Beta hamlet %d" % k, level="L2", parent=place)
    org = make(b, "org_organisation", name="Beta Relief")
    make(b, "org_office", name="Beta HQ", organisation_id=org, location_id=place)
    make(b, "org_facility", name="Beta Depot", organisation_id=org)
    person = make(b, "pr_person", first_name="Ben", last_name="Beta")
    make(b, "pr_contact", pe_id=b["db"].pr_person[person].pe_id, contact_method="EMAIL", value="ben@b.example.org")


def on_b(b, tablename, **where):
    return row(b, tablename, **where)


def super_of(b, tablename, record, key="pe_id", supertable="pr_pentity"):
    """The super record `record` points at: it must be there, of this instance type, with the record's uuid."""
    found = on_b(b, supertable, **{key: record[key]}) if record[key] else None
    assert found is not None, "%s %s has no %s" % (tablename, record.uuid, supertable)
    assert found.uuid == record.uuid and found.instance_type == tablename
    return found


def check_model(a, b):
    """Every synced record on B is whole in Eden's terms (see the module docstring)."""
    db, auth = b["db"], b["auth"]
    org = on_b(b, "org_organisation", name="Alpha Relief")
    for tablename in ENTITIES:
        for uuid in uuids_of(a, tablename):
            super_of(b, tablename, on_b(b, tablename, uuid=uuid))
    for tablename in SITES:
        for uuid in uuids_of(a, tablename):
            record = on_b(b, tablename, uuid=uuid)
            site = super_of(b, tablename, record, "site_id", "org_site")
            assert site.name == record.name and site.organisation_id == org.id
            assert site.realm_entity == record.realm_entity  # update_super's shared fields
    person = on_b(b, "pr_person", first_name="Ana")
    assert on_b(b, "pr_contact", value="ana@alpha.example.org").pe_id == person.pe_id
    assert on_b(b, "pr_address", location_id=on_b(b, "gis_location", name="Alpha Village").id).pe_id == person.pe_id
    hr = on_b(b, "hrm_human_resource", person_id=person.id)
    assert hr.site_id == on_b(b, "org_office", name="Alpha HQ").site_id
    # affiliations (Eden's own functions): each site and the staff member under the organisation
    for tablename in SITES:
        for uuid in uuids_of(a, tablename):
            assert org.pe_id in affiliations(b, on_b(b, tablename, uuid=uuid).pe_id), tablename
    assert org.pe_id in affiliations(b, person.pe_id)
    # realms: what Eden's own rule gives on B, and never a pe_id of an unrelated record
    for tablename in ENTITIES + ("pr_contact", "pr_address", "hrm_human_resource"):
        table = db[tablename]
        for uuid in uuids_of(a, tablename):
            record = on_b(b, tablename, uuid=uuid)
            assert record.realm_entity == auth.get_realm_entity(table, record), (tablename, record.realm_entity)
    assert org.realm_entity == org.pe_id and hr.realm_entity == org.pe_id
    assert on_b(b, "pr_contact", value="ana@alpha.example.org").realm_entity == person.pe_id
    # writers by email (an account B lacks is NULL); owners are B's to decide (issue 19): a file imported by
    # no account leaves new records without owner, whatever roles and users the file names
    assert org.owned_by_group is None and role(b, "FIELD_TEAM", "Field Team")
    clerk_b = on_b(b, "auth_user", email="clerk@example.org").id
    assert org.created_by == clerk_b and person.created_by == clerk_b
    assert clerk_b != on_b(a, "auth_user", email="clerk@example.org").id
    office = on_b(b, "org_office", name="Alpha HQ")
    assert office.owned_by_group is None and office.owned_by_user is None and person.modified_by is None
    # location paths: each its own chain of B's ids
    for uuid in uuids_of(a, "gis_location"):
        place = on_b(b, "gis_location", uuid=uuid)
        chain = []
        while place:
            chain.insert(0, str(place.id))
            place = on_b(b, "gis_location", id=place.parent) if place.parent else None
        assert on_b(b, "gis_location", uuid=uuid).path == "/".join(chain), uuid


def affiliations(env, pe_id):
    """The person entities whose OU roles `pe_id` is affiliated with (Eden's pr_affiliation, pr_role)."""
    s3db, db = env["s3db"], env["db"]
    atable, rtable = s3db.table("pr_affiliation"), s3db.table("pr_role")
    query = (atable.pe_id == pe_id) & (atable.deleted == False) & (rtable.id == atable.role_id)  # noqa: E712
    out = {r.pe_id for r in db(query).select(rtable.pe_id)}
    db.commit()
    return out


def uuids_of(env, tablename):
    """The uuids of the records seed_a made in `tablename` (see test: env["made"])."""
    return env["made"][tablename]


def snapshot(env, tables):
    db = env["db"]
    out = {t: {r.uuid for r in db(db[t]).select(db[t].uuid)} for t in tables}
    db.commit()
    return out


def strangers(a):
    """(table, field) of A's records whose writer or owner is A's account that B lacks."""
    db = a["db"]
    stranger = db(db.auth_user.email == "only-at-a@example.org").select().first().id
    out = {(t, f) for t, made in a["made"].items() for f in ("created_by", "modified_by")
           if not db(db[t].uuid.belongs(made) & (db[t][f] == stranger)).isempty()}
    db.commit()
    return sorted(out)


def ticket(folder, body):
    """The traceback of Eden's error ticket named in a 500 answer (web2py keeps it in the app's errors/)."""
    import pickle
    import re

    found = re.search(rb"Ticket issued: <a [^>]*>eden/([^<]+)</a>", body)
    if not found:
        return body[:2000]
    with open(os.path.join(folder, "applications", "eden", "errors", found.group(1).decode()), "rb") as f:
        return pickle.load(f).get("traceback")


def test_eden_data_model_survives_a_sync(eden_instance, eden_server, eden_admin):
    a = eden_instance("a")
    tables = {t for t, _ in PAGES} | {"pr_contact", "pr_address"}
    before = snapshot(a, tables)
    seed_a(a)
    a["made"] = {t: sorted(u - before[t]) for t, u in snapshot(a, tables).items()}
    b = eden_instance("b")  # loaded last: B's Eden is `current` for the in-process import
    seed_b(b)
    # B's server runs Eden's realm-based security policy: in the site's own config, which the launcher
    # leaves alone when it rewrites 000_config.py at the server's start
    config = os.path.join(b["folder"], "applications", "eden", "models", "000_config_site.py")
    with open(config, "w") as f:
        f.write("settings.security.policy = 6\n")

    data = io.BytesIO()
    fileio.export_to(a["db"], settings(a), data, fmt="csv")
    text = data.getvalue().decode("utf-8")
    assert "pr_contact.pe_id@uuid" in text and "org_organisation.created_by@email" in text
    assert "org_organisation.pe_id," not in text and "realm_entity" not in text and ".path," not in text
    report = fileio.import_from(b["db"], settings(b), data.getvalue(), name="a.csv")
    assert report.totals()["created"] >= 15, report.summary()
    unmapped = [(w["table"], w["column"]) for w in report.warnings if "only-at-a@example.org" in w["message"]]
    assert sorted(unmapped) == strangers(a) and ("pr_person", "modified_by") in unmapped  # once per field
    check_model(a, b)

    # again: nothing changes; then A's edit goes to B's server (merged in an Eden request under policy 6)
    again = fileio.import_from(b["db"], settings(b), data.getvalue(), name="a.csv")
    assert again.totals()["created"] == again.totals()["updated"] == again.totals()["conflicts"] == 0
    server_b = eden_server("b", env=b)
    a["db"](a["db"].org_office.name == "Alpha HQ").update(name="Alpha Head Office", modified_on=later(60))
    a["db"].commit()
    peer = replicate.register_peer(a["db"], settings(a), server_b.url, *peer_login(b, speaks_for=a))
    results = replicate.sync(a["db"], settings(a), peer.id, mode="push")
    assert results["push"].totals()["conflicts"] == 0
    office = on_b(b, "org_office", name="Alpha Head Office")
    assert super_of(b, "org_office", office, "site_id", "org_site").name == "Alpha Head Office"

    # Eden's own pages of what arrived, as B's administrator
    browser = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()))
    eden_login(browser, server_b.url, eden_admin)
    for tablename, page in PAGES:
        for uuid in uuids_of(a, tablename):
            record_id = on_b(b, tablename, uuid=uuid).id
            url = "%s/%s/%d" % (server_b.url, page, record_id)
            try:
                with browser.open(url, timeout=120) as answer:
                    assert answer.status == 200 and "/default/user/login" not in answer.url, url
            except urllib.error.HTTPError as e:
                raise AssertionError("%s: %s %s" % (url, e.code, ticket(b["folder"], e.read()))) from None


# ------------------------------------------------------------------ staff affiliations, set-based (issue 12)
def seed_staff(a):
    """Staff and volunteers of two organisations, at sites with a person entity and without a site."""
    db = a["db"]
    gamma = make(a, "org_organisation", name="Gamma Aid")
    delta = make(a, "org_organisation", name="Delta Aid")
    office = db.org_office[make(a, "org_office", name="Gamma HQ", organisation_id=gamma)].site_id
    depot = db.org_facility[make(a, "org_facility", name="Delta Depot", organisation_id=delta)].site_id
    people = {}
    for name in ("Office", "Nosite", "Volunteer", "Twojobs", "Both", "Former", "Moves"):
        people[name] = make(a, "pr_person", first_name=name, last_name="Staff")

    def hr(person, org, **values):
        make(a, "hrm_human_resource", person_id=people[person], organisation_id=org, **values)
    hr("Office", gamma, type=1, site_id=office)  # Staff of the office's entity and of the organisation
    hr("Nosite", gamma, type=1)
    hr("Volunteer", delta, type=2)
    hr("Twojobs", gamma, type=1, site_id=office)  # two records, two organisations, two sites
    hr("Twojobs", delta, type=1, site_id=depot)
    hr("Both", gamma, type=1)  # Staff and Volunteer roles of one organisation
    hr("Both", gamma, type=2)
    hr("Former", delta, type=1, status=2)  # left: no affiliation
    hr("Moves", gamma, type=1)  # later to Delta (a changed organisation: Eden's own function)
    return gamma, delta


def affiliation_state(env):
    """Every pr_role (entity, role, role_type, path, deleted) and pr_affiliation (role, entity, deleted) of the
    instance, entities named by uuid (the same on every instance), so that two instances compare."""
    s3db, db = env["s3db"], env["db"]
    rtable, atable = s3db.table("pr_role"), s3db.table("pr_affiliation")
    uuid_of = {r.pe_id: r.uuid for r in db(db.pr_pentity).select(db.pr_pentity.pe_id, db.pr_pentity.uuid)}

    def path(p):
        return None if p is None else re.sub(r"\d+", lambda m: uuid_of.get(int(m.group()), m.group()), p)
    def unset(table, r):  # the fields a row has no value in (an insert without the DAL's defaults would show)
        assert r.uuid and r.created_on and r.modified_on, r
        return tuple(f for f in table.fields if r[f] is None)
    rows = db(rtable).select(rtable.ALL)
    assert len({r.uuid for r in rows}) == len(rows)
    roles = {r.id: (uuid_of.get(r.pe_id), r.role, r.role_type, path(r.path), bool(r.deleted)) for r in rows}
    role_rows = sorted((roles[r.id] + (unset(rtable, r),) for r in rows), key=repr)
    rows = db(atable).select(atable.ALL)
    assert len({r.uuid for r in rows}) == len(rows)
    affiliations = sorted(((roles.get(r.role_id), uuid_of.get(r.pe_id), bool(r.deleted), unset(atable, r))
                           for r in rows), key=repr)
    db.commit()
    return role_rows, affiliations


def test_staff_affiliations_set_based_as_eden_makes_them(eden_instance, monkeypatch):
    """The set-based affiliations of staff and sites (affiliations.affiliate_staff, affiliate_sites) give exactly
    what Eden's own pr_update_affiliations and org_update_affiliations give: B merges A's staff and
    sites with them, C the same files with Eden's functions per record; every role and affiliation
    of B equals C's, after a first import and after a second in which a staff record and a site
    moved to another organisation (those: Eden's functions)."""
    from applications.eden.modules.plugin_sync import affiliations as plugin_affiliations

    a = eden_instance("a")
    country(a)
    gamma, delta = seed_staff(a)
    files = []

    def export():
        data = io.BytesIO()
        fileio.export_to(a["db"], settings(a), data, fmt="csv")
        files.append(data.getvalue())
    export()
    hr = a["db"].hrm_human_resource
    moves = a["db"](a["db"].pr_person.first_name == "Moves").select().first().id
    a["db"]((hr.person_id == moves)).update(organisation_id=delta, modified_on=later(60))
    a["db"](a["db"].org_facility.name == "Delta Depot").update(organisation_id=gamma, modified_on=later(60))
    a["db"].commit()
    export()

    calls = []

    def spy(name):
        real = getattr(plugin_affiliations, name)

        def call(db, table, ids):
            left = real(db, table, ids)
            calls.append((table._tablename, len(ids), len(left)))
            return left
        monkeypatch.setattr(plugin_affiliations, name, call)
    spy("affiliate_staff")
    spy("affiliate_sites")
    b, states = eden_instance("b"), []
    for data in files:
        report = fileio.import_from(b["db"], settings(b), data, name="a.csv")
        assert report.totals()["created"] + report.totals()["updated"] > 0, report.summary()
        states.append(affiliation_state(b))
    # first import: the two sites and nine staff records, none left to Eden; second: the site and the staff
    # record that moved to another organisation, left to Eden
    assert sorted(calls) == [("hrm_human_resource", 1, 1), ("hrm_human_resource", 9, 0), ("org_facility", 1, 0),
                             ("org_facility", 1, 1), ("org_office", 1, 0)], calls

    for name in ("affiliate_staff", "affiliate_sites"):  # Eden's own functions, per record
        monkeypatch.setattr(plugin_affiliations, name, lambda db, table, ids: list(ids))
    c = eden_instance("c")
    for data, state in zip(files, states):
        fileio.import_from(c["db"], settings(c), data, name="a.csv")
        assert affiliation_state(c) == state
    # and not trivially: what Eden made is there
    roles, affiliations = states[0]
    person = {name: on_b(c, "pr_person", first_name=name).uuid for name in ("Office", "Twojobs", "Both")}
    org = {name: on_b(c, "org_organisation", name=name).uuid for name in ("Gamma Aid", "Delta Aid")}
    office = on_b(c, "org_office", name="Gamma HQ").uuid
    for master, role, who in ((office, "Staff", "Office"), (org["Gamma Aid"], "Staff", "Office"),
                              (org["Delta Aid"], "Staff", "Twojobs"), (org["Gamma Aid"], "Volunteer", "Both")):
        assert any(r[0] == master and r[1] == role and p == person[who] and not d
                   for r, p, d, _ in affiliations if r), (master, role, who)


# ------------------------------------------------------------------ an appadmin export of Eden (issue 22)
def test_an_appadmin_export_of_eden_imports_with_every_reference_fixed(eden_instance):
    """A's whole database exported as Eden's appadmin does (all models loaded, pydal's db.export_to_csv_file:
    local ids, no @uuid) imports into B with every reference fixed: a person's contacts hang off B's entity of
    the person, a staff record's site is B's office, through the file's own `TABLE pr_pentity` and `TABLE
    org_site`; a contact deleted by Eden keeps its deleted_fk, pointing at B's entity."""
    from gluon import current

    a = eden_instance("a")
    db = a["db"]
    org = make(a, "org_organisation", name="Appadmin Relief")
    office = make(a, "org_office", name="Appadmin HQ", organisation_id=org)
    person = make(a, "pr_person", first_name="Ada", last_name="Appadmin")
    pe_id, site_id = db.pr_person[person].pe_id, db.org_office[office].site_id
    contacts = [make(a, "pr_contact", pe_id=pe_id, contact_method=method, value=value) for method, value in (
        ("EMAIL", "ada@appadmin.example.org"), ("SMS", "+670 7700 0001"), ("HOME_PHONE", "+670 333 0001"))]
    make(a, "hrm_human_resource", person_id=person, organisation_id=org, type=1, site_id=site_id)
    current.auth.override = True  # Eden's own delete (soft: the reference kept in deleted_fk), as an admin
    try:
        assert a["s3db"].resource("pr_contact", id=contacts[-1]).delete() == 1
    finally:
        current.auth.override = False
    db.commit()
    assert json.loads(db.pr_contact[contacts[-1]].deleted_fk) == {"pe_id": pe_id}
    a["s3db"].load_all_models()  # what Eden's appadmin does before it exports
    buf = io.StringIO()
    db.export_to_csv_file(buf)
    data = buf.getvalue().encode("utf-8")
    assert b"TABLE pr_pentity" in data and b"TABLE org_site" in data and b"@uuid" not in data
    uuid = {name: db[name][i].uuid for name, i in (("org_organisation", org), ("org_office", office),
                                                   ("pr_person", person))}
    contact_uuids = [db.pr_contact[c].uuid for c in contacts]
    db.commit()

    b = eden_instance("b")  # loaded last: B's Eden is `current` for the in-process import
    for k in range(3):  # B's own entities and sites first: its ids for A's records cannot be A's
        make(b, "org_office", name="Beta office %d" % k, organisation_id=make(b, "org_organisation", name="B %d" % k))
        make(b, "pr_person", first_name="Beta %d" % k)
    report = fileio.import_from(b["db"], settings(b), data, name="appadmin.csv")
    assert report.plain_pydal
    lost = [w for w in report.warnings if w.get("column") in ("pe_id", "site_id") and "NULL" in w["message"]]
    assert not lost, lost
    person_b, office_b = on_b(b, "pr_person", uuid=uuid["pr_person"]), on_b(b, "org_office", uuid=uuid["org_office"])
    assert (person_b.pe_id, office_b.site_id) != (pe_id, site_id)
    super_of(b, "pr_person", person_b)
    assert super_of(b, "org_office", office_b, "site_id", "org_site").name == "Appadmin HQ"
    got = [on_b(b, "pr_contact", uuid=u) for u in contact_uuids]
    assert [(c.pe_id, c.deleted) for c in got] == [(person_b.pe_id, False), (person_b.pe_id, False), (None, True)]
    assert json.loads(got[-1].deleted_fk) == {"pe_id": person_b.pe_id}
    assert on_b(b, "hrm_human_resource", person_id=person_b.id).site_id == office_b.site_id
    again = fileio.import_from(b["db"], settings(b), data, name="appadmin.csv")  # nothing changes a second time
    assert not again.changed, again.summary()
