"""Installing into real Sahana Eden exactly as the README says, and uninstalling again.

A pristine Eden (this session's prepared database, no plugin) gets the plugin by
`make install EDEN=<its applications/eden>`, is served by web2py's Rocket, and
the plugin's pages and peer endpoints answer Eden's administrator (200), a plain
Eden user (403) and nobody (401, or Eden's login page for a browser).
`make uninstall` then leaves Eden's tree exactly as it was before the install.
"""
import base64
import hashlib
import http.cookiejar
import os
import shutil
import subprocess
import urllib.error
import urllib.request

import pytest

from conftest import REPO, add_eden_user
from edenseed import eden_login

PLAIN = ("plain@example.com", "plain-user-pw-1")
PAGES = ("index", "export", "import_and_sync", "instances", "log", "conflicts")
ENDPOINTS = ("identity.json", "changes.json")
# what Eden itself writes while it runs: state, bytecode; everything else must be as it was
STATE = ("databases", "sessions", "errors", "cache", "uploads")
# the deployment's own config (the launcher's: public_url names the port the test server got)
CONFIG = os.path.join("models", "000_config.py")


def tree(app):
    """{relative path: sha256} of Eden's application folder, state and bytecode left out."""
    out = {}
    for root, dirs, files in os.walk(app):
        rel_root = os.path.relpath(root, app)
        if rel_root == ".":
            dirs[:] = [d for d in dirs if d not in STATE]
        dirs[:] = [d for d in dirs if d != "__pycache__"]
        for name in files:
            path = os.path.join(root, name)
            if os.path.islink(path):
                out[os.path.relpath(path, app)] = "link:" + os.readlink(path)
            else:
                with open(path, "rb") as f:
                    out[os.path.relpath(path, app)] = hashlib.sha256(f.read()).hexdigest()
    return out


def make(*args):
    """The README's command line (make install / uninstall), as a user types it."""
    r = subprocess.run(["make", "-s", "-C", REPO] + list(args), capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    return r.stdout


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kw):
        return None


def status(url, credentials=None):
    """(HTTP status, Location header) of a GET, redirects not followed."""
    request = urllib.request.Request(url)
    if credentials:
        token = base64.b64encode(("%s:%s" % credentials).encode()).decode()
        request.add_header("Authorization", "Basic " + token)
    opener = urllib.request.build_opener(NoRedirect)
    try:
        with opener.open(request, timeout=60) as r:
            return r.status, r.headers.get("Location")
    except urllib.error.HTTPError as e:
        return e.code, e.headers.get("Location")


def test_make_install_serve_and_uninstall(eden_instance, eden_server, eden_admin):
    import install

    env = eden_instance("pristine", plugin=None)
    app = os.path.join(env["folder"], "applications", "eden")
    assert not [p for p in os.listdir(os.path.join(app, "models")) if p.startswith("plugin_sync")]
    add_eden_user(env, *PLAIN)
    env["db"].commit()
    before = tree(app)

    out = make("install", "EDEN=%s" % app)
    assert "installed plugin_sync into %s" % app in out
    after = tree(app)
    added = set(after) - set(before)
    # exactly the plugin's files were added (copies, not links), and nothing of Eden's changed
    assert {p for p in before if after[p] != before[p]} == set()
    assert added and all(p.split(os.sep)[1].startswith("plugin_sync") for p in added), sorted(added)
    assert {p.split(os.sep)[0] for p in added} >= {"models", "controllers", "modules", "views"}
    # the repository's plugin files, and the record of them that uninstall goes by
    assert added == set(install.plugin_files()) | {install.MANIFEST}
    assert install.installed_files(app) == install.plugin_files()
    for rel in added - {install.MANIFEST}:
        assert not os.path.islink(os.path.join(app, rel))
        with open(os.path.join(REPO, rel), "rb") as f:
            assert after[rel] == hashlib.sha256(f.read()).hexdigest(), rel
    assert "models/plugin_sync.py" in added and "controllers/plugin_sync.py" in added

    server = eden_server(env=env)
    base = server.url + "/plugin_sync/"
    wrong = (eden_admin[0], "not-the-password")
    for page in PAGES:
        assert status(base + page, eden_admin)[0] == 200, (page, open(server.log).read()[-3000:])
        assert status(base + page, PLAIN)[0] == 403, page
        assert status(base + page, wrong)[0] == 401, page
        code, location = status(base + page)
        # nobody: a browser is sent to Eden's own login form
        assert code in (302, 303) and "/eden/default/user/login" in location, (page, code, location)
    for endpoint in ENDPOINTS:
        assert status(base + endpoint, eden_admin)[0] == 200, endpoint
        assert status(base + endpoint, PLAIN)[0] == 403, endpoint
        assert status(base + endpoint)[0] == 401, endpoint
        assert status(base + endpoint, wrong)[0] == 401, endpoint
    # Eden itself still works with the plugin in it
    assert status(server.url + "/default/index")[0] == 200
    server.stop()

    out = make("uninstall", "EDEN=%s" % app)
    assert "removed from %s" % app in out
    final = tree(app)
    assert final.pop(CONFIG) and before.pop(CONFIG)
    assert final == before


