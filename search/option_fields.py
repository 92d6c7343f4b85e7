"""Config fields that carry their command-line option.

A search's (or a training's) settings live in dataclasses that ``config.json`` saves. The option that sets
a field is declared on the field itself — its flags, help and bounds beside its default — so the command
line and the saved config cannot drift apart: ``search.app.commands._config_options`` turns the declaration
into a typer option, and ``tests/search/test_config_options.py`` checks that every declared field is an
option of its command and every other field is listed as internal. The library stays free of typer.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

CLI = "hwnas.cli"  # the metadata key of a field's option


@dataclass(frozen=True)
class CliOption:
    """How a config field appears on the command line."""

    flags: tuple[str, ...]  # e.g. ("--epochs", "-e") or ("--progress/--no-progress",)
    help: str = ""
    min: float | None = None


def option(default: Any, *flags: str, help: str = "", min: float | None = None) -> Any:
    """A dataclass field with ``default`` whose command-line option is ``flags`` with ``help``."""
    return field(default=default, metadata={CLI: CliOption(flags, help, min)})


def cli_option(cls: type, name: str) -> tuple[Any, CliOption]:
    """The default of field ``name`` of dataclass ``cls`` and its option (KeyError: the field declares none)."""
    for f in dataclasses.fields(cls):
        if f.name == name:
            if CLI not in f.metadata:
                raise KeyError(f"{cls.__name__}.{name} declares no command-line option")
            return f.default, f.metadata[CLI]
    raise KeyError(f"{cls.__name__} has no field {name!r}")


def fields_with_options(cls: type) -> list[str]:
    """The fields of ``cls`` that declare a command-line option."""
    return [f.name for f in dataclasses.fields(cls) if CLI in f.metadata]
