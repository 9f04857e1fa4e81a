"""Eden's own unit tests give the same result with the plugin installed as without it.

Eden ships its unit tests in modules/unit_tests (S3's resources, import, XML, query,
permissions, fields, validators; the person, organisation and staff models...).  They
run (tests/edenunit.py, every test file as `web2py -S eden -M -R <file>` runs it) in two
copies of the same prepared Eden: pristine, and with the plugin installed as `make install`
installs it, whose model then loads with Eden's (its tables, the change-capture triggers on
the synced tables, its settings, its menu entry, its cookie flags).  Test by test, the
outcomes must be the same; the tests that fail in both are Eden's own (README, Tests).
"""
import json
import os
import subprocess
import sys


from conftest import REPO, _eden_env

RUNNER = os.path.join(REPO, "tests", "edenunit.py")
FAILING = ("fail", "error")


def eden_unit_tests(folder):
    """Eden's unit tests run in the runtime folder `folder`, in a process of their own: edenunit.py's report."""
    out, log = os.path.join(folder, "eden-unit-tests.json"), os.path.join(folder, "eden-unit-tests.log")
    with open(log, "w") as f:
        r = subprocess.run([sys.executable, RUNNER, folder, out], stdout=f, stderr=subprocess.STDOUT,
                           env=_eden_env(), cwd=folder)
    assert r.returncode == 0, open(log).read()[-3000:]
    with open(out) as f:
        return json.load(f)


def listing(outcomes):
    """One line per test, sorted, at most 40: what a failed comparison shows."""
    lines = ["  %s: %s" % (name, " ".join(o) if isinstance(o, list) else o) for name, o in sorted(outcomes.items())]
    return "\n".join(lines[:40] + (["  ... %d more" % (len(lines) - 40)] if len(lines) > 40 else []))


def test_eden_unit_tests_pass_and_fail_alike_with_the_plugin(eden_folder):
    without = eden_unit_tests(eden_folder("pristine", plugin=None)[0])
    with_plugin = eden_unit_tests(eden_folder("plugin", plugin="copy")[0])
    assert not without["plugin"] and with_plugin["plugin"], "the plugin's model must run in one copy only"
    # every test file of Eden's tree ran in both (or failed to load in both), and Eden's tests passed
    assert without["files"] == with_plugin["files"]
    assert [name for name, outcome in without["results"].items() if outcome[0] == "pass"]
    before, after = without["results"], with_plugin["results"]
    added = {name: outcome for name, outcome in after.items()
             if outcome[0] in FAILING and before.get(name, [None])[0] not in FAILING}
    assert not added, "the plugin makes %d of Eden's own tests fail:\n%s" % (len(added), listing(added))
    changed = {name: "%s -> %s" % ((before.get(name) or ["absent"])[0], " ".join(after.get(name) or ["absent"]))
               for name in set(before) | set(after)
               if (before.get(name) or [None])[0] != (after.get(name) or [None])[0]}
    assert not changed, "%d of Eden's own tests end otherwise with the plugin (without -> with):\n%s" % (
        len(changed), listing(changed))
