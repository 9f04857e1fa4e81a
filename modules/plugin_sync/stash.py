"""Files kept in the database between two requests (issue 23): an upload between its preview and its
"Import for real", an export job's file until it is downloaded.

In the database, not in a folder of the machine that received it, so that
whichever app server or scheduler worker over the same database serves the
next request finds it.  A file is a plugin_sync_upload row (its key, name,
size, when) and its content in chunks of CHUNK bytes (plugin_sync_upload_chunk,
raw bytes: pydal's own blob would base64 them), written and read one chunk at
a time, never whole in memory; kept a day at most.

Which previews belong to whom is a small dict {key: item} the caller keeps
(the pages keep it in the admin's session), so the functions that hand out
previews take it and return it.
"""
import datetime
import tempfile
import time
import uuid

from . import dialect
from .peers import utcnow

MAX_AGE = 24 * 3600  # seconds a kept file waits (a preview's "Import for real", an export's download)
KEEP = 4  # previews kept per session: the last few
CHUNK = 1 << 20  # bytes per chunk row


def store(db, key, stream, name):
    """Copy the binary `stream` (from its start) into the database under `key` and commit; its size in bytes.
    Files older than MAX_AGE are swept first."""
    sweep(db)
    stream.seek(0)
    ph, size, n = dialect.placeholder(db), 0, 0
    sql = "INSERT INTO %s (upload, n, data) VALUES (%s, %s, %s)" % (db.plugin_sync_upload_chunk._rname, ph, ph, ph)
    while True:
        data = stream.read(CHUNK)
        if not data:
            break
        db.executesql(sql, placeholders=(key, n, data))
        size, n = size + len(data), n + 1
    db.plugin_sync_upload.insert(upload_key=key, name=name, size=size, chunks=n, created_on=utcnow())
    db.commit()
    return size


def keep(db, pending, stream, name):
    """Keep an upload for a later request; (key, item, pending) with older previews beyond KEEP dropped."""
    key = uuid.uuid4().hex
    pending = dict(pending or {})
    for old in sorted(pending, key=lambda k: pending[k]["at"])[:-(KEEP - 1)]:
        pending.pop(old)
        discard(db, old)
    size = store(db, key, stream, name)
    item = pending[key] = dict(key=key, name=name, size=size, at=time.time())
    return key, item, pending


def take(db, pending, key):
    """(item or None, pending without it): a kept upload is handed out once (the job that imports it
    discards it)."""
    pending = dict(pending or {})
    item = pending.pop(key or "", None)
    if not item or not exists(db, key):
        return None, pending
    return item, pending


def peek(db, pending, key):
    """The kept upload under `key` if it is still there (a preview's "Import for real" is offered only then)."""
    item = (pending or {}).get(key or "")
    return item if item and exists(db, key) else None


def exists(db, key):
    return bool(key) and not db(db.plugin_sync_upload.upload_key == key).isempty()


def open_local(db, key):
    """The kept file as a temporary file of this machine (at its start, removed when closed), or None."""
    row = db(db.plugin_sync_upload.upload_key == key).select().first()
    if row is None:
        return None
    out = tempfile.TemporaryFile(prefix="plugin_sync-kept-")
    sql = "SELECT data FROM %s WHERE upload=%s AND n=%s" % (db.plugin_sync_upload_chunk._rname,
                                                            dialect.placeholder(db), dialect.placeholder(db))
    for n in range(row.chunks or 0):
        out.write(bytes(db.executesql(sql, placeholders=(key, n))[0][0]))
    out.seek(0)
    return out


def discard(db, key):
    """Remove a kept file (imported, downloaded, or its preview failed) and commit."""
    if not key:
        return
    db(db.plugin_sync_upload_chunk.upload == key).delete()
    db(db.plugin_sync_upload.upload_key == key).delete()
    db.commit()


def sweep(db, now=None):
    """Remove the files kept longer than MAX_AGE (nobody imported or downloaded them)."""
    limit = (now or utcnow()) - datetime.timedelta(seconds=MAX_AGE)
    old = [r.upload_key for r in db(db.plugin_sync_upload.created_on < limit).select(db.plugin_sync_upload.upload_key)]
    if old:
        db(db.plugin_sync_upload_chunk.upload.belongs(old)).delete()
        db(db.plugin_sync_upload.upload_key.belongs(old)).delete()
