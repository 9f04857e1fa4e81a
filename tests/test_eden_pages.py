"""Every page of Eden's menus and a record page of each module answer Eden's admin (issue 20).

Real Eden (the tests' Eden: Eden's own default/base and default/users prepopulate, the
plugin installed), on SQLite and PostgreSQL.  The admin logs in through Eden's login
form; the pages are the links of Eden's main menu and of each module's options menu,
collected from the rendered pages, and the read pages of records made the Eden way
(update_super): a person, a staff member's person tab, an office, a facility, a hospital,
a warehouse, a shelter, a news post, an organisation, a project, a document, a location.
Without Eden's base prepopulate (no gis_hierarchy row, no ISO2 tags) the location
selector and the nationality list fail them with 500.  Eden's scheduler worker runs, as in
`make run`: with a worker alive Eden queues its tasks (S3Task.run_async) instead of running
them in the request, which web2py 2.26.1 with pydal 20231114 failed (its setup page).
"""
import time

from edenseed import country, failing, logged_in_admin, make, menu_pages

# Eden's own bugs at commit e1cbdd6, with or without the plugin: pages of its menus that fail
EDEN_OWN_BROKEN = {
    # Eden's inv options menu names a controller function `requisition`; controllers/inv.py has `req`
    "/inv/requisition/summary": 404, "/inv/requisition/create": 404, "/inv/requisition/map": 404,
    "/inv/requisition/report": 404,
    # inv/req_template lists field date_required_until, which inv_req's model has commented out
    "/inv/req_template": 500,
    # the shipments' timelines call s3_include_simile, which Eden defines nowhere
    "/inv/recv/timeline": 500, "/inv/send/timeline": 500,
}


def records(env):
    """One record of each module, made the Eden way: {what: read page}."""
    db = env["db"]
    l0 = country(env)
    l1 = make(env, "gis_location", name="Crawl Province", level="L1", parent=l0)
    org = make(env, "org_organisation", name="Crawl Relief", acronym="CR")
    office = make(env, "org_office", name="Crawl HQ", organisation_id=org, location_id=l1)
    person = make(env, "pr_person", first_name="Carla", last_name="Crawl")
    make(env, "pr_contact", pe_id=db.pr_person[person].pe_id, contact_method="EMAIL", value="carla@crawl.example.org")
    make(env, "hrm_human_resource", person_id=person, organisation_id=org, type=1,
         site_id=db.org_office[office].site_id)
    volunteer = make(env, "pr_person", first_name="Victor", last_name="Crawl")
    make(env, "hrm_human_resource", person_id=volunteer, organisation_id=org, type=2)
    return {
        "location": "/gis/location/%d" % l1,
        "organisation": "/org/organisation/%d" % org,
        "office": "/org/office/%d" % office,
        "facility": "/org/facility/%d" % make(env, "org_facility", name="Crawl Depot", organisation_id=org,
                                               location_id=l1),
        "hospital": "/med/hospital/%d" % make(env, "med_hospital", name="Crawl Hospital", organisation_id=org,
                                               location_id=l1),
        "warehouse": "/inv/warehouse/%d" % make(env, "inv_warehouse", name="Crawl Store", organisation_id=org,
                                                 location_id=l1),
        "shelter": "/cr/shelter/%d" % make(env, "cr_shelter", name="Crawl Shelter", organisation_id=org,
                                            location_id=l1),
        "news post": "/cms/post/%d" % make(env, "cms_post", name="Crawl news", body="<p>Roads open</p>"),
        "project": "/project/project/%d" % make(env, "project_project", name="Crawl Project", organisation_id=org),
        "document": "/doc/document/%d" % make(env, "doc_document", name="Crawl plan", organisation_id=org),
        "person": "/pr/person/%d" % person,
        "staff member": "/hrm/person/%d" % person,
        "staff member's record": "/hrm/person/%d/human_resource" % person,
        "volunteer": "/vol/person/%d" % volunteer,
    }


def worker_alive(env, timeout=120):
    """Wait until Eden's scheduler worker has its heartbeat row (Eden queues its tasks from then on)."""
    db, deadline = env["db"], time.time() + timeout
    while db(db.scheduler_worker.id > 0).isempty():
        assert time.time() < deadline, "Eden's scheduler worker did not start"
        time.sleep(0.5)
        db.commit()  # a fresh snapshot


def test_every_menu_page_and_record_page_answers_the_admin(eden_instance, eden_server, eden_admin):
    env = eden_instance("crawl")
    pages = records(env)
    server = eden_server("crawl", env=env, scheduler=True)
    worker_alive(env)
    admin = logged_in_admin(server.url, eden_admin)
    menus = menu_pages(admin, server.url)
    # the menus as Eden renders them for its admin: every module of the default template, and its options
    for module in ("org", "hrm", "vol", "project", "inv", "asset", "gis", "pr", "cms", "doc", "vehicle", "req", "cr",
                   "med", "admin"):
        assert "/%s/index" % module in menus, module
    assert len(menus) > 200 and "/org/office/create" in menus and "/hrm/staff/summary" in menus
    assert failing(admin, server.url, pages.values()) == {}
    assert failing(admin, server.url, menus) == EDEN_OWN_BROKEN
