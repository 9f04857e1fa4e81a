# -*- coding: utf-8 -*-
"""Demo data for `make run`: Timor-Leste under uuids every instance shares, by Eden's own importer.

Run by Eden's prepopulate as an import script (scripts/demo/tasks.cfg:
`*,import_script,eden_demo.py`), with Eden's globals (db, s3db, auth, request,
current).  Reads the CSVs of Eden's own templates at the same commit
(modules/templates/locations/TL, Disease/Ebola, Turkey/Demo, IFRC/Demo) and
imports them as S3XML through s3db.resource(...).import_xml, so Eden's own
validation, super entities (pe_id, site_id), realms and onaccept hooks apply.

Why not those templates' own tasks.cfg lines (as the rest of the demo is): Eden's
CSV stylesheets give each instance's records uuids of its own, so two instances'
demo data would be different records for the sync.  Here records get uuids derived
from their names (uuid5), like Eden's countries (urn:iso:std:iso:3166:-1:code:XX,
made by Eden's default/base), so every instance's demo data is the same records,
as after a sync.
"""
import csv
import os
import sys
import time
import uuid

from lxml import etree

DEMO_NS = uuid.UUID("6f1c6bd2-3a8e-4f51-9a51-0d5c2b1d6e01")
GENDER = {"Mr.": "3", "Ms.": "2", "Mrs.": "2"}
PEOPLE_LIMIT = int(os.environ.get("EDEN_DEMO_PEOPLE") or 1184)  # all; fewer for a quicker first start


def demo_uuid(*parts):
    return uuid.uuid5(DEMO_NS, "/".join(parts)).urn


def country_uuid(code):
    return "urn:iso:std:iso:3166:-1:code:%s" % code


def rows(*path):
    with open(os.path.join(request.folder, "modules", "templates", *path), encoding="utf-8-sig") as f:  # noqa: F821
        return list(csv.DictReader(f))


def element(tablename, uid, data=(), refs=(), children=()):
    """One S3XML <resource>: data fields, references by uuid, nested component resources."""
    res = etree.Element("resource", name=tablename, uuid=uid)
    for field, value in data:
        if value not in (None, ""):
            etree.SubElement(res, "data", field=field).text = str(value)
    for field, table, ref_uid in refs:
        if ref_uid:
            etree.SubElement(res, "reference", field=field, resource=table, uuid=ref_uid)
    for child in children:
        res.append(child)
    return res


def import_tree(tablename, elements):
    """Import S3XML elements of one table with Eden's importer; returns how many it took."""
    if not elements:
        return 0
    root = etree.Element("s3xml")
    root.extend(elements)
    resource = s3db.resource(tablename)  # noqa: F821
    resource.import_xml(etree.ElementTree(root), ignore_errors=True)
    db.commit()  # noqa: F821
    if resource.error:
        sys.stderr.write("demo data: %s: %s\n" % (tablename, resource.error))
    return resource.import_count


def locations():
    """Timor-Leste's hierarchy L1..L4 (parents by name, as the CSVs give them) under its country.

    The countries (L0, uuids urn:iso:std:iso:3166:-1:code:XX) are Eden's own default/base.
    """
    l1 = {r["L1"]: demo_uuid("TL", r["L1"]) for r in rows("locations", "TL", "TL_L1.csv")}
    out = [element("gis_location", u, [("name", n), ("level", "L1")], [("parent", "gis_location", country_uuid("TL"))])
            for n, u in l1.items()]
    l2 = {}
    for r in rows("locations", "TL", "TL_L2.csv"):
        l2[r["L2"]] = u = demo_uuid("TL", r["L1"], r["L2"])
        out.append(element("gis_location", u, [("name", r["L2"]), ("level", "L2")],
                           [("parent", "gis_location", l1.get(r["L1"]))]))
    l3, l3_by_name = {}, {}
    for r in rows("locations", "TL", "TL_L3.csv"):
        u = demo_uuid("TL", r["L1"], r["L2"], r["L3"])
        l3[(r["L2"], r["L3"])] = u
        l3_by_name.setdefault(r["L3"], u)
        out.append(element("gis_location", u, [("name", r["L3"]), ("level", "L3")],
                           [("parent", "gis_location", l2.get(r["L2"]))]))
    for r in rows("locations", "TL", "TL_L4.csv"):
        parent = l3.get((r["L2"], r["L3"])) or l3_by_name.get(r["L3"])
        # by its GADM code: village names repeat within an L3 (31 of 2,819)
        out.append(element("gis_location", demo_uuid("TL-L4", r["L4 KV:GADM4"]),
                           [("name", r["L4"]), ("level", "L4"), ("lat", r["Lat"]), ("lon", r["Lon"])],
                           [("parent", "gis_location", parent)]))
    return import_tree("gis_location", out)


