"""Instances prepopulated from the same Sahana template, then synced for the first time (issue 12).

Each instance is a copy of the session's prepared Eden, prepopulated on its own
by Eden's own importer with the same template data (scripts/demo/eden_demo.py
under Eden's own countries, shared uuids `urn:iso:std:iso:3166:-1:code:XX`: the
Timor-Leste hierarchy, organisations, hospitals, people, all under uuids both
instances share), seconds apart: the same records with their own created_on and
modified_on.  The default user's person record is the template's on both
(the prepared database is copied); B gets it a uuid of its own, as Eden's
default/users gives each instance.  B matches unknown uuids with Eden's own
deduplicate rules (match = "eden"), A by uuid and unique keys only (the default).
"""
import io
import uuid

from edenseed import make, prepopulate, row

from applications.eden.modules.plugin_sync.eden import model as plugin_eden
from applications.eden.modules.plugin_sync import fileio

PEOPLE = 20


def settings(env):
    return env["plugin_sync_settings"]


def prepopulated(eden_instance, name):
    env = eden_instance(name)
    prepopulate(env, people=PEOPLE)
    return env


def own_default_person(env):
    """The default user's person under a uuid of this instance's own (Eden's default/users makes it per
    instance): that uuid."""
    db = env["db"]
    link = db.pr_person_user
    person = db((link.user_id == db.auth_user.id) & (db.pr_person.pe_id == link.pe_id)).select(db.pr_person.ALL).first()
    own = uuid.uuid4().urn
    db(db.pr_person.id == person.id).update(uuid=own)
    db.commit()
    return own


def sync_file(source, target):
    data = io.BytesIO()
    fileio.export_to(source["db"], settings(source), data, fmt="gz")
    return fileio.import_from(target["db"], settings(target), data.getvalue(), name="%s.csv.gz" % source["name"])


def stamps(env, tablename, uid):
    r = row(env, tablename, uuid=uid)
    return r.created_on, r.modified_on


def test_first_sync_of_instances_prepopulated_from_one_template_has_no_conflicts(eden_instance):
    a = prepopulated(eden_instance, "a")
    a_admin_pe = row(a, "pr_person", first_name="Admin").pe_id
    make(a, "pr_contact", pe_id=a_admin_pe, contact_method="SMS", value="+670 7000 0001")  # A's own, later
    b = prepopulated(eden_instance, "b")
    b_admin = own_default_person(b)
    a_admin = row(a, "pr_person", first_name="Admin").uuid
    # what plugins.sync.match = "eden" in B's 000_config.py gives (configure adds Eden's matcher)
    b["plugin_sync_settings"] = plugin_eden.configure(dict(settings(b), match="eden"), b["db"])
    assert settings(b).matcher is plugin_eden.matcher
    # Eden's person rule wants a matching e-mail by default; a file's person comes without its contacts
    # (they travel in their own table): B's administrator lets names decide, Eden's own setting for imports
    b["settings"].pr.import_update_requires_email = False
    # a record of the demo's (Eden's countries are the prepared database's, copied: one stamp on both)
    tl = row(a, "gis_location", name="Dili", level="L1").uuid
    a_stamps, b_stamps = stamps(a, "gis_location", tl), stamps(b, "gis_location", tl)
    assert a_stamps[1] < b_stamps[1]  # B was prepopulated later: its copies are stamped later
    shared = row(b, "org_organisation", name="Timor-Leste Red Cross Society (Cruz Vermelha de Timor-Leste)").uuid

    report = sync_file(a, b)
    totals = report.totals()
    assert totals["conflicts"] == 0, report.as_dict()["tables"]
    assert totals["updated"] == 0
    assert totals["unchanged"] > 3000  # the template's records: the same on both sides
    assert report.tables["gis_location"]["created"] == 0
    # A's default person: Eden's person_duplicate (same names) finds B's; A's uuid is now an alias of it
    assert report.tables["pr_person"]["created"] == 0
    alias = row(b, "plugin_sync_alias", alias_uuid=a_admin)
    assert alias.tablename == "pr_person" and alias.local_uuid == b_admin
    assert row(b, "pr_person", uuid=a_admin) is None
    # a record of A's referring to A's default person (its entity) refers, at B, to B's default person's
    assert row(b, "pr_contact", value="+670 7000 0001").pe_id == row(b, "pr_person", uuid=b_admin).pe_id
    assert stamps(b, "gis_location", tl) == b_stamps  # B keeps its own, later stamp
    assert row(b, "plugin_sync_conflict") is None

    back = sync_file(b, a).totals()
    assert back["conflicts"] == 0 and back["updated"] == 0
    # A takes B's later stamp (nothing else): both instances now date the record alike; A keeps its created_on
    assert stamps(a, "gis_location", tl) == (a_stamps[0], b_stamps[1])
    assert row(a, "org_organisation", uuid=shared) is not None
    assert row(a, "plugin_sync_conflict") is None
    # by default (match="uuid") the default users' persons, under uuids of each instance's own, are two records
    assert row(a, "pr_person", uuid=b_admin) is not None
