"""Turn the search commands' typed errors into one clear line on stderr and exit code 1 (no traceback)."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager

import typer

from hwnas.opkey import OpKeyError


def user_error_types() -> tuple[type[BaseException], ...]:
    """The exceptions a user can cause (bad input, missing data, unreachable server)."""
    from search.arch import ArchError
    from search.export import ExportError
    from search.lut import LutError, MissingEntriesError
    from search.lut_fit import FitError
    from search.ops import OpError
    from search.space import SpaceError

    types: list[type[BaseException]] = [ArchError, ExportError, LutError, MissingEntriesError, OpError, SpaceError, OpKeyError,
                                        FitError]
    try:
        from hwnas.client import ProfilerError

        types.append(ProfilerError)
    except ImportError:  # pragma: no cover - the client ships with hwnas
        pass
    return tuple(types)


def fail(message: str, code: int = 1) -> "typer.Exit":
    """Print ``error: message`` on stderr and return the Exit to raise."""
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(code)


@contextmanager
def user_errors() -> Iterator[None]:
    """Context for a command body: typed errors become ``error: <message>`` and exit code 1."""
    try:
        yield
    except user_error_types() as exc:
        raise fail(str(exc).replace("\n", " ")) from None
    except KeyboardInterrupt:
        typer.echo("interrupted", err=True)
        sys.exit(130)