def test_install_refuses_what_is_not_an_application(tmp_path):
    r = subprocess.run(["make", "-s", "-C", REPO, "install", "EDEN=%s" % tmp_path], capture_output=True, text=True)
    assert r.returncode != 0 and "is not a web2py application" in r.stderr
    assert os.listdir(tmp_path) == []
    r = subprocess.run(["make", "-s", "-C", REPO, "install"], capture_output=True, text=True)
    assert r.returncode == 2 and "usage: make install EDEN=" in r.stdout


def test_install_copies_the_repositorys_plugin_paths_only():
    """The list is found by name (web2py's plugin convention): every plugin_sync path, no host file."""
    import install

    paths = install.plugin_paths()
    assert "models/plugin_sync.py" in paths and "modules/plugin_sync" in paths
    assert all(os.path.basename(p).startswith("plugin_sync") for p in paths)
    for host_file in ("models/db.py", "models/eden.py", "controllers/default.py", "modules/eden_demo.py"):
        assert not os.path.exists(os.path.join(REPO, host_file)), "a host file in the plugin's paths: " + host_file


# what a site adds of its own under plugin_sync* names: its settings after the plugin's model,
# its translation of the plugin's pages, a link to its secrets kept outside the application
SITE_MODEL = os.path.join("models", "plugin_sync_zz_site.py")
SITE_LANGUAGE = os.path.join("languages", "plugin_sync", "fr.py")
SITE_LINK = os.path.join("models", "plugin_sync_zz_secrets.py")
SECRETS = "plugins.sync.contact = 'it@example.org'  # kept outside the application\n"


def contents(app, paths):
    """{path: its text, or the target of a link} of the paths of `app` that exist."""
    out = {}
    for rel in paths:
        path = os.path.join(app, rel)
        if os.path.islink(path):
            out[rel] = "link:" + os.readlink(path)
        elif os.path.exists(path):
            out[rel] = open(path).read()
    return out


@pytest.mark.parametrize("backend", ["sqlite"])
def test_install_and_uninstall_leave_a_sites_own_plugin_sync_files(eden_folder, tmp_path):
    """The plugin's file list decides, not the name: a site's own plugin_sync* files stay through both commands."""
    import install

    folder, _ = eden_folder("site", plugin=None)
    app = os.path.join(folder, "applications", "eden")
    edens_own = tree(app)
    secrets = tmp_path / "secrets.py"
    secrets.write_text(SECRETS)
    with open(os.path.join(app, SITE_MODEL), "w") as f:
        f.write("plugins.sync.owner = 'Dili HQ'  # the site's own\n")
    os.symlink(str(secrets), os.path.join(app, SITE_LINK))
    make("install", "EDEN=%s" % app)
    # installed: the site translates the plugin's pages into French, next to the plugin's Spanish
    with open(os.path.join(app, SITE_LANGUAGE), "w") as f:
        f.write("{'Sync': 'Synchroniser'}\n")
    site = contents(app, (SITE_MODEL, SITE_LANGUAGE, SITE_LINK))
    assert len(site) == 3

    make("install", "EDEN=%s" % app)  # an upgrade: the same command again
    assert contents(app, site) == site
    assert os.path.isfile(os.path.join(app, "languages", "plugin_sync", "es.py"))

    out = make("uninstall", "EDEN=%s" % app)
    assert contents(app, site) == site, out
    assert secrets.read_text() == SECRETS
    left = [rel for rel in install.plugin_files() if os.path.lexists(os.path.join(app, rel))]
    assert left == [], "the plugin's files left after uninstall: %s" % left
    assert not os.path.exists(os.path.join(app, "modules", "plugin_sync"))
    # Eden's own files as they were: the tree is Eden's plus the site's three
    final = tree(app)
    assert {rel: final.pop(rel) for rel in site} and final == edens_own


