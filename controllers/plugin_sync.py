# -*- coding: utf-8 -*-
"""plugin_sync's pages and endpoints: thin actions that parse the request, call the engine, return a dict.

The engine (modules/plugin_sync/) knows nothing of web2py's globals; everything
here is glue.  Admin pages need a member of the admin group (HTTP Basic works
too, for scripts); peer endpoints authenticate peers as accounts of the sync group.
Long work started from a page (a preview, an import, a sync) is a job (jobs.py) run by
Eden's scheduler worker; the page shows its progress and polls job.json.  Every string a
page shows goes through T() (languages/plugin_sync/<lang>.py).
"""
import datetime
import hashlib as _ps_hashlib
import io as _ps_io
import json
import os
import tempfile
import uuid as _ps_uuid
import xmlrpc.client as _ps_xmlrpc

from gluon.storage import Storage
from gluon.tools import Service as _PSService

import plugin_sync
from plugin_sync import accounts as _ps_accounts
from plugin_sync.eden import model as _ps_eden_model
from plugin_sync.eden import pages as _ps_eden_pages
from plugin_sync.eden import tasks as _ps_eden_tasks
from plugin_sync import graph as _ps_graph
from plugin_sync import health as _ps_health
from plugin_sync import errors, fileio
from plugin_sync import jobs as _ps_jobs
from plugin_sync import limits as _ps_limits
from plugin_sync import log as _ps_log
from plugin_sync import overview as _ps_overview
from plugin_sync import replicate as _ps_replicate
from plugin_sync import restore as _ps_restore
from plugin_sync import review as _ps_review
from plugin_sync import stash as _ps_stash
from plugin_sync import verify as _ps_verify
from plugin_sync.tables import synced_tables

# The host's tables for this request: in Sahana Eden the synced tables are defined on
# demand (current.s3db); all of them, but none for the actions that read no synced table's
# rows (the dashboard counts them by name; a peer's identity call counts changes by table
# name; a job's progress, polled twice a second; the log; a finished export's download),
# and for a peer's `changes` only those with changes in its range (a few of Eden's
# hundreds); the peer role and the scheduled task are checked once per process.
_PS_NO_TABLES = ("index", "identity", "job", "log", "export_file")
_ps_tables = (False if request.function in _PS_NO_TABLES else
              _ps_eden_model.ON_DEMAND if request.function == "changes" and not request.vars.tables else True)
_ps_eden_model.prepare(db, plugin_sync_settings, tables=_ps_tables)
_ps_eden_tasks.once_per_process(db, plugin_sync_settings)

# ---------------------------------------------------------------- pages (admin UI)
#
# Every page needs a member of the admin group (plugin_sync_settings.admin_group).
# Browsers log in through default/user/login (session cookie); scripts send HTTP
# Basic credentials.  See _ps_admin() for the status codes.
PS_PAGE_SIZE = 25
PS_DASHBOARD_PEERS = 10  # the dashboard's most urgent peers; the Peers page pages through all
PS_EXPORT_TYPES = {  # format -> (Content-Type, file name suffix)
    "csv": ("text/csv; charset=utf-8", "csv"),
    "gz": ("application/gzip", "csv.gz"),
    "zip": ("application/zip", "zip"),
}
PS_TRUE = ("1", "on", "true", "yes", "y")
PS_FALSE = ("0", "off", "false", "no", "n", "")


def _ps_only(given, allowed, where="this address"):
    """Refuse (400) parameters this action does not take: a misspelt one must not be ignored silently.

    Names starting with "_" are the framework's, not the action's (web2py's _formname/_formkey/_next,
    and Sahana Eden's scripts add _timezone and _utc_offset to every form): never refused.
    """
    unknown = sorted(k for k in given if k not in allowed and not k.startswith("_"))
    if unknown:
        _ps_fail(400, T("Unknown parameter%s %s for %s (it takes: %s).") % (
            "s" if len(unknown) > 1 else "", ", ".join(unknown), where, ", ".join(allowed)),
            dict(error="BadRequest"))


def _ps_one(name, *values):
    """The one value given for a parameter (in the URL and/or the form, or under an alias); 400 if they
    conflict or it is given twice; None if not given."""
    given = []
    for v in values:
        for x in (v if isinstance(v, (list, tuple)) else [v]):
            if x is not None and x not in given:
                given.append(x)
    if len(given) > 1:
        _ps_fail(400, T("Conflicting values for %s: %s.") % (name, ", ".join(repr(str(g)) for g in given)),
                 dict(error="BadRequest"))
    return given[0] if given else None


def _ps_flag(name, value):
    """A yes/no parameter: 1/true/yes/on or 0/false/no/off (400 for anything else)."""
    text = str(value if value is not None else "").strip().lower()
    if text in PS_TRUE:
        return True
    if text in PS_FALSE:
        return False
    _ps_fail(400, T("%s=%r: use 1 or 0.") % (name, str(value)), dict(error="BadRequest"))


def _ps_wants_json():
    return request.extension == "json"


def _ps_fail(status, message, error=None, **context):
    """Refuse or report a failure in the caller's language: JSON, plain text (scripts) or a page."""
    db.rollback()
    error = dict(error or {}, message=message)
    headers = context.pop("headers", {})
    if _ps_wants_json():
        headers["Content-Type"] = "application/json; charset=utf-8"
        raise HTTP(status, json.dumps(dict(ok=False, error=error), default=str), **headers)
    if getattr(request, "ps_basic", False) or request.extension not in ("html", None):
        headers["Content-Type"] = "text/plain; charset=utf-8"
        raise HTTP(status, "%d %s\n" % (status, message), **headers)
    response.title = T("Sync: %s") % T({400: "refused", 401: "login needed", 403: "not allowed"}.get(status, "error"))
    page = response.render("plugin_sync/error.html", dict(status=status, message=message, error=error, **context))
    raise HTTP(status, page, **headers)


