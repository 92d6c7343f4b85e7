"""`hwnas demo`: the whole loop on this machine (server, local agent, table, search, training, measurement, report)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from search.app.commands._errors import fail, user_errors


def register(app: typer.Typer) -> None:
    @app.command("demo")
    def demo(
        quick: bool = typer.Option(False, "--quick", help="Small subsets and 2 epochs: about 2 minutes instead of 10."),
        out: Path = typer.Option(
            Path("demo-output"), "--out", "-o", help="Output folder (a previous demo's folder is replaced)."
        ),
        runtime: str = typer.Option(
            "onnxruntime",
            "--runtime",
            help="What the agent measures with (the operator table, "
            "the calibration and every whole network): onnxruntime, torchscript or executorch. "
            "executorch needs pip install 'hwnas\\[executorch]', and the first executorch demo "
            "spends minutes exporting the 102 operators to .pte files (3.4-7.9 s each on a shared 2-core machine), "
            "cached afterwards by key and ExecuTorch version (~/.cache/hwnas/models).",
        ),
        epochs: Optional[int] = typer.Option(None, "--epochs", "-e", min=1, help="Search epochs (full 4, quick 2)."),
        warmup_epochs: Optional[int] = typer.Option(
            None, "--warmup-epochs", min=0, help="Weights-only search epochs (full 1, quick 1)."
        ),
        target_share: Optional[float] = typer.Option(
            None,
            "--target-share",
            min=0.01,
            max=1.0,
            help="The search's "
            "latency target, as a share of the all-ir_k3_e6 baseline's "
            "predicted latency (default 0.35: a window of the shipped ground truth).",
        ),
        mode: Optional[str] = typer.Option(None, "--mode", help="Super-net mode of the search: soft (default) or hard."),
        train_epochs: Optional[int] = typer.Option(
            None, "--train-epochs", min=1, help="Epochs of training from scratch (full 4, the ground truth's recipe; quick 2)."
        ),
        subset: Optional[int] = typer.Option(
            None, "--subset", min=10, help="Training images of the search (full 2500, quick 800)."
        ),
        train_subset: Optional[int] = typer.Option(
            None,
            "--train-subset",
            min=10,
            help="Training images for training from scratch, outside the 10,000-image validation split (full 5000, quick 2000).",
        ),
        val_subset: Optional[int] = typer.Option(
            None, "--val-subset", min=10, help="Test images for the trained networks (full: all 10,000; quick 1000)."
        ),
        matched: Optional[int] = typer.Option(
            None,
            "--matched",
            min=0,
            help="Random networks at the found network's "
            "predicted latency (±5%), trained and measured like it (full 4, quick 2).",
        ),
        calibration_networks: Optional[int] = typer.Option(
            None,
            "--calibration-networks",
            min=0,
            help="Random whole networks measured after the operators to "
            "calibrate the table (measured ≈ a·sum + b), which the search and every prediction then use; 0: the raw "
            "table (full 8, quick 4).",
        ),
        seed: int = typer.Option(0, "--seed"),
        port: Optional[int] = typer.Option(
            None, "--port", min=1, max=65535, help="Port of the profiler server (default: a free one)."
        ),
        keep_server: bool = typer.Option(
            False,
            "--keep-server",
            help="After the report, keep the server and agent running (browse http://127.0.0.1:PORT/docs) until Ctrl-C.",
        ),
        torch_threads: int = typer.Option(
            1, "--torch-threads", min=1, help="torch threads for search and training (1 is fastest on a small shared machine)."
        ),
        progress: bool = typer.Option(True, "--progress/--no-progress", help="Progress bars and phase lines."),
    ) -> None:
        """Run the whole hwnas loop on this machine and write OUT/report.md.

        Starts a profiler-server (SQLite, in OUT) and a local device agent for device host-cpu (ONNX Runtime by
        default, --runtime; 1 thread), measures the fbnet-fmnist operators through a profiling job and a few random whole networks to
        calibrate that table, runs a target-latency FBNet search
        with that latency table (target: half the all-ir_k3_e6 baseline's predicted latency), draws random networks
        of the found network's predicted latency, trains them, the found network and the baseline from scratch with
        one recipe, exports the found network and the baseline to ONNX, has the agent measure every network whole,
        and writes the report: the gain at equal latency, with plots. Ctrl-C stops everything it started.

        Examples: `hwnas demo` · `hwnas demo --quick --out /tmp/demo` · `hwnas demo --keep-server --port 8000` ·
        `hwnas demo --quick --runtime executorch`
        """
        from device_agent.errors import ConfigError
        from device_agent.runtimes.base import check_runtime
        from search.app.demo import DemoConfig, DemoError, main_summary, run_demo
        from search.app.demo_model import RUNTIMES

        if runtime not in RUNTIMES:
            raise fail(f"--runtime must be one of {', '.join(RUNTIMES)}, not {runtime!r}", 2)
        try:  # before anything starts: no server, agent or output folder for a runtime that cannot run here
            check_runtime(runtime)
        except ConfigError as exc:
            raise fail(str(exc), 2) from None
        config = DemoConfig.preset(
            quick,
            out=out,
            runtime=runtime,
            search_epochs=epochs,
            warmup_epochs=warmup_epochs,
            target_share=target_share,
            mode=mode,
            train_epochs=train_epochs,
            search_subset=subset,
            train_subset=train_subset,
            val_subset=val_subset,
            matched=matched,
            calibration_networks=calibration_networks,
            seed=seed,
            port=port,
            keep_server=keep_server,
            torch_threads=torch_threads,
            progress=progress,
        )
        if config.mode not in ("hard", "soft"):
            raise fail(f"--mode must be hard or soft, not {config.mode!r}", 2)
        if config.warmup_epochs >= config.search_epochs:
            raise fail(f"--warmup-epochs ({config.warmup_epochs}) must be below --epochs ({config.search_epochs})", 2)

        def summary(result) -> None:  # result: search.app.demo_model.DemoResult, imported lazily
            for line in main_summary(result):
                typer.echo(line)

        with user_errors():
            try:
                run_demo(config, on_done=summary)
            except DemoError as exc:
                raise fail(str(exc)) from None
            except KeyboardInterrupt:
                typer.echo("interrupted: server and agent stopped", err=True)
                raise typer.Exit(130) from None
