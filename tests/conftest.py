"""Test harness: two hosts, on a fresh SQLite or PostgreSQL database each.

Every test that takes the `backend` parameter runs twice, on SQLite and on a
private PostgreSQL 15 server that this session starts (initdb into a temp dir,
as the `postgres` user when run as root, on its own port) and stops.

Engine tier, on the minihost (tests/minihost: a small imitation of Eden, fast):
  new_instance(name="a") -> env   fresh instance on the test's backend: its own web2py runtime
                                  folder, database and identity; env = gluon.shell.env with the
                                  minihost's and the plugin's models ("db", "auth",
                                  "plugin_sync_settings", ... plus "folder", "uri")
  instance, pg_instance           one such instance (any backend / PostgreSQL only)
  start_server(name="a", uri=None, seed=True) -> Server   Rocket serving a minihost instance

Eden tier, on REAL Sahana Eden (scripts/edenhost.py; the marker `pytest.mark.eden` is applied
to tests/test_eden_*.py and tests/test_install.py, `make test-fast` skips that tier):
  eden_instance(name="a", plugin="link") -> env   factory, per test, on the test's `backend`: a copy of this
                                  session's prepared Eden database (first run + default/base,
                                  default/users done once per backend), the plugin symlinked in,
                                  and gluon.shell.env of it with Eden's models imported:
                                  env["db"], env["auth"], env["s3db"] (= current.s3db),
                                  env["settings"] (Eden's deployment settings), env["plugin_sync_settings"]
                                  (when the plugin's models ran), plus env["folder"] (the runtime
                                  folder), env["uri"] (its database), env["name"].
                                  Accounts: eden_admin = ("admin@example.com", "testing") (ADMIN role);
                                  add_eden_user(env, email, password, admin=False) adds one.
  eden_server(name="a", scheduler=False, env=None, plugin="link") -> EdenServer   real Eden served by
                                  web2py's Rocket on a free 127.0.0.1 port (its own copy of the
                                  prepared database, or the database and folder of `env` from
                                  eden_instance: commit first), optionally with Eden's scheduler
                                  worker (-K eden); .url = "http://127.0.0.1:<port>/eden",
                                  .folder, .uri, .port, .log; stopped by pid at teardown.
  Eden envs live in this process next to the minihost's: Eden's own modules are found through an
  extra path of applications.eden.modules (load_eden); `current` is the env loaded last.
  eden_folder(name="a", plugin="link") -> (folder, uri)   a runtime folder only (plugin "link",
                                  "copy" or None for pristine Eden), nothing loaded.
"""
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "scripts"))
import eden  # noqa: E402  the launcher
import edenhost  # noqa: E402  real Eden's runtime folders

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from minihost import host as minihost  # noqa: E402  the engine tier's host
from pgserver import PG_BIN, PostgresServer, free_port, remove_later  # noqa: E402,F401  shared with tests/bench

BASE = tempfile.mkdtemp(prefix="eden-tests-")
os.chmod(BASE, 0o755)
_first = minihost.runtime_folder("harness", BASE)
os.environ["EDEN_DB_POOL_SIZE"] = "0"  # close connections for real: many databases per session
eden.enter(_first, "harness")

BACKENDS = ["sqlite", "postgres"]


@pytest.fixture(scope="session")
def postgres():
    server = PostgresServer().start()
    print("\n[harness] PostgreSQL 15 started on 127.0.0.1:%d (%s)" % (server.port, server.data))
    yield server
    server.stop()


@pytest.fixture(params=BACKENDS)
def backend(request):
    return request.param


_counter = [0]


def new_database_uri(backend, request_fixture, folder):
    if backend == "postgres":
        return request_fixture.getfixturevalue("postgres").new_database()
    return "sqlite://%s" % os.path.join(folder, "applications", "eden", "databases", "storage.sqlite")