def _ps_admin():
    """Let only members of the admin group through; return True when HTTP Basic authenticated the caller.

    - HTTP Basic credentials present: wrong ones -> 401; right ones, not admin -> 403.
      No session is kept for them (a script's call is one request).
    - no credentials, no session: a browser is redirected to the login page; a
      script (a .json URL) gets 401.
    - logged in (session cookie) but not an admin -> 403.
    Refusals carry a message only, never data.
    """
    _ps_eden_pages.add_translations(T, request.folder)  # languages/plugin_sync/<lang>.py: refusals are translated too
    challenge = {"WWW-Authenticate": 'Basic realm="Sahana Eden %s (plugin_sync)"' % request.application}
    authorization = request.env.http_authorization or ""
    request.ps_basic = authorization[:6].lower() == "basic "
    if request.ps_basic:
        session.forget(response)
        try:
            user = _ps_accounts.basic_login(db, plugin_sync_settings, authorization, request.env.remote_addr,
                                            _ps_basic_check)
        except errors.Denied as e:
            _ps_fail(e.status, e.message, dict(error=e.kind), headers=e.headers)
        if not user:
            _ps_fail(401, T("Wrong e-mail or password (HTTP Basic)."), dict(error="Unauthorized"), headers=challenge)
    elif not auth.user:
        if _ps_wants_json():
            _ps_fail(401, T("Log in first: send HTTP Basic credentials of an administrator."),
                     dict(error="Unauthorized"), headers=challenge)
        redirect(URL("default", "user", args="login", vars=dict(_next=URL(args=request.args, vars=request.get_vars))))
    if not _ps_accounts.is_admin(db, auth.user.id, plugin_sync_settings):
        _ps_fail(403, T("%s is not a member of the '%s' group: only administrators may use the sync pages.")
                 % (auth.user.email, _ps_accounts.admin_group(plugin_sync_settings)), dict(error="Forbidden"))
    response.title = T("Sync")
    response.ps_unreviewed = _ps_unreviewed()  # the sub-navigation's badge
    _ps_eden_pages.set_options_menu(T)  # Eden's left-hand menu: the plugin's pages
    return request.ps_basic


