# -*- coding: utf-8 -*-
"""Demo data for the host app: the admin account, and real Sahana Eden
prepopulate CSVs (private/demo/, see its README.md) mapped onto the host tables.

    ensure_admin(db, auth, email, password)   the admin account and group
    load_demo(db, folder)                     seed the host tables on first start

load_demo() runs only when org_organisation is empty; it does not commit (the
caller does).  Apart from uuids, timestamps and upload file names its result
is deterministic: same rows, same order, same ids on a fresh database.
"""
import collections
import csv
import datetime
import hashlib
import io
import os
import re
import unicodedata
import uuid

# The lookup list (identical on every site, never synced)
ORG_TYPES = (
    "Government",
    "NGO",
    "International NGO",
    "Red Cross / Red Crescent",
    "UN agency",
    "Private",
    "Other",
)
# Type column of the CSVs -> ORG_TYPES ("Bilateral" donors are government agencies)
TYPE_MAP = {
    "government": "Government",
    "bilateral": "Government",
    "ngo": "NGO",
    "international ngo": "International NGO",
    "red cross / red crescent": "Red Cross / Red Crescent",
    "un agency": "UN agency",
    "private": "Private",
    "other": "Other",
}

# L0 rows: ISO code -> readable name and an approximate centroid
COUNTRIES = {
    "CN": ("China", 35.86166, 104.19540),
    "CU": ("Cuba", 21.52176, -77.78117),
    "FR": ("France", 46.22764, 2.21375),
    "GB": ("United Kingdom", 55.37805, -3.43597),
    "GN": ("Guinea", 9.94559, -9.69665),
    "IT": ("Italy", 41.87194, 12.56738),
    "LR": ("Liberia", 6.42805, -9.42950),
    "SL": ("Sierra Leone", 8.46056, -11.77989),
    "TL": ("Timor-Leste", -8.87422, 125.72754),
    "TR": ("Turkey", 38.96375, 35.24332),
    "US": ("United States", 37.09024, -95.71289),
}

CVTL = "Timor-Leste Red Cross Society (Cruz Vermelha de Timor-Leste)"
# Organisations that the people/hospital files name but no organisation file describes
EXTRA_ORGS = {
    CVTL: dict(acronym="CVTL", type="Red Cross / Red Crescent", country="TL"),
    "Ministry of Health": dict(acronym="", type="Government", country="TR"),  # Turkey_Demo_hospitals
    "Cuba": dict(acronym="", type="Government", country="CU", comments="Cuban medical brigade"),
    "Chinese Government": dict(acronym="", type="Government", country="CN"),
    "Saint John of God": dict(acronym="", type="NGO", country="SL",
                              comments="Saint John of God Catholic Hospital, Lunsar"),
    "Addax Bio Energy Sierra Leone": dict(acronym="Addax", type="Private", country="SL"),
    "EMERGENCY Italian NGO": dict(acronym="EMERGENCY", type="International NGO", country="IT"),
}
# Where a national organisation's head office goes (an L1 of its country)
CAPITAL_L1 = {"TL": "Dili", "LR": "Montserrado", "SL": "Western", "GN": "Conakry"}


# ---------------------------------------------------------------------------
# helpers

def _rows(folder, name):
    with open(os.path.join(folder, name), encoding="utf-8-sig", newline="") as f:
        return [{k: (v or "").strip() for k, v in row.items() if k} for row in csv.DictReader(f)]


def _key(name):
    """Match key of a place/organisation name: accents, case, spaces and hyphens ignored."""
    text = unicodedata.normalize("NFKD", name or "")
    return "".join(c for c in text if c.isalnum()).casefold()


def _int(value):
    try:
        return int(float(value))
    except (TypeError, ValueError):
        return None


def _float(value):
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _mean(values):
    values = [v for v in values if v is not None]
    return round(sum(values) / len(values), 5) if values else None


INSERT_SQL = re.compile(r"^(INSERT INTO [^(]*\([^)]*\)) VALUES (\(.*\))(\s*RETURNING [^;]*)?;?\s*$", re.S)