def organisations():
    """The Ebola response's, the Turkish and the Timor-Leste Red Cross organisations."""
    seen, out = set(), []
    files = (("Disease", "Ebola", "organisation.csv"), ("Turkey", "Demo", "organisation.csv"))
    found = [r for path in files for r in rows(*path)]
    found += [{"Organisation": n} for n in sorted({r["Organisation"] for r in rows("IFRC", "Demo", "people.csv")})]
    for r in found:
        name = r["Organisation"].strip()
        if name and name not in seen:
            seen.add(name)
            out.append(element("org_organisation", demo_uuid("org", name), [
                ("name", name), ("acronym", r.get("Acronym")), ("website", r.get("Website")),
                ("country", r.get("Country")), ("phone", r.get("Phone")), ("comments", r.get("Comments")),
            ]))
    return import_tree("org_organisation", out)


def hospitals():
    """Ebola treatment centres and Turkish hospitals, each at a point under its country."""
    out = []
    for path in (("Disease", "Ebola", "hospital.csv"), ("Turkey", "Demo", "hospitals.csv")):
        for r in rows(*path):
            name = r["Name"].strip()
            # by code, else by name and place: the Ebola file has 18 uncoded "no name" centres
            key = (path[0], r.get("Code") or "/".join((name, r.get("L1", ""), r.get("L2", ""), r.get("L3", ""))))
            location = element("gis_location", demo_uuid("hospital-location", *key),
                               [("name", name), ("lat", r.get("Lat")), ("lon", r.get("Lon"))],
                               [("parent", "gis_location", country_uuid(r["Country"]))])
            out.append(element("med_hospital", demo_uuid("hospital", *key), [
                ("name", name), ("code", r.get("Code")), ("total_beds", r.get("Beds Total")),
                ("comments", r.get("Comments")),
            ], [("organisation_id", "org_organisation", demo_uuid("org", r["Organisation"].strip()))],
                children=()))
            # the location first (its own import), then the hospital referring to it
            out[-1].append(etree.Element("reference", field="location_id", resource="gis_location",
                                         uuid=location.get("uuid")))
            out.insert(0, location)
    locations_done = import_tree("gis_location", [e for e in out if e.get("name") == "gis_location"])
    return locations_done, import_tree("med_hospital", [e for e in out if e.get("name") == "med_hospital"])


def people():
    """Timor-Leste Red Cross volunteers and staff: person, e-mail and phone, human resource record."""
    out = []
    for r in rows("IFRC", "Demo", "people.csv")[:PEOPLE_LIMIT]:
        key = r["Email"] or "%s %s" % (r["First Name"], r["Last Name"])
        contacts = [element("pr_contact", demo_uuid("contact", key, method), [("contact_method", method), ("value", v)])
                    for method, v in (("EMAIL", r["Email"]), ("SMS", r["Mobile Phone"])) if v]
        hr = element("hrm_human_resource", demo_uuid("hr", key), [("type", "2" if r["Type"] == "Volunteer" else "1")],
                     [("organisation_id", "org_organisation", demo_uuid("org", r["Organisation"].strip()))])
        out.append(element("pr_person", demo_uuid("person", key), [
            ("first_name", r["First Name"]), ("last_name", r["Last Name"]), ("gender", GENDER.get(r["Sex"])),
        ], children=contacts + [hr]))
    return import_tree("pr_person", out)


def main():
    started = time.time()
    counts = [("locations", locations()), ("organisations", organisations())]
    places, beds = hospitals()
    counts += [("hospitals", beds), ("people", people())]
    sys.stderr.write("demo data (Sahana templates): %s in %.0f s\n" % (
        ", ".join("%s %s" % kv for kv in counts), time.time() - started))


main()
