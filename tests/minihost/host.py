#!/usr/bin/env python
"""The minihost: a small imitation of Sahana Eden, the engine tests' fast host.

Real Eden (scripts/edenhost.py) takes seconds to load its models and a first
run per database; the engine tests make hundreds of instances.  The minihost is
a plain web2py app with Eden's table shapes (meta fields, a location
hierarchy, list:references, uploads).  It lives here, outside the plugin's
paths, so that nobody copying models/ gets host models.

An instance is a web2py folder <base>/<instance>/ whose applications/eden is
mounted from symlinks: the minihost's files (this folder) and the plugin's
files from the repository (scripts/install.py's list), a minihost file winning
over a plugin file of the same name.  Its models/plugin_sync_scheduler.py is
the minihost's scheduler (gluon's Scheduler with the plugin's task, what the
plugin shipped before it moved to Eden's own scheduler); test_network drives
it.  State folders (databases, sessions, uploads, errors) are the instance's own.

    host.py serve --instance x --runtime BASE --port P [--db URI]
    host.py seed  --instance x --runtime BASE [--no-demo]
"""
import argparse
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(REPO, "scripts"))
import eden  # noqa: E402  the launcher: enter, app_env, serve
import install  # noqa: E402  the plugin's paths

APP = "eden"
CODE_FOLDERS = ("controllers", "models", "modules", "views", "static", "private", "languages")
STATE_FOLDERS = ("databases", "sessions", "errors", "uploads", "cache", "cron")
VERSION = "Version 2.26.1-stable+timestamp.2023.10.11.00.00.00\n"
ROUTES = "default_application = 'eden'\ndefault_controller = 'default'\n"
DEMO = os.path.join(HERE, "private", "demo")


def mounts():
    """{path in the app: source}: the plugin's files, then the minihost's (which win)."""
    found = {rel: os.path.join(REPO, rel) for rel in install.plugin_paths(REPO)}
    for folder in CODE_FOLDERS:
        top = os.path.join(HERE, folder)
        if os.path.isdir(top):
            for name in os.listdir(top):
                if name != "__pycache__":
                    found[os.path.join(folder, name)] = os.path.join(top, name)
    found["__init__.py"] = os.path.join(HERE, "__init__.py")
    return found


def runtime_folder(instance, base):
    """Create (idempotently) and return the web2py folder of one minihost instance."""
    folder = os.path.abspath(os.path.join(base, instance))
    app = os.path.join(folder, "applications", APP)
    for name in STATE_FOLDERS + CODE_FOLDERS:
        os.makedirs(os.path.join(app, name), exist_ok=True)
    wanted = mounts()
    for rel, src in wanted.items():
        _link(src, os.path.join(app, rel))
    for folder_name in CODE_FOLDERS:  # links to files that are gone (a renamed plugin file)
        top = os.path.join(app, folder_name)
        for name in os.listdir(top):
            rel = os.path.join(folder_name, name)
            if os.path.islink(os.path.join(top, name)) and rel not in wanted:
                os.remove(os.path.join(top, name))
    _write(os.path.join(folder, "VERSION"), VERSION)
    _write(os.path.join(folder, "routes.py"), ROUTES)
    _write(os.path.join(folder, "applications", "__init__.py"), "")
    _write(os.path.join(folder, "welcome.w2p"), "")  # else gluon packs a 'welcome' app at start
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


def seed(folder, quiet=False, demo=True):
    """Create the admin account (Eden's admin@example.com) and load the demo data."""
    env = eden.app_env(folder)
    from applications.eden.modules.eden_demo import ensure_admin, load_demo

    ensure_admin(env["db"], env["auth"], eden.ADMIN_EMAIL, eden.ADMIN_PASSWORD)
    counts = load_demo(env["db"], DEMO) if demo else None
    env["db"].commit()
    if counts and not quiet:
        print("demo data loaded: %s" % ", ".join("%s %d" % kv for kv in sorted(counts.items())))
    return env


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=("serve", "seed", "folder"))
    parser.add_argument("--instance", required=True)
    parser.add_argument("--runtime", required=True)
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--db")
    parser.add_argument("--no-demo", action="store_true")
    args = parser.parse_args(argv)
    folder = runtime_folder(args.instance, args.runtime)
    if args.command == "folder":
        print(folder)
        return 0
    eden.enter(folder, args.instance, args.db)
    if args.command == "seed":
        seed(folder, demo=not args.no_demo)
        return 0
    eden.serve(folder, args.port, scheduler=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