def _insert_many(table, records, chunk=250):
    """Insert records, one multi-row INSERT per chunk; return their ids in order.

    pydal's bulk_insert runs one INSERT (and one round trip) per record, which
    makes seeding a few thousand rows on PostgreSQL slow.  pydal still renders
    every value (defaults, quoting, booleans); the ids come back by uuid.
    """
    db = table._db
    for record in records:
        if not record.get("uuid"):
            record["uuid"] = table.uuid.default()
    ids = {}
    for start in range(0, len(records), chunk):
        part = records[start:start + chunk]
        groups = collections.OrderedDict()  # column list -> rendered VALUES tuples
        for record in part:
            sql = table._insert(**record)
            match = INSERT_SQL.match(sql)
            if match is None:  # an unexpected dialect: one statement per record
                table.insert(**record)
                continue
            groups.setdefault(match.group(1), []).append(match.group(2))
        for head, values in groups.items():
            db.executesql("%s VALUES %s;" % (head, ",".join(values)))
        uuids = [record["uuid"] for record in part]
        for row in db(table.uuid.belongs(uuids)).select(table.id, table.uuid):
            ids[row.uuid] = int(row.id)
    return [ids[record["uuid"]] for record in records]


def ensure_admin(db, auth, email, password):
    """Create the admin account and group on first start; return the user id."""
    user = db(db.auth_user.email == email).select().first()
    if user is None:
        user_id = db.auth_user.insert(
            first_name="Admin", last_name="Eden", email=email,
            password=db.auth_user.password.validate(password)[0],
        )
    else:
        user_id = user.id
    group_id = auth.id_group("admin") or auth.add_group("admin", "Sahana administrators")
    if not auth.has_membership(group_id, user_id):
        auth.add_membership(group_id, user_id)
    return user_id


# ---------------------------------------------------------------------------
# locations

class Place(object):
    """A gis_location row before (and after) it is inserted."""

    __slots__ = ("name", "level", "parent", "code", "lat", "lon", "population", "id", "children")

    def __init__(self, name, level, parent=None, code=None, lat=None, lon=None, population=None):
        self.name, self.level, self.parent, self.code = name, level, parent, code
        self.lat, self.lon, self.population = lat, lon, population
        self.id = None
        self.children = []
        if parent is not None:
            parent.children.append(self)

    def ancestor(self, level):
        node = self
        while node is not None and node.level != level:
            node = node.parent
        return node

    def leaves(self):
        if not self.children:
            return [self]
        return [leaf for child in self.children for leaf in child.leaves()]


class Gazetteer(object):
    """The location tree: L0 per country, Timor-Leste L1..L4, other places on demand."""

    def __init__(self, db):
        self.db = db
        self.countries = {}  # code -> L0 Place
        self.index = {}  # (code, key L1, key L2, ...) -> Place
        self.by_id = {}
        self.live = False  # once the bulk load is in, places made on demand are inserted at once

    def country(self, code):
        code = (code or "").upper()
        if not code:
            return None
        if code not in self.countries:
            name, lat, lon = COUNTRIES.get(code, (code, None, None))
            place = Place(name, "L0", code=code, lat=lat, lon=lon)
            self.countries[code] = place
            self.index[(code,)] = place
        return self.countries[code]

    def find(self, code, names):
        """The deepest existing place along a chain of names (empty names are skipped)."""
        node = self.countries.get((code or "").upper())
        path = [(code or "").upper()]
        for name in names:
            if not name:
                continue
            path.append(_key(name))
            found = self.index.get(tuple(path))
            if found is None:
                break
            node = found
        return node

    def place(self, code, names):
        """The place at the end of a chain of names, created (and inserted) where missing."""
        node = self.country(code)
        if node is None:
            return None
        if self.live and node.id is None:
            self.insert([node])
        path = [node.code]
        for name in names:
            if not name:
                continue  # a gap in the hierarchy: the next name hangs from the last one found
            path.append(_key(name))
            found = self.index.get(tuple(path))
            if found is None:
                found = Place(name, "L%d" % min(len(path) - 1, 5), parent=node)
                self.index[tuple(path)] = found
                if self.live:
                    self.insert([found])
            node = found
        return node

    def insert(self, places):
        table = self.db.gis_location
        records = [
            dict(name=p.name, level=p.level, parent=p.parent.id if p.parent else None, code=p.code,
                 lat=p.lat, lon=p.lon, population=p.population)
            for p in places
        ]
        for place, row_id in zip(places, _insert_many(table, records)):
            place.id = int(row_id)
            self.by_id[place.id] = place
        return len(places)


