"""No import cycles inside a package: every import, at the top of a module or inside a function, counts.

A function-level import that exists only to break a cycle hides a tangle; the packages meet only through
their contracts (DESIGN.md), and inside one, modules depend one way.
"""

from __future__ import annotations

import ast

import pytest

from tests.support.imports import ROOT, from_base, is_type_checking, module_name


def import_graph(package: str) -> dict[str, set[str]]:
    """module → the modules of ``package`` it imports (``from a import b`` counts a.b when that is a module)."""
    files = {module_name(p): p for p in (ROOT / package).rglob("*.py")}
    graph: dict[str, set[str]] = {m: set() for m in files}
    for mod, path in files.items():
        is_pkg = path.name == "__init__.py"
        tree = ast.parse(path.read_text(), str(path))
        typing_only = {
            id(n)
            for block in ast.walk(tree)
            if isinstance(block, ast.If) and is_type_checking(block.test)
            for stmt in block.body
            for n in ast.walk(stmt)
        }
        for node in ast.walk(tree):
            if id(node) in typing_only:  # `if TYPE_CHECKING:` imports never run
                continue
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = from_base(node, mod, is_pkg)
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in files else base for a in node.names]
            for t in targets:
                if t in files and t != mod and not mod.startswith(t + "."):  # a package's own __init__ is not a cycle
                    graph[mod].add(t)
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of ``graph`` as a path that ends where it starts, or None."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(n: str) -> list[str] | None:
        state[n] = 1
        stack.append(n)
        for m in sorted(graph[n]):
            if state.get(m) == 1:
                return stack[stack.index(m) :] + [m]
            if m not in state and (found := visit(m)):
                return found
        stack.pop()
        state[n] = 2
        return None

    for n in sorted(graph):
        if n not in state and (found := visit(n)):
            return found
    return None


def test_the_cycle_finder_finds_a_cycle() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set(), "c": {"a", "b"}}) is None


@pytest.mark.parametrize("package", ["profiler_server", "search", "device_agent", "hwnas"])
def test_no_import_cycles(package: str) -> None:
    graph = import_graph(package)
    assert len(graph) > 3
    cycle = find_cycle(graph)
    assert cycle is None, " → ".join(cycle or [])