def make_instance(backend, request, name, made, uri=None, like=None):
    """The app's environment (db, auth, settings) on a fresh database of `backend` (or on `uri`: another
    node of an instance, its own runtime folder over the same database, with the migration records of the
    node `like`'s folder)."""
    _counter[0] += 1
    folder = minihost.runtime_folder("%s-%d" % (name, _counter[0]), BASE)
    uri = uri or new_database_uri(backend, request, folder)
    if like:
        databases = os.path.join("applications", "eden", "databases")
        for name_ in os.listdir(os.path.join(like, databases)):
            if name_.endswith(".table"):
                shutil.copy(os.path.join(like, databases, name_), os.path.join(folder, databases))
    os.environ["EDEN_DB_URI"] = uri
    os.environ["EDEN_INSTANCE"] = name
    env = eden.app_env(folder)
    env["db"].commit()
    env["folder"] = folder
    env["uri"] = uri
    made.append(env)
    return env


def close_instances(made):
    for env in made:
        try:
            env["db"].rollback()
            env["db"].close()
        except Exception:
            pass


@pytest.fixture
def new_instance(backend, request):
    """Factory: new_instance("a") -> a fresh instance on the test's backend (SQLite, then PostgreSQL)."""
    made = []
    yield lambda name="a": make_instance(backend, request, name, made)
    close_instances(made)


@pytest.fixture
def pair(new_instance):
    """Two fresh instances, each seeded with its own small data set (A's and B's): a file from A meets B's data."""
    from synchelpers import instances, seed_small

    a, b = instances(new_instance)
    seed_small(a)
    seed_small(b, prefix="B")
    return a, b


@pytest.fixture
def instance(new_instance):
    return new_instance("a")


@pytest.fixture
def pg_instance(request):
    """A fresh instance on PostgreSQL only: for what only PostgreSQL has (concurrent writers)."""
    made = []
    yield make_instance("postgres", request, "a", made)
    close_instances(made)


class Server:
    """A real web2py server (Rocket) for one instance, on 127.0.0.1:<port>; stopped by pid."""

    def __init__(self, name, uri=None, base=BASE):
        _counter[0] += 1
        self.name = name
        self.folder = minihost.runtime_folder("%s-srv%d" % (name, _counter[0]), base)
        self.uri = uri or "sqlite://%s" % os.path.join(self.folder, "applications", "eden", "databases", "storage.sqlite")
        self.port = free_port()
        self.url = "http://127.0.0.1:%d/eden" % self.port
        self.log = os.path.join(self.folder, "server.log")
        self.proc = None

    def start(self, seed=True):
        env = dict(os.environ, EDEN_DB_URI=self.uri, EDEN_INSTANCE=self.name)
        args = ["--instance", os.path.basename(self.folder), "--runtime", os.path.dirname(self.folder), "--db", self.uri]
        script = os.path.join(REPO, "tests", "minihost", "host.py")
        if seed:
            subprocess.run([sys.executable, script, "seed", "--no-demo"] + args, check=True, env=env,
                           stdout=subprocess.DEVNULL)
        with open(self.log, "w") as log:
            self.proc = subprocess.Popen(
                [sys.executable, script, "serve", "--port", str(self.port)] + args,
                env=env, stdout=log, stderr=subprocess.STDOUT,
            )
        deadline = time.time() + 60
        while time.time() < deadline:
            try:
                urllib.request.urlopen(self.url + "/default/index", timeout=5)
                return self
            except urllib.error.HTTPError:
                return self
            except Exception:
                if self.proc.poll() is not None:
                    raise RuntimeError("server exited: %s" % open(self.log).read()[-2000:])
                time.sleep(0.2)
        raise RuntimeError("server did not start: %s" % open(self.log).read()[-2000:])

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def _server_factory():
    """start(name, uri=None, seed=True) -> a running Server, and the servers started, to stop."""
    servers = []

    def start(name="a", uri=None, seed=True):
        server = Server(name, uri).start(seed=seed)
        servers.append(server)
        return server

    return start, servers


@pytest.fixture
def start_server():
    """Factory: start_server("a", uri=None) -> a running Server; all stopped at teardown."""
    start, servers = _server_factory()
    yield start
    for server in servers:
        server.stop()


@pytest.fixture(scope="module")
def start_module_server():
    """start_server for a module's servers that its tests only read: started once, stopped after the module."""
    start, servers = _server_factory()
    yield start
    for server in servers:
        server.stop()


def pytest_sessionfinish(session, exitstatus):
    if not os.environ.get("EDEN_TESTS_KEEP"):
        remove_later(BASE)


