"""Long work started from a page (a preview, an import, a sync, an export), run in the background (issue 15).

A job is a plugin_sync_job row: its kind, its parameters, its state (queued ->
running -> done | failed), the final report or the error, who started it and
when.  Eden's scheduler worker runs it (eden.tasks.start_job queues it; with no live
worker it runs at once, in the request that started it).  The work is the same
engine call the page made before (fileio.import_from, replicate.sync, fileio.export_to).
Everything a job shares with the requests that watch it is in the database
(issue 23), so any app server shows a job any worker runs: its progress and
heartbeat (plugin_sync_progress, written apart from the merge's transaction:
progress.py), the upload it imports and the file it exports (stash.py).

A worker that dies leaves its job "running": `status()` reports such a job failed
once its heartbeat (progress.BEAT s apart while it lives) has stopped for STALE
seconds, whichever machine it ran on.  A queued job that no worker took within
STALE seconds, while none is alive, fails the same way.
"""
import datetime
import json
import os
import socket
import tempfile
import time
import uuid

from . import progress, stash
from .errors import failure
from .fileio import export_to, import_from
from .peers import utcnow
from .replicate import as_dict as sync_as_dict
from .replicate import summary as sync_summary
from .replicate import sync
from .tables import synced_tables

KINDS = ("preview", "import", "sync", "export")
FINISHED = ("done", "failed")
STALE = 60  # seconds without a heartbeat after which a running job counts as dead
KEEP = 24 * 3600  # progress rows of jobs older than this are removed


def create(db, kind, params, user_id=None):
    """A queued job (committed, so that a worker sees it); its id.  Old progress rows are swept."""
    if kind not in KINDS:
        raise ValueError("job kind must be one of %s, not %r" % (", ".join(KINDS), kind))
    progress.forget(db, time.time() - KEEP)
    job_id = db.plugin_sync_job.insert(kind=kind, params=json.dumps(params), state="queued", started_by=user_id,
                                       created_on=utcnow())
    db.commit()
    return job_id


def run(db, settings, job_id):
    """Run a queued job to its end (done or failed) with a progress meter; its final state.

    A job runs once: a second call (a retried scheduler task) finds it no longer queued.
    """
    t = db.plugin_sync_job
    me = "%s:%d:%s" % (socket.gethostname(), os.getpid(), uuid.uuid4().hex[:8])
    claimed = db((t.id == job_id) & (t.state == "queued")).update(state="running", worker=me, started_on=utcnow())
    db.commit()
    job = t(job_id)
    if not claimed:
        return job.state if job else None
    params = json.loads(job.params or "{}")
    params.setdefault("account", job.started_by)  # who started it: the local account that imports
    state, report, error = "done", None, None
    try:
        with progress.watching(progress.Meter(db, job_id)):
            report = RUNNERS[job.kind](db, settings, params)
    except Exception as e:  # whatever it was, the job ends failed with one clear line
        db.rollback()
        state = "failed"
        error = failure(e, "the %s" % job.kind)
    if job.kind == "import" or (job.kind == "preview" and state == "failed"):
        stash.discard(db, params.get("key"))  # imported, or failed: no "Import for real" follows
    finish(db, job_id, state, report=report, error=error)
    return state


def finish(db, job_id, state, report=None, error=None):
    db.rollback()
    db(db.plugin_sync_job.id == job_id).update(
        state=state, finished_on=utcnow(), report=json.dumps(report, default=str) if report is not None else None,
        error=json.dumps(error, default=str) if error is not None else None)
    db.commit()


def _import(db, settings, params, dry_run):
    """The page's import of the kept upload (params["key"]), wherever it was uploaded; its administrator owns
    what it creates, as in Eden's own import (params["account"])."""
    source = stash.open_local(db, params.get("key"))
    if source is None:
        raise ValueError("the upload %s is no longer kept (a day at most, once): upload the file again"
                         % (params.get("name") or ""))
    with source:
        return import_from(db, settings, source, dry_run=dry_run, name=params.get("name"),
                           account=params.get("account")).as_dict()


def _export(db, settings, params):
    """The export, kept in the database under params["key"] to be downloaded when done; its counts."""
    tables = synced_tables(db, settings, only=params.get("tables") or None)
    progress.expect(sum(db(db[t]).count() for t in tables))
    with tempfile.TemporaryFile(prefix="plugin_sync-export-") as out:
        counts = export_to(db, settings, out, fmt=params["fmt"], tables=params.get("tables") or None)
        db.commit()  # the export's read snapshot ends: the file is written in a transaction of its own
        size = stash.store(db, params["key"], out, params.get("name"))
    rows = sum(n for t, n in counts["tables"].items() if t != "tombstones")
    return dict(file=params.get("name"), format=params["fmt"], bytes=size, rows=rows, tables=counts["tables"],
                until=counts.get("until"), warnings=counts.get("warnings") or [])


def _sync(db, settings, params):
    results = sync(db, settings, int(params["peer"]), mode=params.get("mode") or None)
    return dict(summary=sync_summary(results), **sync_as_dict(results))


RUNNERS = {
    "preview": lambda db, settings, params: _import(db, settings, params, dry_run=True),
    "import": lambda db, settings, params: _import(db, settings, params, dry_run=False),
    "sync": _sync,
    "export": _export,
}


def status(db, job_id, workers_alive=True, now=None):
    """What a page shows of a job: state, rows done, total, rate, seconds left, the report or the error.

    None when there is no such job.  A job whose heartbeat stopped (see the module's docstring) is marked
    failed here.  `workers_alive`: does a scheduler worker have a recent heartbeat (health.scheduler_state)?
    """
    job = db.plugin_sync_job(job_id)
    if job is None:
        return None
    now = now or time.time()
    state = progress.read(db, job_id)
    if job.state not in FINISHED:
        why = _stopped(job, state, now, workers_alive)
        if why:
            finish(db, job_id, "failed", error=dict(error="WorkerGone", describe=why))
            job = db.plugin_sync_job(job_id)
    out = dict(id=job.id, kind=job.kind, state=job.state, phase=(state or {}).get("phase"),
               params=json.loads(job.params or "{}"), created_on=job.created_on,
               started_on=job.started_on, finished_on=job.finished_on,
               report=json.loads(job.report) if job.report else None,
               error=json.loads(job.error) if job.error else None)
    out.update(progress.estimate(state, now))
    if job.state == "done":  # the estimate is over: what was done is the total
        out.update(total=out["done"], seconds_left=0)
    return out


def _stopped(job, state, now, workers_alive):
    """Why a job that is not finished never will be (its heartbeat stopped), or None."""
    last = (state or {}).get("beat") or _epoch(job.started_on or job.created_on)
    if last is None or now - last < STALE:
        return None
    if job.state == "queued":
        if workers_alive:
            return None
        return "no scheduler worker took this job in %d s (is Eden's worker running? web2py.py -K eden)" % STALE
    return "the worker running this job stopped (no heartbeat for %d s; it was %s): what it ran was rolled " \
           "back; start it again" % (int(now - last), job.worker or "?")


def _epoch(utc):
    if utc is None:
        return None
    return (utc - datetime.datetime(1970, 1, 1)).total_seconds()
