"""Typer options made from config fields (search.option_fields): the field's default, flags, help and bounds,
so a command's option and the config.json field it fills are declared once."""

from __future__ import annotations

from typing import Any

import typer

from search.option_fields import cli_option


def config_option(cls: type, name: str, *, help: str | None = None) -> Any:
    """The option of ``cls.name``; ``help`` replaces the field's where a command means something narrower by it."""
    default, spec = cli_option(cls, name)
    extra: dict[str, Any] = {"min": spec.min} if spec.min is not None else {}
    return typer.Option(default, *spec.flags, help=spec.help if help is None else help, **extra)