# ------------------------------------------------------------------------------------ real Eden
EDEN_ADMIN = (eden.ADMIN_EMAIL, eden.ADMIN_PASSWORD)
EDEN_SCRIPT = os.path.join(REPO, "scripts", "eden.py")
_eden_templates = {}


def pytest_configure(config):
    config.addinivalue_line("markers", "eden: the real-Sahana-Eden tier (make test-fast leaves it out)")


def pytest_collection_modifyitems(config, items):
    """The Eden tier: tests/test_eden_*.py and tests/test_install.py (make test-fast leaves it out).

    Its tests run first, the browser tests first of all: they are the longest, and started last they
    leave the other worker idle at the end (longest first keeps `make test` within its 15 minutes).
    """
    for item in items:
        name = os.path.basename(str(item.fspath))
        if name.startswith("test_eden_") or name == "test_install.py":
            item.add_marker(pytest.mark.eden)

    def rank(item):
        name = os.path.basename(str(item.fspath))
        return (LONGEST.index(name) if name in LONGEST else len(LONGEST), not item.get_closest_marker("eden"))

    items.sort(key=rank)


# the files of the longest tests, longest first: started first, so that no worker waits alone at the end
LONGEST = ["test_eden_browser.py", "test_eden_pages.py", "test_eden_demo.py", "test_convergence.py",
           "test_eden_unit_tests.py", "test_fast_path.py", "test_jobs.py", "test_eden_prepopulated.py"]


def _eden_env():
    """The environment of Eden's processes: the database comes from --db only (not a minihost's)."""
    env = dict(os.environ, EDEN_DB_POOL_SIZE="0")
    env.pop("EDEN_DB_URI", None)
    return env


def eden_template(backend, request):
    """This session's prepared Eden of `backend` (first run + users), made once: (folder, uri)."""
    if backend not in _eden_templates:
        uri = None
        if backend == "postgres":
            uri = request.getfixturevalue("postgres").new_database("eden_template")
        name = "eden-template-%s" % backend
        started = time.time()
        log = os.path.join(BASE, name + ".log")
        with open(log, "w") as out:
            cmd = [sys.executable, EDEN_SCRIPT, "prepare", "--instance", name, "--runtime", BASE]
            r = subprocess.run(cmd + (["--db", uri] if uri else []), env=_eden_env(), stdout=out,
                               stderr=subprocess.STDOUT)
        if r.returncode:
            raise RuntimeError("preparing Eden (%s) failed:\n%s" % (backend, open(log).read()[-3000:]))
        print("\n[harness] Eden template database (%s) prepared in %.1f s" % (backend, time.time() - started))
        _eden_templates[backend] = (os.path.join(BASE, name), uri)
    return _eden_templates[backend]


def new_eden_folder(backend, request, name, plugin="link", port=8000):
    """A runtime folder copied from the prepared Eden of `backend`, with its own database: (folder, uri)."""
    template, template_uri = eden_template(backend, request)
    _counter[0] += 1
    instance = "eden-%s-%d" % (name, _counter[0])
    uri = None
    if backend == "postgres":
        server = request.getfixturevalue("postgres")
        uri = server.new_database("eden_%s" % "".join(c for c in name if c.isalnum()),
                                  template=template_uri.rsplit("/", 1)[1])
    folder = edenhost.clone(template, instance, BASE, db_uri=uri, template_uri=template_uri, port=port,
                            plugin=plugin)
    return folder, uri


def load_eden(folder, name):
    """gluon.shell.env of an Eden runtime folder, in this process (see the module docstring)."""
    import applications.eden.modules as app_modules

    modules = os.path.join(folder, "applications", "eden", "modules")
    # the harness's applications.eden is the minihost's: Eden's own modules (s3, s3db,
    # templates) are found through this extra path, the plugin's through the first
    if modules not in app_modules.__path__:
        app_modules.__path__.append(modules)
    os.environ["EDEN_INSTANCE"] = name
    os.chdir(folder)  # Eden opens some files relative to the web2py folder
    env = eden.app_env(folder)
    from gluon import current

    env["s3db"] = current.s3db
    env["settings"] = current.deployment_settings
    if "plugin_sync_settings" in env:  # as the plugin's controller does: Eden's synced tables, after Eden's models
        from applications.eden.modules.plugin_sync.eden import model as plugin_eden_model

        plugin_eden_model.prepare(env["db"], env["plugin_sync_settings"])
    env["db"].commit()
    return env


