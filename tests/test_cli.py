"""The command line, as cron jobs and support staff use it: export, import (--dry-run, --json), status."""
import json
import os
import re
import subprocess
import sys


from conftest import REPO
from synchelpers import instances, org_conflict, seed_small

from applications.eden.modules.plugin_sync.cli import COMMANDS

SCRIPT = os.path.join(REPO, "scripts", "eden.py")


def cli(env, *args, stdin=None, cwd=None):
    folder = env["folder"]
    cmd = [sys.executable, SCRIPT, "sync", "--instance", os.path.basename(folder), "--runtime",
           os.path.dirname(folder), "--db", env["uri"]] + list(args)
    return subprocess.run(cmd, capture_output=True, input=stdin, env=dict(os.environ, EDEN_DB_POOL_SIZE="0"), cwd=cwd)


def test_export_then_import_with_dry_run_and_json(new_instance, tmp_path):
    a, b = instances(new_instance)
    seed_small(a)
    for env in (a, b):
        env["db"].commit()
    out = tmp_path / "a.csv.gz"
    r = cli(a, "export", "-o", str(out), "--format", "gz")
    assert r.returncode == 0, r.stderr
    assert b"exported 12 records" in r.stderr
    dry = cli(b, "import", str(out), "--dry-run", "--json")
    assert dry.returncode == 0, dry.stderr
    report = json.loads(dry.stdout)
    assert report["dry_run"] and report["totals"]["created"] == 12
    b["db"].rollback()
    assert b["db"](b["db"].pr_person).count() == 0  # the dry run wrote nothing
    real = cli(b, "import", str(out))
    assert real.returncode == 0 and real.stdout.startswith(b"Imported: read 12, created 12")
    again = cli(b, "import", "-", stdin=out.read_bytes())
    assert b"created 0, updated 0, unchanged 12" in again.stdout


def test_export_to_stdout_and_refusals(new_instance):
    a, = instances(new_instance, "a")
    seed_small(a)
    r = cli(a, "export")
    assert r.returncode == 0 and r.stdout.startswith(b"TABLE sync_instance\r\n") and r.stdout.endswith(b"END")
    r = cli(a, "export", "--tables", "auth_user")
    assert r.returncode == 1 and b"never synced" in r.stderr and not r.stdout
    r = cli(a, "frobnicate")
    assert r.returncode == 2


def test_failed_import_exits_1_with_where(new_instance, tmp_path):
    a, b = instances(new_instance)
    seed_small(a)
    bad = tmp_path / "bad.csv"
    r = cli(a, "export", "-o", str(bad))
    bad.write_bytes(bad.read_bytes().replace(b"\r\nEND", b""))
    r = cli(b, "import", str(bad), "--json")
    assert r.returncode == 1
    assert json.loads(r.stdout)["error"]["error"] == "TruncatedFile"
    assert b"truncated" in r.stderr


def test_status(new_instance):
    a, = instances(new_instance, "a")
    r = cli(a, "status", "--json")
    status = json.loads(r.stdout)
    assert "pr_person" in status["synced_tables"] and "auth_user" in status["not_synced"]
    assert len(status["base_uuid"]) == 36


def test_conflicts_and_restore(new_instance):
    a, b = instances(new_instance, "a", "b")
    org_conflict(a, b)
    db_b = b["db"]
    r = cli(b, "conflicts", "--json")
    listed = json.loads(r.stdout)
    assert r.returncode == 0 and len(listed) == 1 and listed[0]["resolution"] == "kept_local"
    r = cli(b, "restore", str(listed[0]["id"]))
    assert r.returncode == 0 and b"restored" in r.stdout, r.stderr
    db_b.commit()  # a new read transaction: the CLI wrote in its own process
    assert db_b(db_b.org_organisation.acronym == "RC").select().first().phone == "111"
    assert b"no unreviewed conflicts" in cli(b, "conflicts").stdout
    assert b"replaced by the restore" in cli(b, "conflicts", "--all").stdout
    r = cli(b, "restore", "4242")
    assert r.returncode == 1 and b"no conflict #4242" in r.stderr


def test_every_cli_command_is_documented_in_the_readme():
    readme = open(os.path.join(REPO, "README.md"), encoding="utf-8").read()
    for name in COMMANDS:
        assert re.search(r"eden\.py sync( --instance \w+)? %s\b" % name, readme), name


def test_relative_paths_subcommand_help_and_unchanged_counts(new_instance, tmp_path):
    """Issue 15: file names are relative to where the command runs (the launcher changes directory), each
    sub-command has its own --help, and the summary counts what stayed unchanged."""
    a, b = instances(new_instance)
    seed_small(a)
    for env in (a, b):
        env["db"].commit()
    r = cli(a, "export", "-o", "hq.csv.gz", "--format", "gz", cwd=str(tmp_path))
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "hq.csv.gz").exists() and not os.path.exists(os.path.join(a["folder"], "hq.csv.gz"))
    assert cli(b, "import", "hq.csv.gz", cwd=str(tmp_path)).returncode == 0
    again = cli(b, "import", "hq.csv.gz", cwd=str(tmp_path))
    assert again.returncode == 0 and b"unchanged 12" in again.stdout, again.stdout
    usage = cli(a, "export", "--help")
    assert usage.returncode == 0 and b"usage: eden.py sync export" in usage.stdout and b"--output" in usage.stdout
    assert b"--no-scheduler" not in usage.stdout  # not the launcher's help
    launcher = subprocess.run([sys.executable, SCRIPT, "--help"], capture_output=True)
    assert launcher.returncode == 0 and b"--no-scheduler" in launcher.stdout
