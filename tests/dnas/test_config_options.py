"""One source for a search's settings: the options of `hwnas search` and `hwnas train` are the config fields'
declarations (search/option_fields.py), and `hwnas search --config` starts from a saved config.json."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from search.app.cli import app
from search.option_fields import cli_option, fields_with_options
from search.run_options import DataAndMachine
from search.search_config import PARTS, SearchConfig
from search.train_config import TrainConfig

runner = CliRunner()

# Saved in config.json but set by no option: constants of the method, or what the run itself decides.
INTERNAL = {
    "out",  # an option of the command, but required, so without a default to share
    "warmup_fraction",
    "w_momentum",
    "w_wd",
    "theta_wd",
    "theta_travel",
    "reference",
    "bn_calibration",
    "plots",
}
# Where the latency table comes from: the options every table-reading command shares (search/app/commands/_options.py).
TABLE_SOURCE = {"kind", "server", "device", "runtime", "threads", "token", "lut", "cache_dir"}


def _params(command: str) -> dict[str, Any]:
    # click's parameters, read by attribute: typer ships its own copy of click, whose classes are not click's.
    group: Any = typer.main.get_command(app)
    return {p.name: p for p in group.commands[command].params if p.name}


def _config_fields() -> list[tuple[type, str]]:
    own = [(SearchConfig, f.name) for f in dataclasses.fields(SearchConfig) if f.name not in PARTS]
    return own + [(cls, f.name) for cls in PARTS.values() for f in dataclasses.fields(cls)]


def _option_name(field: str) -> str:
    return {"num_threads": "torch_threads"}.get(field, field)


def test_every_search_setting_is_an_option_declared_by_its_field_or_listed_as_internal() -> None:
    params = _params("search")
    for cls, name in _config_fields():
        if name in INTERNAL or name in TABLE_SOURCE:
            continue
        assert name in fields_with_options(cls), f"{cls.__name__}.{name}: declare its option, or list it as INTERNAL"
        default, spec = cli_option(cls, name)
        param = params.get(_option_name(name))
        assert param is not None, f"hwnas search has no option for {cls.__name__}.{name}"
        assert param.default == default, (name, param.default, default)
        assert set(spec.flags[0].split("/")) <= set(param.opts) | set(param.secondary_opts), (name, param.opts)
    for name in TABLE_SOURCE - {"kind"}:
        assert name in params
    for name in INTERNAL - {"out"}:
        assert name not in params


def test_train_options_are_its_config_fields_and_share_the_data_and_machine_ones_with_search() -> None:
    search, train = _params("search"), _params("train")
    for name in fields_with_options(TrainConfig):
        default, spec = cli_option(TrainConfig, name)
        opt = _option_name(name)
        assert train[opt].default == default and spec.flags[0].split("/")[0] in train[opt].opts, name
    for name in fields_with_options(DataAndMachine):
        opt = _option_name(name)
        assert train[opt].opts == search[opt].opts and train[opt].default == search[opt].default, name


def test_the_cli_builds_its_options_without_importing_torch() -> None:
    # `hwnas --help` stays quick: the config modules import torch only where a search needs it.
    code = "import sys, search.app.cli; print('torch' in sys.modules)"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.stdout.strip() == "False", r.stdout + r.stderr


def test_search_from_a_saved_config_keeps_its_settings_and_takes_the_command_lines(tmp_path: Path, tiny_space: Path) -> None:
    first = tmp_path / "first"
    args = ["--space", str(tiny_space), "--subset", "300", "--batch-size", "32", "--val-subset", "100"]
    r = runner.invoke(
        app, ["search", *args, "--epochs", "1", "--tau0", "3.5", "--samples", "0", "--no-progress", "--out", str(first)]
    )
    assert r.exit_code == 0, r.output
    second = tmp_path / "second"
    r = runner.invoke(
        app, ["search", "--config", str(first), "--seed", "4", "--samples", "0", "--no-progress", "--out", str(second)]
    )
    assert r.exit_code == 0, r.output
    before = SearchConfig.from_dict(json.loads((first / "config.json").read_text())).flat()
    after = SearchConfig.from_dict(json.loads((second / "config.json").read_text())).flat()
    assert after["tau0"] == 3.5 and after["subset"] == 300 and after["batch_size"] == 32  # from the saved config
    assert after["seed"] == 4 and before["seed"] == 0  # from this command line
    assert after["out"] == str(second)
    assert {k for k in before if before[k] != after[k]} == {"seed", "out"}


@pytest.mark.parametrize(
    ("content", "message"),
    [(None, "cannot read the config"), ("{not json", "is not JSON"), ("[1, 2]", "holds a JSON list")],
)
def test_a_bad_config_file_is_one_line_and_exit_2(tmp_path: Path, content: str | None, message: str) -> None:
    path = tmp_path / "config.json"
    if content is not None:
        path.write_text(content)
    r = runner.invoke(app, ["search", "--config", str(path), "--out", str(tmp_path / "run")])
    assert r.exit_code == 2 and message in r.output and "Traceback" not in r.output, r.output
    assert not (tmp_path / "run").exists()


def test_config_and_resume_do_not_mix(tmp_path: Path) -> None:
    r = runner.invoke(app, ["search", "--config", str(tmp_path), "--resume", "--out", str(tmp_path / "run")])
    assert r.exit_code == 2 and "not both" in r.output


def test_quant_search_defaults_are_the_bits_search_configs() -> None:
    from search.quant.searcher import QuantSearchConfig

    saved = QuantSearchConfig(out="x").flat()
    params = _params("quant-search")
    # Options the command turns into the config itself: bit lists parsed from text, learning rates that depend on --init.
    converted = {"weight_bits", "act_bits", "w_lr", "theta_lr", "out"}
    shared = {k for k in saved if _option_name(k) in params}
    compared = shared - converted
    assert {"epochs", "batch_size", "tau0", "seed", "num_threads", "space", "cost", "loss"} <= compared
    for name in compared:
        assert params[_option_name(name)].default == saved[name], (name, params[_option_name(name)].default, saved[name])
