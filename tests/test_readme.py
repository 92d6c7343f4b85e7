"""The README's commands: every one names a real (sub)command with options it accepts, and the cheap ones run."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
TOOLS = ("hwnas", "profiler-server", "device-agent")
ENV = {**os.environ, "COLUMNS": "200", "NO_COLOR": "1", "TERM": "dumb"}


def readme_commands() -> list[list[str]]:
    """Every command line of the README's bash blocks, continuation lines joined, comments dropped."""
    text = (ROOT / "README.md").read_text()
    commands: list[list[str]] = []
    for block in re.findall(r"```bash\n(.*?)```", text, flags=re.S):
        joined = re.sub(r"\\\n\s*", " ", block)
        for line in joined.splitlines():
            line = line.split(" #", 1)[0].strip()
            if line:
                commands.append(shlex.split(line))
    return commands


def _help(argv: list[str]) -> str:
    out = subprocess.run([str(BIN / argv[0]), *argv[1:], "--help"], capture_output=True, text=True, env=ENV, timeout=120)
    assert out.returncode == 0, f"{' '.join(argv)} --help failed: {out.stderr[-500:]}"
    return out.stdout


def _subcommands(help_text: str) -> set[str]:
    section = help_text.split("Commands", 1)[1] if "Commands" in help_text else ""
    return set(re.findall(r"^\W*([a-z][a-z0-9-]*)\s{2,}", section, flags=re.M))


def test_readme_has_exactly_the_two_setup_commands_and_they_are_make_targets() -> None:
    first = readme_commands()[:2]
    assert first == [["make", "demo"], ["make", "test"]]
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(r"^demo:", makefile, flags=re.M) and re.search(r"^test:", makefile, flags=re.M)
    ci = (ROOT / ".ci" / "run").read_text()
    assert "make test" in ci and "TEST_DATABASE_URL" in ci


@pytest.mark.parametrize("argv", [c for c in readme_commands() if c[0] in TOOLS], ids=lambda c: " ".join(c[:3]))
def test_readme_command_exists_with_its_options(argv: list[str]) -> None:
    path = [argv[0]]
    rest = argv[1:]
    while rest and not rest[0].startswith("-") and rest[0] in _subcommands(_help(path)):
        path.append(rest.pop(0))
    assert len(path) > 1, f"{argv}: no subcommand of {argv[0]} recognised"
    text = _help(path)
    for opt in (a.split("=", 1)[0] for a in rest if a.startswith("--")):
        assert opt in text, f"README uses {opt} but `{' '.join(path)} --help` does not offer it"


@pytest.mark.parametrize(
    "argv, expect",
    [
        (["hwnas", "spaces"], "fbnet-fmnist"),
        (["hwnas", "lut", "keys", "--space", "fbnet-fmnist"], "gap_fc_o10@"),
        (["hwnas", "predict", "fbnet_b"], "295.5"),
    ],
)
def test_cheap_readme_commands_run(argv: list[str], expect: str) -> None:
    assert argv in readme_commands()
    out = subprocess.run([str(BIN / argv[0]), *argv[1:]], capture_output=True, text=True, env=ENV, timeout=300, cwd=ROOT)
    assert out.returncode == 0, out.stderr[-800:]
    assert expect in out.stdout