def _timor_leste(gaz, folder):
    """Timor-Leste's L1 (districts) .. L4 (villages), parents resolved by name chain."""
    tl = gaz.country("TL")
    l1s, l2s, l3s, l4s = [], [], [], []
    for row in _rows(folder, "locations_TL_TL_L1.csv"):
        node = Place(row["L1"], "L1", parent=gaz.country(row["Country"] or "TL"), population=_int(row["Population"]))
        gaz.index[("TL", _key(row["L1"]))] = node
        l1s.append(node)
    tl.population = sum(p.population or 0 for p in l1s) or None
    for row in _rows(folder, "locations_TL_TL_L2.csv"):
        parent = gaz.index[("TL", _key(row["L1"]))]
        node = Place(row["L2"], "L2", parent=parent, code=row["L2 KV:GADM3"], population=_int(row["Population"]))
        gaz.index[("TL", _key(row["L1"]), _key(row["L2"]))] = node
        l2s.append(node)
    l3_by_name = collections.defaultdict(list)
    for row in _rows(folder, "locations_TL_TL_L3.csv"):
        parent = gaz.index[("TL", _key(row["L1"]), _key(row["L2"]))]
        node = Place(row["L3"], "L3", parent=parent, code=row["L3 KV:GADM3"], population=_int(row["Population"]))
        gaz.index[("TL", _key(row["L1"]), _key(row["L2"]), _key(row["L3"]))] = node
        l3_by_name[_key(row["L3"])].append(node)
        l3s.append(node)

    # L4: the file names only the L3 (and sometimes the L2). L3 names repeat across
    # the country: narrow by the L2 where given, else take the candidate whose L2
    # lies nearest to the village (L2 centres from the villages already placed).
    rows4 = _rows(folder, "locations_TL_TL_L4.csv")
    ambiguous = []
    for row in rows4:
        candidates = l3_by_name.get(_key(row["L3"]), [])
        if row["L2"]:
            candidates = [c for c in candidates if _key(c.parent.name) == _key(row["L2"])] or candidates
        row["_candidates"] = candidates
        if len(candidates) != 1:
            ambiguous.append(row)
    placed = collections.defaultdict(list)
    for row in rows4:
        if len(row["_candidates"]) == 1:
            placed[row["_candidates"][0].parent].append((_float(row["Lat"]), _float(row["Lon"])))
    centre = {l2: (_mean([p[0] for p in pts]), _mean([p[1] for p in pts])) for l2, pts in placed.items()}

    def distance(row, l3):
        lat, lon = _float(row["Lat"]), _float(row["Lon"])
        c = centre.get(l3.parent)
        if lat is None or c is None or c[0] is None:
            return float("inf")
        return (lat - c[0]) ** 2 + (lon - c[1]) ** 2

    for row in rows4:
        candidates = row.pop("_candidates")
        if not candidates:
            continue  # no such L3: skip the village rather than guess
        parent = min(candidates, key=lambda c: distance(row, c)) if len(candidates) > 1 else candidates[0]
        node = Place(row["L4"], "L4", parent=parent, code=row["L4 KV:GADM4"],
                     lat=_float(row["Lat"]), lon=_float(row["Lon"]))
        key = ("TL", _key(parent.parent.parent.name), _key(parent.parent.name), _key(parent.name), _key(row["L4"]))
        gaz.index.setdefault(key, node)
        l4s.append(node)

    # centres of the areas: the mean of their villages
    for node in l3s + l2s + l1s:
        leaves = [leaf for leaf in node.leaves() if leaf.level == "L4"]
        node.lat = _mean([leaf.lat for leaf in leaves])
        node.lon = _mean([leaf.lon for leaf in leaves])
    return l1s, l2s, l3s, l4s


# ---------------------------------------------------------------------------
# organisations

class Organisations(object):
    def __init__(self, db, types):
        self.db = db
        self.types = types  # name -> org_organisation_type id
        self.rows = collections.OrderedDict()  # key(name) -> dict
        self.ids = {}

    def add(self, name, acronym="", type_name="", country="", website="", phone="", email="", comments="",
            default_type="Other"):
        name = (name or "").strip()
        if not name or _key(name) in self.rows:
            return
        type_label = TYPE_MAP.get((type_name or "").strip().lower()) or default_type
        if type_label == "NGO" and not country:
            type_label = "International NGO"  # no home country: an international NGO
        self.rows[_key(name)] = dict(
            name=name, acronym=acronym or None, organisation_type_id=self.types[type_label],
            country=(country or "").upper() or None, website=website or None, phone=phone or None,
            email=email or None, comments=comments or None,
        )

    def add_extra(self, name, country=""):
        info = EXTRA_ORGS.get(name, {})
        self.add(name, acronym=info.get("acronym", ""), type_name=info.get("type", ""),
                 country=info.get("country", country), comments=info.get("comments", ""))

    def insert(self):
        records = list(self.rows.values())
        for key, row_id in zip(self.rows, _insert_many(self.db.org_organisation, records)):
            self.ids[key] = int(row_id)
        return len(records)

    def id(self, name):
        return self.ids.get(_key(name)) if name else None


