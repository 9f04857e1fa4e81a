"""The pages in a real browser (issue 15): headless Debian chromium driven by playwright, against real Eden.

Log in through Eden's login form; a failing peer (wrong password, then offline)
is flagged on the dashboard and in the picture; a conflict is opened by its
record's name and restored; a non-admin is refused on every page and endpoint.
Screenshots go to test-artefacts/screenshots/ (git-ignored) for a person to look at.
"""
import json
import os
import re
import shutil
import tempfile
import time

import pytest
from gluon.languages import read_dict
from conftest import add_eden_user
from edenseed import country, http, later, peer_login, row, seed_org, wait_for_worker
from synchelpers import hub_peers

from applications.eden.modules.plugin_sync import fileio, replicate
from applications.eden.modules.plugin_sync.peers import this_instance, utcnow

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--no-first-run"]
SHOTS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "test-artefacts", "screenshots")
PAGES = ("index", "index.json", "export", "export.csv", "import_and_sync", "import_and_sync.json", "instances",
         "instances/new", "log", "conflicts", "sync_now/1", "sync_now.json", "job.json/1", "job/1")


@pytest.fixture
def browser():
    """A fresh headless chromium (its own user-data-dir) with one page; closed after the test."""
    from playwright.sync_api import sync_playwright
    profile = tempfile.mkdtemp(prefix="ps-chromium-")
    with sync_playwright() as p:
        context = p.chromium.launch_persistent_context(profile, executable_path=CHROMIUM, headless=True, args=ARGS)
        page = context.new_page()
        page.set_default_timeout(60000)
        page.on("dialog", lambda dialog: dialog.accept())  # "Restore this version?" confirmations
        try:
            yield page
        finally:
            context.close()
            shutil.rmtree(profile, ignore_errors=True)


def shot(page, name, backend):
    os.makedirs(SHOTS, exist_ok=True)
    page.screenshot(path=os.path.join(SHOTS, "%s-%s.png" % (name, backend)), full_page=True)


def login(page, url, email, password):
    """Eden's own login form (default/user/login)."""
    page.goto(url + "/default/user/login")
    page.fill("#auth_user_email", email)
    page.fill("#auth_user_password", password)
    page.press("#auth_user_password", "Enter")
    page.wait_for_load_state()


def sync_now(page, url, base_uuid):
    """Press the peer's "Sync now" on the Peers page (a POST with the CSRF key); back on the Peers page."""
    page.goto(url + "/plugin_sync/instances")
    page.locator('tr[data-peer="%s"] input[type=submit][value="Sync now"]' % base_uuid).click()
    page.wait_for_url(re.compile(r".*/plugin_sync/instances$"))


def health_row(page, url, base_uuid):
    page.goto(url + "/plugin_sync/index")
    return page.locator('#ps-peers tr[data-peer="%s"]' % base_uuid)


# every text of the Flows picture that touches another text or a node's box that is not its own, or leaves the canvas
CROWDED = """() => {
  const svg = document.querySelector('svg.ps-graph'), vb = svg.viewBox.baseVal;
  const box = (e) => { const b = e.getBBox(); return {x: b.x, y: b.y, w: b.width, h: b.height}; };
  const meet = (a, b) => a.x < b.x + b.w && b.x < a.x + a.w && a.y < b.y + b.h && b.y < a.y + a.h;
  const texts = [...svg.querySelectorAll('text')].map(t => Object.assign(box(t), {el: t, t: t.textContent}));
  const nodes = [...svg.querySelectorAll('g.ps-node')].map(g => Object.assign(box(g.querySelector('rect')), {g}));
  const lines = [...svg.querySelectorAll('g.ps-edge')].map(g => Object.assign(box(g.querySelector('line')), {g}));
  const out = [];
  texts.forEach((a, i) => {
    texts.slice(i + 1).forEach(b => { if (meet(a, b)) out.push([a.t, b.t]); });
    nodes.forEach(n => { if (!n.g.contains(a.el) && meet(a, n)) out.push([a.t, 'a node']); });
    lines.forEach(l => { if (l.g.contains(a.el) && (l.w < 4 || l.h < 4) && meet(a, l)) out.push([a.t, 'its line']); });
    if (a.x < 0 || a.y < 0 || a.x + a.w > vb.width || a.y + a.h > vb.height) out.push([a.t, 'outside']);
  });
  return out;
}"""


