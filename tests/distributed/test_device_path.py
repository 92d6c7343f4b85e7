"""The device-independent path on one process: device by LOCAL_RANK, backend choice, AMP bf16, channels_last, launch args."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
import typer

from search import distributed
from search.app.launch import option_arguments, torchrun_arguments
from search.search_config import SearchConfig, SearchConfigError
from search.search_epoch import train_step
from search.search_setup import build_setup

NO_CUDA = not torch.cuda.is_available()


def test_single_process_without_torchrun_is_not_distributed(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in distributed.ENV_VARS:
        monkeypatch.delenv(var, raising=False)
    assert distributed.init_from_env() is False
    assert (distributed.world_size(), distributed.rank(), distributed.is_main()) == (1, 0, True)
    assert distributed.main_then_broadcast(lambda: 41 + 1) == 42
    assert distributed.on_main(lambda: "wrote") == "wrote"


def test_world_size_without_the_rest_of_torchrun_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in distributed.ENV_VARS:
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(distributed.DistributedError, match="RANK, LOCAL_RANK, MASTER_ADDR, MASTER_PORT"):
        distributed.init_from_env("cpu")


@pytest.mark.skipif(not NO_CUDA, reason="checks the CPU fallback")
def test_device_follows_local_rank_and_falls_back_to_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOCAL_RANK", "3")
    assert distributed.local_device("auto") == torch.device("cpu")
    assert distributed.backend_for(distributed.local_device("auto")) == "gloo"
    with pytest.raises(distributed.DistributedError, match="CUDA is not available"):
        distributed.local_device("cuda")


@pytest.mark.skipif(NO_CUDA, reason="needs a CUDA device")
def test_cuda_device_is_the_local_rank(monkeypatch: pytest.MonkeyPatch) -> None:  # pragma: no cover - GPU machines
    monkeypatch.setenv("LOCAL_RANK", "0")
    assert distributed.local_device("auto") == torch.device("cuda", 0)
    assert distributed.backend_for(distributed.local_device("cuda")) == "nccl"
    monkeypatch.setenv("LOCAL_RANK", str(torch.cuda.device_count()))
    with pytest.raises(distributed.DistributedError, match="processes per node"):
        distributed.local_device("cuda")


def _config(tmp_path: Path, space: Path, **kw) -> SearchConfig:  # type: ignore[no-untyped-def]
    base = dict(
        out=str(tmp_path / "run"),
        space=str(space),
        subset=200,
        val_subset=100,
        epochs=1,
        batch_size=16,
        progress=False,
        plots=False,
        torch_device="cpu",
    )
    return SearchConfig.from_flat(**{**base, **kw})


def test_plain_single_process_run_has_no_replica(tmp_path: Path, tiny_space: Path) -> None:
    assert build_setup(_config(tmp_path, tiny_space)).replica is None  # the loop runs exactly as without this module


def test_bf16_autocast_and_channels_last_train_a_step(tmp_path: Path, tiny_space: Path) -> None:
    setup = build_setup(_config(tmp_path, tiny_space, amp="bf16", channels_last=True))
    assert setup.replica is not None and setup.replica.describe()["amp"] == "bf16"
    conv = next(m for m in setup.model.modules() if isinstance(m, torch.nn.Conv2d) and m.kernel_size == (3, 3))
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)
    x, y = setup.train_set.batch(setup.w_index[:16])
    seen: list[torch.dtype] = []
    handle = conv.register_forward_hook(lambda m, i, o: seen.append(o.dtype))
    before = [p.detach().clone() for p in setup.model.weight_parameters()]
    r = train_step(setup, x, y, setup.w_optimizer)
    handle.remove()
    assert seen == [torch.bfloat16]  # the convolutions ran in bfloat16
    assert math.isfinite(r["loss"]) and r["n"] == 16
    assert any(not torch.equal(a, b) for a, b in zip(before, setup.model.weight_parameters()))  # and the step trained


def test_unknown_amp_mode_is_a_config_error(tmp_path: Path, tiny_space: Path) -> None:
    with pytest.raises(SearchConfigError, match="--amp must be one of off, bf16"):
        build_setup(_config(tmp_path, tiny_space, amp="fp8"))


def test_nproc_relaunch_repeats_the_command_line_options() -> None:
    from typer.testing import CliRunner

    app = typer.Typer()
    seen: dict[str, list[str]] = {}

    @app.command()
    def search(
        ctx: typer.Context,
        out: Path = typer.Option(..., "--out"),
        epochs: int = typer.Option(10, "--epochs"),
        progress: bool = typer.Option(True, "--progress/--no-progress"),
        resume: bool = typer.Option(False, "--resume"),
        nproc: int = typer.Option(1, "--nproc"),
    ) -> None:
        seen["args"] = option_arguments(ctx, skip=("nproc",))

    @app.command()
    def other() -> None:  # a second command keeps typer from collapsing the app into one command
        pass

    result = CliRunner().invoke(app, ["search", "--nproc", "4", "--out", "runs/x", "--no-progress", "--resume"])
    assert result.exit_code == 0, result.output
    assert seen["args"] == ["--out", "runs/x", "--no-progress", "--resume"]  # defaults and --nproc stay out
    assert torchrun_arguments(4, "search", seen["args"]) == [
        "--standalone",
        "--nproc-per-node=4",
        "-m",
        "search",
        "search",
        "--out",
        "runs/x",
        "--no-progress",
        "--resume",
    ]


def test_gpu_benchmark_step_runs_on_any_device() -> None:
    """The GPU figures' step (fbnet at 224, bf16 autocast, channels_last) kept working where no GPU is: on the CPU."""
    import importlib.util

    path = Path(__file__).resolve().parents[2] / "benchmarks" / "search_scaling.py"
    spec = importlib.util.spec_from_file_location("search_scaling_bench", path)
    assert spec is not None and spec.loader is not None
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    assert bench.fbnet_step_img_s(torch.device("cpu"), "hard", batch=2, steps=1, warmup=0) > 0
    if NO_CUDA:
        figures = bench.gpu_figures(steps=1, warmup=0)
        assert figures["gpu_soft_img_s"] is None and "no CUDA device" in figures["gpu_not_measured"]
