# -*- coding: utf-8 -*-
"""plugin_sync's pages and endpoints: thin actions that parse the request, call the engine, return a dict.

The engine (modules/plugin_sync/) knows nothing of web2py's globals; everything
here is glue.  Admin pages need a member of the admin group (HTTP Basic works
too, for scripts); peer endpoints authenticate peers by their token.
"""
import plugin_sync
from plugin_sync import errors, fileio

# ---------------------------------------------------------------- pages (admin UI)


# ------------------------------------------------------ peer endpoints (network sync)
#
# Peers call these with HTTP Basic credentials of an account of THIS instance in
# the sync group (plugin_sync_settings.peer_group, default "sync") or the admin
# group: no credentials or wrong ones -> 401 (with a Basic challenge), a valid
# account outside those groups -> 403, and never any data.  Basic only: no
# session cookie is read or set, so a browser's login cannot be replayed here.
#
#   GET  identity.json[?peer=<caller base_uuid>]  who we are, our clock, checkpoints
#   GET  changes?since=N[&tables=a,b][&peer=...]  our changes since N: gzip'd CSV (zip with
#                                                 uploads); X-Sync-Since/-Until/-Sha256 headers
#   POST receive.json  (body: the file)           merge it; 200 + report only after the commit
#   POST call/xmlrpc                              identity(peer), changes(since, tables, peer),
#                                                 receive(Binary, peer): the same over XML-RPC
#   POST sync_now/<peer id>                       admin: run replicate.sync now (pages and scripts)
import hashlib as _ps_hashlib
import io as _ps_io
import json
import xmlrpc.client as _ps_xmlrpc

from gluon.storage import Storage

from plugin_sync import accounts as _ps_accounts
from plugin_sync import replicate as _ps_replicate

PS_PEER_CHALLENGE = {"WWW-Authenticate": 'Basic realm="Sahana Eden %s (plugin_sync peers)"' % EDEN_INSTANCE}


def _ps_peer_refuse(status, message, kind):
    db.rollback()
    headers = {"Content-Type": "application/json; charset=utf-8"}
    if status == 401:
        headers.update(PS_PEER_CHALLENGE)
    raise HTTP(status, json.dumps(dict(ok=False, error=dict(error=kind, message=message))), **headers)


def _ps_peer():
    """Let only peer accounts (sync or admin group) through, by HTTP Basic; return the user row."""
    session.forget(response)
    groups = _ps_accounts.peer_groups(plugin_sync_settings)
    if (request.env.http_authorization or "")[:6].lower() != "basic ":
        _ps_peer_refuse(401, "Send HTTP Basic credentials of an account in the %s group."
                        % " or ".join("'%s'" % g for g in groups), "Unauthorized")
    try:
        user = auth.basic()[2]
    except Exception:  # a malformed header (bad base64)
        user = None
    if not user:
        _ps_peer_refuse(401, "Wrong e-mail or password (HTTP Basic).", "Unauthorized")
    if not _ps_accounts.may_sync(db, user.id, plugin_sync_settings):
        _ps_peer_refuse(403, "%s is not a member of the %s group: it may not sync with this instance."
                        % (user.email, " or ".join("'%s'" % g for g in groups)), "Forbidden")
    return user


def _ps_peer_error(status, e):
    db.rollback()
    error = dict(e.as_dict(), describe=e.describe()) if isinstance(e, errors.SyncError) else dict(message=str(e))
    raise HTTP(status, json.dumps(dict(ok=False, error=error), default=str),
               **{"Content-Type": "application/json; charset=utf-8"})


def identity():
    """This instance's identity and clock, for peers (JSON)."""
    _ps_peer()
    response.headers["Content-Type"] = "application/json; charset=utf-8"
    return json.dumps(_ps_replicate.identity(db, plugin_sync_settings, peer=request.get_vars.peer or None))


def changes():
    """Our changes since the checkpoint `since`: gzip'd CSV, or a zip bundle when files travel along."""
    _ps_peer()
    try:
        since = int(request.vars.since or 0)
    except ValueError:
        _ps_peer_error(400, ValueError("since must be an integer checkpoint"))
    tables = [t for t in (request.vars.tables or "").split(",") if t] or None
    fmt = request.vars.format if request.vars.format in ("gz", "zip") else "auto"
    try:
        data, fmt, since, until = _ps_replicate.changes(db, plugin_sync_settings, since, tables, fmt,
                                                        peer=request.get_vars.peer or None)
    except errors.SyncError as e:
        _ps_peer_error(400, e)
    raise HTTP(200, data, **{
        "Content-Type": "application/zip" if fmt == "zip" else "application/gzip",
        "Content-Disposition": 'attachment; filename="changes-%d-%d.%s"' % (since, until, "zip" if fmt == "zip" else "csv.gz"),
        "X-Sync-Since": str(since), "X-Sync-Until": str(until), "X-Sync-Format": fmt,
        "X-Sync-Sha256": _ps_hashlib.sha256(data).hexdigest(),
    })


