"""The dependency rules of ../shared/ARCHITECTURE.md, checked on the source: no two modules import each other
(directly or through others), in Python and in the Rust crates; dependencies point down
(cli -> services -> ae/association -> _core; services -> archive)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "python" / "ferrodicom"


def _module_name(path: Path) -> str:
    rel = path.relative_to(PACKAGE.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def python_graph() -> dict[str, set[str]]:
    """Module -> the ferrodicom modules it imports (anywhere in the file, function-level and TYPE_CHECKING
    imports included), each import resolved to the module it names."""
    modules = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    modules["ferrodicom._core"] = PACKAGE / "_core.pyi"  # the Rust extension: imports nothing of ours
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        if path.suffix == ".pyi":
            graph[name] = set()
            continue
        deps: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                targets = [f"{node.module}.{a.name}" for a in node.names]
                targets = [t if t in modules else node.module for t in targets]
            for t in targets:
                if t.startswith("ferrodicom") and t in modules and t != name:
                    deps.add(t)
        graph[name] = deps
    return graph


def rust_graph(crate: Path) -> dict[str, set[str]]:
    """Module (file, or folder of a module with submodules) -> the sibling modules its `crate::` paths name."""
    src = crate / "src"
    files = [p for p in src.rglob("*.rs") if p.name != "lib.rs"]

    def top(p: Path) -> str:
        rel = p.relative_to(src)
        return rel.parts[0].removesuffix(".rs")

    graph: dict[str, set[str]] = {}
    for p in files:
        mod = top(p)
        text = re.sub(r"//[^\n]*", "", p.read_text())
        deps = set(re.findall(r"\bcrate::(\w+)", text))
        # `use super::x` inside a folder module stays inside it.
        graph.setdefault(mod, set()).update(d for d in deps if d != mod)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every cycle found by a depth-first search (each reported once, from its first module)."""
    found: list[list[str]] = []
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(n: str) -> None:
        state[n] = 1
        stack.append(n)
        for d in sorted(graph.get(n, ())):
            if state.get(d) == 1:
                found.append(stack[stack.index(d) :] + [d])
            elif d not in state:
                visit(d)
        stack.pop()
        state[n] = 2

    for n in sorted(graph):
        if n not in state:
            visit(n)
    return found


def test_python_modules_import_no_cycle():
    assert cycles(python_graph()) == []


@pytest.mark.parametrize("crate", ["ul", "codec", "nm", "node", "py"])
def test_rust_modules_use_no_cycle(crate):
    assert cycles(rust_graph(ROOT / "rust" / crate)) == []


def test_dependencies_point_down():
    graph = python_graph()

    def uses(a: str, b: str) -> bool:
        return any(d == b or d.startswith(b + ".") for d in graph.get(a, set()))

    lower = ["ferrodicom.ae", "ferrodicom.association", "ferrodicom.dispatch", "ferrodicom.events"]
    for name in graph:
        if name.startswith(("ferrodicom.services", "ferrodicom.cli")):
            continue
        for m in lower + ["ferrodicom.archive"]:
            if name.startswith(m):
                assert not uses(name, "ferrodicom.services"), f"{name} imports the services above it"
                assert not uses(name, "ferrodicom.cli"), f"{name} imports the command line above it"
    for name in graph:
        if name.startswith("ferrodicom.archive"):
            for m in lower:
                assert not uses(name, m), f"{name} (the archive) imports {m}"


def test_the_checker_finds_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == [["a", "b", "c", "a"]]
    assert cycles({"a": {"b"}, "b": set()}) == []
