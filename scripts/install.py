#!/usr/bin/env python
"""Install plugin_sync into an existing Sahana Eden application, or remove it.

    python scripts/install.py install   /path/to/web2py/applications/eden
    python scripts/install.py uninstall /path/to/web2py/applications/eden
    (make install EDEN=... / make uninstall EDEN=...)

The plugin's files are what this repository ships under web2py's plugin
convention (every plugin path is named plugin_sync); install copies exactly
those, file by file, and records them in the application
(modules/plugin_sync/installed.txt), so that uninstall, and the next install,
remove exactly what was installed: a site's own files under plugin_sync* names
(a models/plugin_sync_zz_site.py, its translation languages/plugin_sync/fr.py,
a link of its own) stay, and nothing of Eden's own is touched.  `--link`
symlinks the files instead (development: edits in this repository apply at
once; the launcher's runtime folders use it); folders are always the
application's own, so a site's file never lands in this repository.
"""
import argparse
import glob
import os
import shutil
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# (folder, glob) of the plugin's paths in this repository, relative to a web2py application
PLUGIN_GLOBS = (
    ("models", "plugin_sync*.py"),
    ("controllers", "plugin_sync.py"),
    ("modules", "plugin_sync"),
    ("views", "plugin_sync"),
    ("static", "plugin_sync"),
    ("languages", "plugin_sync*"),
)
# what install put into the application, one path a line: what uninstall removes
MANIFEST = os.path.join("modules", "plugin_sync", "installed.txt")


def plugin_paths(source=REPO):
    """The plugin's top paths in `source` (relative), found anew each time: new plugin files need no list edit."""
    found = []
    for folder, pattern in PLUGIN_GLOBS:
        for path in sorted(glob.glob(os.path.join(source, folder, pattern))):
            found.append(os.path.relpath(path, source))
    return found


def _bytecode(name):
    """Bytecode caches are the interpreter's, not the plugin's."""
    return name == "__pycache__" or name.endswith(".pyc")


def _files_under(source, paths):
    """The files at or below `paths` of `source` (relative), bytecode left out."""
    files = []
    for rel in paths:
        top = os.path.join(source, rel)
        if not os.path.isdir(top) or os.path.islink(top):
            files.append(rel)
            continue
        for root, dirs, names in os.walk(top):
            dirs[:] = sorted(d for d in dirs if not _bytecode(d))
            files.extend(os.path.relpath(os.path.join(root, n), source) for n in names if not _bytecode(n))
    return sorted(files)


def plugin_files(source=REPO):
    """Every file the plugin ships (relative paths, sorted): its top paths, folders walked."""
    return [rel for rel in _files_under(source, plugin_paths(source)) if rel != MANIFEST]


def installed_files(app, source=REPO):
    """What install put into `app`: its record; without one (an older install), the plugin's files found there."""
    path = os.path.join(app, MANIFEST)
    if os.path.isfile(path) and not os.path.islink(path):
        with open(path, encoding="utf-8") as f:
            lines = [line.strip() for line in f if line.strip() and not line.startswith("#")]
        # a record naming anything outside the plugin's top paths is not ours to act on
        return [rel for rel in lines if not os.path.isabs(rel) and ".." not in rel.split(os.sep)
                and os.path.basename(os.sep.join(rel.split(os.sep)[:2])).startswith("plugin_sync")]
    return [rel for rel in plugin_files(source) if os.path.lexists(os.path.join(app, rel))]


def check_app(app):
    """Refuse anything that is not a web2py application folder (a typo must not create one)."""
    for folder in ("models", "controllers", "modules", "views"):
        if not os.path.isdir(os.path.join(app, folder)):
            raise SystemExit("install: %s is not a web2py application (no %s/)" % (app, folder))


def _folders(files):
    """The folders below the application's own top folders (models/, views/...) that hold `files`."""
    found = set()
    for rel in files:
        parts = rel.split(os.sep)[:-1]
        found.update(os.sep.join(parts[:n]) for n in range(2, len(parts) + 1))
    return sorted(found)


