"""Helpers for the Eden tier (tests/test_eden_*.py): records made the way Eden makes them, and reads by uuid.

Records are created right after their instance is loaded (while `current` is that
instance's: Eden's update_super links each record to its super-entities, pe_id,
site_id...), later edits are plain updates of the instance's own `db`.
"""
import base64
import csv
import datetime
import gzip
import io
import json
import os
import re
import shutil
import time
import urllib.error
import urllib.parse
import urllib.request

from applications.eden.modules.plugin_sync.accounts import peer_account
from applications.eden.modules.plugin_sync.peers import this_instance

COUNTRY_UUID = "urn:iso:std:iso:3166:-1:code:AT"  # Eden's countries carry shared uuids like these


# the people, organisations and places of a small deployment: the tables a test names when it is about these,
# not about the whole deployment's synced set (eden.model.deployment_tables)
PEOPLE_AND_PLACES = (
    "gis_location",
    "org_organisation_type", "org_organisation", "org_organisation_organisation_type",
    "org_office_type", "org_office", "org_facility_type", "org_facility",
    "pr_person", "pr_contact", "pr_address",
    "hrm_department", "hrm_job_title", "hrm_human_resource", "hrm_job_title_human_resource",
    "med_hospital",
)

def make(env, tablename, **values):
    """Insert a record as Eden does (then update_super); its id.

    Only for the instance loaded last: Eden's s3db works on `current.db`.
    """
    s3db, db = env["s3db"], env["db"]
    from gluon import current

    assert current.db is db, "make() needs the instance loaded last (current.db)"
    table = s3db.table(tablename)
    record_id = table.insert(**values)
    s3db.update_super(table, dict(values, id=record_id))
    db.commit()
    return record_id


DEMO_SCRIPT = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "scripts", "demo", "eden_demo.py")


def prepopulate(env, people=25):
    """Eden's prepopulate of make run's Timor-Leste demo data (scripts/demo/eden_demo.py, Sahana's template CSVs) into
    this instance, through Eden's own bulk importer and S3XML import: what a fresh instance holds.

    Only for the instance loaded last (Eden's importer works on `current`).
    """
    from gluon import current
    from applications.eden.modules.s3.s3import import S3BulkImporter

    assert current.db is env["db"], "prepopulate() needs the instance loaded last (current.db)"
    current.request.env.request_method = "GET"  # as zzz_1st_run does for shell imports
    current.auth.override = True  # as zzz_1st_run does during prepopulate
    before = os.environ.get("EDEN_DEMO_PEOPLE")
    os.environ["EDEN_DEMO_PEOPLE"] = str(people)
    try:
        S3BulkImporter.import_script(DEMO_SCRIPT)
    except Exception as e:
        raise AssertionError(getattr(e, "output", e) or getattr(e, "traceback", e))
    finally:
        current.auth.override = False
        if before is None:
            os.environ.pop("EDEN_DEMO_PEOPLE")
        else:
            os.environ["EDEN_DEMO_PEOPLE"] = before
    env["db"].commit()


# Eden's template descriptors of make run, in its order (edenhost.DEMO_PREPOP after default/base and default/users)
DESCRIPTORS = ("default", "default/Demo", os.path.dirname(DEMO_SCRIPT))


def descriptor_lines(templates):
    """(folder of the CSV, row of tasks.cfg) of every task of DESCRIPTORS, paths made absolute."""
    for name in DESCRIPTORS:
        folder = name if os.path.isabs(name) else os.path.join(templates, name)
        with open(os.path.join(folder, "tasks.cfg")) as f:
            for row in csv.reader(f):
                if not row or row[0].strip('" ').startswith("#"):
                    continue
                yield folder, [c.strip() for c in row]


def cut(source, target, rows):
    """The first `rows` records of a CSV file (its header kept), in the file's own encoding."""
    raw = open(source, "rb").read()
    encoding = "utf-8-sig"
    try:
        raw.decode(encoding)
    except UnicodeDecodeError:  # a few of Eden's template files are Latin-1
        encoding = "latin-1"
    lines = list(csv.reader(io.StringIO(raw.decode(encoding), newline="")))
    with open(target, "w", newline="", encoding=encoding) as f:
        csv.writer(f).writerows(lines[:1 + rows])


