#!/usr/bin/env python
"""Launcher: real Sahana Eden with plugin_sync, one runtime folder per instance.

gluon from PyPI ships no web2py folder, so each instance gets one under
.runtime/<instance>/ (git-ignored, see edenhost.py): its own copy of Eden, its
own database, its own identity.  The plugin is symlinked in (edits apply).

    eden.py run     --instance a --port 8000   first start if needed, serve, Eden's scheduler worker
    eden.py serve   --instance b --port 8001   serve only
    eden.py prepare --instance a [--demo]      first start only (database, Eden's prepopulate, demo data)
    eden.py sync    --instance a export ...    the plugin_sync CLI (see README)
    eden.py folder  --instance a               print the runtime folder
    eden.py worker  --instance a               Eden's scheduler worker alone (serve starts it)
    eden.py run --production [--processes 4] [--workers 2]
                                               Sahana's production stack on this machine: its own
                                               PostgreSQL (.runtime/pg-<instance>/), uWSGI with several
                                               processes, Eden's scheduler workers as processes of their own

`sync` also works on any existing web2py runtime folder (the tests' minihost ones).
"""
import argparse
import os
import shutil
import socket
import subprocess
import sys
import time

SCRIPTS = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, SCRIPTS)
import edenhost  # noqa: E402

REPO = edenhost.REPO
APP = edenhost.APP
ADMIN_EMAIL = edenhost.ADMIN_EMAIL
ADMIN_PASSWORD = edenhost.ADMIN_PASSWORD


def enter(folder, instance, db_uri=None):
    """Make this process a web2py process rooted at `folder` (before importing gluon)."""
    os.environ["web2py_path"] = folder
    os.environ["EDEN_INSTANCE"] = instance
    if db_uri:
        os.environ["EDEN_DB_URI"] = db_uri
    os.chdir(folder)
    sys.path.insert(0, folder)


def app_env(folder):
    """The app's environment with its models executed (Eden: db, auth, s3db, settings)."""
    from gluon.shell import env

    return env(APP, import_models=True, dir=os.path.join(folder, "applications", APP))


def add_user(env, email, password, admin=False, first_name="Admin", last_name="User"):
    """An Eden user account (linked to a person, Authenticated role; ADMIN too if asked); returns its id.

    For the tests' extra accounts: Eden's own default/users prepopulate makes admin@example.com.
    """
    db, auth = env["db"], env["auth"]
    table = db.auth_user
    row = db(table.email == email).select().first()
    if row is None:
        user_id = table.insert(first_name=first_name, last_name=last_name, email=email,
                               password=table.password.validate(password)[0], registration_key="")
        row = table[user_id]
        auth.s3_approve_user(row)
    if admin:
        auth.s3_assign_role(row.id, "ADMIN")
    db.commit()
    return row.id


def prepare(folder, quiet=False):
    """Eden's first run (tables, Eden's own prepopulate: base, users, the demo) in this process; once per database."""
    db_uri = os.environ.get("EDEN_DB_URI")
    if edenhost.first_run_done(folder, db_uri):
        return False
    if not quiet:
        print("eden: first start: creating Eden's database and prepopulating (Eden's own), a minute or two...", flush=True)
    started = time.time()
    app = os.path.join(folder, "applications", APP)
    kept = os.path.join(folder, "plugin_sync.first-run")
    shutil.rmtree(kept, ignore_errors=True)
    for rel in edenhost.install.plugin_paths(app):  # Eden's first run alone: a plugin error must not
        os.renames(os.path.join(app, rel), os.path.join(kept, rel))  # break Eden's own set-up
        # renames() prunes the folders it emptied: Eden needs them (its languages/ may hold only ours)
        os.makedirs(os.path.dirname(os.path.join(app, rel)), exist_ok=True)
    env = app_env(folder)
    env["db"].commit()
    if env["db"](env["db"].auth_user.email == ADMIN_EMAIL).isempty():
        print("eden: Eden's prepopulate made no %s (its default/users): log in with an account of your "
              "Eden's own" % ADMIN_EMAIL, file=sys.stderr)
    edenhost.mark_first_run(folder, db_uri)
    if os.path.isdir(kept):
        for rel in edenhost.install.plugin_paths(kept):
            os.renames(os.path.join(kept, rel), os.path.join(app, rel))
        plugin_schema(folder)
    if not quiet:
        print("eden: first start done in %.0f s" % (time.time() - started), flush=True)
    return True


