"""The `hwnas` command line: one typer app; every module in search.app.commands adds its commands.

Every command runs in ``search.app.commands._errors.user_errors``: a ``hwnas.errors.HwnasError`` prints one line
(``error: <message>``) and exits 1, whichever command raised it.
"""

from __future__ import annotations

import importlib
import pkgutil

import typer

import search.app.commands
from search.app.commands._errors import guard_all

app = typer.Typer(
    name="hwnas",
    help="Hardware-aware differentiable NAS (FBNet): spaces, cost models, search, training, export.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)


def _register_all() -> None:
    for info in sorted(pkgutil.iter_modules(search.app.commands.__path__), key=lambda m: m.name):
        module = importlib.import_module(f"search.app.commands.{info.name}")
        register = getattr(module, "register", None)
        if register is not None:
            register(app)
    guard_all(app)


_register_all()


def main() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":
    main()