def tasks_folder(templates, work, rows=None, scripts=True):
    """A tasks.cfg of Eden's template tasks over the template CSVs, each cut to `rows` rows (None: whole);
    `scripts`: with the special tasks (roles, make run's Timor-Leste script)."""
    out = []
    for n, (folder, row) in enumerate(descriptor_lines(templates)):
        if row[0] == "*":
            if not scripts:
                continue
            if len(row) > 2 and row[2] and not os.path.dirname(row[2]):
                row[2] = os.path.join(folder, row[2])
            out.append(row)
            continue
        where, name = os.path.split(row[2])
        source = os.path.join(templates, where, name) if where else os.path.join(folder, name)
        here = os.path.join(work, "%03d" % n)
        os.makedirs(here)
        xsl = os.path.join(os.path.dirname(source), row[3])
        if os.path.exists(xsl):  # a stylesheet next to the CSV (Eden looks there last)
            shutil.copy(xsl, here)
        if rows is None:
            shutil.copy(source, here)
        else:
            cut(source, os.path.join(here, name), rows)
        out.append(row[:2] + [os.path.join(here, name)] + row[3:])
    with open(os.path.join(work, "tasks.cfg"), "w", newline="") as f:
        csv.writer(f).writerows(out)
    return work


def load_templates(env, work, rows=None, scripts=True):
    """Eden's bulk importer over the CSVs Eden ships in its templates (make run's descriptors, DESCRIPTORS; see
    tasks_folder), into the instance loaded last, in the folder `work`: Eden's errors."""
    from gluon import current
    from applications.eden.modules.s3.s3import import S3BulkImporter

    assert current.db is env["db"]
    templates = os.path.join(env["folder"], "applications", "eden", "modules", "templates")
    current.request.env.request_method = "GET"  # as Eden's first run does
    current.auth.override = True
    os.environ.setdefault("EDEN_DEMO_PEOPLE", "25")
    importer = S3BulkImporter()
    s3 = current.response.s3
    for name in ("feed", "font", "image", "pr_image", "remote_csv", "role", "script", "task", "user", "xml"):
        s3["import_" + name] = getattr(importer, "import_" + name)  # the special tasks' handlers, as zzz_1st_run
    try:
        importer.perform_tasks(tasks_folder(templates, work, rows, scripts))
    finally:
        current.auth.override = False
    env["db"].commit()
    # a task of a module this deployment does not enable (event): Eden skips it, as make run's first start does
    return [e for e in importer.errorList if not e.startswith("WARNING: Unable to find table")]


def seed_org(env, prefix, country=None):
    """An organisation with its type, an office, a person with contact, address and staff record."""
    db = env["db"]
    org_type = make(env, "org_organisation_type", name="%s type" % prefix)
    org = make(env, "org_organisation", name="%s Relief" % prefix, acronym=prefix)
    make(env, "org_organisation_organisation_type", organisation_id=org, organisation_type_id=org_type)
    place = make(env, "gis_location", name="%s Town" % prefix, level="L1", parent=country)
    make(env, "org_office", name="%s HQ" % prefix, organisation_id=org, location_id=place)
    person = make(env, "pr_person", first_name="%s" % prefix, last_name="Person")
    pe_id = db.pr_person[person].pe_id
    make(env, "pr_contact", pe_id=pe_id, contact_method="EMAIL", value="%s@example.org" % prefix.lower())
    make(env, "pr_address", pe_id=pe_id, type=1, location_id=place)
    title = make(env, "hrm_job_title", name="%s Coordinator" % prefix, organisation_id=org)
    make(env, "hrm_human_resource", person_id=person, organisation_id=org, job_title_id=title, type=1)
    make(env, "med_hospital", name="%s Hospital" % prefix, organisation_id=org, location_id=place)
    return org


