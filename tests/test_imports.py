"""The package's import structure: no import circle, the readers never load the synthetic world,
nothing is loaded from outside the package.

The import graph is read from the source with ``ast`` (relative imports resolved), so it covers
every module without importing any. Imports deferred into functions count as well: a circle
through a function-level import is still two modules that need each other.
"""
from __future__ import annotations

import ast
import subprocess
import sys
import textwrap
from pathlib import Path

import hfl_lite

PACKAGE = Path(hfl_lite.__file__).resolve().parent


def modules(package: Path) -> dict[str, tuple[Path, bool]]:
    """``{dotted name: (file, is a package __init__)}`` of every module under ``package``."""
    found = {}
    for path in sorted(package.rglob("*.py")):
        parts = list(path.relative_to(package.parent).with_suffix("").parts)
        is_package = parts[-1] == "__init__"
        found[".".join(parts[:-1] if is_package else parts)] = (path, is_package)
    return found


def _ancestors(name: str) -> list[str]:
    parts = name.split(".")
    return [".".join(parts[:k]) for k in range(1, len(parts))]


def imports_of(name: str, path: Path, is_package: bool, known: dict) -> set[str]:
    """The modules of ``known`` that module ``name`` imports, anywhere in its file.

    ``from X import n`` imports ``X.n`` when that is a module, else ``X``; importing a module also
    runs its packages' ``__init__`` (except the importer's own packages, which are already
    running).
    """
    here = name if is_package else name.rpartition(".")[0]
    targets = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = here.split(".")[: len(here.split(".")) - (node.level - 1)]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module
            for alias in node.names:
                targets.add(f"{source}.{alias.name}" if f"{source}.{alias.name}" in known else source)
    own = set(_ancestors(name)) | {name}
    edges = set()
    for target in targets:
        for module in (*_ancestors(target), target):
            if module in known and module not in own:
                edges.add(module)
    return edges


def import_graph(package: Path = PACKAGE) -> dict[str, set[str]]:
    known = modules(package)
    return {name: imports_of(name, path, is_package, known) for name, (path, is_package) in known.items()}


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One circle ``[a, b, ..., a]`` per back edge found by a depth-first search."""
    state, cycles = {}, []

    def visit(node, stack):
        state[node] = "open"
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == "open":
                cycles.append(stack[stack.index(nxt):] + [nxt])
            elif nxt not in state:
                visit(nxt, stack)
        stack.pop()
        state[node] = "done"

    for node in sorted(graph):
        if node not in state:
            visit(node, [])
    return cycles


def reachable(graph: dict[str, set[str]], start: str) -> set[str]:
    seen, todo = set(), [start]
    while todo:
        for nxt in graph.get(todo.pop(), ()):
            if nxt not in seen:
                seen.add(nxt)
                todo.append(nxt)
    return seen


def test_the_graph_resolves_relative_and_deferred_imports_and_finds_circles(tmp_path):
    pkg = tmp_path / "pkg"
    (pkg / "sub").mkdir(parents=True)
    files = {
        "__init__.py": "",
        "a.py": "from .sub import b\n",
        "sub/__init__.py": "from . import c\n",
        "sub/b.py": "def f():\n    from ..a import g\n",  # deferred, two levels up
        "sub/c.py": "import os\nfrom pkg.sub import b\n",
    }
    for name, text in files.items():
        (pkg / name).write_text(text)
    graph = import_graph(pkg)
    assert graph == {"pkg": set(), "pkg.a": {"pkg.sub", "pkg.sub.b"}, "pkg.sub": {"pkg.sub.c"},
                     "pkg.sub.b": {"pkg.a"}, "pkg.sub.c": {"pkg.sub.b"}}
    assert find_cycles(graph) == [["pkg.a", "pkg.sub", "pkg.sub.c", "pkg.sub.b", "pkg.a"]]
    assert find_cycles({"x": {"y"}, "y": set()}) == []


def test_no_import_circle_in_the_package():
    graph = import_graph()
    assert len(graph) > 50
    cycles = find_cycles(graph)
    assert not cycles, "import circles:\n" + "\n".join(" -> ".join(c) for c in cycles)


def test_the_readers_import_nothing_from_the_synthetic_world():
    graph = import_graph()
    readers = [name for name in graph if name == "hfl_lite.data" or name.startswith("hfl_lite.data.")]
    assert "hfl_lite.data.formats" in readers and "hfl_lite.synth.writers" in graph
    offenders = {name: sorted(m for m in reachable(graph, name) if m.split(".")[:2] == ["hfl_lite", "synth"])
                 for name in readers}
    assert not any(offenders.values()), {k: v for k, v in offenders.items() if v}


def test_reading_real_data_loads_no_synthetic_module():
    """In a fresh interpreter: import both readers and read a sample of each shipped set."""
    code = textwrap.dedent("""
        import sys
        import hfl_lite.data.ho3d, hfl_lite.data.dexycb
        from hfl_lite.data import HO3D, DexYCB
        from hfl_lite.samples import samples_root
        HO3D(samples_root() / "ho3d", "train", image_size=64, roi_size=8)[0]
        DexYCB(samples_root() / "dexycb", "train", image_size=64, roi_size=8)[0]
        print(sorted(m for m in sys.modules if m == "hfl_lite.synth" or m.startswith("hfl_lite.synth.")))
        print("hfl_lite.data.formats" in sys.modules)
    """)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.split("\n")[:2] == ["[]", "True"], done.stdout


def test_the_package_loads_nothing_by_path():
    """No module of the package puts folders on sys.path or loads source files by path: what an
    installed package needs is inside it."""
    found = []
    for name, (path, _) in modules(PACKAGE).items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Attribute) and node.attr in ("spec_from_file_location", "SourceFileLoader"):
                found.append(f"{name}:{node.lineno} {node.attr}")
            if (isinstance(node, ast.Attribute) and node.attr in ("insert", "append", "extend")
                    and isinstance(node.value, ast.Attribute) and node.value.attr == "path"
                    and isinstance(node.value.value, ast.Name) and node.value.value.id == "sys"):
                found.append(f"{name}:{node.lineno} sys.path.{node.attr}")
    assert not found, found
