"""Every string of the pages goes through T(), and the plugin's Spanish file translates every one (issue 15).

No server: the views and the controller are read as text.  A page string written
bare in a view (outside {{...}}) or a T() string missing from
languages/plugin_sync/es.py fails here, naming the file and the string.
"""
import ast
import glob
import os
import re

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
VIEWS = sorted(glob.glob(os.path.join(ROOT, "views", "plugin_sync", "*.html")))
CODE = [os.path.join(ROOT, "controllers", "plugin_sync.py")] + sorted(
    glob.glob(os.path.join(ROOT, "modules", "plugin_sync", "**", "*.py"), recursive=True))
# T() of a name, not a literal: these are the values it takes (the sub-navigation, the report's columns...)
INDIRECT = ("Dashboard", "Export", "Import", "Peers", "Log", "Conflicts", "Read", "Created", "Updated", "Unchanged",
            "Older", "Conflicts: kept local", "Conflicts: took incoming", "Deleted", "Tombstoned",
            "References nulled", "Future", "all", "export", "import", "pull", "push", "Refused", "Login needed",
            "Not allowed", "Error", "refused", "login needed", "not allowed", "error", "Previewing %s",
            "Importing %s", "Syncing with %s", "Base UUID", "Owner", "Contact", "URL", "Login at the peer",
            "Password at the peer", "Mode", "Transport", "Sync every (minutes, 0 = manual)", "Its account here",
            "Exporting %s", "Sync failed", "Import failed: nothing was written", "Preview failed", "Export failed",
            "failing", "overdue", "never synced", "ok", "file only")
SAME = ("Error", "Total", "URL", "no", "error", "manual")  # the same word in Spanish
LITERALS = r"""((?:(?:"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*')\s*)+)"""


def t_strings(path):
    """The literal strings given to T() in a file (implicit concatenation joined)."""
    text = open(path, encoding="utf-8").read()
    return {ast.literal_eval("(%s)" % m.group(1)) for m in re.finditer(r"\bT\(\s*" + LITERALS + r"\)", text)}


def bare_text(path):
    """Runs of words in a view outside {{...}} and outside tags: page text that bypasses T()."""
    text = open(path, encoding="utf-8").read()
    found = []
    for i, part in enumerate(re.split(r"(\{\{.*?\}\})", text, flags=re.S)):
        if i % 2:
            continue
        for m in re.finditer(r">([^<>]+)<", part):
            run = re.sub(r"&\w+;", "", m.group(1)).strip()
            code = " " not in run and ("_" in run or "." in run)  # <code>db.import_from_csv_file</code>
            if re.search(r"[a-z]{3,}", run) and not code and not run.startswith("curl ") and "{" not in run:
                found.append(run)
    # attributes people read: a button's value, a tooltip, a placeholder, a label for screen readers
    found += re.findall(r'(?:value|title|placeholder|aria-label)="([A-Z][a-z][^"{]*)"', text)
    return found


def spanish():
    text = open(os.path.join(ROOT, "languages", "plugin_sync", "es.py"), encoding="utf-8").read()
    return ast.literal_eval(text[text.index("{"):])


def test_no_page_text_bypasses_T():
    bare = {os.path.basename(v): bare_text(v) for v in VIEWS}
    assert not {k: v for k, v in bare.items() if v}, bare


def test_the_spanish_file_translates_every_page_string():
    es = spanish()
    wanted = set(INDIRECT).union(*(t_strings(p) for p in VIEWS + CODE))
    missing = sorted(s for s in wanted if s not in es)
    assert not missing, missing
    assert all(es[s] and es[s] != s for s in wanted if s not in SAME), [
        s for s in wanted if es[s] == s]
    # the placeholders survive translation: a Spanish string takes the same values as its English one
    for s in wanted:
        assert re.findall(r"%\w", s) == re.findall(r"%\w", es[s]), (s, es[s])
