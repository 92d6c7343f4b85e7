"""The DNAS library (``search`` outside ``search/app/``) never imports the application (``search.app``).

The app (command line, demo, plots, progress bars, launcher) builds on the library and hands it what it shows
through ``search.hooks``; an import the other way — at the top of a module, inside a function, under
``TYPE_CHECKING`` or through ``importlib`` — would tie the library to the UI again. ``search/__main__.py`` is the
app's entry point (``python -m search``) and so belongs to the app.
"""

from __future__ import annotations

import ast
from pathlib import Path

from tests.support.imports import ROOT, imported_names, module_name

APP = "search.app"
# Modules of the search package that are the app although they sit outside search/app/.
APP_ENTRY_POINTS = {"search/__main__.py"}


def _is_app(name: str) -> bool:
    return name == APP or name.startswith(APP + ".")


def app_imports(source: str, module: str, is_package: bool = False) -> list[str]:
    """``line: imported name`` for every import of ``search.app`` in ``source`` (the text of ``module``)."""
    found: list[str] = []
    for node in ast.walk(ast.parse(source)):
        names = imported_names(node, module, is_package)  # `from search import app` names the app
        if isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant):
            func = node.func
            called = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else ""
            if called in ("import_module", "__import__") and isinstance(node.args[0].value, str):
                names = [node.args[0].value]
        found += [f"{node.lineno}: {n}" for n in names if _is_app(n)][:1]
    return found


def library_files() -> list[Path]:
    app_dir = ROOT / "search" / "app"
    return sorted(
        p
        for p in (ROOT / "search").rglob("*.py")
        if app_dir not in p.parents and str(p.relative_to(ROOT)) not in APP_ENTRY_POINTS
    )


def test_the_checker_finds_every_kind_of_app_import() -> None:
    lib = "search.train"
    assert app_imports("import search.app.progress\n", lib) == ["1: search.app.progress"]
    assert app_imports("def f():\n    from search.app.plots import plot_search\n", lib) == ["2: search.app.plots"]
    assert app_imports("from search import app\n", lib) == ["1: search.app"]
    assert app_imports("from .app import cli\n", lib) == ["1: search.app"]
    assert app_imports("from ..app.demo import run_demo\n", "search.quant.train") == ["1: search.app.demo"]
    assert app_imports("if TYPE_CHECKING:\n    from search.app.demo import DemoResult\n", lib) == ["2: search.app.demo"]
    assert app_imports("import importlib\nimportlib.import_module('search.app.cli')\n", lib) == ["2: search.app.cli"]
    assert app_imports("from search.hooks import no_progress\nimport search.application\n", lib) == []


def test_the_library_never_imports_the_app() -> None:
    files = library_files()
    assert len(files) > 30 and ROOT / "search" / "searcher.py" in files
    offences = [
        f"{p.relative_to(ROOT)}:{hit}"
        for p in files
        for hit in app_imports(p.read_text(), module_name(p), p.name == "__init__.py")
    ]
    assert offences == [], "the library imports the app (pass it through search.hooks instead):\n" + "\n".join(offences)