def test_failing_peer_is_flagged_on_the_dashboard_and_in_the_picture(
        eden_instance, eden_server, eden_admin, browser, backend):
    a = eden_instance("a")
    b = eden_instance("b")
    login_b = peer_login(b, speaks_for=a)
    server_b = eden_server("b", env=b)
    peer = replicate.register_peer(a["db"], a["plugin_sync_settings"], server_b.url, *login_b)
    a["db"](a["db"].sync_instance.id == peer.id).update(password="not-the-password", sync_interval=5)
    a["db"].commit()
    server_a = eden_server("a", env=a)
    page = browser
    login(page, server_a.url, *eden_admin)
    # the pages are in Eden's menus: the administrator's main menu, and the left-hand menu on them
    page.goto(server_a.url + "/default/index")
    entry = page.locator('a[role=menuitem][href$="/plugin_sync/index"]')  # in the Administration drop-down
    assert entry.count() == 1 and "Sync" in entry.text_content()
    page.goto(server_a.url + entry.get_attribute("href")[len("/eden"):])
    assert page.url.endswith("/plugin_sync/index")
    assert page.locator('#menu-options a[href$="/plugin_sync/conflicts"]').count() == 1
    assert page.locator("#ps-peers tr.ps-peer-never").count() == 1  # nothing run yet: not "ok"

    # 1. a wrong password: the Sync now button fails, the dashboard says so with the peer's message
    sync_now(page, server_a.url, peer.base_uuid)
    assert "failed" in page.content()
    tr = health_row(page, server_a.url, peer.base_uuid)
    assert "ps-peer-failing" in tr.get_attribute("class")
    assert "wrong credentials" in tr.locator(".ps-error-msg").inner_text()
    assert tr.locator(".badge.ok").count() == 0  # a failure never looks like a success
    edge = page.locator('svg.ps-graph g.ps-edge-failing[data-peer="%s"]' % peer.base_uuid)
    assert edge.count() == 1 and "FAILING" in edge.text_content()
    assert edge.locator("line").get_attribute("stroke-dasharray") and edge.locator("line").get_attribute(
        "stroke") == "#b91c1c"
    assert page.locator('svg.ps-graph g.ps-edge-ok').count() == 0
    assert page.evaluate(CROWDED) == []  # one peer: its labels beside its edge, not on it
    # the Log page: the failed run in an error style, its message in full (wrapping, not cut)
    page.goto(server_a.url + "/plugin_sync/log")
    failed = page.locator("table.ps-log tr.ps-failed").first
    assert "wrong credentials" in failed.locator(".ps-error-msg").inner_text()
    assert failed.locator(".ps-error-msg").evaluate("e => getComputedStyle(e).whiteSpace") == "normal"
    shot(page, "log-failed", backend)
    page.goto(server_a.url + "/plugin_sync/index")
    shot(page, "dashboard-wrong-password", backend)

    # 2. the right password, the peer's server stopped: failing again, now with the connection's message
    a["db"](a["db"].sync_instance.id == peer.id).update(password=login_b[1])
    a["db"].commit()
    server_b.stop()
    sync_now(page, server_a.url, peer.base_uuid)
    tr = health_row(page, server_a.url, peer.base_uuid)
    assert "ps-peer-failing" in tr.get_attribute("class")
    message = tr.locator(".ps-error-msg").inner_text()
    assert "failed" in message and "wrong credentials" not in message and server_b.url in message
    assert page.locator('svg.ps-graph g.ps-edge-failing[data-peer="%s"]' % peer.base_uuid).count() == 1
    shot(page, "dashboard-offline", backend)

    # the pages in another language (Eden's ?_language=, kept in the session): the plugin's own Spanish file
    page.goto(server_a.url + "/plugin_sync/index?_language=es")
    assert page.locator("h1").first.inner_text() == "Sincronización"
    assert page.locator("#ps-peers tr.ps-peer-failing .ps-state").inner_text() == "con fallos"
    assert "FALLA" in page.locator("svg.ps-graph g.ps-edge-failing").text_content()
    # where Eden's own language file has the word (Eden's sync module says "Peers" too), Eden's wins
    eden_es = read_dict(os.path.join(a["folder"], "applications", "eden", "languages", "es.py"))
    assert eden_es.get("Peers") == "Compañeros"  # Eden's whole tree, its languages/ included
    assert page.locator('.ps-subnav a[href$="/plugin_sync/instances"]').inner_text().strip() == "Compañeros"
    shot(page, "dashboard-es", backend)
    page.goto(server_a.url + "/plugin_sync/index?_language=en")
    assert page.locator("h1").first.inner_text() == "Synchronisation"

    # a hub's hundred peers: the most urgent first on the dashboard, the picture readable, the Peers page paged
    states = hub_peers(a["db"], 99, utcnow())
    page.goto(server_a.url + "/plugin_sync/index")
    shown = page.locator("#ps-peers table.ps-health tbody tr")
    assert shown.count() == 10 and "All 100 peers" in page.locator("#ps-peers").inner_text()
    assert [shown.nth(i).get_attribute("class") for i in range(10)] == (
        ["ps-peer-failing"] * 4 + ["ps-peer-overdue"] * 5 + ["ps-peer-never"])
    assert page.locator('svg.ps-graph g.ps-edge-failing[data-peer="%s"]' % peer.base_uuid).count() == 1
    for uuid in states["failing"] + states["overdue"]:  # every urgent peer drawn on its own
        assert page.locator('svg.ps-graph g.ps-edge[data-peer="%s"]' % uuid).count() == 1
    groups = page.locator("svg.ps-graph g.ps-group-edge")
    assert page.locator("svg.ps-graph g.ps-node").count() <= 13  # twelve around us, and us
    assert sum(int(groups.nth(i).get_attribute("data-count")) for i in range(groups.count())) + \
        page.locator("svg.ps-graph g.ps-edge:not(.ps-group-edge)").count() == 100
    assert page.evaluate(CROWDED) == []
    shot(page, "dashboard-100-peers", backend)
    page.goto(server_a.url + "/plugin_sync/instances?page=4")
    assert page.locator("table.ps-health tbody tr").count() == 25 and "76" in page.locator(".ps-pager").inner_text()
    assert page.locator("table.ps-health tbody tr.ps-peer-file").count() == 2  # file-only peers come last
    shot(page, "peers-100-page-4", backend)

    # 3. a non-admin: refused on every page and endpoint, in the browser and by HTTP Basic
    add_eden_user(a, "clerk@example.org", "Clerk-pass-1")
    a["db"].commit()
    for path in PAGES:
        method = "POST" if path.startswith("sync_now") else "GET"
        status, _, body = http(method, "%s/plugin_sync/%s" % (server_a.url, path), data=b"" if method == "POST" else None,
                               auth=("clerk@example.org", "Clerk-pass-1"))
        assert status == 403, (path, status)
        assert peer.base_uuid.encode() not in body
    page.goto(server_a.url + "/default/user/logout")
    login(page, server_a.url, "clerk@example.org", "Clerk-pass-1")
    for path in ("index", "instances", "log", "conflicts"):
        answer = page.goto("%s/plugin_sync/%s" % (server_a.url, path))
        assert answer.status == 403, path
        assert peer.base_uuid not in page.content()


