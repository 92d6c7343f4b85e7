"""A module's imports read from its source: what the layering tests (tests/test_layering.py,
tests/agent/test_agent_layering.py) and the cycle test (tests/test_import_cycles.py) each apply their own rule to."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def module_name(path: Path) -> str:
    """The dotted name of the module in ``path`` (a package's ``__init__.py`` is the package)."""
    parts = list(path.resolve().relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def from_base(node: ast.ImportFrom, module: str, is_package: bool = False) -> str:
    """The absolute module that ``from … import`` reads from; a relative one is resolved against ``module``."""
    base = node.module or ""
    if not node.level:
        return base
    parts = module.split(".")
    anchor = parts[: len(parts) - node.level + (1 if is_package else 0)]
    return ".".join(anchor + ([base] if base else []))


def imported_names(node: ast.AST, module: str, is_package: bool = False) -> list[str]:
    """The names an import statement reads: ``import a.b`` → a.b; ``from a import b`` → a and a.b (b may be a module)."""
    if isinstance(node, ast.Import):
        return [a.name for a in node.names]
    if isinstance(node, ast.ImportFrom):
        base = from_base(node, module, is_package)
        return [base] + [f"{base}.{a.name}" for a in node.names]
    return []


def is_type_checking(test: ast.expr) -> bool:
    """``test`` is ``TYPE_CHECKING`` or ``typing.TYPE_CHECKING``: the block under it never runs."""
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )
