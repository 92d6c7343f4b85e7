"""Turn the ``hwnas`` command's user errors into one clear line on stderr and exit code 1 (no traceback).

A user error is any ``hwnas.errors.HwnasError`` (every error type of ``hwnas`` and ``search`` derives from it);
``search.app.cli`` wraps every command in ``user_errors``, so a new error type needs no list.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import typer

from hwnas.errors import HwnasError


def user_error_types() -> tuple[type[BaseException], ...]:
    """The errors the command prints as one line: ``HwnasError``, which every user-facing error type derives from."""
    return (HwnasError,)


def fail(message: str, code: int = 1) -> "typer.Exit":
    """Print ``error: message`` on stderr and return the Exit to raise."""
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(code)


@contextmanager
def user_errors() -> Iterator[None]:
    """Context for a command body: user errors become ``error: <message>`` and exit code 1; Ctrl-C exit code 130."""
    try:
        yield
    except user_error_types() as exc:
        raise fail(str(exc).replace("\n", " ")) from None
    except KeyboardInterrupt:
        typer.echo("interrupted", err=True)
        sys.exit(130)


def guarded(command: Callable[..., Any]) -> Callable[..., Any]:
    """``command`` with its body run in ``user_errors`` (typer reads the signature through ``__wrapped__``)."""

    @functools.wraps(command)
    def run(*args: Any, **kwargs: Any) -> Any:
        with user_errors():
            return command(*args, **kwargs)

    return run


def guard_all(app: typer.Typer) -> None:
    """Wrap every command of ``app`` and of its sub-apps in ``user_errors``, once."""
    for info in app.registered_commands:
        if info.callback is not None and not hasattr(info.callback, "__wrapped__"):
            info.callback = guarded(info.callback)
    for group in app.registered_groups:
        if group.typer_instance is not None:
            guard_all(group.typer_instance)