def test_conflict_opened_by_its_record_name_and_restored(eden_instance, eden_server, eden_admin, browser, backend):
    a = eden_instance("a")
    seed_org(a, "Alpha", country(a))
    b = eden_instance("b")
    beta = seed_org(b, "Beta", country(b))
    login_b = peer_login(b, speaks_for=a)
    server_b = eden_server("b", env=b)
    peer = replicate.register_peer(a["db"], a["plugin_sync_settings"], server_b.url, *login_b)
    replicate.sync(a["db"], a["plugin_sync_settings"], peer.id)
    beta_uuid = row(b, "org_organisation", id=beta).uuid
    a["db"](a["db"].org_organisation.uuid == beta_uuid).update(acronym="BETA-by-A", modified_on=later(60))
    a["db"].commit()
    b["db"](b["db"].org_organisation.uuid == beta_uuid).update(acronym="BETA-by-B", modified_on=later(120))
    b["db"].commit()
    assert replicate.sync(a["db"], a["plugin_sync_settings"], peer.id, mode="pull")["pull"].totals()["conflicts"] == 1
    server_a = eden_server("a", env=a)
    page = browser
    login(page, server_a.url, *eden_admin)

    page.goto(server_a.url + "/plugin_sync/conflicts")
    link = page.locator("table.ps-conflicts a.ps-record-name", has_text="Beta Relief")
    assert link.count() == 1
    # the filters: by table (and by peer) narrow the list
    page.select_option('#ps-conflict-filter select[name="table"]', "org_organisation")
    page.click('#ps-conflict-filter input[type=submit]')
    page.wait_for_load_state()
    assert page.locator("table.ps-conflicts a.ps-record-name", has_text="Beta Relief").count() == 1
    page.goto(server_a.url + "/plugin_sync/conflicts?table=pr_person")
    assert page.locator("table.ps-conflicts a.ps-record-name").count() == 0
    page.goto(server_a.url + "/plugin_sync/conflicts?peer=%s" % peer.base_uuid)
    page.locator("table.ps-conflicts a.ps-record-name", has_text="Beta Relief").click()
    page.wait_for_load_state()
    assert "Beta Relief" in page.locator("h1 .ps-record-name").inner_text()
    shot(page, "conflict-detail", backend)
    page.click('input[type=submit][value="Restore this version"]')
    page.wait_for_load_state()
    assert "Version restored" in page.content()
    assert row(a, "org_organisation", uuid=beta_uuid) is not None
    a["db"].commit()  # a fresh read of what the server wrote
    assert a["db"](a["db"].org_organisation.uuid == beta_uuid).select().first().acronym == "BETA-by-A"
    # restored: shown as such, no second restore offered
    assert page.locator(".ps-restored").count() == 1
    assert page.locator('input[value="Restore this version"]').count() == 0
    shot(page, "conflict-restored", backend)
    page.goto(server_a.url + "/plugin_sync/conflicts?show=all")
    listing = page.locator("table.ps-conflicts")
    beta_rows = listing.locator("tbody tr", has_text="Beta Relief")
    assert beta_rows.locator(".ps-restored").count() == 1
    decisions = [t.strip() for t in beta_rows.locator("td.ps-decision .badge").all_inner_texts()]
    assert sorted(decisions) == ["replaced by a restore", "took incoming"], decisions  # the restore is no conflict
    shot(page, "conflicts-after-restore", backend)


