"""A search on 2 gloo processes: it finishes, θ stays bitwise identical, the noise is shared, rank 0 alone writes, N→M resume."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch

from search.search_config import SearchConfig, flat_options
from search.searcher import run_search
from tests.distributed.conftest import torchrun

EPOCHS = 2


def _reports(report_dir: Path) -> list[dict[str, Any]]:
    return [json.loads((report_dir / f"rank{r}.json").read_text()) for r in (0, 1)]


@pytest.fixture(scope="module")
def soft_run(tmp_path_factory: pytest.TempPathFactory, tiny_space: Path) -> tuple[Path, list[dict[str, Any]]]:
    """A 2-epoch soft-mode (FBNet) search on 2 processes; each rank's report of what it saw."""
    base = tmp_path_factory.mktemp("ddp_soft")
    torchrun(
        [
            "--out",
            str(base / "run"),
            "--report",
            str(base / "report"),
            "--space",
            str(tiny_space),
            "--epochs",
            str(EPOCHS),
            "--mode",
            "soft",
        ]
    )
    return base / "run", _reports(base / "report")


def test_two_process_search_finishes_and_logs_every_epoch(soft_run) -> None:  # type: ignore[no-untyped-def]
    out, (r0, r1) = soft_run
    assert r0["world_size"] == r1["world_size"] == 2
    theta_doc = json.loads((out / "theta.json").read_text())
    assert [e["epoch"] for e in theta_doc["epochs"]] == list(range(1, EPOCHS + 1))
    assert all(e["phase"] == "search" for e in theta_doc["epochs"])  # no warm-up: θ trained in both epochs
    result = json.loads((out / "result.json").read_text())
    assert result["epochs"] == EPOCHS and result["argmax"] == r0["argmax"] == r1["argmax"]
    assert r0["val_acc"] == r1["val_acc"] > 0.2  # evaluation is summed over both shards; chance is 0.1


def test_theta_is_bitwise_identical_on_both_ranks_after_every_epoch(soft_run) -> None:  # type: ignore[no-untyped-def]
    out, (r0, r1) = soft_run
    assert r0["theta_agree"] == r1["theta_agree"] == [True] * EPOCHS  # checked inside the job, right after each epoch
    assert r0["theta"] == r1["theta"]  # floats through JSON: exact round trip
    assert len(r0["theta"]) == EPOCHS
    assert any(v != 0.0 for layer in r0["theta"][-1] for v in layer)  # θ moved: the comparison is not of zeros
    logged = [e["theta"] for e in json.loads((out / "theta.json").read_text())["epochs"]]
    assert logged == r0["theta"]


def test_gumbel_noise_is_shared_by_the_ranks(soft_run) -> None:  # type: ignore[no-untyped-def]
    _, (r0, r1) = soft_run
    assert len(r0["masks"]) == len(r1["masks"]) > 10  # same number of steps on both ranks
    assert r0["masks"] == r1["masks"]
    assert len(set(r0["masks"])) == len(r0["masks"])  # fresh noise every step


def test_only_rank_0_writes_into_the_run_folder(soft_run) -> None:  # type: ignore[no-untyped-def]
    out, (r0, r1) = soft_run
    assert r1["writes"] == []
    written = {Path(w.split(" ", 1)[1]).name for w in r0["writes"]}
    assert {"checkpoint.pt", "theta.json", "result.json", "argmax.json"} <= {Path(f).name for f in map(str, out.iterdir())}
    assert any(name.startswith(".checkpoint.pt.") for name in written)  # the audit saw rank 0's atomic checkpoint write
    assert sorted(p.name for p in out.iterdir()) == [
        "argmax.json",
        "checkpoint.pt",
        "config.json",
        "costs.json",
        "found.json",
        "result.json",
        "space.json",
        "theta.json",
    ]


def test_checkpoint_of_two_processes_resumes_in_one(soft_run, tmp_path: Path, tiny_space: Path) -> None:  # type: ignore[no-untyped-def]
    import shutil

    out, (r0, _) = soft_run
    run = tmp_path / "run"
    shutil.copytree(out, run)
    saved = torch.load(run / "checkpoint.pt", weights_only=False)
    assert not any(k.startswith("module.") for k in saved["model"])  # the plain super net, not a DDP wrapper
    saved = flat_options(json.loads((run / "config.json").read_text()))
    config = SearchConfig.from_flat(**{**saved, "out": str(run), "epochs": EPOCHS + 1, "resume": True, "progress": False})
    result = run_search(config)
    assert [e["epoch"] for e in result.history] == list(range(1, EPOCHS + 2))
    assert [e["theta"] for e in result.history[:EPOCHS]] == r0["theta"]  # the 2-process epochs, kept as they were
    assert result.history[-1]["theta"] != r0["theta"][-1]  # and one more epoch trained θ in one process
    assert json.loads((run / "result.json").read_text())["epochs"] == EPOCHS + 1


def test_hard_mode_runs_one_shared_sub_network_per_step(tmp_path: Path, tiny_space: Path) -> None:
    torchrun(
        [
            "--out",
            str(tmp_path / "run"),
            "--report",
            str(tmp_path / "report"),
            "--space",
            str(tiny_space),
            "--epochs",
            "1",
            "--mode",
            "hard",
            "--subset",
            "800",
        ]
    )
    r0, r1 = _reports(tmp_path / "report")
    assert r0["theta_agree"] == r1["theta_agree"] == [True] and r0["theta"] == r1["theta"]
    indices = [m.split(":", 1)[1] for m in r0["masks"]]
    assert r0["masks"] == r1["masks"]  # the same candidates (weight steps) and the same soft masks (θ steps) on both ranks
    single_path = [i for i in indices if i != "None"]  # θ steps mix every candidate (search/mixed.py): index None
    assert len(single_path) >= len(indices) // 2 and "None" in indices
    assert len(set(single_path)) > 1  # and a different sub-network from step to step