def add_eden_user(env, email, password, admin=False):
    """An Eden account (person, Authenticated role; Eden's ADMIN role if admin): its user id."""
    return eden.add_user(env, email, password, admin=admin, first_name=email.split("@")[0], last_name="Test")


@pytest.fixture
def eden_admin():
    return EDEN_ADMIN


@pytest.fixture
def eden_folder(backend, request):
    """Factory: eden_folder(name="a", plugin="link"|"copy"|None) -> (runtime folder, database uri)."""
    return lambda name="a", plugin="link": new_eden_folder(backend, request, name, plugin=plugin)


@pytest.fixture
def eden_instance(backend, request):
    """Factory: eden_instance(name="a", plugin="link") -> env of a fresh real Eden (see module docstring)."""
    made = []

    def make(name="a", plugin="link"):
        folder, uri = new_eden_folder(backend, request, name, plugin=plugin)
        env = load_eden(folder, name)
        env.update(folder=folder, uri=uri, name=name)
        made.append(env)
        return env

    yield make
    close_instances(made)
    os.chdir(_first)


class EdenServer:
    """Real Eden on 127.0.0.1:<port> (+ Eden's scheduler worker); stopped by pid.  On SQLite web2py's own
    server (Rocket, as `make run`); on PostgreSQL Sahana's production stack (`make run-production`):
    uWSGI with PROCESSES worker processes, the scheduler worker a process of its own."""

    PROCESSES = 2

    def __init__(self, folder, uri, name, scheduler=False):
        self.folder, self.uri, self.name, self.scheduler = folder, uri, name, scheduler
        self.production = uri is not None
        self.port = free_port()
        self.url = "http://127.0.0.1:%d/eden" % self.port
        self.log = os.path.join(folder, "server.log")
        self.proc = None

    def start(self, timeout=120):
        cmd = [sys.executable, EDEN_SCRIPT, "serve", "--instance", os.path.basename(self.folder),
               "--runtime", os.path.dirname(self.folder), "--port", str(self.port), "--plugin", "keep"]
        cmd += (["--db", self.uri] if self.uri else []) + (["--scheduler"] if self.scheduler else [])
        if self.production:
            cmd += ["--production", "--processes", str(self.PROCESSES), "--workers", "1"]
        with open(self.log, "w") as log:
            # a session of its own: stop() can end the scheduler worker with it (by the server's pid)
            self.proc = subprocess.Popen(cmd, env=_eden_env(), stdout=log, stderr=subprocess.STDOUT,
                                         start_new_session=True)
        deadline = time.time() + timeout
        while time.time() < deadline:
            try:
                urllib.request.urlopen(self.url + "/default/index", timeout=30)
                return self
            except urllib.error.HTTPError:
                return self
            except Exception:
                if self.proc.poll() is not None:
                    raise RuntimeError("Eden server exited: %s" % open(self.log).read()[-3000:])
                time.sleep(0.3)
        raise RuntimeError("Eden server did not start: %s" % open(self.log).read()[-3000:])

    def stacks(self):
        """Every thread's stack of the server's processes (scripts/eden.py dumps them on SIGUSR1): the end
        of its log, for a test that finds it hung."""
        if self.proc and self.proc.poll() is None:  # uWSGI's master takes SIGUSR1 for its statistics
            os.killpg(self.proc.pid, signal.SIGUSR2 if self.production else signal.SIGUSR1)
            time.sleep(2)
        with open(self.log) as log:
            return log.read()[-20000:]

    def stop(self):
        """SIGTERM (Rocket or uWSGI stops, eden.py ends the worker); after 5 s SIGKILL to the server's group."""
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()


@pytest.fixture
def eden_server(backend, request):
    """Factory: eden_server(name="a", scheduler=False, env=None, plugin="link") -> a running EdenServer."""
    servers = []

    def start(name="a", scheduler=False, env=None, plugin="link"):
        if env is not None:
            env["db"].commit()
            folder, uri = env["folder"], env["uri"]
        else:
            folder, uri = new_eden_folder(backend, request, name, plugin=plugin)
        server = EdenServer(folder, uri, name, scheduler=scheduler).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()
