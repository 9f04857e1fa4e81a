"""Real Sahana Eden as the plugin's host: its source, and per-instance runtime folders.

Source, in this order: EDEN_SRC (a user's own Eden tree, used as is); the
whole tree of the pinned commit, EDEN_ARCHIVE or
../shared/eden/sahana-eden-e1cbdd6-full.tar.xz next to this repository
(checked by its sha256); else GitHub's archive of the
pinned commit, downloaded and accepted only when the unpacked files give the
commit's git tree id (no archive hash needed: the tree id is the commit's own).
An archive is unpacked once into .runtime/src/ (git-ignored).

An instance is a web2py folder .runtime/<instance>/: VERSION, routes.py and
applications/eden = a copy of Eden (hard links for the read-only bulk, real
copies of the folders Eden writes into, so the cache never changes), the
plugin symlinked in by install.py (edits in the repository apply at once),
and a generated models/000_config.py (template, prepopulate, database, public
URL, a session cookie of its own).
"""
import fcntl
import hashlib
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import urllib.request
import uuid

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import install  # noqa: E402

APP = "eden"
EDEN_COMMIT = "e1cbdd6b55ac30247049c72a6f416606fdc5267d"
# the commit's git tree: what any copy of the commit's files must hash to (with SUBMODULES)
EDEN_TREE = "3fda762be22c0ec7d022546a8ee8811ff12f6b13"
# its two submodules, as gitlinks: GitHub's archives leave their folders empty
SUBMODULES = {"private/eden_deploy": "e66a928fae24eaca02f4f93d0961bd1f6b6e145f",
              "private/ol-rollup": "7b0dbef56e55f5d429e32e252d9beaa17c66b565"}
# the whole tree as `git archive` makes it (less the two large files of MISSING and the submodules)
ARCHIVE_NAME = "sahana-eden-e1cbdd6-full.tar.xz"
ARCHIVE_SHA256 = "93dd6ca349f571d0600bb9f944a493ccfdd296cb5a12778b97895b35097d80b8"
SHARED_ARCHIVE = os.path.join(os.path.dirname(REPO), "shared", "eden", ARCHIVE_NAME)
# the files the shared archive lacks (nothing Eden needs to run), as blobs of the commit's tree
MISSING = {"modules/wurfl.py": "f5ff78889f9ae3cb07dc0707e2b86915f1446725",
           "static/scripts/gis/ol.js.map": "9658de5d066e05602b00770ff7300fd084a180ee"}
GITHUB_ARCHIVE = "https://github.com/sahana/eden/archive/%s.tar.gz" % EDEN_COMMIT
VERSION = "Version 2.26.1-stable+timestamp.2023.10.11.00.00.00\n"
ROUTES = "default_application = 'eden'\n"
ADMIN_EMAIL = "admin@example.com"  # Eden's default/users prepopulate (masterUsers.csv)
ADMIN_PASSWORD = "testing"
# folders Eden writes into (update-check canary in models/, language files, private keys):
# real copies, so that no write reaches a hard-linked file of the cache
COPIED = ("models", "languages", "private", "cron", "databases", "errors", "sessions", "uploads", "cache")
# Eden's own prepopulate: the base (countries with their ISO tags, the location hierarchy, map
# config, markers, projections) and the users (admin@example.com / testing, an ADMIN)
BASE_PREPOP = ("default/base", "default/users")
# make run's demo: the default template's own lookups and demo lookups, then ours (scripts/demo/tasks.cfg)
DEMO_PREPOP = ("default/base", "default", "default/users", "default/Demo", os.path.join(REPO, "scripts", "demo"))


def cache_dir():
    return os.path.join(REPO, ".runtime", "src")