def plugin_schema(folder):
    """The plugin's schema for Eden's synced tables (uuid indexes, change triggers) in the first run, not at the
    first plugin request: a copy of this database (the tests' instances) starts with it."""
    env = app_env(folder)
    from applications.eden.modules.plugin_sync.eden import model as plugin_eden_model

    plugin_eden_model.install_schema(env["db"], env["plugin_sync_settings"])


def ensure_plugin_task(folder):
    """The plugin's periodic task row in Eden's scheduler now, not at the first plugin page."""
    app = os.path.join(folder, "applications", APP)
    if not os.path.exists(os.path.join(app, "models", "plugin_sync.py")):
        return
    try:
        env = app_env(folder)
        from applications.eden.modules.plugin_sync.eden import tasks as plugin_eden_tasks

        plugin_eden_tasks.ensure_task(env["db"], env["plugin_sync_settings"])
        env["db"].commit()
    except Exception as e:  # the server still starts; the plugin's first request retries
        print("eden: the plugin's scheduled task is not set up yet: %s" % e, file=sys.stderr)


def port_free(port):
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


def serve(folder, port, scheduler):
    """Run web2py's Rocket server in this process (and Eden's scheduler worker in a process of its own)."""
    argv = ["web2py.py", "--no_gui", "-a", "<recycle>", "-i", "127.0.0.1", "-p", str(port), "-f", folder]
    sys.argv = argv
    dump_stacks_on_usr1()
    worker = None
    if scheduler:
        # a fresh interpreter, not a fork of this one (see worker()); its database: EDEN_DB_URI, inherited
        worker = subprocess.Popen([sys.executable, os.path.abspath(__file__), "worker", "--instance",
                                   os.path.basename(folder), "--runtime", os.path.dirname(folder)])
    import gluon.widget

    try:
        gluon.widget.start()
    finally:
        if worker is not None:  # `kill <pid>` of the server ends the whole instance
            worker.terminate()
            try:
                worker.wait(10)
            except subprocess.TimeoutExpired:
                worker.kill()


WSGI_HANDLER = """# web2py's handlers/wsgihandler.py for this runtime folder (written by scripts/eden.py: uWSGI's entry)
import faulthandler, os, signal, sys
path = os.path.dirname(os.path.abspath(__file__))
os.chdir(path)
sys.path = [path] + [p for p in sys.path if p != path]
os.environ["web2py_path"] = path
faulthandler.register(signal.SIGUSR2, all_threads=True)  # kill -USR2 <worker pid>: its stacks in the log
import gluon.main  # noqa: E402
application = gluon.main.wsgibase
"""


def uwsgi_command(folder, port, processes, limit_post=256 << 20):
    """uWSGI as the README's production section sets it up, serving the runtime folder on 127.0.0.1:port.

    A master and `processes` worker processes, each loading web2py after the fork (lazy-apps: no
    database connection or SQLite lock state shared across a fork); bodies above `limit_post`
    refused before web2py spools them (the plugin's max_request_size); a request stuck for 10 minutes
    recycled (harakiri); Eden's static files served by uWSGI itself.
    """
    handler = os.path.join(folder, "wsgihandler.py")
    with open(handler, "w") as out:
        out.write(WSGI_HANDLER)
    static = os.path.join(folder, "applications", APP, "static")
    return [os.path.join(os.path.dirname(sys.executable), "uwsgi"), "--master", "--die-on-term", "--need-app",
            "--http-socket", "127.0.0.1:%d" % port, "--wsgi-file", handler, "--chdir", folder,
            "--processes", str(processes), "--lazy-apps", "--thunder-lock", "--harakiri", "600",
            "--limit-post", str(limit_post), "--post-buffering", "65536", "--buffer-size", "32768",
            "--static-map", "/%s/static=%s" % (APP, static), "--vacuum", "--disable-write-exception"]