def test_register_a_peer_by_url_with_the_identity_check(eden_instance, eden_server, eden_admin, browser, backend):
    a = eden_instance("a")
    b = eden_instance("b")
    login_b = peer_login(b, speaks_for=a)
    b_uuid = this_instance(b["db"]).base_uuid
    b["db"].commit()
    server_b = eden_server("b", env=b)
    server_a = eden_server("a", env=a)
    page = browser
    login(page, server_a.url, *eden_admin)

    def form(base_uuid="", password=login_b[1]):
        page.goto(server_a.url + "/plugin_sync/instances/new")
        page.fill("#sync_instance_url", server_b.url)
        page.fill("#sync_instance_username", login_b[0])
        page.fill("#sync_instance_password", password)
        page.fill("#sync_instance_base_uuid", base_uuid)

    def registered():
        a["db"].commit()  # a fresh read of what the server wrote
        return a["db"](a["db"].sync_instance.base_uuid == b_uuid).select().first()

    # a mistyped base UUID is refused: the peer answers with its own
    typo = b_uuid[:-1] + ("0" if b_uuid[-1] != "0" else "1")
    form(base_uuid=typo)
    page.click('#ps-peer-form input[type=submit][value="Save"]')
    page.wait_for_load_state()
    assert "answers as %s, not %s" % (b_uuid, typo) in page.content()
    assert registered() is None and a["db"](a["db"].sync_instance.base_uuid == typo).isempty()
    # a wrong password: not verified, so not saved (unless "save unverified" is ticked)
    form(password="not-the-password")
    page.click('#ps-peer-form input[type=submit][value="Save"]')
    page.wait_for_load_state()
    assert "Could not verify the peer" in page.content() and "wrong credentials" in page.content()
    assert registered() is None
    # Test connection: the peer's identity is filled in; Save then registers it with the login typed
    form()
    page.click("#ps-test")
    page.wait_for_load_state()
    assert b_uuid in page.locator("#ps-verified").inner_text()
    assert page.input_value("#sync_instance_base_uuid") == b_uuid
    assert registered() is None  # a test saves nothing
    shot(page, "register-verified", backend)
    page.click('#ps-peer-form input[type=submit][value="Save"]')
    page.wait_for_load_state()
    assert page.url.endswith("/plugin_sync/instances"), page.locator("#ps-peer-form").inner_text()
    peer = registered()
    assert peer is not None and peer.url == server_b.url and peer.password == login_b[1]
    # and it syncs: the dashboard shows it healthy
    sync_now(page, server_a.url, b_uuid)
    tr = health_row(page, server_a.url, b_uuid)
    assert "ps-peer-ok" in tr.get_attribute("class") and tr.locator(".ps-error-msg").count() == 0
    assert page.locator('svg.ps-graph g.ps-edge-ok[data-peer="%s"]' % b_uuid).count() == 1
    shot(page, "dashboard-ok", backend)


