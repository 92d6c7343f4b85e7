"""Lint, format and types as part of the suite (so CI's `make test` runs them): ruff's linter and formatter on every
Python directory, mypy on the packages pyproject.toml's [tool.mypy] names. All read their settings from pyproject.toml."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LINTED = ("hwnas", "profiler_server", "device_agent", "search", "migrations", "tests", "benchmarks")


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", *args], cwd=ROOT, capture_output=True, text=True, timeout=600)


def test_ruff_finds_nothing() -> None:
    r = _run("ruff", "check", "--no-cache", "--output-format", "concise", *LINTED)
    assert r.returncode == 0, r.stdout + r.stderr


def test_ruff_format_changes_nothing() -> None:
    r = _run("ruff", "format", "--check", "--no-cache", *LINTED)
    assert r.returncode == 0, "run `ruff format` on these files:\n" + r.stdout + r.stderr


def test_mypy_finds_nothing() -> None:
    r = _run("mypy", "--no-incremental")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "Success" in r.stdout
