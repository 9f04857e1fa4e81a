#!/usr/bin/env python
"""Launcher for the host app: lays out a web2py runtime folder and runs in it.

gluon from PyPI ships no web2py folder (no VERSION, no applications/), so each
instance gets one under .runtime/<instance>/ (git-ignored).  The repository is
mounted there as applications/eden: code folders are symlinks to the repo,
state folders (databases, sessions, uploads, errors) are the instance's own, so
two instances on one machine never share a database, an upload or an identity.

    eden.py run   --instance a --port 8000   seed demo data, serve, run the scheduler
    eden.py serve --instance b --port 8001   serve only (tests use this)
    eden.py seed  --instance a               create admin + demo data if missing
    eden.py sync  --instance a export ...    the plugin_sync CLI (see README)
"""
import argparse
import os
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
APP = "eden"
CODE_FOLDERS = ("controllers", "models", "modules", "views", "static", "private", "languages")
STATE_FOLDERS = ("databases", "sessions", "errors", "uploads", "cache", "cron")
VERSION = "Version 2.26.1-stable+timestamp.2023.10.11.00.00.00\n"
ROUTES = "default_application = 'eden'\ndefault_controller = 'default'\n"
ADMIN_EMAIL = "admin@eden.local"
ADMIN_PASSWORD = "sync-admin"


def runtime_folder(instance, base=None):
    """Create (idempotently) and return the web2py folder of one instance."""
    base = base or os.path.join(REPO, ".runtime")
    folder = os.path.abspath(os.path.join(base, instance))
    app = os.path.join(folder, "applications", APP)
    for name in STATE_FOLDERS:
        os.makedirs(os.path.join(app, name), exist_ok=True)
    for name in ("__init__.py",):
        _link(os.path.join(REPO, name), os.path.join(app, name))
    for name in CODE_FOLDERS:
        _link(os.path.join(REPO, name), os.path.join(app, name))
    _write(os.path.join(folder, "VERSION"), VERSION)
    _write(os.path.join(folder, "routes.py"), ROUTES)
    _write(os.path.join(folder, "applications", "__init__.py"), "")
    # gluon packs the 'welcome' app at first start unless this exists; there is no welcome app here
    _write(os.path.join(folder, "welcome.w2p"), "")
    return folder


def _link(target, name):
    if os.path.islink(name) and os.readlink(name) == target:
        return
    if os.path.lexists(name):
        os.remove(name)
    os.symlink(target, name)


def _write(path, text):
    if not os.path.exists(path) or open(path).read() != text:
        with open(path, "w") as f:
            f.write(text)


def enter(folder, instance, db_uri=None):
    """Make this process a web2py process rooted at `folder` (before importing gluon)."""
    os.environ["web2py_path"] = folder
    os.environ["EDEN_INSTANCE"] = instance
    if db_uri:
        os.environ["EDEN_DB_URI"] = db_uri
    os.chdir(folder)
    sys.path.insert(0, folder)


def app_env(folder):
    """The app's environment with its models executed (db, auth, settings)."""
    from gluon.shell import env

    return env(APP, import_models=True, dir=os.path.join(folder, "applications", APP))


def seed(folder, quiet=False, demo=True):
    """Create the admin account and load the demo data on first start."""
    env = app_env(folder)
    from applications.eden.modules.eden_demo import ensure_admin, load_demo

    ensure_admin(env["db"], env["auth"], ADMIN_EMAIL, ADMIN_PASSWORD)
    counts = load_demo(env["db"], os.path.join(REPO, "private", "demo")) if demo else None
    env["db"].commit()
    if counts and not quiet:
        print("demo data loaded: %s" % ", ".join("%s %d" % kv for kv in sorted(counts.items())))
    return env


def serve(folder, port, scheduler):
    """Run web2py's Rocket server (and its scheduler worker) in this process."""
    argv = ["web2py.py", "--no_gui", "-a", "<recycle>", "-i", "127.0.0.1", "-p", str(port), "-f", folder]
    if scheduler:
        argv += ["-K", APP, "-X"]
    sys.argv = argv
    import gluon.widget

    try:
        gluon.widget.start()
    finally:
        if scheduler:
            # On SIGTERM Rocket stops, but web2py keeps waiting for its scheduler worker (-X),
            # which nobody told to stop: stop it, so that `kill <pid>` ends the whole instance.
            import multiprocessing

            for child in multiprocessing.active_children():
                child.terminate()


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=("run", "serve", "seed", "sync", "folder"))
    parser.add_argument("--instance", default=os.environ.get("EDEN_INSTANCE", "a"))
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--runtime", help="base folder for runtime folders (default .runtime/)")
    parser.add_argument("--db", help="database URI (default: EDEN_DB_URI or the instance's SQLite file)")
    parser.add_argument("--no-scheduler", action="store_true")
    parser.add_argument("--no-demo", action="store_true", help="seed: admin account only")
    args, rest = parser.parse_known_args(argv)
    folder = runtime_folder(args.instance, args.runtime)
    if args.command == "folder":
        print(folder)
        return 0
    enter(folder, args.instance, args.db)
    if args.command == "sync":
        from applications.eden.modules.plugin_sync.cli import main as sync_main

        env = app_env(folder)
        return sync_main(env["db"], env["plugin_sync_settings"], rest)
    if args.command == "seed":
        seed(folder, demo=not args.no_demo)
        return 0
    if args.command == "run":
        seed(folder)
        print("\n  Sahana Eden (with plugin_sync), instance %r" % args.instance)
        print("  URL:   http://127.0.0.1:%d/eden/" % args.port)
        print("  Sync:  http://127.0.0.1:%d/eden/plugin_sync" % args.port)
        print("  Login: %s / %s\n" % (ADMIN_EMAIL, ADMIN_PASSWORD), flush=True)
    serve(folder, args.port, scheduler=(args.command == "run" and not args.no_scheduler))
    return 0


if __name__ == "__main__":
    sys.exit(main())
