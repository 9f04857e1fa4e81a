"""The scheduled sync runs in Eden's own scheduler: its task registry, its worker, no second Scheduler.

The plugin's model puts the task `plugin_sync_scheduled` into Eden's registry
(deployment settings' tasks, run by Eden's own `settings_task`); the plugin's
controller schedules it once, the Eden way (S3Task.schedule_task: every 60 s,
forever); Eden's worker (web2py -K eden) runs it, and it syncs the peers that
are due (sync_instance.sync_interval).
"""
import json
import time

from edenseed import country, http, peer_login, row, seed_org

from applications.eden.modules.plugin_sync import replicate
from applications.eden.modules.plugin_sync.tables import synced_tables

TASK = "plugin_sync_scheduled"


def settings(env):
    return env["plugin_sync_settings"]


def wait_for(check, seconds=150, step=2):
    deadline = time.time() + seconds
    while time.time() < deadline:
        found = check()
        if found:
            return found
        time.sleep(step)
    return check()


def test_eden_scheduler_runs_the_scheduled_sync(eden_instance, eden_server, eden_admin):
    b = eden_instance("b")
    seed_org(b, "Beta", country(b))
    a = eden_instance("a")
    login = peer_login(b, speaks_for=a)
    # one scheduler: Eden's (the plugin defines no Scheduler of its own); the task is in Eden's registry
    assert a["settings"].get_task(TASK) is a[TASK]
    assert "settings_task" in a["response"].s3.tasks
    assert "plugin_sync_scheduler" not in a
    server_b = eden_server("b", env=b)
    replicate.register_peer(a["db"], settings(a), server_b.url, *login, sync_interval=1)
    a["db"].commit()
    assert row(a, "scheduler_task", task_name=TASK) is None
    server_a = eden_server("a", env=a, scheduler=True)

    # the plugin's controller schedules the periodic task once, through Eden's S3Task
    for _ in range(2):
        status, _, body = http("GET", server_a.url + "/plugin_sync/index.json", auth=eden_admin)
        assert status == 200, body[:300]
        # the server's synced set is the one this process has: Eden's list, loaded through s3db
        assert list(json.loads(body)["tables"]) == synced_tables(a["db"], settings(a))
    db = a["db"]
    tasks = db(db.scheduler_task.task_name == TASK).select()
    db.commit()
    assert len(tasks) == 1
    task = tasks[0]
    assert task.function_name == "settings_task" and json.loads(task.vars) == {"taskname": TASK}
    assert task.period == 60 and task.repeats == 0 and task.application_name.startswith("eden")
    # and the peer role, made the way Eden makes roles (auth.s3_create_role, with its uid)
    role = row(a, "auth_group", uuid="SYNC_PEER")
    assert role.role == "Sync Peer" and role.deleted is False

    # Eden's worker runs it: B is due (never synced), its records arrive in A
    assert wait_for(lambda: row(a, "org_organisation", name="Beta Relief")), open(server_a.log).read()[-3000:]
    assert row(a, "pr_person", first_name="Beta") is not None
    run = wait_for(lambda: row(a, "scheduler_run", task_id=task.id, status="COMPLETED"))
    assert run is not None, open(server_a.log).read()[-3000:]
    assert json.loads(run.run_result) == {row(a, "sync_instance", url=server_b.url).base_uuid: "ok"}
    pulled = row(a, "plugin_sync_log", operation="pull")
    assert pulled.result == "ok" and pulled.peer == row(a, "sync_instance", url=server_b.url).base_uuid
