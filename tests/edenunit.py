#!/usr/bin/env python
"""Eden's own unit tests (modules/unit_tests of Eden's tree) in an Eden runtime folder, test by test.

Each test file runs as its header says (`web2py.py -S eden -M -R <file>`): executed as
__main__ in the environment of Eden's models (and the plugin's, when it is installed), where
its own run_suite(...) names the test classes it runs.  All files run in this one process,
in one model environment (Eden's models load in seconds: once, not per file), in file order,
each file's writes rolled back after it.  s3/benchmark.py is left out: timings, no verdicts.

    edenunit.py FOLDER OUT.json [FILE ...]     FILE relative to modules/unit_tests: s3/s3resource.py

OUT.json: {"plugin": whether the plugin's model ran, "files": {file: tests run, or "load error"},
"results": {test id: [outcome, message]}}, test id "s3/s3resource.py::Class::testMethod",
outcome pass | fail | error | skip | xfail | xpass (a file that does not load: "file::(load)").
"""
import glob
import json
import os
import sys
import traceback
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "scripts"))
import eden  # noqa: E402  the launcher: a web2py process in a runtime folder

LEFT_OUT = ("__init__.py", "suite.py", "benchmark.py")


def unit_test_files(root):
    """Eden's test files under modules/unit_tests (relative, sorted)."""
    paths = glob.glob(os.path.join(root, "*.py")) + glob.glob(os.path.join(root, "*", "*.py"))
    return sorted(os.path.relpath(p, root) for p in paths if os.path.basename(p) not in LEFT_OUT)


class Outcomes(unittest.TestResult):
    """Each test's outcome and the last line of its traceback, under the test's id within its file."""

    def __init__(self, rel, results, app):
        super().__init__()
        self.rel, self.results, self.app = rel, results, app

    def key(self, test):
        if hasattr(test, "_testMethodName"):  # a test; else a class or module fixture (setUpClass ...)
            return "%s::%s::%s" % (self.rel, type(test).__name__, test._testMethodName)
        return "%s::%s" % (self.rel, str(test).replace("__main__.", ""))

    def note(self, test, outcome, err=None):
        message = ""
        if err is not None:
            lines = self._exc_info_to_string(err, test).strip().splitlines()
            message = lines[-1].replace(self.app, "<eden>") if lines else ""
        self.results[self.key(test)] = [outcome, message]

    def addSuccess(self, test):
        super().addSuccess(test)
        self.note(test, "pass")

    def addFailure(self, test, err):
        super().addFailure(test, err)
        self.note(test, "fail", err)

    def addError(self, test, err):
        super().addError(test, err)
        self.note(test, "error", err)

    def addSkip(self, test, reason):
        super().addSkip(test, reason)
        self.results[self.key(test)] = ["skip", reason]

    def addExpectedFailure(self, test, err):
        super().addExpectedFailure(test, err)
        self.note(test, "xfail")

    def addUnexpectedSuccess(self, test):
        super().addUnexpectedSuccess(test)
        self.note(test, "xpass")

    def addSubTest(self, test, subtest, err):
        if err is not None:
            self.results[self.key(test) + " " + subtest._subDescription()] = [
                "fail" if issubclass(err[0], self.failureException) else "error",
                traceback.format_exception_only(err[0], err[1])[-1].strip()]
        super().addSubTest(test, subtest, err)


def run_file(env, unit_tests, root, rel, results, app):
    """Run one test file as web2py's -R would; the number of tests it ran, or "load error"."""
    path = os.path.join(root, rel)
    classes = []
    unit_tests.run_suite = lambda *found: classes.extend(found)  # the file's own list of classes
    namespace = dict(env, __name__="__main__", __file__=path)
    try:
        with open(path, encoding="utf-8-sig") as f:
            exec(compile(f.read(), path, "exec"), namespace)
    except (Exception, SystemExit) as e:  # Eden's own: a file this Python cannot load
        message = traceback.format_exception_only(type(e), e)[-1].strip().replace(app, "<eden>")
        results[rel + "::(load)"] = ["error", message]
        return "load error"
    suite = unittest.TestSuite(unittest.defaultTestLoader.loadTestsFromTestCase(c) for c in classes)
    outcomes = Outcomes(rel, results, app)
    try:
        suite.run(outcomes)
    finally:
        env["db"].rollback()
    return outcomes.testsRun


def main(argv):
    folder, out, only = os.path.abspath(argv[0]), argv[1], argv[2:]
    app = os.path.join(folder, "applications", eden.APP)
    root = os.path.join(app, "modules", "unit_tests")
    if not os.path.isfile(os.path.join(root, "__init__.py")):
        sys.exit("edenunit: %s has no Eden unit tests (modules/unit_tests): Eden's whole tree is needed" % app)
    eden.enter(folder, os.path.basename(folder))
    env = eden.app_env(folder)
    import applications.eden.modules.unit_tests as unit_tests

    results, files = {}, {}
    for rel in only or unit_test_files(root):
        files[rel] = run_file(env, unit_tests, root, rel, results, app)
        print("edenunit: %s: %s" % (rel, files[rel]), flush=True)
    with open(out, "w") as f:
        json.dump({"plugin": "plugin_sync_settings" in env, "files": files, "results": results}, f,
                  indent=1, sort_keys=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
