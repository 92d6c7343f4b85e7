"""`hwnas demo` command line: help with an example, one-line errors before anything starts."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from search.app.cli import app

runner = CliRunner()


def test_help_has_an_example() -> None:
    done = runner.invoke(app, ["demo", "--help"])
    assert done.exit_code == 0
    assert "hwnas demo --quick" in done.output and "--keep-server" in done.output


def test_a_folder_that_is_not_a_demo_output_is_refused_in_one_line(tmp_path: Path) -> None:
    (tmp_path / "data.csv").write_text("1,2\n")
    done = runner.invoke(app, ["demo", "--quick", "--out", str(tmp_path), "--no-progress"])
    assert done.exit_code == 1
    assert "error:" in done.output and "not a demo output folder" in done.output
    assert "Traceback" not in done.output
    assert (tmp_path / "data.csv").exists()


def test_warmup_must_leave_search_epochs(tmp_path: Path) -> None:
    done = runner.invoke(app, ["demo", "--quick", "--epochs", "2", "--warmup-epochs", "2", "--out", str(tmp_path / "o")])
    assert done.exit_code == 2
    assert "--warmup-epochs (2) must be below --epochs (2)" in done.output
    assert not (tmp_path / "o").exists()


def test_mode_must_be_hard_or_soft(tmp_path: Path) -> None:
    done = runner.invoke(app, ["demo", "--quick", "--mode", "single", "--out", str(tmp_path / "o")])
    assert done.exit_code == 2
    assert "--mode must be hard or soft" in done.output
    assert not (tmp_path / "o").exists()