def _ps_pager(total, size):
    """Which page of `total` items the request asks for (the last one at most): the view's pager."""
    pages = max(1, (total + size - 1) // size)
    try:
        page = min(max(1, int(request.get_vars.page or 1)), pages)
    except ValueError:
        page = 1
    return Storage(page=page, pages=pages, total=total, size=size, first=(page - 1) * size + 1 if total else 0,
                   last=min(page * size, total))


def _ps_page(query, orderby, size=PS_PAGE_SIZE, **kw):
    """(rows, pager) for one page of a query."""
    pager = _ps_pager(db(query).count(), size)
    return db(query).select(orderby=orderby, limitby=(pager.first - 1 if pager.total else 0, pager.last), **kw), pager


def _ps_unreviewed():
    return db(db.plugin_sync_conflict.reviewed != True).count()  # noqa: E712 (pydal)


def index():
    """Dashboard: who we are, what syncs (and what never does), peers, recent runs, conflicts."""
    _ps_admin()
    s = plugin_sync_settings
    health = _ps_health.by_urgency(_ps_health.peer_health(db, s))  # every peer: the picture draws them all
    counts = _ps_overview.synced_counts(db, s)
    data = dict(
        identity=plugin_sync.peers.this_instance(db),
        tables=counts,
        modules=_ps_overview.by_module(db, s, _ps_eden_model.module_names(db), counts),
        excluded=_ps_overview.excluded(db, s),
        peer_count=len(health),
        log=db(db.plugin_sync_log).select(orderby=~db.plugin_sync_log.id, limitby=(0, 10)),
        unreviewed=_ps_unreviewed(),
        peer_names=_ps_overview.peer_names(db),
        http_url=plugin_sync.peers.is_http_url,  # only http(s) URLs become links
        health=health[:PS_DASHBOARD_PEERS],  # the most urgent; the Peers page lists them all
        scheduler=_ps_health.scheduler_state(db),
        age=_ps_health.age,
        now=plugin_sync.peers.utcnow(),
    )
    if _ps_wants_json():
        return response.json(_ps_overview.as_json(data["identity"], data["tables"], data["excluded"], health,
                                                  data["scheduler"], data["unreviewed"], data["modules"]))
    data["graph"] = XML(_ps_graph.svg(data["identity"], health, data["now"], T))
    response.title = T("Sync")
    return data


def _ps_tables_asked():
    """The tables asked for (?tables=a&tables=b or ?tables=a,b), or None for all."""
    asked = request.vars.tables
    if asked is None:
        return None
    if not isinstance(asked, (list, tuple)):
        asked = [asked]
    return [t.strip() for a in asked for t in str(a).split(",") if t.strip()]


def export():
    """The export form (GET); its POST (with the form key), or for scripts export.csv / .gz / .zip, the file.

    An export writes (a log row, the checkpoint handed out; from the page with a worker a job and
    its file), so a browser starts one only by POSTing the page's form with its CSRF key: a GET
    with ?fmt=... carrying an administrator's session is refused (405).  Scripts (HTTP Basic)
    may GET, unless a browser marks the request cross-site.  Asking for a table the policy never
    syncs (?tables=auth_user) is refused with 400.
    """
    basic = _ps_admin()
    synced = synced_tables(db, plugin_sync_settings)
    _ps_only(request.get_vars, ("fmt", "format", "tables", "job"), "export")
    if request.env.request_method == "POST":
        _ps_only(request.post_vars, ("fmt", "format", "tables"), "export")
    # ?format= is the README's spelling, ?fmt= the form's: either, not two different ones
    fmt = _ps_one("the format", request.get_vars.fmt, request.get_vars.format, request.post_vars.fmt,
                  request.post_vars.format, request.extension if request.extension in PS_EXPORT_TYPES else None)
    if not fmt and (basic or request.vars.tables is not None):
        fmt = "csv"  # a script asking without a format gets the plain CSV
    form = FORM()
    page = dict(synced=synced, counts={t: db(db[t]).count() for t in synced}, formats=PS_EXPORT_TYPES, job=None,
                confirm=None, form=form)
    if not fmt:
        form.accepts(Storage(), session, formname="plugin_sync_export")  # the page's form key
        response.title = T("Sync: export")
        if request.get_vars.job:
            page.update(_ps_job_shown(request.get_vars.job, ("export",)))
        return page
    _ps_export_asked_here(basic, form)
    if fmt not in PS_EXPORT_TYPES:
        _ps_fail(400, T("Unknown format %r: use csv, gz or zip.") % fmt, dict(error="BadRequest"))
    tables = _ps_tables_asked()
    if tables is not None and not tables:
        _ps_fail(400, T("Choose at least one table to export."), dict(error="BadRequest"))
    try:
        tables = synced_tables(db, plugin_sync_settings, only=tables) if tables else None  # refuse before writing
    except errors.TableNotSynced as e:
        _ps_fail(400, T("Refused: %s. Only synced tables can be exported: %s.") % (e.message, ", ".join(synced)),
                 e.as_dict())
    me = plugin_sync.peers.this_instance(db)
    ctype, suffix = PS_EXPORT_TYPES[fmt]
    filename = "eden-%s-%s.%s" % (me.base_uuid[:8], datetime.datetime.utcnow().strftime("%Y%m%dT%H%M%SZ"), suffix)
    if not basic and _ps_health.scheduler_state(db).alive:
        # the page's form with a live worker: a job writes the file, the page shows its progress and then a
        # download link (export_file/<job id>); otherwise (scripts, no worker) the file is the answer
        response.title = T("Sync: export")
        return _ps_job_page(page, "export", dict(fmt=fmt, tables=tables, name=filename, key=_ps_uuid.uuid4().hex))
    # spooled to disk, not memory: the connection closes when the action returns, so
    # the file is complete before the first byte is sent
    out = tempfile.TemporaryFile(prefix="plugin_sync-export-")
    try:
        fileio.export_to(db, plugin_sync_settings, out, fmt=fmt, tables=tables)
    except errors.SyncError as e:
        out.close()
        _ps_fail(400, T("Export failed: %s") % e.describe(), e.as_dict())
    size = out.tell()
    out.seek(0)
    response.headers["Content-Type"] = ctype
    response.headers["Content-Disposition"] = 'attachment; filename="%s"' % filename
    response.headers["Content-Length"] = size
    return response.stream(out, chunk_size=1 << 16, request=request)


def _ps_export_asked_here(basic, form):
    """Refuse an export that this site's page did not ask for: a browser's needs the page's POST with its
    form key (405 for a GET, 403 without the key); a script's (HTTP Basic) must not be marked cross-site."""
    if basic:
        if _ps_cross_site():
            _ps_fail(403, T("Cross-site request refused: nothing was exported."), dict(error="Forbidden"))
        return
    if request.env.request_method != "POST":
        _ps_fail(405, T("An export starts from the Export page's form (a POST with its key): nothing was "
                        "exported."), dict(error="MethodNotAllowed"), headers={"Allow": "POST"})
    if not form.accepts(request.post_vars, session, formname="plugin_sync_export"):
        _ps_fail(403, T("This form expired or did not come from this page (CSRF key missing or wrong): "
                        "nothing was exported. Reload the page and try again."), dict(error="Forbidden"))


def export_file():
    """export_file/<job id>: the file an export job wrote (admin only, like every page)."""
    _ps_admin()
    status = _ps_job_status(request.args(0), ("export",))
    # kept in the database (stash.py): whichever server ran the job, this one serves the file
    kept = _ps_stash.open_local(db, status["params"].get("key")) if status and status["state"] == "done" else None
    if kept is None:
        _ps_fail(404, T("No such export (files are kept a day): %s") % request.args(0), dict(error="NotFound"))
    response.headers["Content-Type"] = PS_EXPORT_TYPES[status["report"]["format"]][0]
    response.headers["Content-Disposition"] = 'attachment; filename="%s"' % status["report"]["file"]
    response.headers["Content-Length"] = status["report"]["bytes"]
    return response.stream(kept, chunk_size=1 << 16, request=request)


# -- import ------------------------------------------------------------------

def _ps_keep_for_later(stream, name):
    """Keep an upload in the database (stash.py) for the job that previews or imports it; (key, item)."""
    key, item, session.plugin_sync_pending = _ps_stash.keep(db, session.plugin_sync_pending, stream, name)
    return key, item


def _ps_take_pending(key):
    item, session.plugin_sync_pending = _ps_stash.take(db, session.plugin_sync_pending, key)
    return item


def _ps_raw_post():
    """A POST whose body is the file itself (curl --data-binary): web2py must not parse it as a form."""
    ctype = (request.env.content_type or "").split(";")[0].strip().lower()
    return request.env.request_method == "POST" and ctype not in (
        "multipart/form-data", "application/x-www-form-urlencoded", "")


def _ps_upload(post):
    """(binary stream, file name) of the upload in the `data` field, or of a raw body (text/csv, gzip, zip)."""
    if _ps_raw_post():
        request.body.seek(0)
        return request.body, "request body"
    data = post.data
    if hasattr(data, "file") and data.file is not None and data.filename:
        data.file.seek(0)
        return data.file, os.path.basename(data.filename)
    return None, None


def _ps_import(stream, name, dry_run):
    """(report dict, None) or (None, error dict); on failure nothing is written (engine and here)."""
    try:
        report = fileio.import_from(db, plugin_sync_settings, stream, dry_run=dry_run, name=name)
    except Exception as e:  # one clear line whatever it was (errors.failure)
        db.rollback()
        return None, errors.failure(e)
    return report.as_dict(), None


def _ps_cross_site():
    """Is this a browser's request from another site?  Current browsers say so on every request
    (Sec-Fetch-Site), and send Origin on a cross-site POST; scripts (curl) send neither."""
    if (request.env.http_sec_fetch_site or "").lower() in ("cross-site", "same-site"):
        return True
    origin = request.env.http_origin
    if not origin:
        return False
    return origin.split("://", 1)[-1].rstrip("/") != (request.env.http_host or "")


def import_and_sync():
    """Upload a file (field `data`), preview it (dry run) or import it, and show the report.

    From the page, the work is a job (jobs.py) run by Eden's scheduler worker: the page
    answers at once with import_and_sync?job=<id>, a progress bar polling job.json, and
    the report in its place when done (no live worker: the job runs in this request and
    the page answers with its report).  import_and_sync.json answers scripts with
    report.as_dict() when done; errors are 400 with {"ok": false, "error": {...}}.
    """
    basic = _ps_admin()
    response.title = T("Sync: import")
    form = FORM(
        DIV(LABEL(T("File to import"), _for="ps-data"),
            INPUT(_type="file", _name="data", _id="ps-data", _accept=".csv,.gz,.zip,text/csv,application/gzip,application/zip"),
            _class="ps-field"),
        DIV(LABEL(INPUT(_type="checkbox", _name="dry_run", value=True), " ",
                  T("Dry run (preview): show what would change, write nothing")), _class="ps-field"),
        DIV(INPUT(_type="submit", _value=T("Upload")), _class="ps-field"),
        _enctype="multipart/form-data", _id="ps-import-form",
    )
    result = dict(form=form, job=None, confirm=None)
    is_post = request.env.request_method == "POST"
    if is_post:
        _ps_body_size(lambda status, message, kind: _ps_fail(status, message, dict(error=kind)))
    post = Storage(request.get_vars) if _ps_raw_post() else request.post_vars  # ?dry_run=1 with a raw body
    _ps_only(request.get_vars, ("dry_run", "job"), "import_and_sync")
    if not _ps_raw_post():
        _ps_only(post, ("data", "dry_run", "pending", "_formname", "_formkey"), "import_and_sync")

    if is_post and post._formname == "plugin_sync_confirm":
        # the second step of a preview: import the kept upload for real
        if not FORM().accepts(post, session, formname="plugin_sync_confirm"):
            _ps_fail(403, T("This form expired or did not come from this page: nothing was imported. "
                            "Upload the file again."), dict(error="Forbidden"))
        form.accepts(Storage(), session, formname="plugin_sync_import")  # a fresh key for the upload form
        item = _ps_take_pending(post.pending)
        if item is None:
            response.flash = T("That preview has expired: upload the file again.")
            return result
        return _ps_job_page(result, "import", dict(key=item["key"], name=item["name"]))

    if is_post and basic:
        # HTTP Basic callers (scripts, curl) cannot hold web2py's per-session form key.
        # CSRF rides on credentials a browser sends by itself; it can do that with Basic
        # credentials too (once typed into its prompt), so a cross-site POST is refused
        # by its Origin header.  Session-cookie callers always need the form key, below.
        if _ps_cross_site():
            _ps_fail(403, T("Cross-site POST refused."), dict(error="Forbidden"))
        accepted = True
    elif is_post:
        accepted = form.accepts(post, session, formname="plugin_sync_import")
        if not accepted and not form.errors:
            _ps_fail(403, T("This form expired or did not come from this page (CSRF key missing or wrong): "
                            "nothing was imported. Reload the page and upload again."), dict(error="Forbidden"))
    else:
        form.accepts(Storage(), session, formname="plugin_sync_import")
        accepted = False

    if not accepted:
        if _ps_wants_json():
            _ps_fail(405, T("POST a file in the field 'data' (multipart/form-data)."), dict(error="MethodNotAllowed"))
        if request.get_vars.job:
            result.update(_ps_job_shown(request.get_vars.job, ("preview", "import")))
            if result["job"]["state"] not in _ps_jobs.FINISHED:  # one at a time: the buttons wait for this one
                for button in form.elements("input[type=submit]"):
                    button["_disabled"] = "disabled"
        return result

    stream, name = _ps_upload(post)
    if stream is None:
        if _ps_wants_json() or basic:
            _ps_fail(400, T("No file: send it in the field 'data'."), dict(error="BadRequest"))
        response.flash = T("Choose a file to import.")
        response.status = 400
        return result
    # ?dry_run=1 in the URL counts for a form upload too; a URL and a form that disagree are refused
    dry_run = _ps_flag("dry_run", _ps_one("dry_run", request.get_vars.dry_run, post.dry_run))
    if _ps_wants_json():  # a script waits for its answer: the import runs in this request
        report, error = _ps_import(stream, name, dry_run=dry_run)
        if error:
            _ps_fail(400, error["describe"], error)
        return response.json(report)
    # the page: the upload is kept (in the database, keyed in the session) for the job, wherever it runs,
    # and after a preview for "Import for real", which then needs no second upload
    key, item = _ps_keep_for_later(stream, name)
    if dry_run and not basic:
        return _ps_job_page(result, "preview", dict(key=key, name=name))
    _ps_take_pending(key)  # imported (or previewed for a script) at once: no "Import for real" to wait for
    kind = "preview" if dry_run else "import"
    return _ps_job_page(result, kind, dict(key=key, name=name), inline=basic)


# -- jobs (long work started from a page, run by Eden's scheduler: jobs.py) -----------

PS_JOB_PAGES = {"preview": "import_and_sync", "import": "import_and_sync", "sync": "instances", "export": "export"}


def _ps_job_page(result, kind, params, inline=False):
    """Start a job; with a live worker, off to the page that shows its progress (303), else its result now.

    `inline`: run it in this request whatever (a script's HTTP Basic call does not follow the 303)."""
    job_id = _ps_jobs.create(db, kind, params, user_id=auth.user.id)
    alive = not inline and _ps_health.scheduler_state(db).alive
    if _ps_eden_tasks.start_job(db, plugin_sync_settings, job_id, alive) == "queued":
        redirect(URL(PS_JOB_PAGES[kind], vars=dict(job=job_id)))
    result.update(_ps_job_shown(job_id, (kind,)))
    if result["job"]["state"] == "failed":
        response.status = 400
    return result


def _ps_job_status(job_id, kinds=None):
    """A job's status (jobs.status) for this page, or None (no such job, or not of these kinds)."""
    if not str(job_id or "").isdigit():
        return None
    status = _ps_jobs.status(db, int(job_id), workers_alive=_ps_health.scheduler_state(db).alive)
    if status is None or (kinds and status["kind"] not in kinds):
        return None
    return status


PS_JOB_TITLES = {"preview": "Previewing %s", "import": "Importing %s", "sync": "Syncing with %s",
                 "export": "Exporting %s"}


def _ps_job_text(status):
    """The progress line under the bar, in the page's language: rows done (of about N), rate, time left."""
    if status["state"] == "queued":
        return T("Waiting for Eden's scheduler worker to start it...")
    n = lambda v: "{:,}".format(int(v))  # noqa: E731
    parts = [T("%s of about %s rows") % (n(status["done"]), n(status["total"])) if status["total"]
             else T("%s rows") % n(status["done"])]
    if status["rate"]:
        parts.append(T("%s rows/s") % n(status["rate"]))
    if status["seconds_left"] is not None and status["state"] == "running":
        parts.append(T("about %s left") % _ps_health.age(datetime.timedelta(seconds=status["seconds_left"])))
    if status["phase"] and status["kind"] == "sync":
        parts.insert(0, {"pull": T("pulling"), "push": T("pushing")}.get(status["phase"], status["phase"]))
    return " \u00b7 ".join(str(p) for p in parts)


def _ps_job_shown(job_id, kinds):
    """What a page's view needs to show a job: dict(job=status, confirm=form or None); 404 when there is none.

    The confirm form is made here, not in the view, so that its CSRF key is in the session
    of whichever request renders it (the page, or job.json's fragment)."""
    status = _ps_job_status(job_id, kinds)
    if status is None:
        _ps_fail(404, T("No such job: %s") % job_id, dict(error="NotFound"))
    status["title"] = str(T(PS_JOB_TITLES[status["kind"]]) % status["params"].get("name", ""))
    status["text"] = str(_ps_job_text(status))
    confirm = None
    key = status["params"].get("key")
    if status["kind"] == "preview" and status["state"] == "done" and _ps_stash.peek(db, session.plugin_sync_pending,
                                                                                    key):
        confirm = FORM(INPUT(_type="submit", _value=T("Import for real")), hidden=dict(pending=key),
                       _id="ps-confirm-form", _class="ps-inline",
                       _action=URL("plugin_sync", "import_and_sync", extension=False), _method="post")
        confirm.accepts(Storage(), session, formname="plugin_sync_confirm")
    return dict(job=status, confirm=confirm)


def job():
    """job.json/<id>: a job's state, rows done, total, rate, seconds left; when finished its report and,
    for the page, the fragment that replaces the progress bar.  job/<id>: the page that shows the job."""
    _ps_admin()
    shown = _ps_job_shown(request.args(0), None)
    status = shown["job"]
    if not _ps_wants_json():
        redirect(URL(PS_JOB_PAGES[status["kind"]], vars=dict(job=status["id"])))
    if status["state"] in _ps_jobs.FINISHED:
        request.extension = "html"  # the fragment's links are pages, not .json (URL() keeps the extension)
        status["html"] = response.render("plugin_sync/_job.html", shown)
        request.extension = "json"
    return response.json(dict(status, ok=True))


# -- peers -------------------------------------------------------------------

def _ps_mask(secret):
    """Never show a stored secret back: only that it is set (and the last 4 characters of a long one)."""
    if not secret:
        return T("not set")
    return T("set (\u2026%s)") % secret[-4:] if len(secret) >= 16 else T("set")


PS_PEER_FIELDS = ["base_uuid", "owner", "contact", "url", "username", "password", "mode", "transport", "sync_interval",
                  "account"]


def instances():
    """Peers (sync_instance): list, create (instances/new), edit (instances/<id>)."""
    _ps_admin()
    response.title = T("Sync: peers")
    table = db.sync_instance
    me = plugin_sync.peers.this_instance(db)
    record = None
    if request.args(0) and request.args(0) != "new":
        record = table(request.args(0, cast=int, otherwise=URL("instances"))) or redirect(URL("instances"))
    form = None
    if request.args(0):
        if record is None:
            # empty: taken from the peer's identity answer ("Test connection", or on saving)
            table.base_uuid.requires = IS_EMPTY_OR([
                IS_MATCH(PS_UUID_RE, error_message=T("not a UUID (the peer's dashboard shows its base UUID)")),
                IS_NOT_IN_DB(db, table.base_uuid, error_message=T("this peer is already registered")),
                IS_NOT_IN_DB(db(db.plugin_sync_identity.id > 0), db.plugin_sync_identity.base_uuid,
                             error_message=T("that is this instance's own base UUID")),
                IS_LENGTH(64),
            ])
            table.base_uuid.comment = T("leave empty: filled in from the peer's answer")
        else:
            table.base_uuid.writable = False  # a peer's identity is fixed once registered
        for name in PS_PEER_FIELDS:  # the model's labels, in the page's language
            table[name].label = T(table[name].label)
        table.url.label = T("URL")
        table.url.comment = T("e.g. http://10.0.0.2:8000/eden (empty for file-only peers)")
        table.contact.widget = lambda f, v: SQLFORM.widgets.text.widget(f, v, _rows=3)
        table.username.comment = T("account this instance uses to log in at the peer")
        table.account.comment = T("the account here the peer logs in with: it may push only this peer's own files")
        form = SQLFORM(table, record, fields=PS_PEER_FIELDS, deletable=record is not None, showid=False,
                       submit_button=T("Save"), delete_label=T("Delete this peer (and its checkpoints)"),
                       formstyle="table3cols")

        if record is None:
            _ps_verify_controls(form)

        def _onvalidation(f):
            if record is None:
                _ps_verify_peer(f)
            if record is None and f.vars.base_uuid:
                f.vars.uuid = "urn:uuid:%s" % f.vars.base_uuid
            others = (table.account == f.vars.account) & (table.id != (record.id if record else 0))
            if f.vars.account and not db(others).isempty():  # an account speaks for one instance
                f.errors.account = T("this account is already the login of another peer")

        if form.process(formname="plugin_sync_peer", onvalidation=_onvalidation).accepted:
            session.plugin_sync_probe = None  # the tested password is in the peer's row now, not the session
            session.flash = T("Peer deleted.") if form.deleted else T("Peer saved.")
            redirect(URL("instances"))
        elif form.errors.ps_tested and len(form.errors) == 1:
            response.flash = form.errors.ps_tested  # the test passed: the form shows what the peer said
        elif form.errors:
            response.flash = T("Please correct the highlighted fields.")
    health = _ps_health.by_urgency(_ps_health.peer_health(db, plugin_sync_settings, [record] if record else None))
    pager = _ps_pager(len(health), PS_PAGE_SIZE)
    health = health[pager.first - 1:pager.last] if pager.total else []  # most urgent first, a page at a time
    shown = _ps_job_shown(request.get_vars.job, ("sync",)) if request.get_vars.job else dict(job=None)
    busy = bool(shown["job"] and shown["job"]["state"] not in _ps_jobs.FINISHED)  # a sync runs: no second one
    # the "Sync now" button of peers with a URL comes with the peer endpoints (below)
    return dict(rows=[h.peer for h in health], pager=pager, form=form, record=record, me=me, mask=_ps_mask, job=shown["job"], confirm=None,
                sync_now=lambda peer: _ps_sync_now_form(peer, busy=busy), age=_ps_health.age,
                now=plugin_sync.peers.utcnow(),
                scheduler=_ps_health.scheduler_state(db),
                health={h.peer.id: h for h in health})


PS_UUID_RE = r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"


def _ps_verify_controls(form):
    """The new-peer form's "Test connection" button and "save unverified" box, beside Save."""
    submit = form.element("input", _type="submit")
    submit.parent.append(INPUT(_type="submit", _name="ps_test", _value=T("Test connection"), _id="ps-test",
                               _class="btn secondary"))
    submit.parent.append(DIV(LABEL(INPUT(_type="checkbox", _name="save_unverified", _id="ps-save-unverified"), " ",
                                   T("Save unverified (the peer cannot be asked now; its base UUID as typed)")),
                             _class="ps-field small"))


def _ps_probe_password(f):
    """The password typed for the test: after "Test connection" the form shows it masked, the session keeps it."""
    kept = session.plugin_sync_probe or {}
    if f.vars.password in ("", "********", None) and kept.get("url") == f.vars.url and \
            kept.get("username") == f.vars.username:
        f.vars.password = kept.get("password")
    return f.vars.password


def _ps_fill(f, name, value):
    """Show a value the peer told us in the form (input or textarea) and take it as the form's value."""
    f.vars[name] = value
    el = f.element(_name=name)
    if el is not None:
        if el.tag == "textarea":
            el.components = [value or ""]
        else:
            el["_value"] = value or ""


def _ps_verify_peer(f):
    """New peer: ask it who it is (verify.py) and fill its identity into the form, or mark the field at fault.

    Nothing is saved unverified unless "save unverified" is ticked; "Test connection" only fills the form in.
    """
    test = bool(request.post_vars.ps_test)
    if str(request.post_vars.save_unverified or "").lower() in PS_TRUE and not test:
        if not f.vars.base_uuid:  # the admin's word: saved as typed (the base UUID's format is still checked)
            f.errors.base_uuid = T("an unverified peer needs its base UUID")
        return
    password = _ps_probe_password(f) if f.vars.url else None
    verdict = _ps_verify.check_peer(db, plugin_sync_settings, f.vars.url, f.vars.username, password,
                                    f.vars.transport, typed_uuid=f.vars.base_uuid, T=T)
    if f.vars.url:
        session.plugin_sync_probe = dict(url=f.vars.url, username=f.vars.username, password=password)
    if verdict.ident is None:
        f.errors[verdict.field] = verdict.message
        return
    ident = verdict.ident
    _ps_fill(f, "base_uuid", ident["base_uuid"])
    for key in ("owner", "contact"):
        if not f.vars[key] and ident.get(key):
            _ps_fill(f, key, ident[key])
    f.vars.clock_offset = ident.get("clock_offset")
    if test:
        response.ps_verified = ident
        field = f.element(_name="password")
        if field is not None:  # shown empty again (never sent back): the session keeps it for Save
            field["_placeholder"] = T("as tested (kept)")
        f.errors.ps_tested = T("Connection OK: %s (%s). Check the details and press Save.") % (
            ident.get("owner") or "-", ident["base_uuid"])


# -- log and conflicts ------------------------------------------------------------

def log():
    """The replication log, newest first; each row expands to its JSON report."""
    _ps_admin()
    response.title = T("Sync: log")
    t = db.plugin_sync_log
    query = t.id > 0
    if request.get_vars.operation:
        query &= t.operation == request.get_vars.operation
    rows, pager = _ps_page(query, ~t.id)
    return dict(rows=rows, pager=pager, peer_names=_ps_overview.peer_names(db), pretty=_ps_log.pretty, parse=_ps_log.logged_report)


def conflicts():
    """Conflicts, unreviewed first; conflicts/<id> compares the losing version with the current record."""
    _ps_admin()
    response.title = T("Sync: conflicts")
    c = db.plugin_sync_conflict
    peers = _ps_overview.peer_names(db)
    review = FORM(INPUT(_type="hidden", _name="id"), INPUT(_type="hidden", _name="reviewed"),
                  INPUT(_type="submit", _value=T("Mark reviewed")))
    restore = FORM(INPUT(_type="hidden", _name="id"), INPUT(_type="submit", _value=T("Restore this version")))
    if review.accepts(request.post_vars, session, formname="plugin_sync_review"):
        row = c(review.vars.id)
        if row:
            row.update_record(reviewed=str(review.vars.reviewed) != "0")
            session.flash = T("Conflict marked reviewed.") if row.reviewed else T("Conflict marked unreviewed.")
        redirect(URL("conflicts", args=request.args, vars=request.get_vars))
    elif restore.accepts(request.post_vars, session, formname="plugin_sync_restore"):
        try:
            report = _ps_restore.restore(db, plugin_sync_settings, int(restore.vars.id))
            session.flash = T("Version restored (%d record written); the version it replaced is in the list.") % (
                report.totals()["docs_written"])
        except errors.SyncError as e:
            db.rollback()
            session.flash = T("Nothing restored: %s") % e
        redirect(URL("conflicts", args=request.args, vars=request.get_vars))
    elif request.env.request_method == "POST":
        _ps_fail(403, T("This form expired or did not come from this page: nothing changed."), dict(error="Forbidden"))
    if request.args(0):
        row = c(request.args(0, cast=int, otherwise=URL("conflicts"))) or redirect(URL("conflicts"))
        detail = _ps_review.conflict_detail(db, row)
        return dict(detail=detail, row=row, peers=peers, review=review, restore=restore,
                    name=_ps_review.conflict_names(db, [row]).get(row.id))
    show = request.get_vars.show or "unreviewed"
    query = (c.reviewed != True) if show == "unreviewed" else (c.id > 0)  # noqa: E712
    if request.get_vars.table:
        query &= c.tablename == request.get_vars.table
    if request.get_vars.peer:
        query &= c.origin == request.get_vars.peer
    rows, pager = _ps_page(query, c.reviewed | ~c.id)
    return dict(rows=rows, pager=pager, show=show, peers=peers, unreviewed=_ps_unreviewed(),
                total=db(c).count(), review=review, detail=None, names=_ps_review.conflict_names(db, rows),
                tables=[r.tablename for r in db(c).select(c.tablename, distinct=True, orderby=c.tablename)],
                origins=[r.origin for r in db(c.origin != None).select(c.origin, distinct=True, orderby=c.origin)])  # noqa: E711


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
#        [&until=U&after=table:id&limit=L]        uploads); X-Sync-Since/-Until/-Sha256 headers;
#                                                 one batch of [N, U) and X-Sync-Next
#   POST receive.json  (body: the file)           merge it; 200 + report only after the commit
#   POST call/xmlrpc                              identity(peer), changes(since, tables, peer),
#                                                 receive(Binary, peer): the same over XML-RPC
#   POST sync_now/<peer id>                       admin: run replicate.sync now (pages and scripts)
PS_PEER_CHALLENGE = {"WWW-Authenticate": 'Basic realm="Sahana Eden %s (plugin_sync peers)"' % request.application}
# the plugin's own XML-RPC service: never the host's (Eden defines none; another host's
# `service` would publish its functions under plugin_sync/call)
_ps_service = _PSService()


def _ps_peer_refuse(status, message, kind, headers=None):
    db.rollback()
    headers = dict(headers or {}, **{"Content-Type": "application/json; charset=utf-8"})
    if status == 401:
        headers.update(PS_PEER_CHALLENGE)
    raise HTTP(status, json.dumps(dict(ok=False, error=dict(error=kind, message=message))), **headers)


def _ps_denied(e):
    """A caller the peer endpoints turn away (errors.Denied): its status, JSON and headers."""
    _ps_peer_refuse(e.status, e.message, e.kind, e.headers)


def _ps_basic_check():
    return auth.basic()[2]


def _ps_peer():
    """Let only peer accounts (sync or admin group) through, by HTTP Basic; return the user row."""
    session.forget(response)
    try:
        user = _ps_accounts.peer_login(db, plugin_sync_settings, request.env.http_authorization,
                                       request.env.remote_addr, _ps_basic_check)
    except errors.Denied as e:
        _ps_denied(e)
    request.ps_user = user
    return user


def _ps_speaks_for(user, asked=None):
    return _ps_accounts.checkpoint_owner(db, plugin_sync_settings, user.id, asked)


def _ps_sender(user):
    try:
        return _ps_accounts.sender_of(db, plugin_sync_settings, user)
    except errors.Denied as e:
        _ps_denied(e)


def _ps_body_size(refuse=None):
    """Refuse a body beyond max_request_size (413) or of unknown length (411), before it is read."""
    try:
        _ps_limits.check_body_size(plugin_sync_settings, request.env.content_length)
    except errors.Denied as e:
        if e.status == 413:
            request._body = _ps_io.BytesIO()  # gluon reads request.body at the end of a request: not this one
        (refuse or _ps_peer_refuse)(e.status, e.message, e.kind)


def _ps_peer_error(status, e):
    db.rollback()
    error = dict(e.as_dict(), describe=e.describe()) if isinstance(e, errors.SyncError) else dict(message=str(e))
    raise HTTP(status, json.dumps(dict(ok=False, error=error), default=str),
               **{"Content-Type": "application/json; charset=utf-8"})


def identity():
    """This instance's identity and clock, for peers (JSON); `received` only of the caller's own instance."""
    user = _ps_peer()
    response.headers["Content-Type"] = "application/json; charset=utf-8"
    since = request.get_vars.since
    return json.dumps(_ps_replicate.identity(db, plugin_sync_settings, peer=_ps_speaks_for(user, request.get_vars.peer),
                                             since=int(since) if str(since or "").isdigit() else None))


def changes():
    """Our changes since the checkpoint `since`: gzip'd CSV, or a zip bundle when files travel along (streamed)."""
    user = _ps_peer()
    try:
        since = int(request.vars.since or 0)
        until = int(request.vars.until) if request.vars.until else None
        limit = int(request.vars.limit) if request.vars.limit else None
    except ValueError:
        _ps_peer_error(400, ValueError("since, until and limit must be whole numbers"))
    tables = [t for t in (request.vars.tables or "").split(",") if t] or None
    fmt = request.vars.format if request.vars.format in ("gz", "zip") else "auto"
    try:
        answer = _ps_replicate.changes_file(
            db, plugin_sync_settings, since, tables, fmt, peer=_ps_speaks_for(user, request.get_vars.peer),
            until=until, after=request.vars.after or None, limit=limit)
        out, fmt, since, until = answer
    except errors.SyncError as e:
        _ps_peer_error(400, e)
    digest = _ps_hashlib.sha256()
    for chunk in iter(lambda: out.read(1 << 16), b""):
        digest.update(chunk)
    size = out.tell()
    out.seek(0)
    response.headers.update({
        "Content-Type": "application/zip" if fmt == "zip" else "application/gzip",
        "Content-Disposition": 'attachment; filename="changes-%d-%d.%s"' % (since, until, "zip" if fmt == "zip" else "csv.gz"),
        "X-Sync-Since": str(since), "X-Sync-Until": str(until), "X-Sync-Format": fmt,
        "X-Sync-Sha256": digest.hexdigest(), "Content-Length": str(size),
    })
    if answer.next is not None:
        response.headers["X-Sync-Next"] = str(answer.next)
    return response.stream(out, chunk_size=1 << 16, request=request)


def receive():
    """A peer pushes its changes; 200 with the report after the commit.

    The file is the body (gzip'd CSV, CSV or zip; peers send it with a Content-Disposition
    file name, which a host that parses every POST, as Sahana Eden does, needs: see
    transport.body_disposition), or a multipart upload in the field `data` (curl -F data=@file).
    """
    user = _ps_peer()
    if request.env.request_method != "POST":
        _ps_peer_error(405, ValueError("POST the file as the request body"))
    if request.env.http_origin:  # a browser (peers send no Origin): no cross-site pushes
        _ps_peer_refuse(403, "A browser may not push data here.", "Forbidden")
    sender = _ps_sender(user)
    _ps_body_size()
    stream, _ = _ps_upload(request.post_vars) if not _ps_raw_post() else (None, None)
    if stream is None:  # the body is the file (what peers send; with a Content-Disposition file name)
        stream = request.body
        stream.seek(0)
    try:
        report = _ps_replicate.receive(db, plugin_sync_settings, stream, sender=sender,
                                       name="push from %s (account %s)" % (sender or "an administrator", user.email),
                                       account=user.id)
    except errors.SyncError as e:
        _ps_peer_error(400, e)
    except Exception as e:  # not a failure the engine foresaw: JSON all the same, nothing written
        _ps_peer_error(500, RuntimeError("the import failed (%s: %s); nothing was written"
                                         % (type(e).__name__, (str(e).splitlines() or ["no message"])[0])))
    response.headers["Content-Type"] = "application/json; charset=utf-8"
    return json.dumps(dict(ok=True, report=report), default=str)


def call():
    """web2py's service: plugin_sync/call/xmlrpc offers identity, changes and receive over XML-RPC."""
    _ps_peer()
    if request.args(0) != "xmlrpc":
        raise HTTP(404, "plugin_sync offers XML-RPC only: plugin_sync/call/xmlrpc")
    if request.env.request_method == "POST":
        _ps_body_size()
    return _ps_service()


def _ps_rpc_identity(peer=""):
    return _ps_replicate.identity(db, plugin_sync_settings, peer=_ps_speaks_for(request.ps_user, peer))


def _ps_rpc_changes(since="0", tables="", peer="", until="", after="", limit=""):
    answer = _ps_replicate.changes_file(
        db, plugin_sync_settings, int(since or 0), [t for t in (tables or "").split(",") if t] or None,
        peer=_ps_speaks_for(request.ps_user, peer), until=int(until) if until else None, after=after or None,
        limit=int(limit) if limit else None)
    out, fmt, since, until = answer
    with out:
        out.seek(0, 2)
        limit = _ps_limits.Limits(plugin_sync_settings).max_request_size
        if out.tell() > limit:  # XML-RPC answers one document, in memory: only within the limit
            raise errors.TooLarge("the changes since %d (%d bytes) exceed the limit of %d bytes for XML-RPC (setting "
                                  "plugins.sync.max_request_size): sync over HTTP" % (since, out.tell(), limit))
        out.seek(0)
        data = out.read()
    return dict(data=_ps_xmlrpc.Binary(data), format=fmt, since=str(since), until=str(until),
                next=str(answer.next or ""), sha256=_ps_hashlib.sha256(data).hexdigest())


def _ps_rpc_receive(data, peer=""):
    user = request.ps_user
    try:
        sender = _ps_sender(user)
        report = _ps_replicate.receive(db, plugin_sync_settings, _ps_io.BytesIO(data.data), sender=sender,
                                       name="push from %s (account %s)" % (sender or "an administrator", user.email),
                                       account=user.id)
    except errors.SyncError as e:
        db.rollback()
        return dict(ok=False, error=dict(e.as_dict(), describe=e.describe()))
    except HTTP as e:  # refused (an account bound to no instance)
        db.rollback()
        return dict(ok=False, error=json.loads(e.body).get("error") if e.body else dict(message=str(e.status)))
    return dict(ok=True, report=json.dumps(report, default=str))  # XML-RPC has no 64-bit ints: JSON


for _ps_name, _ps_fn in (("identity", _ps_rpc_identity), ("changes", _ps_rpc_changes),
                         ("receive", _ps_rpc_receive)):
    _ps_fn.__name__ = _ps_name  # the XML-RPC method name
    _ps_service.xmlrpc(_ps_fn)


def _ps_sync_now_form(peer, mode=None, label=None, busy=False):
    """A peer's "Sync now" button: a POST form to sync_now/<id> carrying web2py's CSRF form key.

    For views: pass it in the action's dict (e.g. sync_now=_ps_sync_now_form) and write
    {{=sync_now(row)}}.  mode: None (the peer's mode), pull, push or both.  busy: a sync job runs (disabled).
    """
    form = FORM(INPUT(_type="hidden", _name="mode", _value=mode or ""),
                INPUT(_type="submit", _value=label or T("Sync now"), _class="btn small", _disabled=busy or None),
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
        _ps_fail(404, T("No such peer: %s") % (ref or T("(none given)")), dict(error="NotFound"))
    if request.env.request_method != "POST":
        response.title = T("Sync: sync now")
        return dict(peer=peer, form=_ps_sync_now_form(peer))
    if basic:
        if _ps_cross_site():
            _ps_fail(403, T("Cross-site POST refused."), dict(error="Forbidden"))
    elif not FORM().accepts(request.post_vars, session, formname="plugin_sync_sync_now_%d" % peer.id):
        _ps_fail(403, T("This form expired or did not come from this page (CSRF key missing or wrong): "
                        "nothing was synced. Reload the page and try again."), dict(error="Forbidden"))
    mode = request.vars.mode if request.vars.mode in _ps_replicate.MODES else None
    name = peer.owner or peer.base_uuid
    if not _ps_wants_json():  # the page: a job (jobs.py), its progress on the Peers page
        shown = _ps_job_page(dict(), "sync", dict(peer=peer.id, mode=mode, name=name), inline=basic)["job"]
        if shown["state"] == "done":
            session.flash = T("Synced with %s: %s.") % (name, shown["report"]["summary"])
        else:
            session.flash = T("Sync with %s failed: %s") % (name, shown["error"]["describe"])
        redirect(URL("instances"))
    try:
        results = _ps_replicate.sync(db, plugin_sync_settings, peer.id, mode=mode)
    except errors.SyncError as e:
        status = 409 if isinstance(e, errors.Locked) else 502 if isinstance(e, errors.PeerError) else 400
        _ps_peer_error(status, e)
    return response.json(dict(ok=True, peer=peer.base_uuid, summary=_ps_replicate.summary(results),
                              **_ps_replicate.as_dict(results)))