# ---------------------------------------------------------------------------
# the loader

def load_demo(db, folder):
    """Seed the host tables from the prepopulate CSVs in `folder`, on first start only.

    Returns {tablename: records inserted}, or {} when org_organisation already has rows.
    """
    if not db(db.org_organisation).isempty():
        return {}
    counts = collections.OrderedDict()

    # lookup list
    types = {}
    for name in ORG_TYPES:
        types[name] = int(db.org_organisation_type.insert(name=name))
    counts["org_organisation_type"] = len(types)

    ebola_orgs = _rows(folder, "Disease_Ebola_organisation.csv")
    turkey_orgs = _rows(folder, "Turkey_Demo_organisation.csv")
    people = _rows(folder, "IFRC_Demo_people.csv")
    ebola_hospitals = _rows(folder, "Disease_Ebola_hospital.csv")
    turkey_hospitals = _rows(folder, "Turkey_Demo_hospitals.csv")

    # organisations (deduplicated by name), first the files that describe them
    orgs = Organisations(db, types)
    for row in ebola_orgs:
        orgs.add(row["Organisation"], row["Acronym"], row["Type"], row["Country"], row["Website"],
                 comments=("Twitter: @%s" % row["Twitter"]) if row.get("Twitter") else "")
    for row in turkey_orgs:
        # civil society associations (dernek, vakıf): the file leaves Type empty
        orgs.add(row["Organisation"], row["Acronym"], row["Type"], row["Country"], row["Website"],
                 row["Phone"] or row["Phone2"], row["Email"], row["Comments"], default_type="NGO")
    for row in people:
        orgs.add_extra(row["Organisation"], row["Home Country"])
    for row in ebola_hospitals:
        orgs.add_extra(row["Organisation"], row["Country"])
    for row in turkey_hospitals:
        orgs.add_extra(row["Organisation"], row["Country"])

    # locations: an L0 per country seen, then Timor-Leste's hierarchy
    gaz = Gazetteer(db)
    codes = {r["country"] for r in orgs.rows.values() if r["country"]}
    codes |= {r["Home Country"] for r in people} | {r["Country"] for r in ebola_hospitals + turkey_hospitals}
    for code in sorted(c.upper() for c in codes if c):
        gaz.country(code)
    levels = _timor_leste(gaz, folder)
    gaz.insert([gaz.countries[c] for c in sorted(gaz.countries)])
    for level in levels:
        gaz.insert(level)
    gaz.live = True

    counts["org_organisation"] = orgs.insert()

    # hospitals (locations of other countries made on demand)
    hospitals = []
    for row in ebola_hospitals:
        names = [row[k] for k in ("L1", "L2", "L3", "L4", "L5")]
        hospitals.append(dict(
            name=row["Name"], code=row["Code"] or None, organisation_id=orgs.id(row["Organisation"]),
            location_id=gaz.place(row["Country"], names).id, facility_type=row["Type"] or None,
            status=row["Status"] or None, total_beds=_int(row["Beds Total"]),
            lat=_float(row["Lat"]), lon=_float(row["Lon"]), comments=row["Comments"] or None,
        ))
    for row in turkey_hospitals:
        hospitals.append(dict(
            name=row["Name"], organisation_id=orgs.id(row["Organisation"]),
            location_id=gaz.place(row["Country"], [row["L1"], row["L2"]]).id, facility_type="Hospital",
            lat=_float(row["Lat"]), lon=_float(row["Lon"]),
        ))
    hospital_ids = _insert_many(db.hms_hospital, hospitals)
    counts["hms_hospital"] = len(hospital_ids)

    # persons and their human resource records
    persons, places = [], []
    for row in people:
        home = gaz.find(row["Home Country"], [row["Home L1"], row["Home L2"], row["Home L3"]])
        places.append(home)
        sex = row["Sex"].lower().rstrip(".")
        persons.append(dict(
            first_name=row["First Name"], last_name=row["Last Name"] or None,
            gender={"ms": "female", "mrs": "female", "miss": "female", "mr": "male"}.get(sex),
            email=row["Email"] or None, phone=row["Mobile Phone"] or None,
            location_id=home.id if home else None,
            lat=_float(row["Home Lat"]), lon=_float(row["Home Lon"]),
        ))
    person_ids = _insert_many(db.pr_person, persons)
    counts["pr_person"] = len(person_ids)
    hrs = []
    for row, person_id in zip(people, person_ids):
        hr_type = row["Type"].strip().lower()
        hrs.append(dict(
            person_id=person_id, organisation_id=orgs.id(row["Organisation"]),
            type=hr_type if hr_type in ("staff", "volunteer") else "volunteer",
            job_title=row["Job Title"] or None,
        ))
    counts["hrm_human_resource"] = len(_insert_many(db.hrm_human_resource, hrs))

    # one head office per organisation with hospitals or people
    where = collections.defaultdict(list)  # org id -> its records' places
    for record in hospitals:
        if record["organisation_id"]:
            where[record["organisation_id"]].append(gaz.by_id.get(record["location_id"]))
    for record, place in zip(hrs, places):
        if record["organisation_id"]:
            where[record["organisation_id"]].append(place)
    acronyms = collections.Counter(r["acronym"] for r in orgs.rows.values() if r["acronym"])
    offices = []
    for key, org in orgs.rows.items():
        org_id = orgs.ids[key]
        if org_id not in where:
            continue
        label = org["acronym"] if org["acronym"] and acronyms[org["acronym"]] == 1 else org["name"]
        offices.append(dict(
            name="%s head office" % label, organisation_id=org_id,
            location_id=_office_location(gaz, org, where[org_id]), phone=org["phone"],
        ))
    counts["org_office"] = len(_insert_many(db.org_office, offices))

    # incidents
    ebola_org_ids = sorted({orgs.id(r["Organisation"]) for r in ebola_orgs + ebola_hospitals if r["Organisation"]})
    dili = gaz.find("TL", ["Dili"])
    turkey_responders = [orgs.id(n) for n in ("Ministry of Health", "Hayata Destek Derneği / Support To Life",
                                              "Mahalle Afet Gönüllüleri Vakfı", "arc")]
    incidents = [
        dict(name="Ebola outbreak, West Africa 2014", start_date=datetime.datetime(2014, 3, 23),
             location_id=gaz.country("GN").id, organisation_ids=ebola_org_ids, closed=True,
             comments="WHO was notified of an outbreak of Ebola virus disease in Guinea on 23 March 2014; "
                      "it spread to Liberia and Sierra Leone. Treatment, holding, triage and transit "
                      "centres were set up by ministries of health, NGOs and UN agencies."),
        dict(name="Timor-Leste floods, April 2021", start_date=datetime.datetime(2021, 4, 4),
             location_id=(dili or gaz.country("TL")).id, organisation_ids=[orgs.id(CVTL)], closed=True,
             comments="Flash floods and landslides after Tropical Cyclone Seroja; Red Cross volunteers "
                      "supported evacuation centres in Dili."),
        dict(name="Türkiye earthquakes, February 2023", start_date=datetime.datetime(2023, 2, 6, 1, 17),
             location_id=gaz.country("TR").id, organisation_ids=[i for i in turkey_responders if i],
             closed=False, comments="Kahramanmaraş earthquakes (Mw 7.8 and 7.5); hospitals in İstanbul "
                                    "received patients evacuated from the affected provinces."),
    ]
    counts["event_incident"] = len(db.event_incident.bulk_insert(incidents))

    # documents with real (small) files in the instance's uploads folder
    counts["doc_document"] = _documents(db, orgs, ebola_hospitals, people)

    # site-specific settings: never synced (the sync tests prove they never leak)
    counts["s3_setting"], counts["gis_config"] = _site_settings(db, gaz)

    counts["gis_location"] = len(gaz.by_id)
    _as_prepopulate(db, [t for t in counts if t not in ("s3_setting", "gis_config")])
    return dict(counts)


