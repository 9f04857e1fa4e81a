# -*- coding: utf-8 -*-
"""The minihost (tests/minihost): its demo data (real Sahana prepopulate CSVs) and its pages."""
import http.cookiejar
import os
import re
import sqlite3
import subprocess
import sys
import urllib.parse
import urllib.request

import pytest

import eden
from applications.eden.modules.eden_demo import ORG_TYPES, load_demo

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEMO = os.path.join(REPO, "tests", "minihost", "private", "demo")
CVTL = "Timor-Leste Red Cross Society (Cruz Vermelha de Timor-Leste)"
RANGES = {
    "org_organisation_type": (7, 7),
    "gis_location": (3000, 4000),
    "org_organisation": (40, 60),
    "org_office": (10, 60),
    "pr_person": (1100, 1300),
    "hrm_human_resource": (1100, 1300),
    "hms_hospital": (170, 180),
    "event_incident": (2, 3),
    "doc_document": (1, 2),
    "s3_setting": (3, 10),
    "gis_config": (1, 1),
}


@pytest.fixture
def demo(instance):
    db = instance["db"]
    counts = load_demo(db, DEMO)
    db.commit()
    instance["counts"] = counts
    return instance


def chain(db, location_id):
    """[(level, name), ...] from a location up to its L0."""
    out = []
    while location_id:
        row = db.gis_location(location_id)
        out.append((row.level, row.name))
        location_id = row.parent
        assert len(out) < 10, "parent cycle"
    return out


def _counts_per_table_in_range(demo):
    db, counts = demo["db"], demo["counts"]
    assert set(counts) == set(RANGES)
    for table, (low, high) in RANGES.items():
        n = db(db[table]).count()
        assert counts[table] == n, table
        assert low <= n <= high, (table, n)
    assert [r.name for r in db(db.org_organisation_type).select(orderby=db.org_organisation_type.id)] == list(ORG_TYPES)


def _location_hierarchy(demo):
    db = demo["db"]
    loc = db.gis_location
    levels = {lv: db(loc.level == lv).count() for lv in ("L0", "L1", "L2", "L3", "L4")}
    assert levels["L4"] >= 2819 and levels["L3"] >= 431 and levels["L2"] >= 65 and levels["L1"] >= 13
    codes = {r.code: r.name for r in db(loc.level == "L0").select()}
    for code, name in (("TL", "Timor-Leste"), ("LR", "Liberia"), ("SL", "Sierra Leone"), ("GN", "Guinea"),
                       ("TR", "Turkey")):
        assert codes[code] == name
    # a village whose L3 name exists three times in Timor-Leste (the file gives the L2)
    lacolu = db(loc.name == "Lacolu").select().first()
    assert lacolu.code == "15160" and abs(lacolu.lat + 8.66926) < 1e-6
    assert chain(db, lacolu.id) == [("L4", "Lacolu"), ("L3", "Afaloicai"), ("L2", "Baguia"), ("L1", "Baucau"),
                                   ("L0", "Timor-Leste")]
    # "Lifau" is an L3 in Manatuto and in Oecusse and the file gives no L2: placed by geography
    assert chain(db, db(loc.name == "Kampung Baru").select().first().id)[1:4] == [
        ("L3", "Lifau"), ("L2", "Laleia"), ("L1", "Manatuto")]
    assert chain(db, db(loc.name == "Kolam Cina").select().first().id)[1:4] == [
        ("L3", "Lifau"), ("L2", "Pante Macasar"), ("L1", "Oecusse")]
    # every TL L1..L4 has a parent one level up; codes, populations and centres are carried over
    parent = loc.with_alias("parent_location")
    rows = db((loc.parent == parent.id) & (loc.level.belongs(["L1", "L2", "L3", "L4"]))).select(
        loc.level, parent.level)
    assert all(int(r.gis_location.level[1]) - 1 == int(r.parent_location.level[1]) for r in rows)
    assert db((loc.level != "L0") & (loc.parent == None)).isempty()  # noqa: E711
    holarua = db((loc.name == "Holarua") & (loc.level == "L3")).select().first()
    assert holarua.code == "100102" and holarua.population == 5266 and holarua.lat is not None
    timor = db((loc.level == "L0") & (loc.code == "TL")).select().first()
    assert timor.population > 900000


