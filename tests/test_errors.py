"""One user-error base per command line: every error type of hwnas/search derives from ``HwnasError``, the agent's
from ``AgentError``; every ``hwnas`` command turns one into a single line on stderr and a non-zero exit."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import typer
from typer.testing import CliRunner

from hwnas.errors import HwnasError

BIN = Path(sys.executable).parent


def _modules(package: str) -> list[ModuleType]:
    root = importlib.import_module(package)
    return [root, *(importlib.import_module(m.name) for m in pkgutil.walk_packages(root.__path__, f"{package}."))]


def _error_types(package: str) -> list[type[BaseException]]:
    return [
        obj
        for module in _modules(package)
        for obj in vars(module).values()
        if inspect.isclass(obj) and issubclass(obj, BaseException) and obj.__module__ == module.__name__
    ]


def test_every_error_type_of_the_hwnas_command_derives_from_its_base() -> None:
    from search.app.commands._errors import user_error_types

    pending: set[str] = set()
    found = [t for package in ("hwnas", "search") for t in _error_types(package)]
    assert len(found) > 30  # the walk saw the packages' modules
    stray = [
        f"{t.__module__}.{t.__qualname__}"
        for t in found
        if not issubclass(t, HwnasError) and f"{t.__module__}.{t.__qualname__}" not in pending
    ]
    assert stray == [], f"derive these from hwnas.errors.HwnasError (or the command prints a traceback): {stray}"
    caught = user_error_types()
    assert all(issubclass(t, caught) for t in found)


def test_every_error_type_of_the_agent_derives_from_its_base() -> None:
    from device_agent.errors import AgentError

    # Caught inside the agent (turned into an AgentError or a closed connection), or a stand-in program's own.
    internal = {
        "device_agent.parsers.ParseError",
        "device_agent.loopback.wire.ProtocolError",
        "device_agent.loopback.standins.executor_runner.FlagError",
        "device_agent.loopback.standins.speed_benchmark_torch.FlagError",
        "device_agent.loopback.standins.onnxruntime_perf_test._UsageError",
    }
    found = _error_types("device_agent")
    stray = [
        f"{t.__module__}.{t.__qualname__}"
        for t in found
        if not issubclass(t, AgentError) and f"{t.__module__}.{t.__qualname__}" not in internal
    ]
    assert stray == []


def test_every_hwnas_command_is_guarded() -> None:
    from search.app.cli import app

    def callbacks(a: typer.Typer) -> list:
        out = [c.callback for c in a.registered_commands]
        for group in a.registered_groups:
            out += callbacks(group.typer_instance)
        return out

    found = callbacks(app)
    assert len(found) > 15
    unguarded = [f.__name__ for f in found if not hasattr(f, "__wrapped__")]
    assert unguarded == []


def test_a_new_error_type_needs_no_list() -> None:
    from search.app.commands._errors import guard_all

    class BrandNewError(HwnasError, ValueError):
        pass

    app = typer.Typer()

    @app.command("one")
    def one(n: int = typer.Option(1, "--n")) -> None:
        raise BrandNewError(f"nothing to do\nfor {n}")

    @app.command("two")
    def two() -> None:
        raise RuntimeError("a bug")

    guard_all(app)
    r = CliRunner().invoke(app, ["one", "--n", "3"])
    assert r.exit_code == 1
    assert r.output == "error: nothing to do for 3\n"
    bug = CliRunner().invoke(app, ["two"])  # not a user error: it stays an exception (a traceback)
    assert isinstance(bug.exception, RuntimeError)


def test_an_error_in_a_command_prints_one_line_and_exits_non_zero(tmp_path: Path) -> None:
    doc = tmp_path / "arch.json"
    doc.write_text('{"space": "fbnet-fmnist", "choices": [1]}')
    r = subprocess.run([str(BIN / "hwnas"), "predict", str(doc), "--cost", "flops"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 1
    assert r.stderr.splitlines() == [f"error: architecture {doc}: choices: must be a list of candidate names (strings)"]
    assert r.stdout == ""
