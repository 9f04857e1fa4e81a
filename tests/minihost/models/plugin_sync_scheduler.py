# -*- coding: utf-8 -*-
"""The minihost's scheduler: gluon's Scheduler running the plugin's task every minute.

Real Eden has its own scheduler (S3Task) and the plugin registers its task there
(modules/plugin_sync/eden.py); the minihost has none, so it keeps this model.  The
task `plugin_sync_scheduled` syncs every peer whose sync_interval (minutes; 0 =
manual) has passed since its last run; runs against one peer never overlap
(plugin_sync_lock).  The periodic scheduler_task row is created when a worker
starts, once (a fixed uuid makes it idempotent).  scheduler_* tables never sync.
"""
from gluon.scheduler import Scheduler

from plugin_sync import replicate as plugin_sync_replicate

PLUGIN_SYNC_TASK = "plugin_sync_scheduled"
PLUGIN_SYNC_TASK_UUID = "plugin_sync_scheduled-v1"


def plugin_sync_scheduled():
    """The scheduler's task: sync the peers that are due; {base_uuid: "ok" | "error: ..."} (logged too)."""
    return plugin_sync_replicate.run_due(db, plugin_sync_settings)


# use_spawn: each task runs in a fresh process. A forked one inherits the worker's threads
# (its heartbeat) and database handles mid-use, and was seen to hang on a lock forever.
plugin_sync_scheduler = Scheduler(
    db, tasks={PLUGIN_SYNC_TASK: plugin_sync_scheduled}, utc_time=True, migrate=True, use_spawn=True,
)


def plugin_sync_ensure_task():
    """The periodic task row (every 60 s, forever, failures retried); created once, whoever asks first."""
    task = db.scheduler_task
    if db(task.uuid == PLUGIN_SYNC_TASK_UUID).isempty():
        try:
            # a plain insert: Scheduler.queue_task expects the Row that pydal's validate_and_insert
            # returned before 20251012 (now a dict) and fails after inserting nothing
            task.insert(
                function_name=PLUGIN_SYNC_TASK, task_name=PLUGIN_SYNC_TASK, uuid=PLUGIN_SYNC_TASK_UUID,
                args="[]", vars="{}", period=60, repeats=0, retry_failed=-1, timeout=replicate_timeout(),
                prevent_drift=True,
            )
            db.commit()
        except Exception:  # another worker inserted it first (unique uuid)
            db.rollback()
    db.commit()


def replicate_timeout():
    """A run may take long (a first full sync): the scheduler's timeout (the lock is a lease: lease.py)."""
    return plugin_sync_replicate.RUN_TIMEOUT


if request.is_scheduler:
    plugin_sync_ensure_task()
