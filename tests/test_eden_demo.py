"""make run's demo data: Eden's own first run, Eden's own prepopulate and template data (issue 20).

`eden.py prepare --demo` (what `make run` does on its first start) on a fresh runtime
folder, SQLite: Eden's default/base (countries with ISO tags, the location hierarchy,
map config), the default template's own lookups and demo lookups, default/users (Eden
itself makes admin@example.com), then scripts/demo/tasks.cfg: Eden's bulk importer
with Eden's CSV stylesheets over Eden's own template CSVs (IFRC/Train, historic/Kashmir,
historic/ARC, Disease/Ebola, CCC, SAFIRE/BT) and eden_demo.py for Timor-Leste under
shared uuids (25 people here, all 1,184 in make run).  Then every module has records
and a record page of each answers 200 to the admin.
"""
import os
import sqlite3
import subprocess
import sys

import pytest

from conftest import BASE, EDEN_ADMIN, EDEN_SCRIPT, EdenServer, _eden_env
from edenseed import failing, logged_in_admin

CVTL = "Timor-Leste Red Cross Society (Cruz Vermelha de Timor-Leste)"
# what each module Eden's default template enables (and Hospitals) holds at least, after the demo
AT_LEAST = {
    "org_organisation": 40, "org_office": 5, "org_facility": 5, "inv_warehouse": 5, "inv_inv_item": 10,
    "supply_item": 100, "inv_req": 1, "inv_req_item": 1, "project_project": 5, "cr_shelter": 1, "cms_post": 1,
    "doc_document": 1, "med_hospital": 100, "vehicle_vehicle": 1, "gis_location": 3000,
}


@pytest.fixture(scope="module")
def demo():
    """The demo's Eden, prepared once for this module: (folder, the first run's output)."""
    name = "eden-demo"
    env = dict(_eden_env(), EDEN_DEMO_PEOPLE="25")
    r = subprocess.run([sys.executable, EDEN_SCRIPT, "prepare", "--demo", "--instance", name, "--runtime", BASE],
                       env=env, capture_output=True, text=True)
    assert r.returncode == 0, (r.stdout + r.stderr)[-5000:]
    return os.path.join(BASE, name), r.stdout + r.stderr


def query(folder, sql):
    con = sqlite3.connect(os.path.join(folder, "applications", "eden", "databases", "storage.db"))
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


def count(folder, table, where="1=1"):
    return query(folder, "SELECT COUNT(*) FROM %s WHERE (deleted IS NULL OR deleted = 'F' OR deleted = 0) AND %s"
                 % (table, where))[0][0]


def one_id(folder, table, where="1=1"):
    return query(folder, "SELECT MIN(id) FROM %s WHERE %s" % (table, where))[0][0]


@pytest.mark.parametrize("backend", ["sqlite"])
def test_demo_has_records_in_every_module_by_edens_own_prepopulate(demo, backend):
    folder, output = demo
    # every CSV of the demo went through Eden's importer without an error
    assert "import error" not in output and "Failed to find a transform file" not in output, output[-5000:]
    short = {t: (count(folder, t), n) for t, n in AT_LEAST.items() if count(folder, t) < n}
    assert not short, short
    # staff and volunteers, assets besides the vehicles
    assert count(folder, "hrm_human_resource", "type = 1") >= 10 and count(folder, "hrm_human_resource", "type = 2") >= 20
    assert count(folder, "asset_asset", "type != 1") >= 1
    # Eden's base: the site's location hierarchy, the countries' ISO2 tags, map config and projections
    assert count(folder, "gis_hierarchy", "uuid = 'SITE_DEFAULT'") == 1
    assert count(folder, "gis_location_tag", "tag = 'ISO2'") > 200
    assert count(folder, "gis_config") >= 1 and count(folder, "gis_projection") >= 1
    # Eden's default/users made the administrator (the launcher makes no account by hand)
    admins = query(folder, "SELECT u.email FROM auth_user u JOIN auth_membership m ON m.user_id = u.id "
                           "JOIN auth_group g ON g.id = m.group_id WHERE g.uuid = 'ADMIN'")
    assert admins == [(EDEN_ADMIN[0],)]
    # Eden's organisation rule and ours meet: one Timor-Leste Red Cross, its warehouse and offices
    (cvtl,) = query(folder, "SELECT id FROM org_organisation WHERE name = '%s'" % CVTL.replace("'", "''"))[0:1]
    assert len(query(folder, "SELECT id FROM org_organisation WHERE name = '%s'" % CVTL)) == 1
    assert count(folder, "inv_warehouse", "organisation_id = %d" % cvtl[0]) >= 5
    # Timor-Leste's people under the countries of Eden's base (its uuids)
    assert count(folder, "gis_location", "level = 'L4'") >= 2819
    assert count(folder, "gis_location", "level = 'L0'") > 200


@pytest.mark.parametrize("backend", ["sqlite"])
def test_demo_record_pages_answer_the_admin(demo, backend):
    folder, _ = demo
    staff = query(folder, "SELECT person_id FROM hrm_human_resource WHERE type = 1 ORDER BY id LIMIT 1")[0][0]
    volunteer = query(folder, "SELECT person_id FROM hrm_human_resource WHERE type = 2 ORDER BY id LIMIT 1")[0][0]
    pages = ["/pr/person/%d" % staff, "/hrm/person/%d" % staff, "/hrm/person/%d/human_resource" % staff,
             "/vol/person/%d" % volunteer]
    for path, table, where in (
            ("/org/organisation/%d", "org_organisation", "1=1"), ("/org/office/%d", "org_office", "1=1"),
            ("/org/facility/%d", "org_facility", "1=1"), ("/med/hospital/%d", "med_hospital", "1=1"),
            ("/inv/warehouse/%d", "inv_warehouse", "1=1"), ("/inv/req/%d", "inv_req", "1=1"),
            ("/supply/item/%d", "supply_item", "1=1"), ("/cr/shelter/%d", "cr_shelter", "1=1"),
            ("/cms/post/%d", "cms_post", "1=1"), ("/doc/document/%d", "doc_document", "1=1"),
            ("/project/project/%d", "project_project", "1=1"), ("/asset/asset/%d", "asset_asset", "type != 1"),
            ("/vehicle/vehicle/%d", "vehicle_vehicle", "1=1"), ("/gis/location/%d", "gis_location", "level = 'L4'")):
        pages.append(path % one_id(folder, table, where))
    server = EdenServer(folder, None, "demo").start()
    try:
        admin = logged_in_admin(server.url, EDEN_ADMIN)
        assert failing(admin, server.url, pages) == {}
    finally:
        server.stop()
