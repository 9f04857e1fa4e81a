"""Upload values as paths: only plain file names inside their field's upload folder.

An upload field stores a file name (web2py: `table.field.xxxx.ext`) of a file
in the field's upload folder, with `uploadseparate` in a subfolder
`table.field/xx/`.  A value that came from a file or a peer is untrusted: a
value such as `../databases/session.key` or `/etc/passwd` would make an
export read (and ship) any file of the server, and an import write anywhere.
So a value is a path only when it is a plain name (no separator, no `..`, no
NUL, not absolute) that resolves, symbolic links followed, inside the folder.
"""
import os
import re

_UUID_KEY = re.compile(r"^[\w\-]+\.[\w\-]+\.(?P<key>[\w\-]+)\.")


def upload_folder(db, field):
    """The folder a field's files live in (pydal's rule)."""
    return field.uploadfolder or os.path.join(db._adapter.folder, "..", "uploads")


def unsafe(name):
    """Why `name` is no plain upload file name, or None when it is one."""
    if not isinstance(name, str) or not name:
        return "empty"
    if "\x00" in name:
        return "contains a NUL byte"
    if "/" in name or "\\" in name or os.sep in name:
        return "contains a path separator"
    if name in (".", "..") or ".." in name.split("."):
        return "contains '..'"
    if os.path.isabs(name) or re.match(r"^[A-Za-z]:", name):
        return "is an absolute path"
    return None


def path_of(db, field, name):
    """The file behind an upload value, or None when the value names no file inside the upload folder."""
    if unsafe(name):
        return None
    folder = upload_folder(db, field)
    base = folder
    if field.uploadseparate:
        key = _UUID_KEY.match(name)
        if not key:
            return None
        base = os.path.join(folder, "%s.%s" % (field.tablename, field.name), key.group("key")[:2])
    path = os.path.join(base, name)
    root = os.path.realpath(folder)
    real = os.path.realpath(path)
    if os.path.commonpath([root, real]) != root or real == root:
        return None
    return path
