"""The engine's house rules that a newcomer relies on: no import cycles, no private names
borrowed across modules, and every module importable on its own in a fresh interpreter."""
import ast
import re
import os
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODULES = os.path.join(REPO, "modules")
PACKAGE = os.path.join(MODULES, "plugin_sync")


def engine_modules():
    """Dotted names of the engine's modules, relative to the package ('merge', 'eden', ...)."""
    out = []
    for folder, _, files in os.walk(PACKAGE):
        for f in sorted(files):
            if f.endswith(".py") and f != "__init__.py":
                rel = os.path.relpath(os.path.join(folder, f[:-3]), PACKAGE)
                out.append(rel.replace(os.sep, "."))
    return sorted(out)


def _path_of(name):
    return os.path.join(PACKAGE, *name.split(".")) + ".py"


def _imports(name):
    """(imported engine module, names taken from it) for every relative import of `name`,
    at top level or inside a function (a lazy import still makes a cycle)."""
    tree = ast.parse(open(_path_of(name), encoding="utf-8").read())
    package = name.split(".")[:-1]
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.ImportFrom) or not node.level:
            continue
        base = package[:len(package) - (node.level - 1)] if node.level > 1 else package
        if node.module:
            target = ".".join(base + node.module.split("."))
            found.append((target, [a.name for a in node.names]))
        else:  # from . import a, b
            for a in node.names:
                found.append((".".join(base + [a.name]), []))
    known = set(engine_modules())
    return [(t, names) for t, names in found if t in known]


def import_graph():
    return {m: sorted({t for t, _ in _imports(m)}) for m in engine_modules()}


def cycles(graph):
    """Every strongly connected group of more than one module (Tarjan), and self-imports."""
    index, low, stack, on, out = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1 or v in graph.get(v, ()):
                out.append(sorted(group))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_the_cycle_finder_finds_a_cycle():
    assert cycles({"a": ["b"], "b": ["c"], "c": ["a"], "d": ["a"]}) == [["a", "b", "c"]]
    assert cycles({"a": ["b"], "b": []}) == []


def test_the_engine_has_no_import_cycle():
    assert cycles(import_graph()) == []


def _private_attributes(name):
    """(module, attribute) for every `module._name` read through a module imported as a name."""
    tree = ast.parse(open(_path_of(name), encoding="utf-8").read())
    package = name.split(".")[:-1]
    aliases = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level and not node.module:
            for a in node.names:
                aliases[a.asname or a.name] = ".".join(package + [a.name])
    return [(aliases[node.value.id], node.attr) for node in ast.walk(tree)
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
            and node.value.id in aliases and node.attr.startswith("_") and not node.attr.startswith("__")]


def test_no_private_name_is_borrowed_from_another_module():
    """A leading underscore means "this module's own": no other module imports or reads it."""
    imported = [(m, t, n) for m in engine_modules() for t, names in _imports(m) for n in names
                if n.startswith("_")]
    read = [(m, t, a) for m in engine_modules() for t, a in _private_attributes(m)]
    assert imported + read == []


@pytest.mark.parametrize("name", engine_modules())
def test_every_module_imports_first_in_a_fresh_interpreter(name):
    """Importing any module first works: the package's order of imports is no crutch."""
    code = "import sys; sys.path.insert(0, %r); import plugin_sync.%s" % (MODULES, name)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    assert done.returncode == 0, done.stderr[-2000:]


def test_the_readme_module_table_names_every_engine_module():
    """The README's "module by module" table is how a newcomer finds a rule: no module left out."""
    text = open(os.path.join(REPO, "README.md"), encoding="utf-8").read()
    start = text.index("### The engine, module by module")
    table = text[start:text.index("\n\n", text.index("| module |", start))]
    listed = {m.split("/")[-1] for m in re.findall(r"`([\w/]+)\.py`", table)}
    assert sorted(set(m.split(".")[-1] for m in engine_modules()) - listed) == []
