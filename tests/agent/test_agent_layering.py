"""The agent drives the loopback phone as it drives any phone: none of its modules imports the fake phone."""

from __future__ import annotations

import ast
from pathlib import Path

from tests.support.imports import ROOT, imported_names, module_name

AGENT = ROOT / "device_agent"


def _imports(path: Path) -> set[str]:
    module, is_package = module_name(path), path.name == "__init__.py"
    return {n for node in ast.walk(ast.parse(path.read_text(), str(path))) for n in imported_names(node, module, is_package)}


def test_no_agent_module_imports_the_loopback_phone() -> None:
    # cli.py hosts the `loopback-device` command, which starts the fake phone: the one way in.
    modules = [p for p in AGENT.rglob("*.py") if "loopback" not in p.relative_to(AGENT).parts and p.name != "cli.py"]
    assert len(modules) > 25  # the walk saw the agent
    offenders = {
        str(p.relative_to(AGENT)): sorted(n for n in _imports(p) if n.startswith("device_agent.loopback")) for p in modules
    }
    assert {k: v for k, v in offenders.items() if v} == {}


def test_the_cli_imports_the_loopback_phone_only_inside_its_command() -> None:
    tree = ast.parse((AGENT / "cli.py").read_text())
    top = {n.module for n in tree.body if isinstance(n, ast.ImportFrom) and n.module}
    assert not any(m.startswith("device_agent.loopback") for m in top)
    inside = {
        f.name
        for f in ast.walk(tree)
        if isinstance(f, ast.FunctionDef)
        and any(isinstance(n, ast.ImportFrom) and (n.module or "").startswith("device_agent.loopback") for n in ast.walk(f))
    }
    assert inside == {"loopback_device"}