def sha256(path):
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def git_tree_id(folder, extra=()):
    """The git tree id of `folder`'s files plus `extra` index entries ((mode, id, path), e.g. gitlinks).

    As git itself hashes them, in a scratch repository (Eden's .gitignore skips some of its own
    committed files: added with -f; Eden's .gitattributes is applied as git applies it).
    """
    with tempfile.TemporaryDirectory(prefix="eden-tree-") as scratch:
        env = dict(os.environ, GIT_DIR=os.path.join(scratch, "git"), GIT_WORK_TREE=folder,
                   GIT_INDEX_FILE=os.path.join(scratch, "index"))
        for var in ("GIT_OBJECT_DIRECTORY", "GIT_ALTERNATE_OBJECT_DIRECTORIES", "GIT_CONFIG"):
            env.pop(var, None)

        def git(*args, **kw):
            try:
                r = subprocess.run(("git",) + args, cwd=folder, env=kw.get("env", env), capture_output=True,
                                   text=True)
            except FileNotFoundError:
                raise SystemExit("eden: checking a download of Eden needs git (not found): install git, "
                                 "or set EDEN_SRC=/path/to/eden")
            if r.returncode:
                raise SystemExit("eden: git %s in %s failed: %s" % (args[0], folder, r.stderr.strip()))
            return r.stdout.strip()

        bare = dict(env)
        del bare["GIT_DIR"], bare["GIT_WORK_TREE"]
        git("init", "-q", "--bare", env["GIT_DIR"], env=bare)
        git("add", "-A", "-f", ".")
        for mode, blob, path in extra:
            git("update-index", "--add", "--cacheinfo", "%s,%s,%s" % (mode, blob, path))
        return git("write-tree", "--missing-ok")


def gitlinks():
    return [("160000", commit, path) for path, commit in sorted(SUBMODULES.items())]


def _unpack(archive, dest, check):
    """Unpack the archive's one top folder to `dest`, after `check(folder)` passed (an unchecked tree never runs)."""
    tmp = "%s.partial-%d" % (dest, os.getpid())
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)
    try:
        with tarfile.open(archive) as tar:
            tar.extractall(tmp, filter="tar") if hasattr(tarfile, "data_filter") else tar.extractall(tmp)
        tops = os.listdir(tmp)
        if len(tops) != 1:
            raise SystemExit("eden: %s holds %d top folders, not one (an Eden archive has one)" % (archive, len(tops)))
        check(os.path.join(tmp, tops[0]))
        shutil.rmtree(dest, ignore_errors=True)
        os.rename(os.path.join(tmp, tops[0]), dest)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return dest


def _download(url, path):
    print("eden: downloading %s ..." % url, flush=True)
    try:
        with urllib.request.urlopen(url, timeout=120) as r, open(path + ".part", "wb") as f:
            shutil.copyfileobj(r, f)
    except OSError as e:
        if os.path.exists(path + ".part"):
            os.remove(path + ".part")
        raise SystemExit("eden: no Eden source: EDEN_SRC is not set, %s is not there, and the download of %s "
                         "failed (%s). Set EDEN_SRC=/path/to/your/eden (Sahana Eden at commit %s), or "
                         "EDEN_ARCHIVE=/path/to/%s" % (shared_archive(), url, e, EDEN_COMMIT, ARCHIVE_NAME))
    os.rename(path + ".part", path)