def _person_references_red_cross_and_a_timor_leste_location(demo):
    db = demo["db"]
    person = db(db.pr_person.email == "maria.alex@hotmail.com").select().first()
    assert (person.first_name, person.last_name, person.gender) == ("Maria", "Alex", "female")
    assert abs(person.lat + 8.98654) < 1e-6 and abs(person.lon - 125.65921) < 1e-6
    assert chain(db, person.location_id) == [("L3", "Holarua"), ("L2", "Same"), ("L1", "Manufahi"),
                                            ("L0", "Timor-Leste")]
    hr = db(db.hrm_human_resource.person_id == person.id).select().first()
    assert hr.type == "volunteer"
    org = db.org_organisation(hr.organisation_id)
    assert org.name == CVTL and org.acronym == "CVTL" and org.country == "TL"
    assert db.org_organisation_type(org.organisation_type_id).name == "Red Cross / Red Crescent"
    # everybody has a human resource record and a home location
    assert db(db.pr_person.location_id == None).isempty()  # noqa: E711
    assert db(db.hrm_human_resource).count() == db(db.pr_person).count()
    assert db(db.pr_person.gender == "male").count() > db(db.pr_person.gender == "female").count() > 300
    office = db(db.org_office.organisation_id == org.id).select().first()
    assert office.name == "CVTL head office" and db.gis_location(office.location_id).name == "Dili"


def _organisations_hospitals_incidents(demo):
    db = demo["db"]
    names = [r.name for r in db(db.org_organisation).select(db.org_organisation.name)]
    assert len(names) == len(set(names))  # deduplicated by name
    msf = db(db.org_organisation.name == "Medecins Sans Frontieres").select().first()
    assert msf.acronym == "MSF" and db.org_organisation_type(msf.organisation_type_id).name == "International NGO"
    assert db(db.hms_hospital.organisation_id == msf.id).count() == 17
    centre = db(db.hms_hospital.code == "LibTub").select().first()
    assert (centre.facility_type, centre.status, centre.total_beds) == ("Triage", "Functional", 12)
    assert chain(db, centre.location_id) == [("L3", "Tubmanburg"), ("L2", "Senjeh"), ("L1", "Bomi"),
                                            ("L0", "Liberia")]
    assert "quarantine units" in centre.comments
    ebola = db(db.event_incident.name.startswith("Ebola")).select().first()
    assert db.gis_location(ebola.location_id).level == "L0"
    assert msf.id in ebola.organisation_ids and len(ebola.organisation_ids) >= 20
    floods = db(db.event_incident.name.startswith("Timor-Leste floods")).select().first()
    cvtl = db(db.org_organisation.name == CVTL).select().first()
    assert floods.organisation_ids == [cvtl.id]


def _turkish_names_round_trip(demo):
    db = demo["db"]
    name = u"Dr. Sadi Konuk Bakırköy Eğitim Ve Araştırma Hastanesi"
    rows = db(db.hms_hospital.name == name).select()
    assert len(rows) >= 1 and rows[0].name == name
    esenyurt = db(db.hms_hospital.name == u"İstanbul Esenyurt Devlet Hastanesi").select().first()
    assert chain(db, esenyurt.location_id)[0][0] in ("L1", "L2")
    assert chain(db, esenyurt.location_id)[-1] == ("L0", "Turkey")
    assert db.org_organisation(esenyurt.organisation_id).name == "Ministry of Health"
    org = db(db.org_organisation.acronym == "CYDD").select().first()
    assert org.name == u"Çağdaş Yaşamı Destekleme Derneği" and org.country == "TR"
    assert db(db.event_incident.name == u"Türkiye earthquakes, February 2023").count() == 1


def _second_call_does_nothing(demo):
    db = demo["db"]
    before = {t: db(db[t]).count() for t in RANGES}
    assert not load_demo(db, DEMO)
    assert {t: db(db[t]).count() for t in RANGES} == before