def test_import_preview_lists_the_records_by_name(eden_instance, eden_server, eden_admin, browser, backend, tmp_path):
    a = eden_instance("a")
    b = eden_instance("b")
    seed_org(b, "Gamma", country(b))
    path = str(tmp_path / "gamma.csv.gz")
    with open(path, "wb") as out:
        fileio.export_to(b["db"], b["plugin_sync_settings"], out, fmt="gz")
    server_a = eden_server("a", env=a)
    page = browser
    login(page, server_a.url, *eden_admin)
    page.goto(server_a.url + "/plugin_sync/import_and_sync")
    page.set_input_files("#ps-data", path)
    page.check('input[name="dry_run"]')
    page.click('#ps-import-form input[type=submit]')
    page.wait_for_load_state()
    created = page.locator("#ps-samples tr.ps-sample-created")
    assert created.filter(has_text="org_organisation").filter(has_text="Gamma Relief").count() == 1
    assert created.filter(has_text="pr_person").filter(has_text="Gamma Person").count() == 1
    assert created.filter(has_text="med_hospital").filter(has_text="Gamma Hospital").count() == 1
    assert row(a, "org_organisation", name="Gamma Relief") is None  # a preview writes nothing
    shot(page, "import-preview", backend)
    page.click('#ps-confirm-form input[type=submit]')
    page.wait_for_load_state()
    assert "Import report" in page.content() and page.locator("#ps-samples").count() == 0
    a["db"].commit()
    assert row(a, "org_organisation", name="Gamma Relief") is not None


LARGE = 12000  # persons in the large file: its import lasts seconds, long enough to watch it midway


def bulk_people(env, prefix, n):
    """n persons in one bulk insert (Eden's table, its defaults: uuid, modified_on): a file large enough to watch."""
    db = env["db"]
    env["s3db"].table("pr_person")
    db.pr_person.bulk_insert([dict(first_name="%s %05d" % (prefix, i), last_name="Bulk") for i in range(n)])
    db.commit()


def job_id(page):
    return int(re.search(r"[?&]job=(\d+)", page.url).group(1))


