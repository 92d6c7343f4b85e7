"""`hwnas search`, `hwnas sample DIR`, `hwnas train ARCH.json` as a user runs them."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from search.arch import Architecture, build
from search.app.cli import app

runner = CliRunner()


def test_search_sample_train_round_trip(tmp_path: Path, tiny_space: Path) -> None:
    out = tmp_path / "run"
    r = runner.invoke(
        app,
        [
            "search",
            "--space",
            str(tiny_space),
            "--cost",
            "params",
            "--epochs",
            "2",
            "--subset",
            "600",
            "--val-subset",
            "200",
            "--batch-size",
            "32",
            "--samples",
            "0",
            "--no-progress",
            "--torch-threads",
            "1",
            "--out",
            str(out),
        ],
    )
    assert r.exit_code == 0, r.output
    assert "argmax architecture" in r.output and "Mparams predicted" in r.output
    for name in (
        "config.json",
        "costs.json",
        "theta.json",
        "checkpoint.pt",
        "argmax.json",
        "space.json",
        "plots/theta_heatmap.png",
        "plots/cost_accuracy.png",
    ):
        assert (out / name).is_file(), name
    assert json.loads((out / "config.json").read_text())["cost_source"]["kind"] == "params"

    r = runner.invoke(app, ["sample", str(out), "-k", "5", "--val-subset", "200"])
    assert r.exit_code == 0, r.output
    index = json.loads((out / "samples" / "index.json").read_text())
    samples = index["samples"]
    assert 2 <= len(samples) <= 6 and sum(s["argmax"] for s in samples) == 1
    costs = [s["predicted"]["params"] for s in samples]
    assert costs == sorted(costs)  # ranked by predicted cost
    for s in samples:
        doc = Architecture.load(out / "samples" / s["file"])
        assert doc.choices == s["choices"] and doc.meta["predicted"]["mmacs"] > 0 and doc.meta["predicted"]["mparams"] > 0
        assert 0.0 <= s["supernet_acc"] <= 1.0
    assert (out / "plots" / "samples.png").is_file()
    # The same figure for architectures of the caller's choosing (the benchmark's matched random networks).
    from search.sample import supernet_accuracies

    first = samples[0]
    assert supernet_accuracies(out, [first["choices"]], val_subset=200) == [pytest.approx(first["supernet_acc"])]

    arch_file = out / "samples" / samples[0]["file"]
    r = runner.invoke(
        app,
        [
            "train",
            str(arch_file),
            "--epochs",
            "1",
            "--subset",
            "1000",
            "--val-subset",
            "500",
            "--batch-size",
            "32",
            "--no-progress",
            "--torch-threads",
            "1",
        ],
    )
    assert r.exit_code == 0, r.output
    report = json.loads(arch_file.with_suffix(".train.json").read_text())
    assert report["accuracy"] > 0.2 and report["test_images"] == 500
    assert "chance level" not in r.output
    net = build(Architecture.load(arch_file))
    net.load_state_dict(torch.load(arch_file.with_suffix(".pt"), weights_only=True))  # `hwnas export --weights` reads it

    # Sampling again with another k and seed leaves exactly the new index's documents, no stale ranks.
    r = runner.invoke(app, ["sample", str(out), "-k", "2", "--seed", "7", "--no-eval"])
    assert r.exit_code == 0, r.output
    again = json.loads((out / "samples" / "index.json").read_text())["samples"]
    ranked = sorted(p.name for p in (out / "samples").glob("*.json") if re.fullmatch(r"\d\d_[0-9a-f]{16}\.json", p.name))
    assert ranked == sorted(s["file"] for s in again)


def test_resume_from_the_command_line_extends_the_search(tmp_path: Path, tiny_space: Path) -> None:
    out = tmp_path / "run"
    base = [
        "search",
        "--space",
        str(tiny_space),
        "--subset",
        "300",
        "--batch-size",
        "32",
        "--val-subset",
        "100",
        "--samples",
        "0",
        "--no-progress",
        "--out",
        str(out),
    ]
    assert runner.invoke(app, base + ["--epochs", "1"]).exit_code == 0
    r = runner.invoke(app, base + ["--epochs", "1"])
    assert r.exit_code == 1 and "--resume" in r.output
    r = runner.invoke(app, ["search", "--out", str(out), "--resume", "--epochs", "2", "--no-progress", "--samples", "0"])
    assert r.exit_code == 0, r.output
    assert len(json.loads((out / "theta.json").read_text())["epochs"]) == 2


def test_missing_data_is_one_line_without_traceback(tmp_path: Path, tiny_space: Path) -> None:
    r = runner.invoke(
        app, ["search", "--space", str(tiny_space), "--data", str(tmp_path / "nope"), "--out", str(tmp_path / "run")]
    )
    assert r.exit_code == 1
    lines = [l for l in r.output.splitlines() if l.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and "apt-get install dataset-fashion-mnist" in lines[0]


def test_train_rejects_an_architecture_that_does_not_fit_the_data(tmp_path: Path) -> None:
    arch = Architecture(space="fbnet-cifar", choices=["skip"] * 10).save(tmp_path / "cifar.json")
    r = runner.invoke(app, ["train", str(arch), "--subset", "10", "--no-progress"])
    assert r.exit_code == 1 and "3x32x32" in r.output and "Traceback" not in r.output


def test_train_warns_when_the_network_learned_nothing(tmp_path: Path, tiny_space: Path) -> None:
    arch = Architecture(space=str(tiny_space), choices=["ir_k3_e1"] * 3).save(tmp_path / "net.json")
    # A learning rate this large blows the weights up: the network ends at chance, as a user's too-short run can.
    r = runner.invoke(
        app,
        [
            "train",
            str(arch),
            "--epochs",
            "1",
            "--subset",
            "200",
            "--val-subset",
            "200",
            "--lr",
            "1e6",
            "--batch-size",
            "32",
            "--no-progress",
            "--torch-threads",
            "1",
        ],
    )
    assert r.exit_code == 0, r.output
    assert "warning: accuracy" in r.output and "chance level for 10 classes" in r.output and "--epochs" in r.output


def test_python_dash_m_search_runs_the_cli() -> None:
    # torchrun launches `python -m search search ...`; the module entry point must be the same CLI.
    r = subprocess.run([sys.executable, "-m", "search", "search", "--help"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and "--mode" in r.stdout and "Examples" in r.stdout


def test_ctrl_c_during_a_search_says_how_to_resume(tmp_path: Path, tiny_space: Path) -> None:
    import signal
    import time

    out = tmp_path / "run"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "search",
            "search",
            "--space",
            str(tiny_space),
            "--cost",
            "params",
            "--epochs",
            "500",
            "--subset",
            "300",
            "--val-subset",
            "100",
            "--batch-size",
            "32",
            "--samples",
            "0",
            "--no-progress",
            "--torch-threads",
            "1",
            "--out",
            str(out),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 120
        while not (out / "checkpoint.pt").is_file():  # one epoch saved: an interrupt now has something to resume
            assert proc.poll() is None and time.monotonic() < deadline, (
                proc.stderr.read() if proc.poll() is not None else "no checkpoint"
            )
            time.sleep(0.1)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=240)  # a loaded CI machine can take long to unwind torch
    finally:
        proc.kill()
    assert proc.returncode == 130, err
    assert f"hwnas search --out {out} --resume" in err and "Traceback" not in err


@pytest.mark.parametrize("command", ["export", "demo"])
def test_install_hints_in_help_keep_their_extra(command: str) -> None:
    # rich reads "[executorch]" as markup and drops it unless escaped: the hint would say pip install 'hwnas'
    r = runner.invoke(app, [command, "--help"], env={"COLUMNS": "400", "NO_COLOR": "1"})
    assert r.exit_code == 0, r.output
    assert "hwnas[executorch]" in r.output.replace("\n", "").replace(" ", "").replace("│", "")
