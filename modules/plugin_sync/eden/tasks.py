"""What runs in Eden's processes for the plugin: the peer role and the scheduled task made once per
process, the scheduled sync run by Eden's scheduler, and the pages' long jobs queued for its worker."""
from gluon import current

from .. import database_key, jobs
from ..accounts import PEER_GROUP, PEER_ROLE_DESCRIPTION, PEER_ROLE_NAME, ensure_peer_role as engine_peer_role
from ..accounts import find_role, peer_group
from ..log import briefly
from ..replicate import RUN_TIMEOUT, due_peers, run_due
from .model import is_eden, prepare

TASK = "plugin_sync_scheduled"  # the task's name in Eden's registry and in scheduler_task.task_name
TASK_UUID = "plugin_sync_scheduled-v1"
JOB_TASK = "plugin_sync_job"  # the task that runs a page's long work (jobs.py), queued per job
TASK_PERIOD = 60  # seconds: the task syncs the peers that are due (sync_instance.sync_interval)
_roles = set()
_tasks = set()


def ensure_peer_role(db, settings):
    """The peer role's id; in Eden made by auth.s3_create_role with its uid (once Eden's own roles exist)."""
    name = peer_group(settings)
    found = find_role(db, name)
    if found:
        return found
    auth = getattr(current, "auth", None)
    if is_eden(db) and hasattr(auth, "s3_create_role") and not db(db.auth_group).isempty():
        role_id = auth.s3_create_role(PEER_ROLE_NAME if name == PEER_GROUP else name, PEER_ROLE_DESCRIPTION,
                                      uid=name)
        db.commit()
        return role_id
    if is_eden(db):
        return None  # Eden's first run has not made its roles yet: do not pre-empt it
    return engine_peer_role(db, settings)


def scheduled(db, settings):
    """The scheduled task: sync the peers that are due; {base_uuid: "ok" | "error: ..."}.  Eden's tables are
    defined only when a peer is due (the task runs every minute, most often for nothing)."""
    prepare(db, settings, tables=bool(due_peers(db)))
    return run_due(db, settings)


def register_task(db, function):
    """Put a task (by its function's name) into Eden's task registry (deployment settings' tasks, run by Eden's
    `settings_task`)."""
    if not is_eden(db):
        return False
    current.deployment_settings.tasks[function.__name__] = function
    return True


def run_job(db, settings, job_id):
    """The job task (a page's long work, jobs.py): the synced tables defined, then the job run; its final state."""
    prepare(db, settings)
    return jobs.run(db, settings, int(job_id))


def start_job(db, settings, job_id, worker_alive):
    """Queue a job for Eden's scheduler worker; "queued", or "ran" when it ran here and now.

    Queued the way Eden schedules tasks (S3Task.schedule_task: a one-off scheduler_task row of
    Eden's `settings_task`; its run_async fails with this gluon and pydal), and the worker told
    to pick it up at once.  With no live worker (`worker_alive`: health.scheduler_state), in a
    host without Eden's S3Task, or where queueing fails, the job runs in the calling request:
    the page then answers when it is done, instead of waiting for a worker that is not there.
    """
    s3task = getattr(current, "s3task", None)
    if worker_alive and is_eden(db) and s3task is not None and "scheduler_task" in db.tables:
        try:
            s3task.schedule_task(JOB_TASK, function_name="settings_task",
                                           vars={"taskname": JOB_TASK, "job": int(job_id)}, repeats=1,
                                           retry_failed=0, timeout=task_timeout(settings), ignore_duplicate=True,
                                           user_id=False)
            if "scheduler_worker" in db.tables:  # the ticker assigns it now, not at its next round
                db(db.scheduler_worker.is_ticker == True).update(status="PICK")  # noqa: E712 (pydal)
            db.commit()
            return "queued"
        except Exception:  # the scheduler's tables locked or missing: run it here rather than not at all
            db.rollback()
    run_job(db, settings, job_id)
    return "ran"


def task_timeout(settings):
    """A run may take long (a first full sync): the scheduler's timeout (the lock is a lease: lease.py)."""
    return RUN_TIMEOUT


def ensure_task(db, settings):
    """The periodic scheduler_task row (every minute, forever, failures retried), created once.

    In Eden through its S3Task (`schedule_task` of Eden's `settings_task` with
    taskname=plugin_sync_scheduled); in a plain host a row for the task itself.
    Returns the row's id, or None where no scheduler is defined.
    """
    if "scheduler_task" not in db.tables:
        return None
    task = db.scheduler_task
    row = db(task.task_name == TASK).select(task.id, limitby=(0, 1)).first()
    if row:
        return row.id
    s3task = getattr(current, "s3task", None)
    if is_eden(db) and s3task is not None:
        task_id = s3task.schedule_task(TASK, function_name="settings_task", vars={"taskname": TASK},
                                       period=TASK_PERIOD, repeats=0, retry_failed=-1,
                                       timeout=task_timeout(settings), ignore_duplicate=True, user_id=False)
        db(task.id == task_id).update(uuid=TASK_UUID, prevent_drift=True)  # unique: one row, however many ask
    else:
        task_id = task.insert(function_name=TASK, task_name=TASK, uuid=TASK_UUID, args="[]", vars="{}",
                              period=TASK_PERIOD, repeats=0, retry_failed=-1, timeout=task_timeout(settings),
                              prevent_drift=True)
    db.commit()
    return task_id


def once_per_process(db, settings):
    """The controller's call: the peer role and the scheduled task, checked once per process."""
    key = database_key(db)
    _once(db, key, _roles, lambda: ensure_peer_role(db, settings))
    _once(db, key, _tasks, lambda: ensure_task(db, settings))


def _once(db, key, done, ensure):
    """Run `ensure` until it succeeds once for `key`.  It may not break, nor hold up, the request it
    runs in: a failure (two processes at once), or SQLite's write lock held by an import for more
    than a moment (log.briefly), is retried at the next request."""
    if key in done:
        return
    made = []
    try:
        if briefly(db, lambda: made.append(ensure())) and made[0]:
            done.add(key)
    except Exception:
        db.rollback()