def watch_job(page, server, number, auth, buttons, on_midway=None):
    """Poll job.json/<number> (as a script would) until the job has finished; [(state, done, total)] seen.

    Whenever the job is seen midway (0 < done < total), the page's buttons (`buttons`, a selector)
    must be disabled at that moment (and `on_midway()` is called the first time).  A job that does not
    finish fails the test with every thread's stack of the server and its worker (where it hangs).
    """
    seen, deadline = [], time.time() + 300
    while time.time() < deadline:
        status, _, body = http("GET", "%s/plugin_sync/job.json/%d" % (server.url, number), auth=auth)
        assert status == 200, body[:300]
        job = json.loads(body)
        seen.append((job["state"], job["done"], job["total"]))
        if job["state"] in ("done", "failed"):
            return seen, job
        if job["total"] and 0 < job["done"] < job["total"]:
            assert all(b.is_disabled() for b in page.locator(buttons).all()), seen
            if on_midway:
                on_midway()
                on_midway = None
        time.sleep(0.5)  # (the page polls too: each poll runs Eden's models, CPU the job itself needs)
    raise AssertionError("job %d did not finish: %s\n%s" % (number, seen[-5:], server.stacks()))


def runs_in_a_fresh_interpreter(env, number):
    """Is job `number` running in a process started fresh (multiprocessing's spawn), not a fork of Eden's worker?
    (Its row names it host:pid:nonce; a fork shows its parent's command line.)"""
    db = env["db"]
    db.commit()
    pid = int(db.plugin_sync_job(number).worker.split(":")[1])
    with open("/proc/%d/cmdline" % pid, "rb") as f:
        return b"spawn_main" in f.read()


def midway(seen):
    return [s for s in seen if s[0] == "running" and s[2] and 0 < s[1] < s[2]]