def _unlink_folders(app, files):
    """A plugin folder that is a symlink (an older --link install made them) is replaced, never written through."""
    for rel in _folders(files):
        if os.path.islink(os.path.join(app, rel)):
            os.remove(os.path.join(app, rel))


def _remove_file(app, rel):
    """Remove one installed file (a link: the link only) and its bytecode; prune the plugin folders emptied."""
    path = os.path.join(app, rel)
    if os.path.islink(path) or os.path.isfile(path):
        os.remove(path)
    base = os.path.splitext(os.path.basename(path))[0]
    for cached in glob.glob(os.path.join(os.path.dirname(path), "__pycache__", glob.escape(base) + ".*.pyc")):
        os.remove(cached)
    folders = _folders([rel])[::-1]  # the deepest first; never the application's own top folders
    if folders:
        folders.insert(0, os.path.join(folders[0], "__pycache__"))
    for folder in folders:
        try:
            os.rmdir(os.path.join(app, folder))  # only when empty: a site's own file keeps its folder
        except OSError:
            pass


def _write_manifest(app, files):
    """Record what was installed; written aside and renamed (a hard-linked copy of an app keeps its own)."""
    path = os.path.join(app, MANIFEST)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path + ".tmp", "w", encoding="utf-8") as f:
        f.write("# plugin_sync's files, installed by scripts/install.py: uninstall removes exactly these\n")
        f.write("".join(rel + "\n" for rel in files))
    os.replace(path + ".tmp", path)


def install(app, link=False, source=REPO):
    """Copy (or symlink) the plugin's files into the application `app`; returns them."""
    check_app(app)
    files = plugin_files(source)
    before = installed_files(app, source)
    _unlink_folders(app, files + before)
    for rel in files:
        src, dst = os.path.join(source, rel), os.path.join(app, rel)
        os.makedirs(os.path.dirname(dst), exist_ok=True)
        if os.path.lexists(dst):
            os.remove(dst)  # never written through: it may be a hard link of another app's copy
        if link:
            os.symlink(src, dst)
        else:
            shutil.copy2(src, dst)
    # a file an earlier install put there that the plugin no longer has (renamed, removed) goes
    for rel in sorted(set(before) - set(files)):
        _remove_file(app, rel)
    _write_manifest(app, files)
    return files


def uninstall(app, source=REPO):
    """Remove from the application `app` exactly the files install put there; returns them."""
    check_app(app)
    files = installed_files(app, source)
    _unlink_folders(app, files + [MANIFEST])
    for rel in files + [MANIFEST]:
        _remove_file(app, rel)
    return files


def kept(app):
    """What is still named plugin_sync* in `app` (after uninstall: the site's own, for the user to see)."""
    return _files_under(app, plugin_paths(app))


def summary(files):
    """The installed files by top path: 'modules/plugin_sync/ (30 files)'."""
    counts = {}
    for rel in files:
        parts = rel.split(os.sep)
        top = os.sep.join(parts[:2]) + (os.sep if len(parts) > 2 else "")
        counts[top] = counts.get(top, 0) + 1
    return ["%s (%d file%s)" % (top, n, "s" * (n != 1)) if top.endswith(os.sep) else top for top, n in counts.items()]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=("install", "uninstall", "list"))
    parser.add_argument("app", nargs="?", help="the Eden application folder (web2py/applications/eden)")
    parser.add_argument("--link", action="store_true", help="symlink to this repository instead of copying")
    args = parser.parse_args(argv)
    if args.command == "list":
        print("\n".join(plugin_files()))
        return 0
    if not args.app:
        parser.error("give the Eden application folder, e.g. make install EDEN=~/web2py/applications/eden")
    app = os.path.abspath(os.path.expanduser(args.app))
    if args.command == "install":
        files = install(app, link=args.link)
        print("installed plugin_sync into %s:\n  %s" % (app, "\n  ".join(summary(files))))
    else:
        files = uninstall(app)
        print("removed from %s:\n  %s" % (app, "\n  ".join(summary(files)) or "(nothing: plugin_sync was not installed)"))
        left = kept(app)
        if left:
            print("kept (not the plugin's files):\n  %s" % "\n  ".join(left))
    return 0


if __name__ == "__main__":
    sys.exit(main())