PREPOP_TIME = datetime.datetime(2024, 1, 1)
PREPOP_NAMESPACE = uuid.UUID("5e1f3c2a-9d0b-4c7e-8a61-2f4b6d8e0a17")


def _as_prepopulate(db, tablenames):
    """Give the demo records the same identity on every instance, as Sahana's templates do.

    Loading is deterministic (same rows, same ids on a fresh database), so the
    uuid is derived from table and id, the timestamps are fixed and upload files
    get stable names: two instances seeded with the demo hold the *same*
    records, and a first sync between them finds them unchanged instead of
    duplicating every organisation.
    """
    for name in tablenames:
        table = db[name]
        for row in db(table).select(table.id, orderby=table.id):
            db(table.id == row.id).update(
                uuid=uuid.uuid5(PREPOP_NAMESPACE, "%s:%d" % (name, row.id)).urn,
                created_on=PREPOP_TIME, modified_on=PREPOP_TIME,
            )
    field = db.doc_document.file
    folder = field.uploadfolder or os.path.join(db._adapter.folder, "..", "uploads")
    for row in db(db.doc_document).select(db.doc_document.id, field):
        parts = row.file.split(".")
        path = os.path.join(folder, row.file)
        parts[2] = hashlib.sha1(open(path, "rb").read()).hexdigest()[:16]
        stable = ".".join(parts)
        os.replace(path, os.path.join(folder, stable))
        db(db.doc_document.id == row.id).update(file=stable, modified_on=PREPOP_TIME)