def test_jobs_sync_export_and_a_large_import_show_progress_then_the_report(
        eden_instance, eden_server, eden_admin, browser, backend, tmp_path):
    """Sync now and watch the progress bar reach the report; export from the page and download the file;
    import a large file with preview (record names listed), confirm, progress, report: all run by Eden's
    scheduler worker, the page polling job.json."""
    b = eden_instance("b")
    bulk_people(b, "Beta", 1000)
    c = eden_instance("c")
    bulk_people(c, "Gamma", LARGE)
    path = str(tmp_path / "gamma.csv.gz")
    with open(path, "wb") as out:
        fileio.export_to(c["db"], c["plugin_sync_settings"], out, fmt="gz")
    a = eden_instance("a")
    login_b = peer_login(b, speaks_for=a)
    server_b = eden_server("b", env=b)
    peer = replicate.register_peer(a["db"], a["plugin_sync_settings"], server_b.url, *login_b)
    server_a = eden_server("a", env=a, scheduler=True)
    wait_for_worker(server_a, eden_admin)
    page = browser
    login(page, server_a.url, *eden_admin)

    # 1. Sync now: the Peers page shows the job's progress card, its buttons disabled, then the report
    page.goto(server_a.url + "/plugin_sync/instances")
    page.locator('tr[data-peer="%s"] input[type=submit][value="Sync now"]' % peer.base_uuid).click()
    page.wait_for_url(re.compile(r".*/plugin_sync/instances\?job=\d+$"))
    number = job_id(page)
    card = page.locator("#ps-job")
    assert card.count() == 1 and card.locator("progress").count() == 1
    sync_button = 'tr[data-peer="%s"] input[type=submit][value="Sync now"]' % peer.base_uuid
    assert page.locator(sync_button).is_disabled()
    shot(page, "job-sync-progress", backend)
    seen, job = watch_job(page, server_a, number, eden_admin, sync_button)
    assert job["state"] == "done", job
    assert job["report"]["pull"]["tables"]["pr_person"]["created"] >= 1000
    page.wait_for_selector("#ps-job-done")  # the page's own polling swapped the card for the report
    assert page.locator("#ps-job").count() == 0
    assert "pulled" in page.locator("#ps-sync-summary").inner_text()
    assert "{:,}".format(job["report"]["pull"]["tables"]["pr_person"]["created"]) in \
        page.locator("#ps-report tr", has_text="pr_person").inner_text()
    # the peer's health, drawn before the sync ran, is drawn again: now synced
    page.wait_for_selector('table.ps-health tr.ps-peer-ok[data-peer="%s"]' % peer.base_uuid)
    assert not page.locator(sync_button).is_disabled()
    shot(page, "job-sync-report", backend)

    # 2. an export from the page: a job too, its file downloaded from the link that replaces the card
    page.goto(server_a.url + "/plugin_sync/export")
    page.click('#ps-export-form input[type=submit]')
    page.wait_for_url(re.compile(r".*/plugin_sync/export\?job=\d+$"))
    assert page.locator("#ps-job, #ps-job-done").count() == 1  # running, or already done
    page.wait_for_selector("#ps-download")
    assert not page.locator("#ps-export-form input[type=submit]").is_disabled()
    shot(page, "job-export-ready", backend)
    got = page.request.get(server_a.url + page.locator("#ps-download").get_attribute("href")[len("/eden"):])
    assert got.ok and got.body().startswith(b"TABLE sync_instance") and b"Beta 00001" in got.body()

    # 3. a large file: preview (a job), the record names listed, then Import for real (a job), the report
    page.goto(server_a.url + "/plugin_sync/import_and_sync")
    page.set_input_files("#ps-data", path)
    page.check('input[name="dry_run"]')
    page.click('#ps-import-form input[type=submit]')
    page.wait_for_url(re.compile(r".*/plugin_sync/import_and_sync\?job=\d+$"))
    assert page.locator("#ps-job progress").count() == 1
    assert page.locator("#ps-import-form input[type=submit]").is_disabled()
    shot(page, "job-preview-progress", backend)
    previewed, job = watch_job(page, server_a, job_id(page), eden_admin, "#ps-import-form input[type=submit]",
                              lambda: shot(page, "job-preview-midway", backend))
    assert job["state"] == "done" and job["report"]["dry_run"], job
    page.wait_for_selector("#ps-confirm-form")
    created = page.locator("#ps-samples tr.ps-sample-created").filter(has_text="pr_person")
    assert created.locator(".ps-sample-name").count() == 10 and "Gamma" in created.inner_text()
    shown = int(re.search(r"and ([\d,]+) more", created.inner_text()).group(1).replace(",", ""))
    assert LARGE - 10 <= shown <= LARGE + 10  # LARGE persons and the few Eden made, 10 of them named
    assert row(a, "pr_person", first_name="Gamma 00001") is None  # a preview writes nothing
    assert not page.locator("#ps-import-form input[type=submit]").is_disabled()
    shot(page, "job-preview-report", backend)
    page.click('#ps-confirm-form input[type=submit]')
    page.wait_for_url(re.compile(r".*/plugin_sync/import_and_sync\?job=\d+$"))
    number = job_id(page)

    def at_midway():
        shot(page, "job-import-midway", backend)
        spawned.append(runs_in_a_fresh_interpreter(a, number))
    spawned = []
    imported, job = watch_job(page, server_a, number, eden_admin, "#ps-import-form input[type=submit]", at_midway)
    # Eden's worker ran it in a process of its own, not a fork of the worker (scripts/eden.py worker())
    assert spawned == [True], spawned
    assert job["state"] == "done" and not job["report"]["dry_run"], job
    assert job["report"]["tables"]["pr_person"]["created"] >= LARGE
    page.wait_for_selector("#ps-report")
    assert "Import report" in page.locator("#ps-report h2").inner_text()
    assert page.locator("#ps-job").count() == 0
    shot(page, "job-import-report", backend)
    a["db"].commit()
    assert row(a, "pr_person", first_name="Gamma 00001") is not None
    # the bar was seen midway (0 < done < total), with the buttons disabled then (watch_job checked)
    assert midway(previewed + imported), (previewed, imported)
    print("midway states seen: preview %d, import %d" % (len(midway(previewed)), len(midway(imported))))
    # the job endpoint is the administrator's alone
    add_eden_user(a, "clerk@example.org", "Clerk-pass-1")
    a["db"].commit()
    status, _, body = http("GET", "%s/plugin_sync/job.json/%d" % (server_a.url, job["id"]),
                           auth=("clerk@example.org", "Clerk-pass-1"))
    assert status == 403 and b"pr_person" not in body
