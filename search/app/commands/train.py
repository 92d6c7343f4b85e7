"""`hwnas train ARCH.json`: train an architecture from scratch; weights file and test accuracy."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from search.app.commands._config_options import config_option
from search.app.commands._errors import user_errors
from search.run_options import DataAndMachine
from search.train_config import TrainConfig


def register(app: typer.Typer) -> None:
    @app.command("train")
    def train(
        arch_path: str = typer.Argument(..., metavar="ARCH", help="An architecture document (ARCH.json) or a shipped one."),
        data: str = config_option(DataAndMachine, "data"),
        epochs: int = config_option(TrainConfig, "epochs"),
        batch_size: int = config_option(TrainConfig, "batch_size"),
        lr: float = config_option(TrainConfig, "lr"),
        wd: float = config_option(TrainConfig, "wd"),
        subset: Optional[int] = config_option(DataAndMachine, "subset"),
        val_subset: Optional[int] = config_option(DataAndMachine, "val_subset"),
        image_size: Optional[int] = config_option(DataAndMachine, "image_size"),
        seed: int = config_option(DataAndMachine, "seed"),
        out: Optional[Path] = typer.Option(
            None, "--out", "-o", help="Folder for <name>.pt and <name>.train.json (default: next to ARCH)."
        ),
        torch_device: str = config_option(DataAndMachine, "torch_device"),
        torch_threads: Optional[int] = config_option(DataAndMachine, "num_threads"),
        workers: int = config_option(DataAndMachine, "workers"),
        progress: bool = config_option(DataAndMachine, "progress"),
    ) -> None:
        """Train an architecture from scratch and report its test accuracy; writes the weights for `hwnas export --weights`.

        Examples: `hwnas train runs/lat/argmax.json --epochs 5` ·
        `hwnas train runs/lat/samples/00_1a2b3c4d5e6f7a8b.json --data /data/cifar-10-batches-py -o trained/`
        """
        from search.arch import get_arch
        from search.app.progress import EpochProgress
        from search.train import train_arch

        with user_errors():
            arch = get_arch(arch_path)
            config = TrainConfig(
                data=data,
                epochs=epochs,
                batch_size=batch_size,
                lr=lr,
                wd=wd,
                subset=subset,
                val_subset=val_subset,
                image_size=image_size,
                seed=seed,
                torch_device=torch_device,
                num_threads=torch_threads,
                workers=workers,
                progress=progress,
            )
            p = Path(arch_path)
            out_dir = out or (p.parent if p.is_file() else Path("."))
            stem = p.stem if p.is_file() else (arch.name or arch.id)
            result = train_arch(arch, config, out_dir=out_dir, stem=stem, progress=EpochProgress)
        typer.echo(f"test accuracy {result.accuracy:.4f} after {epochs} epochs ({result.seconds:.0f} s)")
        typer.echo(f"weights {result.weights}")
        typer.echo(f"report  {result.report}")
        if result.at_chance:
            from search.train import chance_hint

            typer.echo(f"warning: {chance_hint(result.accuracy, result.classes)}", err=True)
