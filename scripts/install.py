#!/usr/bin/env python
"""Install plugin_sync into an existing Sahana Eden application, or remove it.

    python scripts/install.py install   /path/to/web2py/applications/eden
    python scripts/install.py uninstall /path/to/web2py/applications/eden
    (make install EDEN=... / make uninstall EDEN=...)

Exactly the plugin's own paths are copied (web2py's plugin convention: every
plugin file is named plugin_sync); nothing of Eden's own files is touched, so
uninstall can remove exactly what install put there.  `--link` symlinks them
instead (development: edits in this repository apply at once; the launcher's
runtime folders use it).
"""
import argparse
import glob
import os
import shutil
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# (folder, glob) of the plugin's paths, relative to a web2py application
PLUGIN_GLOBS = (
    ("models", "plugin_sync*.py"),
    ("controllers", "plugin_sync.py"),
    ("modules", "plugin_sync"),
    ("views", "plugin_sync"),
    ("static", "plugin_sync"),
    ("languages", "plugin_sync*"),
)


def plugin_paths(source=REPO):
    """The plugin's paths in `source` (relative), found anew each time: new plugin files need no list edit."""
    found = []
    for folder, pattern in PLUGIN_GLOBS:
        for path in sorted(glob.glob(os.path.join(source, folder, pattern))):
            found.append(os.path.relpath(path, source))
    return found


def _ignore(_, names):
    """Leave bytecode caches behind: they are the interpreter's, not the plugin's."""
    return [n for n in names if n == "__pycache__" or n.endswith(".pyc")]


def check_app(app):
    """Refuse anything that is not a web2py application folder (a typo must not create one)."""
    for folder in ("models", "controllers", "modules", "views"):
        if not os.path.isdir(os.path.join(app, folder)):
            raise SystemExit("install: %s is not a web2py application (no %s/)" % (app, folder))


def remove(path):
    """Remove a file, a symlink or a folder tree (a symlink to a folder: the link only)."""
    if os.path.islink(path) or os.path.isfile(path):
        os.remove(path)
    elif os.path.isdir(path):
        shutil.rmtree(path)


def install(app, link=False, source=REPO):
    """Copy (or symlink) the plugin's paths into the application `app`; returns them."""
    check_app(app)
    paths = plugin_paths(source)
    for rel in paths:
        src, dst = os.path.join(source, rel), os.path.join(app, rel)
        os.makedirs(os.path.dirname(dst), exist_ok=True)
        if os.path.lexists(dst):
            remove(dst)
        if link:
            os.symlink(src, dst)
        elif os.path.isdir(src):
            shutil.copytree(src, dst, ignore=_ignore)
        else:
            shutil.copy2(src, dst)
    # a plugin file the repository no longer has (renamed, removed) must not stay behind
    stale = set(plugin_paths(app)) - set(paths)
    for rel in stale:
        remove(os.path.join(app, rel))
    return paths


def uninstall(app):
    """Remove every plugin path from the application `app` (found by name); returns them."""
    check_app(app)
    paths = plugin_paths(app)
    for rel in paths:
        remove(os.path.join(app, rel))
    return paths


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=("install", "uninstall", "list"))
    parser.add_argument("app", nargs="?", help="the Eden application folder (web2py/applications/eden)")
    parser.add_argument("--link", action="store_true", help="symlink to this repository instead of copying")
    args = parser.parse_args(argv)
    if args.command == "list":
        print("\n".join(plugin_paths()))
        return 0
    if not args.app:
        parser.error("give the Eden application folder, e.g. make install EDEN=~/web2py/applications/eden")
    app = os.path.abspath(os.path.expanduser(args.app))
    if args.command == "install":
        paths = install(app, link=args.link)
        print("installed plugin_sync into %s:\n  %s" % (app, "\n  ".join(paths)))
    else:
        paths = uninstall(app)
        print("removed from %s:\n  %s" % (app, "\n  ".join(paths) or "(nothing: plugin_sync was not installed)"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