def receive():
    """A peer pushes its changes (the body: gzip'd CSV, CSV or zip); 200 with the report after the commit."""
    _ps_peer()
    if request.env.request_method != "POST":
        _ps_peer_error(405, ValueError("POST the file as the request body"))
    if request.env.http_origin:  # a browser (peers send no Origin): no cross-site pushes
        _ps_peer_refuse(403, "A browser may not push data here.", "Forbidden")
    request.body.seek(0)
    peer = request.get_vars.peer or None  # request.vars would parse the body as a form
    try:
        report = _ps_replicate.receive(db, plugin_sync_settings, request.body, peer=peer)
    except errors.SyncError as e:
        _ps_peer_error(400, e)
    response.headers["Content-Type"] = "application/json; charset=utf-8"
    return json.dumps(dict(ok=True, report=report), default=str)


def call():
    """web2py's service: plugin_sync/call/xmlrpc offers identity, changes and receive over XML-RPC."""
    _ps_peer()
    if request.args(0) != "xmlrpc":
        raise HTTP(404, "plugin_sync offers XML-RPC only: plugin_sync/call/xmlrpc")
    return service()


def _ps_rpc_identity(peer=""):
    return _ps_replicate.identity(db, plugin_sync_settings, peer=peer or None)


def _ps_rpc_changes(since="0", tables="", peer=""):
    data, fmt, since, until = _ps_replicate.changes(
        db, plugin_sync_settings, int(since or 0), [t for t in (tables or "").split(",") if t] or None,
        peer=peer or None)
    return dict(data=_ps_xmlrpc.Binary(data), format=fmt, since=str(since), until=str(until),
                sha256=_ps_hashlib.sha256(data).hexdigest())


def _ps_rpc_receive(data, peer=""):
    try:
        report = _ps_replicate.receive(db, plugin_sync_settings, _ps_io.BytesIO(data.data), peer=peer or None)
    except errors.SyncError as e:
        db.rollback()
        return dict(ok=False, error=dict(e.as_dict(), describe=e.describe()))
    return dict(ok=True, report=json.dumps(report, default=str))  # XML-RPC has no 64-bit ints: JSON


for _ps_name, _ps_fn in (("identity", _ps_rpc_identity), ("changes", _ps_rpc_changes),
                         ("receive", _ps_rpc_receive)):
    _ps_fn.__name__ = _ps_name  # the XML-RPC method name
    service.xmlrpc(_ps_fn)


def _ps_sync_now_form(peer, mode=None, label="Sync now"):
    """A peer's "Sync now" button: a POST form to sync_now/<id> carrying web2py's CSRF form key.

    For views: pass it in the action's dict (e.g. sync_now=_ps_sync_now_form) and write
    {{=sync_now(row)}}.  mode: None (the peer's mode), pull, push or both.
    """
    form = FORM(INPUT(_type="hidden", _name="mode", _value=mode or ""),
                INPUT(_type="submit", _value=label, _class="btn small"),
                _action=URL("plugin_sync", "sync_now", args=peer.id), _method="post", _class="ps-inline")
    form.accepts(Storage(), session, formname="plugin_sync_sync_now_%d" % peer.id)
    return form


def sync_now():
    """POST sync_now/<peer id>[?mode=pull|push|both]: sync with one peer now, then back to the peers page.

    Browsers post the button's form (CSRF key); scripts post sync_now.json with
    HTTP Basic credentials of an admin and get the reports as JSON (409 when a
    run against that peer is already in progress, 502 when the peer failed).
    """
    basic = _ps_admin()
    table = db.sync_instance
    ref = request.args(0) or request.vars.peer
    peer = table(int(ref)) if str(ref or "").isdigit() else (plugin_sync.peers.find_peer(db, ref) if ref else None)
    if peer is None:
        _ps_fail(404, "No such peer: %s" % (ref or "(none given)"), dict(error="NotFound"))
    if request.env.request_method != "POST":
        response.title = "Sync: sync now"
        return dict(peer=peer, form=_ps_sync_now_form(peer))
    if basic:
        if _ps_cross_site():
            _ps_fail(403, "Cross-site POST refused.", dict(error="Forbidden"))
    elif not FORM().accepts(request.post_vars, session, formname="plugin_sync_sync_now_%d" % peer.id):
        _ps_fail(403, "This form expired or did not come from this page (CSRF key missing or wrong): "
                      "nothing was synced. Reload the page and try again.", dict(error="Forbidden"))
    mode = request.vars.mode if request.vars.mode in _ps_replicate.MODES else None
    name = peer.owner or peer.base_uuid
    try:
        results = _ps_replicate.sync(db, plugin_sync_settings, peer.id, mode=mode)
    except errors.SyncError as e:
        db.rollback()
        status = 409 if isinstance(e, errors.Locked) else 502 if isinstance(e, errors.PeerError) else 400
        if _ps_wants_json():
            _ps_peer_error(status, e)
        session.flash = "Sync with %s failed: %s" % (name, e.describe())
        redirect(URL("instances"))
    if _ps_wants_json():
        return response.json(dict(ok=True, peer=peer.base_uuid, summary=_ps_replicate.summary(results),
                                  **_ps_replicate.as_dict(results)))
    session.flash = "Synced with %s: %s." % (name, _ps_replicate.summary(results))
    redirect(URL("instances"))
