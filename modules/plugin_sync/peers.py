"""Instances: this one's identity, and the `sync_instance` rows of its peers.

The identity (a base_uuid) is generated once and kept; it is what a file or a
peer says to name its origin.  The blueprint's 4-character base_uuid is widened
to a full uuid4 (36 characters): with 4 hex characters two field laptops
collide with a probability of 1 in 65,536 per pair, which a large deployment
with hundreds of instances would hit.
"""
import datetime
import os
import urllib.parse
import uuid as uuidlib


def utcnow():
    """UTC now, to the second; EDEN_CLOCK_SKEW=<seconds> moves it (tests: a drifting field laptop)."""
    now = datetime.datetime.utcnow().replace(microsecond=0)
    skew = os.environ.get("EDEN_CLOCK_SKEW")
    return now + datetime.timedelta(seconds=float(skew)) if skew else now


def this_instance(db, owner=None, contact=None):
    """This instance's identity row, created on first use."""
    table = db.plugin_sync_identity
    row = db(table).select(orderby=table.id, limitby=(0, 1)).first()
    if row is None:
        row_id = table.insert(
            base_uuid=str(uuidlib.uuid4()), owner=owner or "", contact=contact or "", created_on=utcnow()
        )
        row = table(row_id)
    return row


def identity_record(db):
    """This instance as a sync_instance row (what we tell peers and write into files)."""
    me = this_instance(db)
    return dict(
        base_uuid=me.base_uuid,
        uuid="urn:uuid:%s" % me.base_uuid,
        owner=me.owner,
        contact=me.contact,
    )


def mark_exported(db, until):
    """Remember the highest `until` handed out: a peer's claim to have merged more of ours is false."""
    t = db.plugin_sync_identity
    db((t.exported_until == None) | (t.exported_until < until)).update(exported_until=until)  # noqa: E711


def is_http_url(url):
    """Is `url` an http(s) URL with a host (what a peer's URL may be; never javascript: or data:)?"""
    try:
        parts = urllib.parse.urlsplit((url or "").strip())
    except ValueError:
        return False
    return parts.scheme.lower() in ("http", "https") and bool(parts.netloc) and not any(
        c in url for c in "\x00\r\n<>\"'")


def find_peer(db, base_uuid):
    return db(db.sync_instance.base_uuid == base_uuid).select(limitby=(0, 1)).first()


def record_sync(db, origin, when=None):
    """Note that a sync with `origin` happened: create its row if new, bump last_update and sync_count."""
    if not origin or not origin.get("base_uuid"):
        return None
    if origin["base_uuid"] == this_instance(db).base_uuid:
        return None
    when = when or utcnow()
    peer = find_peer(db, origin["base_uuid"])
    if peer is None:
        return db.sync_instance.insert(
            base_uuid=origin["base_uuid"],
            uuid=origin.get("uuid") or "urn:uuid:%s" % origin["base_uuid"],
            owner=origin.get("owner"),
            contact=origin.get("contact"),
            url=origin.get("url") if is_http_url(origin.get("url")) else None,
            last_update=when,
            sync_count=1,
        )
    changes = dict(last_update=when, sync_count=(peer.sync_count or 0) + 1)
    for key in ("owner", "contact"):
        if origin.get(key) and not peer[key]:
            changes[key] = origin[key]
    peer.update_record(**changes)
    return peer.id
