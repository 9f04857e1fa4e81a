"""Uploads kept on the server between a preview and its "Import for real" (no second upload needed).

The files live in uploads/plugin_sync_pending/ of the application, a day at most;
which ones belong to whom is a small dict {key: item} the caller keeps (the
pages keep it in the admin's session), so these functions take it and return it.
"""
import os
import shutil
import time
import uuid

MAX_AGE = 24 * 3600  # seconds a previewed upload waits for "Import for real"
KEEP = 4  # previews kept per session: the last few


def folder(app_folder, now=None):
    """The stash's folder, swept of previews nobody imported."""
    path = os.path.join(app_folder, "uploads", "plugin_sync_pending")
    os.makedirs(path, exist_ok=True)
    sweep(path, MAX_AGE, now)
    return path


def sweep(path, max_age, now=None):
    """Remove the files of a folder older than `max_age` seconds (the stash's, the jobs' progress files)."""
    now = now or time.time()
    for name in os.listdir(path):
        old = os.path.join(path, name)
        try:
            if now - os.path.getmtime(old) > max_age:
                os.remove(old)
        except OSError:  # swept by another request meanwhile
            pass


def keep(app_folder, pending, stream, name):
    """Copy the binary `stream` into the stash; (key, item, pending) with older previews beyond KEEP dropped."""
    key = uuid.uuid4().hex
    path = os.path.join(folder(app_folder), key)
    stream.seek(0)
    with open(path, "wb") as f:
        shutil.copyfileobj(stream, f, 1 << 20)
    pending = dict(pending or {})
    for old in sorted(pending, key=lambda k: pending[k]["at"])[:-(KEEP - 1)]:
        discard(pending.pop(old)["path"])
    item = pending[key] = dict(path=path, name=name, size=os.path.getsize(path), at=time.time())
    return key, item, pending


def take(pending, key):
    """(item or None, pending without it): a kept upload is taken once."""
    pending = dict(pending or {})
    item = pending.pop(key or "", None)
    if not item or not os.path.exists(item["path"]):
        return None, pending
    return item, pending


def peek(pending, key):
    """The kept upload under `key` if it is still there (a preview's "Import for real" is offered only then)."""
    item = (pending or {}).get(key or "")
    return item if item and os.path.exists(item["path"]) else None


def discard(path):
    """Remove a kept upload (imported, or its preview failed)."""
    if path and os.path.exists(path):
        os.remove(path)