def _office_location(gaz, org, places):
    """A head office sits in the capital's L1 of a national organisation's country, else
    in the L1 where most of its hospitals/people are, else in its country."""
    capital = CAPITAL_L1.get(org["country"] or "")
    if capital:
        found = gaz.find(org["country"], [capital])
        if found is not None and found.level == "L1":
            return found.id
    l1s = collections.Counter()
    for place in places:
        l1 = place.ancestor("L1") if place else None
        if l1 is not None:
            l1s[l1.id] += 1
    if l1s:
        return sorted(l1s.items(), key=lambda kv: (-kv[1], kv[0]))[0][0]
    country = gaz.countries.get(org["country"] or "")
    return country.id if country else None


def _documents(db, orgs, ebola_hospitals, people):
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["Country", "Name", "Type", "Status", "Beds", "Organisation"])
    for row in sorted(ebola_hospitals, key=lambda r: (r["Country"], r["Name"], r["Code"])):
        writer.writerow([row["Country"], row["Name"], row["Type"], row["Status"], row["Beds Total"],
                         row["Organisation"]])
    by_l1 = collections.Counter(r["Home L1"] for r in people)
    text = ["Timor-Leste Red Cross (CVTL) volunteers by municipality", ""]
    text += ["%-12s %5d" % (name, n) for name, n in sorted(by_l1.items())]
    text += ["%-12s %5d" % ("Total", len(people)), ""]
    documents = [
        ("Ebola treatment centres, West Africa 2014", "ebola_treatment_centres_2014.csv",
         out.getvalue(), "World Health Organisation", datetime.date(2014, 10, 1),
         "Situation summary of treatment, holding, triage and transit centres."),
        ("CVTL volunteers by municipality", "cvtl_volunteers_by_municipality.txt",
         "\n".join(text), CVTL, datetime.date(2021, 4, 10),
         "Volunteer roster summary used for the April 2021 flood response."),
    ]
    table = db.doc_document
    for name, filename, content, org_name, date, comments in documents:
        stored = table.file.store(io.BytesIO(content.encode("utf-8")), filename)
        table.insert(name=name, file=stored, organisation_id=orgs.id(org_name), date=date, comments=comments)
    return len(documents)


def _fake_key(seed, prefix, length, alphabet):
    digest = b""
    counter = 0
    while len(digest) < length:
        digest += hashlib.sha256(("%s:%s:%d" % (prefix, seed, counter)).encode("utf-8")).digest()
        counter += 1
    return prefix + "".join(alphabet[b % len(alphabet)] for b in digest[:length])


def _site_settings(db, gaz):
    instance = os.environ.get("EDEN_INSTANCE", "a")
    seed = instance
    if "plugin_sync_identity" in db.tables:  # per-instance keys: a leaked key names its instance
        me = db(db.plugin_sync_identity).select(orderby=db.plugin_sync_identity.id, limitby=(0, 1)).first()
        seed = me.base_uuid if me else instance
    settings = [
        ("system_name", "Sahana Eden - instance %s" % instance),
        ("base_public_url", "https://eden-%s.example.org" % instance),
        ("mail_server", "smtp.eden-%s.example.org:587" % instance),
        ("mail_sender", "Sahana Eden <noreply@eden-%s.example.org>" % instance),
        ("L10n_default_language", "en"),
    ]
    db.s3_setting.bulk_insert([dict(name=n, value=v) for n, v in settings])
    b64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    db.gis_config.insert(
        name="Default",
        google_maps_key=_fake_key(seed, "AIzaSy", 33, b64),
        bing_maps_key=_fake_key(seed, "", 64, b64[:62]),
        default_location_id=gaz.country("TL").id,
    )
    return len(settings), 1