def serve_production(folder, port, processes, workers):
    """Run Eden as Sahana runs it in production: uWSGI's master and worker processes, and `workers` of
    Eden's scheduler workers (web2py.py -K), each a process of its own; all end with this one."""
    import signal

    dump_stacks_on_usr1()
    children = [subprocess.Popen([sys.executable, os.path.abspath(__file__), "worker", "--instance",
                                  os.path.basename(folder), "--runtime", os.path.dirname(folder)])
                for _ in range(workers)]
    server = subprocess.Popen(uwsgi_command(folder, port, processes))

    def stop(*_):
        for child in [server] + children:
            if child.poll() is None:
                child.terminate()
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    try:
        return server.wait()
    finally:
        stop()
        for child in [server] + children:
            try:
                child.wait(10)
            except subprocess.TimeoutExpired:
                child.kill()


def production_database(base, instance):
    """The production stack's own PostgreSQL (kept in <runtime>/pg-<instance>/, started now): (server, uri)."""
    from pgserver import PostgresServer

    server = PostgresServer(folder=os.path.join(base, "pg-%s" % instance)).start()
    return server, server.database("eden_%s" % instance)


def worker(folder):
    """Eden's scheduler worker (web2py.py -K eden) in this process, each task in a fresh interpreter.

    web2py's worker runs a task in a fork of itself by default, while its heartbeat
    thread is using SQLite: a fork taken in the middle of one of SQLite's calls
    inherits SQLite's process-wide lock state, and the task's first statement can
    then wait forever or fail "database is locked" (measured: 3 hangs and 26 such
    failures in 200 forks of a process whose thread writes, none in 200 fresh
    processes).  So the worker runs here, started fresh by serve() (not forked
    from the web server, whose threads use SQLite too), and its tasks are spawned
    (web2py's Scheduler(use_spawn=True), which Eden leaves commented out in
    S3Task): a second or two more per task, for jobs that end.
    """
    from gluon import scheduler

    init = scheduler.Scheduler.__init__

    def spawning(self, *args, **kwargs):
        kwargs.setdefault("use_spawn", True)
        init(self, *args, **kwargs)

    scheduler.Scheduler.__init__ = spawning
    sys.argv = ["web2py.py", "--no_gui", "-K", APP, "-f", folder]
    dump_stacks_on_usr1()
    import gluon.widget

    gluon.widget.start()


def dump_stacks_on_usr1():
    """`kill -USR1 <pid>` writes every thread's stack to stderr (the log): where a hung request or job is."""
    import faulthandler
    import signal

    faulthandler.register(signal.SIGUSR1, all_threads=True)
    faulthandler.register(signal.SIGUSR2, all_threads=True)  # the production stack's (uWSGI's master ignores it)


def banner(instance, port):
    print("\n  Sahana Eden (with plugin_sync), instance %r" % instance)
    print("  URL:   http://127.0.0.1:%d/eden/" % port)
    print("  Sync:  http://127.0.0.1:%d/eden/plugin_sync" % port)
    print("  Login: %s / %s\n" % (ADMIN_EMAIL, ADMIN_PASSWORD), flush=True)