def country(env):
    """The country every instance has under one shared uuid (as Eden's prepopulate gives them)."""
    db = env["db"]
    row = db(db.gis_location.uuid == COUNTRY_UUID).select().first()
    if row:
        return row.id
    return make(env, "gis_location", name="Atlantis", level="L0", uuid=COUNTRY_UUID)


def _where(env, tablename, where):
    table = env["db"][tablename]
    query = table.id > 0
    for k, v in where.items():
        query &= table[k] == v
    return query


def row(env, tablename, **where):
    db = env["db"]
    found = db(_where(env, tablename, where)).select().first()
    db.commit()  # SQLite: no read transaction left open against the servers writing
    return found


def count(env, tablename, **where):
    db = env["db"]
    n = db(_where(env, tablename, where)).count()
    db.commit()
    return n


def uuids(env, tablename):
    db = env["db"]
    out = {r.uuid for r in db(db[tablename]).select(db[tablename].uuid)}
    db.commit()
    return out


def peer_login(env, speaks_for=None, email="peer@example.org", password="Peer-pass-1"):
    """An account of this instance in the peer role (SYNC_PEER): what another instance logs in with.

    `speaks_for`: the instance (env) that logs in with it; the account is bound to that
    instance's base_uuid, without which it may read but not push (accounts.bind).
    """
    peer = this_instance(speaks_for["db"]).base_uuid if speaks_for else None
    peer_account(env["db"], env["plugin_sync_settings"], email, password, peer=peer)
    return email, password


def http(method, url, data=None, auth=None, headers=None):
    """(status, headers, body) of a request; HTTP errors are answers too."""
    headers = dict(headers or {})
    if auth:
        headers["Authorization"] = "Basic " + base64.b64encode(("%s:%s" % auth).encode()).decode()
    req = urllib.request.Request(url, data=data, headers=headers, method=method)
    try:
        with urllib.request.urlopen(req, timeout=120) as resp:
            return resp.status, resp.headers, resp.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read()


def wait_for_worker(server, admin, seconds=120):
    """Wait until Eden's scheduler worker of `server` is alive (it has a heartbeat): jobs then go to it."""
    deadline = time.time() + seconds
    while not json.loads(http("GET", server.url + "/plugin_sync/index.json", auth=admin)[2])["scheduler"]["alive"]:
        assert time.time() < deadline, open(server.log).read()[-3000:]
        time.sleep(1)


def gunzip(data):
    return gzip.decompress(data) if data[:2] == b"\x1f\x8b" else data


def as_json(body):
    return json.loads(body.decode("utf-8"))


def later(seconds):
    return datetime.datetime.utcnow().replace(microsecond=0) + datetime.timedelta(seconds=seconds)


def eden_login(opener, url, credentials):
    """Log in through Eden's own login form (the session cookie goes into `opener`'s jar)."""
    page = opener.open(url + "/default/user/login", timeout=60).read().decode()
    key = re.search(r'name="_formkey" type="hidden" value="([^"]+)"', page).group(1)
    data = dict(email=credentials[0], password=credentials[1], _formkey=key, _formname="login")
    opener.open(url + "/default/user/login", urllib.parse.urlencode(data).encode(), timeout=60).read()


def browser():
    """An opener with its own cookie jar: one browser's session."""
    import http.cookiejar

    return urllib.request.build_opener(urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()))


def get(opener, url):
    """(status, text) of a GET in `opener`'s session; HTTP errors are answers too."""
    try:
        with opener.open(url, timeout=120) as resp:
            return resp.status, resp.read().decode("utf-8", "replace")
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode("utf-8", "replace")


def logged_in_admin(url, credentials):
    """A browser logged in through Eden's login form (it fails loudly when the login did not take)."""
    opener = browser()
    eden_login(opener, url, credentials)
    status, home = get(opener, url + "/default/index")
    assert status == 200 and 'id="auth_menu_logout"' in home, "not logged in as %s" % credentials[0]
    return opener


def failing(opener, url, paths):
    """{path: status} of the paths that do not answer 200 (with the error's first words)."""
    out = {}
    for path in paths:
        status, text = get(opener, url + path)
        if status != 200:
            out[path] = status
    return out


