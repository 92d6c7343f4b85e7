"""`hwnas specialise RUN`: the most accurate child of a trained super net for each device's table and target."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from search.app.commands._errors import fail, user_errors


def register(app: typer.Typer) -> None:
    @app.command("specialise")
    def specialise_cmd(
        run: Path = typer.Argument(
            ...,
            metavar="RUN",
            help="A finished search folder with its checkpoint (best trained with --weights shared --mode hard).",
        ),
        device: list[str] = typer.Option(
            [], "--device", "-d", help="A device whose table the server holds (repeatable; measured or imported tables alike)."
        ),
        lut: list[Path] = typer.Option([], "--lut", help="A latency table file (repeatable), named by its device."),
        target_ms: list[float] = typer.Option(
            ...,
            "--target-ms",
            help="Latency target in ms (repeatable): one for "
            "all devices, several for one device, or one per device in the order "
            "given.",
        ),
        tol: float = typer.Option(0.05, "--tol", min=0.0, max=0.5, help="Window half-width as a share of the target."),
        server: Optional[str] = typer.Option(None, "--server", envvar="HWNAS_SERVER", help="Profiler server URL."),
        runtime: Optional[str] = typer.Option(None, "--runtime", help="Runtime of the server's tables."),
        threads: Optional[int] = typer.Option(None, "--threads", min=1, help="Threads of the server's tables."),
        token: Optional[str] = typer.Option(None, "--token", envvar="HWNAS_TOKEN", help="API token."),
        cache_dir: Optional[Path] = typer.Option(None, "--cache-dir", help="Where pulled tables are cached."),
        population: int = typer.Option(12, "--population", min=2, help="Children per generation."),
        generations: int = typer.Option(6, "--generations", min=0, help="Generations of the evolutionary search."),
        val_images: int = typer.Option(
            1000, "--val-images", min=10, help="Training images the super net never trained on, that rank the children."
        ),
        calib_images: int = typer.Option(
            500, "--calib-images", min=10, help="Images that recompute each child's BatchNorm statistics."
        ),
        seed: int = typer.Option(0, "--seed"),
        out: Optional[Path] = typer.Option(
            None,
            "--out",
            "-o",
            help="Folder for one architecture JSON per device and target and specialised.json (default RUN/specialised).",
        ),
    ) -> None:
        """Search the trained super net of RUN for the most accurate child under each device's latency table.

        No retraining: every child is scored inside the super net (BatchNorm recalibrated for it, accuracy on
        training images the super net never saw) by an evolutionary search inside target ± tol on that device's
        table. Each child is listed with its predicted latency on every requested device.

        Examples: `hwnas specialise runs/shared --lut host.json --lut pixel7.json --target-ms 0.05 --target-ms 4` ·
        `hwnas specialise runs/shared --server http://127.0.0.1:8000 -d host-cpu -d pixel7 -d note10 --target-ms 0.06`
        """
        from rich.progress import Progress

        from search.arch import Architecture
        from search.app.commands._table import obtain_table
        from search.lut import load_table
        from search.specialise import ChildScorer, SpecialiseError, specialise

        if not device and not lut:
            raise fail("give at least one --device (with --server) or --lut", 2)
        with user_errors():
            tables = {}
            for path in lut:
                t = load_table(path)
                tables[t.device] = t
            for d in device:
                tables[d] = obtain_table(server, d, runtime, threads, token, None, cache_dir)
            names = [*(load_table(p).device for p in lut), *device]
            if len(target_ms) == 1:
                targets = [(d, target_ms[0]) for d in names]
            elif len(names) == 1:  # one device, several targets
                targets = [(names[0], t) for t in target_ms]
            elif len(target_ms) == len(names):
                targets = list(zip(names, target_ms))
            else:
                raise fail(f"{len(target_ms)} --target-ms for {len(names)} devices: give one for all, or one per device", 2)
            try:
                scorer = ChildScorer(run, calib_images=calib_images, val_images=val_images)
                with Progress(transient=True) as bar:
                    task = bar.add_task("specialise", total=len(targets))

                    def log(text: str) -> None:
                        bar.console.print(text)
                        bar.advance(task)

                    results = specialise(
                        scorer,
                        tables,
                        targets,
                        tol,
                        population,
                        generations,
                        seed,
                        log=log,
                    )
            except SpecialiseError as exc:
                raise fail(str(exc)) from None
            folder = out or run / "specialised"
            folder.mkdir(parents=True, exist_ok=True)
            for r in results:
                arch = Architecture(
                    space=scorer.space_ref,
                    choices=r.choices,
                    input_size=scorer.space.input_shape[-1],
                    classes=scorer.space.classes,
                    name=f"{r.device}-{r.target_ms:g}ms",
                    meta={"source": f"hwnas specialise {run}", "supernet_acc": r.supernet_acc, "predicted_ms": r.predicted_ms},
                )
                arch.save(folder / f"{r.device}_{r.target_ms:g}ms.json")
            (folder / "specialised.json").write_text(json.dumps([r.to_dict() for r in results], indent=1) + "\n")
        header = "device     target   super-net acc  " + "  ".join(f"{d:>12}" for d in tables)
        typer.echo(header)
        for r in results:
            typer.echo(
                f"{r.device:<10} {r.target_ms:<8g} {r.supernet_acc:>13.4f}  "
                + "  ".join(f"{r.predicted_ms[d]:>9.4f} ms" for d in tables)
                + f"   {' '.join(r.choices)}"
            )
        typer.echo(f"wrote {folder}/ (one architecture per device and target, specialised.json)")