def main(argv=None):
    cwd = os.getcwd()  # enter() changes directory: the sync CLI's file names are relative to here
    argv = list(sys.argv[1:] if argv is None else argv)
    # -h/--help after "sync" is the sync command's (eden.py sync --instance a export --help), not ours
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
                                     add_help=False)
    parser.add_argument("command", choices=("run", "serve", "prepare", "sync", "folder", "worker"))
    parser.add_argument("--instance", default=os.environ.get("EDEN_INSTANCE", "a"))
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--runtime", help="base folder for runtime folders (default .runtime/)")
    parser.add_argument("--db", default=os.environ.get("EDEN_DB_URI"),
                        help="database URI (default: EDEN_DB_URI, else the instance's own SQLite)")
    parser.add_argument("--no-scheduler", action="store_true", help="run: without Eden's scheduler worker")
    parser.add_argument("--scheduler", action="store_true", help="serve: with Eden's scheduler worker")
    parser.add_argument("--demo", action="store_true", help="prepare, serve: with make run's demo data (run has it)")
    parser.add_argument("--production", action="store_true",
                        help="run, serve: uWSGI processes on PostgreSQL (run: the instance's own, started here)")
    parser.add_argument("--processes", type=int, default=4, help="--production: uWSGI's worker processes")
    parser.add_argument("--workers", type=int, default=2, help="--production: Eden's scheduler workers")
    parser.add_argument("--plugin", choices=("link", "copy", "none", "keep"), default="link",
                        help="the plugin in the runtime folder: symlinks to this repository (default), "
                             "copies, none (pristine Eden), or keep what is there")
    if "sync" not in argv and any(a in ("-h", "--help") for a in argv):
        parser.print_help()
        return 0
    args, rest = parser.parse_known_args(argv)
    base = args.runtime or os.path.join(REPO, ".runtime")
    folder = os.path.abspath(os.path.join(base, args.instance))
    if args.command in ("run", "serve") and not port_free(args.port):
        print("eden: port %d on 127.0.0.1 is busy (another instance?): choose another, e.g. "
              "make run PORT=%d INSTANCE=b" % (args.port, args.port + 1), file=sys.stderr)
        return 1
    if args.command == "worker":  # serve's own: the instance is ready
        enter(folder, args.instance, args.db)
        worker(folder)
        return 0
    pg = None
    if args.production and args.command == "run" and not args.db:
        pg, args.db = production_database(base, args.instance)
    try:
        return _command(args, rest, base, folder, cwd)
    finally:
        if pg is not None:
            pg.stop()


def _command(args, rest, base, folder, cwd):
    if args.command != "sync" or not os.path.isdir(os.path.join(folder, "applications", APP)):
        plugin = None if args.plugin == "none" else args.plugin
        folder = edenhost.runtime_folder(args.instance, base, port=args.port, db_uri=args.db, plugin=plugin,
                                         demo=(args.command == "run" or args.demo))
    if args.command == "folder":
        print(folder)
        return 0
    enter(folder, args.instance, args.db)
    if args.command == "sync":
        from applications.eden.modules.plugin_sync.cli import main as sync_main

        if edenhost.is_eden(folder):
            prepare(folder, quiet=True)
        env = app_env(folder)
        if edenhost.is_eden(folder):  # as the plugin's controller does: Eden's synced tables, after Eden's models
            from applications.eden.modules.plugin_sync.eden import model as plugin_eden_model

            plugin_eden_model.prepare(env["db"], env["plugin_sync_settings"])
        return sync_main(env["db"], env["plugin_sync_settings"], rest, cwd=cwd)
    prepare(folder)
    if args.command == "prepare":
        return 0
    if args.command == "run":
        ensure_plugin_task(folder)
        banner(args.instance, args.port)
    scheduler = args.scheduler or (args.command == "run" and not args.no_scheduler)
    if args.production:
        return serve_production(folder, args.port, args.processes, args.workers if scheduler else 0)
    serve(folder, args.port, scheduler=scheduler)
    return 0


if __name__ == "__main__":
    sys.exit(main())
elif __name__ == "__mp_main__":  # a task of the worker, spawned (multiprocessing imports us as its main)
    dump_stacks_on_usr1()