def _documents_are_real_uploads_and_site_settings_exist(demo):
    db = demo["db"]
    uploads = os.path.join(demo["folder"], "applications", "eden", "uploads")
    docs = db(db.doc_document).select(orderby=db.doc_document.id)
    assert docs
    for doc in docs:
        path = os.path.join(uploads, doc.file)
        assert os.path.isfile(path), path
        assert os.path.getsize(path) > 100
        assert db.doc_document.file.retrieve(doc.file)[0].endswith((".csv", ".txt"))
    text = open(os.path.join(uploads, docs[0].file), encoding="utf-8").read()
    assert "Tubmanburg Government Hospital - Holding Centre" in text
    settings = {r.name: r.value for r in db(db.s3_setting).select()}
    assert {"system_name", "base_public_url", "mail_server"} <= set(settings)
    config = db(db.gis_config).select().first()
    assert re.match(r"^AIzaSy[A-Za-z0-9_-]{33}$", config.google_maps_key)
    assert re.match(r"^[A-Za-z0-9]{64}$", config.bing_maps_key)


def test_demo_data(demo):
    """One load per backend, then every check (each failure names its check)."""
    _counts_per_table_in_range(demo)
    _location_hierarchy(demo)
    _person_references_red_cross_and_a_timor_leste_location(demo)
    _organisations_hospitals_incidents(demo)
    _turkish_names_round_trip(demo)
    _documents_are_real_uploads_and_site_settings_exist(demo)
    _second_call_does_nothing(demo)


def test_deterministic_apart_from_uuids(new_instance):
    def snapshot(env):
        db = env["db"]
        load_demo(db, DEMO)
        db.commit()
        return {
            "locations": db(db.gis_location).select(
                db.gis_location.id, db.gis_location.name, db.gis_location.parent, db.gis_location.code,
                orderby=db.gis_location.id).as_list(),
            "persons": db(db.pr_person).select(
                db.pr_person.id, db.pr_person.email, db.pr_person.location_id, orderby=db.pr_person.id).as_list(),
            "hospitals": db(db.hms_hospital).select(
                db.hms_hospital.name, db.hms_hospital.organisation_id, db.hms_hospital.location_id,
                orderby=db.hms_hospital.id).as_list(),
        }

    assert snapshot(new_instance("a")) == snapshot(new_instance("b"))


def _fetch(opener, url, data=None):
    with opener.open(url, data=urllib.parse.urlencode(data).encode() if data else None, timeout=30) as r:
        return r.status, r.read().decode("utf-8")


def test_home_and_login_pages(start_server):
    server = start_server("a")
    # load the demo data (the harness seeds the admin only)
    args = ["--instance", os.path.basename(server.folder), "--runtime", os.path.dirname(server.folder),
            "--db", server.uri]
    subprocess.run([sys.executable, os.path.join(REPO, "tests", "minihost", "host.py"), "seed"] + args, check=True,
                   env=dict(os.environ, EDEN_DB_URI=server.uri, EDEN_INSTANCE="a"), stdout=subprocess.DEVNULL)
    con = sqlite3.connect(server.uri[len("sqlite://"):])
    base_uuid = con.execute("SELECT base_uuid FROM plugin_sync_identity").fetchone()[0]
    con.close()

    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()))
    status, home = _fetch(opener, server.url + "/")
    assert status == 200
    assert "Sahana Eden - instance" in home and base_uuid in home
    assert "1,184" in home and "hms_hospital" in home  # demo counts
    assert "/eden/plugin_sync/index" in home and "/eden/static/eden/eden.css" in home
    status, login = _fetch(opener, server.url + "/default/user/login")
    assert status == 200 and base_uuid in login and 'name="password"' in login
    # the login form works (and flashes)
    formkey = re.search(r'name="_formkey" type="hidden" value="([^"]+)"', login).group(1)
    status, page = _fetch(opener, server.url + "/default/user/login", dict(
        email=eden.ADMIN_EMAIL, password=eden.ADMIN_PASSWORD, _formkey=formkey, _formname="login"))
    assert status == 200 and "Logout" in page and 'class="flash"' in page
    status, css = _fetch(opener, server.url + "/static/eden/eden.css")
    assert status == 200 and ".topbar" in css