def plugin_and_app(tmp_path):
    """A copy of the repository's plugin files (these tests must not touch the real ones) and an empty app."""
    import install

    source = tmp_path / "plugin"
    for rel in install.plugin_paths():
        src, dst = os.path.join(REPO, rel), source / rel
        dst.parent.mkdir(parents=True, exist_ok=True)
        if os.path.isdir(src):
            shutil.copytree(src, str(dst), ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy2(src, str(dst))
    app = tmp_path / "app"
    for name in ("models", "controllers", "modules", "views", "static", "languages"):
        (app / name).mkdir(parents=True)
    return source, app


def test_linked_install_keeps_a_sites_files_out_of_the_repository(tmp_path):
    """--link (the launcher's) links the plugin's files, not its folders: a site's file lands in the site, and stays."""
    import install

    source, app = plugin_and_app(tmp_path)
    shipped = tree(str(source))
    install.install(str(app), link=True, source=str(source))
    for rel in shipped:
        assert os.path.realpath(str(app / rel)) == os.path.realpath(str(source / rel)), rel
    (app / SITE_LANGUAGE).write_text("{'Sync': 'Synchroniser'}\n")
    install.install(str(app), link=True, source=str(source))
    assert tree(str(source)) == shipped, "a site's file went into the plugin's source"
    install.uninstall(str(app), source=str(source))
    assert tree(str(source)) == shipped
    assert (app / SITE_LANGUAGE).read_text() == "{'Sync': 'Synchroniser'}\n"
    assert [p for p in tree(str(app)) if p != SITE_LANGUAGE] == []


def test_an_upgrade_removes_what_the_plugin_no_longer_ships_and_only_that(tmp_path):
    """A file an earlier install put there that the new version has not goes; the site's own stays."""
    import install

    source, app = plugin_and_app(tmp_path)
    install.install(str(app), source=str(source))
    (app / SITE_MODEL).write_text("plugins.sync.owner = 'Dili HQ'\n")
    dropped = os.path.join("views", "plugin_sync", "log.html")
    os.remove(str(source / dropped))  # the new version renamed or dropped it
    install.install(str(app), source=str(source))
    assert not os.path.lexists(str(app / dropped))
    assert (app / SITE_MODEL).read_text() == "plugins.sync.owner = 'Dili HQ'\n"
    assert sorted(p for p in tree(str(app)) if p not in (SITE_MODEL, install.MANIFEST)) == sorted(tree(str(source)))


def logged_in(opener, url):
    """Eden shows the profile to a logged-in user and sends anyone else to its login form."""
    with opener.open(url + "/default/user/profile", timeout=60) as r:
        return "/default/user/profile" in r.url


@pytest.mark.parametrize("backend", ["sqlite"])
def test_two_instances_on_one_host_keep_their_own_logins(eden_server, eden_admin):
    """Browsers send cookies by host, not port: each instance names its session cookie itself."""
    a, b = eden_server("a", plugin=None), eden_server("b", plugin=None)
    jar = http.cookiejar.CookieJar()
    browser = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
    eden_login(browser, a.url, eden_admin)
    assert logged_in(browser, a.url) and not logged_in(browser, b.url)
    eden_login(browser, b.url, eden_admin)
    assert logged_in(browser, a.url) and logged_in(browser, b.url)
    names = sorted(c.name for c in jar if c.name.startswith("session_id"))
    assert names == sorted(["session_id_eden_%s" % os.path.basename(s.folder).replace("-", "_") for s in (a, b)])