def _links(fragment):
    import html

    return [html.unescape(h) for h in re.findall(r'href="(/eden/[^"#]*)"', fragment)]


def menu_pages(opener, url):
    """Every page of Eden's menus as the logged-in user sees them: the main menu (the top bar: modules,
    Administration, the user's own menu; not logout, not the language switches) and each module's
    options menu (the side menu of its index page), collected from the rendered pages; paths under url."""
    prefix = "/" + url.rstrip("/").rsplit("/", 1)[1]
    status, home = get(opener, url + "/default/index")
    assert status == 200, status
    top = re.search(r'<nav class="top-bar">.*?</nav>', home, re.S)
    assert top, "no main menu in Eden's home page"
    pages = [p for p in _links(top.group(0)) if "logout" not in p and "_language=" not in p]
    for index in [p for p in pages if p.endswith("/index")]:
        status, text = get(opener, url + index[len(prefix):])
        side = re.search(r"<aside[^>]*id='menu-options'.*?</aside>", text, re.S)
        pages += _links(side.group(0)) if side else []
    return [p[len(prefix):] for p in dict.fromkeys(pages)]


# what the prepared database holds already (default/base ran in its own first run): imported again later,
# they would be stamped as edited, which a real first run (base, then the template, in one request) does not do
BASE_DONE = ("marker", "hierarchy", "config")


def prepopulate_template(env, template="default", leave_out=()):
    """Eden's own prepopulate of a template's lookups (its tasks.cfg: markers, supply catalogue items, types,
    sectors, statuses, skills...) into this instance, through Eden's S3BulkImporter, as Eden's first run
    does; GIS layers, what default/base made already and the CSV files named in `leave_out` are left out.
    Every record gets a uuid of this instance's own, as on every Eden.  Only for the instance loaded last (Eden's importer works on `current`)."""
    from gluon import current
    from applications.eden.modules.s3.s3import import S3BulkImporter

    assert current.db is env["db"], "prepopulate_template() needs the instance loaded last (current.db)"
    current.request.env.request_method = "GET"  # as zzz_1st_run does for shell imports
    current.auth.override = True
    importer = S3BulkImporter()
    importer.load_descriptor(os.path.join(env["folder"], "applications", "eden", "modules", "templates", template))
    try:
        for task in importer.tasks:
            if task[0] == 1 and not (task[2] in BASE_DONE or task[2].startswith("layer_") or
                                     os.path.basename(task[3]) in leave_out):
                importer.execute_import_task(task)
            elif task[0] == 2 and task[1] != "import_role":
                importer.execute_special_task(task)
    finally:
        current.auth.override = False
    assert not importer.errorList, importer.errorList[:5]
    env["db"].commit()


def s3xml(env, tablenames):
    """Eden's own S3XML of every record of these tables, one document per table (as Eden's sync exports them);
    only for the instance loaded last."""
    from gluon import current

    assert current.db is env["db"], "s3xml() needs the instance loaded last (current.db)"
    saved, current.auth.override = current.auth.override, True
    try:
        out = {}
        for name in tablenames:
            xml = env["s3db"].resource(name).export_xml(dereference=False, mcomponents=None)
            out[name] = xml if isinstance(xml, bytes) else xml.encode("utf-8")
        return out
    finally:
        current.auth.override = saved


def eden_import(env, documents):
    """Eden's own import (S3Resource.import_xml) of s3xml()'s documents, in their order, with no one logged in
    (as Eden's first run imports): {table: records imported}, {table: Eden's error}; then a commit."""
    from gluon import current
    from lxml import etree

    assert current.db is env["db"], "eden_import() needs the instance loaded last (current.db)"
    current.request.env.request_method = "GET"
    saved, current.auth.override = current.auth.override, True
    counts, errors = {}, {}
    try:
        for name, xml in documents.items():
            resource = env["s3db"].resource(name)
            resource.import_xml(etree.parse(io.BytesIO(xml)))
            counts[name] = resource.import_count
            if resource.error:
                errors[name] = resource.error
    finally:
        current.auth.override = saved
    env["db"].commit()
    return counts, errors