def eden_source():
    """The Eden tree to copy instances from (EDEN_SRC, else the unpacked, checked archive)."""
    own = os.environ.get("EDEN_SRC")
    if own:
        own = os.path.abspath(os.path.expanduser(own))
        if not os.path.isfile(os.path.join(own, "models", "00_db.py")):
            raise SystemExit("eden: EDEN_SRC=%s is not a Sahana Eden tree (no models/00_db.py)" % own)
        return own
    tree = os.path.join(cache_dir(), "eden-%s-tree-%s" % (EDEN_COMMIT[:7], EDEN_TREE[:7]))
    if os.path.isfile(os.path.join(tree, "models", "00_db.py")):
        return tree
    os.makedirs(cache_dir(), exist_ok=True)
    # the test workers may all ask at once: one unpacks, the others wait for it and take its tree
    with open(os.path.join(cache_dir(), ".unpack.lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if os.path.isfile(os.path.join(tree, "models", "00_db.py")):
            return tree
        return _fetch_and_unpack(tree)


def shared_archive():
    """The whole tree's archive: EDEN_ARCHIVE (a path), else ../shared/eden/ next to this repository."""
    return os.environ.get("EDEN_ARCHIVE") or SHARED_ARCHIVE


def _fetch_and_unpack(tree):
    shared = shared_archive()
    if os.path.isfile(shared):
        print("eden: unpacking %s (once) ..." % shared, flush=True)
        got = sha256(shared)
        if got != ARCHIVE_SHA256:
            raise SystemExit("eden: %s has sha256 %s, expected %s" % (shared, got, ARCHIVE_SHA256))
        return _unpack(shared, tree, check=lambda folder: None)
    url = os.environ.get("EDEN_ARCHIVE_URL") or GITHUB_ARCHIVE
    archive = os.path.join(cache_dir(), "eden-download-%d.tar.gz" % os.getpid())
    _download(url, archive)
    try:
        return _unpack(archive, tree, check=lambda folder: check_tree(folder, url))
    finally:
        os.remove(archive)


def check_tree(folder, origin):
    """Refuse a downloaded tree unless its files are the pinned commit's (its git tree id, EDEN_TREE_ID overrides)."""
    expected = os.environ.get("EDEN_TREE_ID") or EDEN_TREE
    print("eden: checking the download against the commit's git tree %s ..." % expected, flush=True)
    got = git_tree_id(folder, gitlinks())
    if got != expected:
        raise SystemExit("eden: refused %s: its files give git tree %s, not %s (commit %s's): not the pinned "
                         "Eden, or damaged" % (origin, got, expected, EDEN_COMMIT))


def copy_tree(src, app):
    """Eden's tree as `app`: hard links for the read-only bulk, real copies where Eden writes."""
    os.makedirs(app)
    for name in sorted(os.listdir(src)):
        s, d = os.path.join(src, name), os.path.join(app, name)
        if name in COPIED or not os.path.isdir(s):
            if os.path.isdir(s):
                shutil.copytree(s, d, symlinks=True)
            else:
                shutil.copy2(s, d)
        elif subprocess.run(["cp", "-al", s, d], stderr=subprocess.DEVNULL).returncode:
            # another file system (no hard links across): a real copy, slower, same result
            shutil.rmtree(d, ignore_errors=True)
            shutil.copytree(s, d, symlinks=True)
    for name in COPIED:
        os.makedirs(os.path.join(app, name), exist_ok=True)


def db_settings(db_uri):
    """settings.database.* lines for a pydal URI (sqlite: Eden's own databases/storage.db)."""
    if not db_uri or db_uri.startswith("sqlite"):
        return ['settings.database.db_type = "sqlite"']
    from urllib.parse import unquote, urlsplit

    u = urlsplit(db_uri)
    if u.scheme not in ("postgres", "postgresql", "postgres:psycopg2"):
        raise SystemExit("eden: database %r: SQLite or postgres://user:pw@host:port/db" % db_uri)
    return [
        'settings.database.db_type = "postgres"',
        "settings.database.host = %r" % (u.hostname or "127.0.0.1"),
        "settings.database.port = %r" % str(u.port or 5432),
        "settings.database.database = %r" % u.path.lstrip("/"),
        "settings.database.username = %r" % unquote(u.username or "postgres"),
        "settings.database.password = %r" % unquote(u.password or ""),
        "settings.database.pool_size = %d" % int(os.environ.get("EDEN_DB_POOL_SIZE") or 5),
    ]


# After Eden's template: our prepopulate, and a session cookie per instance. web2py names the
# file session's cookie session_id_<app> (session_id_eden for every instance), and browsers send
# cookies by host regardless of port: two instances on 127.0.0.1 would log each other out.
CONFIG_TAIL = '''
settings.base.prepopulate = %(prepopulate)r
settings.base.prepopulate_demo = 0
# Eden's Hospitals module (off in the default template): hospitals are shared data to sync
from gluon.storage import Storage as _Storage
settings.modules.setdefault("med", _Storage(name_nice=T("Hospitals"), restricted=True, module_type=10))

# one session cookie per instance (session_id_eden_<instance>), see scripts/edenhost.py; not when
# Eden reads this file outside a request (its setup module, setup_instance_settings_read)
_cookie = "session_id_eden_%(cookie)s"
if request.application:
    request.cookies.pop("session_id_eden", None)
    if _cookie in request.cookies:
        request.cookies["session_id_eden"] = request.cookies[_cookie]
    session.connect(request, response)
    response.cookies.pop("session_id_eden", None)  # set by the connect above and by web2py's own
    response.session_id_name = _cookie

# Eden (2022) names collections.Iterable (s3utils.s3_flatlist: every report page, the pivot tables),
# which Python 3.10 left in collections.abc only: the alias, for the Python this runs on
import collections as _collections
import collections.abc as _collections_abc
if not hasattr(_collections, "Iterable"):
    _collections.Iterable = _collections_abc.Iterable

# web2py 2.26.1's Scheduler.queue_task reads rtn.errors of pydal's validate_and_insert, which pydal
# 20231114 answers with a plain dict: with a scheduler worker alive, every S3Task.run_async of Eden
# (its setup page, ...) failed. The answer as a Row (a dict that also has attributes), once per process
import pydal.objects as _pydal_objects
if not getattr(_pydal_objects.Table.validate_and_insert, "as_row", False):
    def _validate_and_insert(self, _plain=_pydal_objects.Table.validate_and_insert, **fields):
        return _pydal_objects.Row(_plain(self, **fields))
    _validate_and_insert.as_row = True
    _pydal_objects.Table.validate_and_insert = _validate_and_insert
'''


def hmac_key(app):
    """The instance's password-hashing key: made once, kept with the database (copies share both)."""
    path = os.path.join(app, "databases", "plugin_sync_hmac.key")
    if not os.path.exists(path):
        os.makedirs(os.path.dirname(path), exist_ok=True)
        write(path, uuid.uuid4().hex)
    return open(path).read().strip()


SITE_CONFIG = "000_config_site.py"  # a site's own settings: after 000_config.py, never written by the launcher


def config_text(src, instance, port, db_uri, prepopulate, key, debug=False):
    """Eden's own 000_config.py template, finished: template default, our database and extras."""
    text = open(os.path.join(src, "modules", "templates", "000_config.py"), encoding="utf-8").read()
    text = text.replace("FINISHED_EDITING_CONFIG_FILE = False", "FINISHED_EDITING_CONFIG_FILE = True")
    ours = db_settings(db_uri) + [
        "settings.base.public_url = %r" % ("http://127.0.0.1:%d" % port),
        "settings.base.debug = %r" % bool(debug),
        "settings.auth.hmac_key = %r" % key,
        "settings.mail.sender = None",
    ]
    marker = "settings.import_template()"
    assert marker in text, "Eden's 000_config.py template changed: no %s" % marker
    head = ("# --- plugin_sync launcher (scripts/edenhost.py): instance %r; this file is rewritten at every start:\n"
            "# put your own settings in models/%s, which runs right after it and is never touched ---\n%s\n"
            % (instance, SITE_CONFIG, "\n".join(ours)))
    cookie = "".join(c if c.isalnum() else "_" for c in instance)
    tail = CONFIG_TAIL % {"prepopulate": list(prepopulate), "cookie": cookie}
    text = text.replace(marker, head + marker, 1)
    return text.replace("\nVERSION = 1", tail + "\nVERSION = 1", 1)


def write(path, text):
    if not os.path.exists(path) or open(path).read() != text:
        with open(path, "w") as f:
            f.write(text)


def runtime_folder(instance, base=None, port=8000, db_uri=None, prepopulate=BASE_PREPOP, plugin="link", demo=False):
    """Create (once) and return the web2py folder of Eden instance `instance`; the config is rewritten each time
    (a site's own settings go in models/000_config_site.py, which is left alone).

    plugin: "link" (symlinks to this repository), "copy" (as `make install` does), None (pristine
    Eden) or "keep" (leave the folder's plugin files as they are: the tests' copies).
    """
    base = base or os.path.join(REPO, ".runtime")
    folder = os.path.abspath(os.path.join(base, instance))
    app = os.path.join(folder, "applications", APP)
    src = eden_source()
    if not os.path.isfile(os.path.join(app, "models", "00_db.py")):
        shutil.rmtree(app, ignore_errors=True)
        copy_tree(src, app)
    write(os.path.join(folder, "VERSION"), VERSION)
    write(os.path.join(folder, "routes.py"), ROUTES)
    write(os.path.join(folder, "applications", "__init__.py"), "")
    write(os.path.join(folder, "welcome.w2p"), "")  # else gluon packs a 'welcome' app at start
    if demo:
        prepopulate = DEMO_PREPOP
    config = config_text(src, instance, port, db_uri, prepopulate, hmac_key(app))
    write(os.path.join(app, "models", "000_config.py"), config)
    if plugin in ("link", "copy"):
        install.install(app, link=(plugin == "link"))
    elif plugin is None:
        install.uninstall(app)
    return folder


def eden_db_string(db_uri):
    """The URI Eden builds from settings.database.* (models/00_db.py): pydal names .table files by its md5."""
    if not db_uri or db_uri.startswith("sqlite"):
        return "sqlite://storage.db"
    from urllib.parse import unquote, urlsplit

    u = urlsplit(db_uri)
    return "postgres://%s:%s@%s:%s/%s" % (unquote(u.username or "postgres"), unquote(u.password or ""),
                                          u.hostname or "127.0.0.1", u.port or 5432, u.path.lstrip("/"))


def table_prefix(db_uri):
    """pydal's .table file prefix for the database Eden opens for `db_uri` (md5 of the URI, base.py)."""
    return hashlib.md5(eden_db_string(db_uri).encode("utf8")).hexdigest()


def clone(template, instance, base, db_uri=None, template_uri=None, port=8000, plugin="link"):
    """A new instance from a prepared one: its tree (hard links + copies) and databases/ folder.

    The caller copies the database itself for PostgreSQL (CREATE DATABASE ... TEMPLATE); here
    the migration files (*.table) are renamed to the new database's prefix, so that pydal
    knows the tables exist instead of creating them again.
    """
    folder = os.path.abspath(os.path.join(base, instance))
    app = os.path.join(folder, "applications", APP)
    copy_tree(os.path.join(template, "applications", APP), app)
    old, new = table_prefix(template_uri), table_prefix(db_uri)
    dbdir = os.path.join(app, "databases")
    if not any(name.startswith(old + "_") for name in os.listdir(dbdir)):
        raise RuntimeError("clone: no %s_*.table files in %s: pydal's naming changed?" % (old, dbdir))
    if old != new:
        for name in os.listdir(dbdir):
            if name.startswith(old + "_"):
                os.rename(os.path.join(dbdir, name), os.path.join(dbdir, new + name[len(old):]))
    if first_run_done(folder, template_uri):
        mark_first_run(folder, db_uri)  # the database is a copy of the prepared one
    return runtime_folder(instance, base, port=port, db_uri=db_uri, plugin=plugin)


def is_eden(folder):
    return os.path.isfile(os.path.join(folder, "applications", APP, "models", "00_db.py"))


def _marker(folder):
    return os.path.join(folder, "applications", APP, "databases", "plugin_sync_first_run.done")


def first_run_done(folder, db_uri=None):
    """True once Eden's first run finished on this database (a marker naming it, written after)."""
    path = _marker(folder)
    return os.path.exists(path) and open(path).read() == eden_db_string(db_uri)


def mark_first_run(folder, db_uri=None):
    write(_marker(folder), eden_db_string(db_uri))
