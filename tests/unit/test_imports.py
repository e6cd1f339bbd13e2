"""The import structure of the pycontainer package.

- every module imports on its own, first, in a fresh interpreter (no cycle that only
  bites in some import order);
- the graph of imports between pycontainer modules, function-local ones included (a
  local import must not hide a cycle), has no cycle;
- no module takes another module's private (underscore) name, by `from x import _y` or by
  `x._y`, except `_core`, the one bridge to C, which is private to the package as a whole.

Known violations are listed in ALLOWED_* below, each with the helper whose work removes it;
an entry that no longer occurs fails the test too, so the lists only shrink.
"""
import ast
import pathlib
import subprocess
import sys

PACKAGE = pathlib.Path(__file__).resolve().parents[2] / "pycontainer"

# Cycles (as sorted tuples of their modules) still present, by owner.
ALLOWED_CYCLES = set()
# (importing module, imported module, private name) still taken.
ALLOWED_PRIVATE = set()


def module_names():
    out = []
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE).with_suffix("")
        parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
        out.append(".".join(parts))
    return out


MODULES = module_names()
KNOWN = set(MODULES) | {"_core"}


def _resolve(module, node):
    """The pycontainer module an ImportFrom's `from X` names ('' is the package)."""
    is_pkg = (PACKAGE / module.replace(".", "/") / "__init__.py").exists() if module else True
    base = module.split(".") if module else []
    if not is_pkg:
        base = base[:-1]
    if node.level:
        base = base[:len(base) - (node.level - 1)] if node.level > 1 else base
        target = base + (node.module.split(".") if node.module else [])
        return ".".join(target)
    if node.module and (node.module == "pycontainer" or node.module.startswith("pycontainer.")):
        return node.module[len("pycontainer."):] if node.module != "pycontainer" else ""
    return None


def imports_of(module):
    """[(imported module, private names taken)] of every import statement in `module`, and
    the names bound to pycontainer modules (for `x._y` attribute checks)."""
    path = PACKAGE / (module.replace(".", "/") if module else "")
    path = path / "__init__.py" if path.is_dir() else path.with_suffix(".py")
    tree = ast.parse(path.read_text(), str(path))
    edges, private, bound = set(), set(), {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name == "pycontainer" or alias.name.startswith("pycontainer."):
                    target = alias.name[len("pycontainer."):]
                    edges.add(target)
                    if alias.asname or alias.name == "pycontainer":
                        bound[alias.asname or alias.name] = target
        elif isinstance(node, ast.ImportFrom):
            source = _resolve(module, node)
            if source is None:
                continue
            for alias in node.names:
                sub = f"{source}.{alias.name}" if source else alias.name
                if sub in KNOWN:           # `from . import x`: the submodule x
                    edges.add(sub)
                    bound[alias.asname or alias.name] = sub
                else:
                    edges.add(source)
                    if alias.name.startswith("_") and not alias.name.startswith("__"):
                        private.add((module, source, alias.name))
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) \
                and node.value.id in bound and node.attr.startswith("_") \
                and not node.attr.startswith("__"):
            private.add((module, bound[node.value.id], node.attr))
    edges.discard(module)
    return {e for e in edges if e != "_core"}, {p for p in private if p[1] != "_core"}


def graph():
    edges, private = {}, set()
    for m in MODULES:
        edges[m], taken = imports_of(m)
        private |= taken
    return edges, private


def cycles(edges):
    """Every elementary cycle's set of modules, as sorted tuples (strongly connected
    components would merge overlapping cycles and hide which one is new)."""
    found = set()

    def walk(start, node, path, seen):
        for nxt in sorted(edges.get(node, ())):
            if nxt == start:
                found.add(tuple(sorted(path)))
            elif nxt not in seen and nxt > start:
                walk(start, nxt, path + [nxt], seen | {nxt})

    for m in sorted(edges):
        walk(m, m, [m], {m})
    return found


def test_the_graph_is_read():
    edges, _ = graph()
    assert "container" in edges["factory"] and "namespaces" in edges["config"]
    assert "process" in edges["aio"] and "container" not in edges["aio"]


def test_no_import_cycle():
    found = cycles(graph()[0])
    assert found - ALLOWED_CYCLES == set(), f"new import cycles: {sorted(found - ALLOWED_CYCLES)}"
    assert ALLOWED_CYCLES - found == set(), f"gone, drop from ALLOWED_CYCLES: {ALLOWED_CYCLES - found}"


def test_no_private_name_crosses_modules():
    _, private = graph()
    assert private - ALLOWED_PRIVATE == set(), \
        f"private names taken from another module: {sorted(private - ALLOWED_PRIVATE)}"
    assert ALLOWED_PRIVATE - private == set(), \
        f"gone, drop from ALLOWED_PRIVATE: {ALLOWED_PRIVATE - private}"


def test_each_module_imports_first_in_a_fresh_interpreter():
    """`python -c "import pycontainer.X"` for every module (__main__ runs the CLI: left
    out), all at once; every failure is reported."""
    runs = {m: subprocess.Popen([sys.executable, "-c", "import pycontainer" +
                                 (f".{m}" if m else "")],
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
            for m in MODULES if m != "__main__"}
    failed = {}
    for m, run in runs.items():
        _, err = run.communicate(timeout=120)
        if run.returncode:
            failed[m or "pycontainer"] = err.strip().splitlines()[-1:]
    assert failed == {}
