"""`hwnas quant-search`, `hwnas quant-train`, `hwnas quant-table`: mixed-precision quantization with DNAS."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from search.app.commands import _options as opts
from search.app.commands._config_options import config_option
from search.app.commands._errors import fail, user_errors
from search.search_config import Objective, RunSettings, Schedule


def _bits_list(text: str, what: str) -> list[int]:
    from search.quant.bits import parse_bits_list

    return parse_bits_list(text, what)


def _pins(pins: list[str]) -> dict[str, str]:
    out = {}
    for p in pins:
        if "=" not in p:
            raise fail(f"--pin {p!r}: expected LAYER=BITS, e.g. conv1=w8a8")
        name, bits = p.split("=", 1)
        out[name.strip()] = bits.strip()
    return out


def register(app: typer.Typer) -> None:
    @app.command("quant-search")
    def quant_search(
        out: Path = typer.Option(..., "--out", "-o", help="Output folder: config, checkpoint, theta.json, bits.json, plots."),
        space: str = typer.Option(
            "resnet20",
            "--space",
            "-s",
            help="resnet20 (resnet8, resnet14, …, -w8 for 8 channels "
            "in the first stage) or an architecture document (path or fbnet_a …) to quantize.",
        ),
        data: str = config_option(RunSettings, "data", help="fashion-mnist, or a Fashion-MNIST/CIFAR/image folder."),
        cost: str = typer.Option(
            "size",
            "--cost",
            "-c",
            help="size (KB: Σ params × weight bits), bops (MBOPs: Σ MACs × "
            "w × a bits) or latency (ms of the int8/fp32 kernels from a latency table).",
        ),
        weight_bits: str = typer.Option("2,4,8,32", "--weight-bits", help="Weight widths to choose from."),
        act_bits: str = typer.Option("4,8,32", "--act-bits", help="Activation (layer input) widths to choose from."),
        pin: list[str] = typer.Option([], "--pin", help="LAYER=BITS: fix a layer's widths (repeatable), e.g. fc=w8a8."),
        init: Optional[Path] = typer.Option(
            None,
            "--init",
            help="Float weights to start from (quant-train --bits fp32 output or hwnas train weights of the architecture).",
        ),
        loss: str = typer.Option(
            "fbnet",
            "--loss",
            help="fbnet: CE·α·(log C)^β; additive: CE + λ·C/ref; target: CE + λ·|C/T − 1| with the result kept at most T.",
        ),
        target: Optional[float] = typer.Option(
            None, "--target", help="Budget of the target loss in the cost's unit (KB, MBOPs, ms)."
        ),
        alpha: float = config_option(Objective, "alpha"),
        beta: float = config_option(Objective, "beta"),
        lam: Optional[float] = typer.Option(None, "--lambda", help="λ of the additive and target losses."),
        server: Optional[str] = opts.SERVER,
        device: Optional[str] = opts.DEVICE,
        runtime: Optional[str] = opts.RUNTIME,
        threads: Optional[int] = opts.THREADS,
        token: Optional[str] = opts.TOKEN,
        lut: Optional[Path] = opts.LUT,
        create_job: Optional[bool] = opts.CREATE_JOB,
        wait_timeout: float = opts.WAIT_TIMEOUT,
        mode: str = typer.Option("soft", "--mode", help="soft (mix every width) or hard (one sampled width per layer per step)."),
        epochs: int = config_option(Schedule, "epochs"),
        warmup_epochs: Optional[int] = config_option(Schedule, "warmup_epochs"),
        batch_size: int = config_option(Schedule, "batch_size"),
        w_lr: Optional[float] = typer.Option(
            None, "--w-lr", help="SGD learning rate of the weights (default 0.1; 0.01 with --init)."
        ),
        theta_lr: Optional[float] = typer.Option(None, "--theta-lr", help="θ learning rate (default: adam 0.01, sgd 1.0)."),
        theta_optimizer: str = typer.Option(
            "adam",
            "--theta-optimizer",
            help="adam (FBNet) or sgd: SGD keeps the size "
            "of the cost gradient, so big layers move first (see docs/mixed-precision.md).",
        ),
        tau0: float = config_option(Schedule, "tau0"),
        tau_decay: float = config_option(Schedule, "tau_decay"),
        subset: Optional[int] = config_option(RunSettings, "subset"),
        val_subset: Optional[int] = config_option(RunSettings, "val_subset"),
        seed: int = config_option(RunSettings, "seed"),
        torch_threads: Optional[int] = config_option(RunSettings, "num_threads"),
        resume: bool = config_option(RunSettings, "resume"),
        progress: bool = config_option(RunSettings, "progress"),
    ) -> None:
        """Search a bit width (weights × activations) for every conv/linear layer under a size, BOPs or latency cost.

        Example: `hwnas quant-search --space resnet20 --init runs/fp32/fp32.pt --cost size --loss target --target 80
        --epochs 4 --out runs/qs` then `hwnas quant-train runs/qs/bits.json --init runs/fp32/fp32.pt --out runs/mix`
        """
        from search.quant.searcher import QuantSearchConfig

        with user_errors():
            config = QuantSearchConfig.from_flat(
                out=str(out),
                space=str(Path(space).resolve()) if Path(space).is_file() else space,
                data=str(Path(data).resolve()) if Path(data).exists() else data,
                cost=cost,
                weight_bits=_bits_list(weight_bits, "weight bits"),
                act_bits=_bits_list(act_bits, "activation bits"),
                pins=_pins(pin),
                init=str(init.resolve()) if init else None,
                loss=loss,
                target=target,
                alpha=alpha,
                beta=beta,
                lam=lam,
                server=server,
                device=device,
                runtime=runtime,
                threads=threads,
                token=token,
                lut=str(lut) if lut else None,
                mode=mode,
                epochs=epochs,
                warmup_epochs=warmup_epochs,
                batch_size=batch_size,
                w_lr=w_lr if w_lr is not None else (0.01 if init else 0.1),
                theta_lr=theta_lr if theta_lr is not None else (1.0 if theta_optimizer == "sgd" else 0.01),
                theta_optimizer=theta_optimizer,
                tau0=tau0,
                tau_decay=tau_decay,
                subset=subset,
                val_subset=val_subset,
                seed=seed,
                num_threads=torch_threads,
                progress=progress,
                resume=resume,
            )
            result = _run_with_table(config, create_job, wait_timeout)
            typer.echo(f"search done in {result.seconds:.0f} s: super-net val acc {result.val_acc:.4f}")
            typer.echo(f"bits ({result.cost:.4g} {result.unit}; {result.size_kb:.1f} KB, {result.bops_g:.3f} GBOPs):")
            for name, tag in result.config.bits.items():
                typer.echo(f"  {name:<24} {tag}")
            typer.echo(f"  {out / 'bits.json'}")

    @app.command("quant-train")
    def quant_train(
        bits_doc: Optional[Path] = typer.Argument(None, help="A bit configuration (bits.json of quant-search)."),
        space: Optional[str] = typer.Option(None, "--space", "-s", help="Without BITS_DOC: the space to train uniformly."),
        bits: str = typer.Option("fp32", "--bits", help="Without BITS_DOC: the width of every layer (fp32, w8a8, w4a4 …)."),
        out: Path = typer.Option(Path("."), "--out", "-o", help="Folder for <stem>.pt, <stem>.onnx, <stem>.train.json."),
        stem: Optional[str] = typer.Option(None, "--stem", help="File name stem (default: the bits, e.g. w8a8, or 'mixed')."),
        init: Optional[Path] = typer.Option(None, "--init", help="Float weights to fine-tune from."),
        data: str = typer.Option("fashion-mnist", "--data"),
        epochs: int = typer.Option(10, "--epochs", "-e", min=1),
        batch_size: int = typer.Option(128, "--batch-size", "-b", min=1),
        lr: Optional[float] = typer.Option(None, "--lr", help="Peak learning rate (default 0.1; 0.01 with --init)."),
        wd: float = typer.Option(1e-4, "--wd"),
        subset: Optional[int] = typer.Option(None, "--subset", min=1),
        val_subset: Optional[int] = typer.Option(None, "--val-subset", min=1),
        seed: int = typer.Option(0, "--seed"),
        torch_threads: Optional[int] = typer.Option(None, "--torch-threads", min=1),
        onnx: bool = typer.Option(
            True, "--onnx/--no-onnx", help="Export <stem>.onnx (8-bit parts as QDQ) and test it in ONNX Runtime."
        ),
        latency: bool = typer.Option(False, "--latency", help="Also measure the exported model's batch-1 latency on this host."),
        progress: bool = typer.Option(True, "--progress/--no-progress"),
    ) -> None:
        """Train (or fine-tune from float weights) a network at fixed bit widths, export its QDQ ONNX, report accuracy.

        Examples: `hwnas quant-train --space resnet20 --bits fp32 --epochs 10 --out runs/fp32` ·
        `hwnas quant-train runs/qs/bits.json --init runs/fp32/fp32.pt --epochs 3 --out runs/mix`
        """
        from search.quant.network import BitsConfig
        from search.quant.report import format_table, measure_latency, row_from_report
        from search.app.progress import EpochProgress
        from search.quant.space import get_bits_space
        from search.quant.train import QuantTrainConfig, train_quant

        with user_errors():
            if bits_doc is not None:
                config = BitsConfig.load(bits_doc)
                name = stem or "mixed"
            elif space is not None:
                from search.data import dataset_info, load_dataset

                info = dataset_info(load_dataset(data, "test", subset=1))
                sp = get_bits_space(space, info.input_shape, info.num_classes)
                config = BitsConfig(sp, sp.uniform(bits))
                name = stem or bits
            else:
                raise fail("give a bit configuration document, or --space with --bits")
            tc = QuantTrainConfig(
                data=data,
                epochs=epochs,
                batch_size=batch_size,
                lr=lr if lr is not None else (0.01 if init else 0.1),
                wd=wd,
                subset=subset,
                val_subset=val_subset,
                seed=seed,
                num_threads=torch_threads,
                progress=progress,
                init=str(init) if init else None,
                export_onnx=onnx or latency,
            )
            result = train_quant(config, tc, out, name, progress=EpochProgress)
            lat = measure_latency(result.onnx, (1, *config.space.input_shape)) if latency and result.onnx else None
            typer.echo(format_table([row_from_report(result.report, name, lat)]))
            typer.echo(f"weights {result.weights}; report {result.report}" + (f"; ONNX {result.onnx}" if result.onnx else ""))

    @app.command("quant-table")
    def quant_table(
        reports: list[Path] = typer.Argument(..., help="quant-train reports (<stem>.train.json); the first is the reference."),
        latency: bool = typer.Option(
            True, "--latency/--no-latency", help="Measure each exported model on this host (ONNX Runtime)."
        ),
        threads: int = typer.Option(1, "--threads", min=1, help="ONNX Runtime threads for the latency."),
        as_json: bool = typer.Option(False, "--json", help="Print the rows as JSON."),
    ) -> None:
        """Compare trained configurations: accuracy, size, BOPs, measured latency.

        Example: `hwnas quant-table runs/fp32/fp32.train.json runs/w8/w8a8.train.json runs/mix/mixed.train.json`
        """
        from search.quant.report import format_table, measure_latency, row_from_report

        with user_errors():
            rows = []
            for r in reports:
                if not r.is_file():
                    raise fail(f"{r}: no such report")
                doc = json.loads(r.read_text())
                lat = None
                if latency and doc.get("onnx"):
                    shape = doc["bits"]["space"]["input_shape"]
                    lat = measure_latency(r.parent / doc["onnx"], (1, *shape), threads=threads)
                rows.append(row_from_report(r, latency=lat))
            if as_json:
                typer.echo(json.dumps([row.to_dict() for row in rows], indent=2))
            else:
                typer.echo(format_table(rows))


def _run_with_table(config, create_job: bool | None, wait_timeout: float):
    """Run the search; with the latency cost, pull the table first and fill its gaps by a profiling job if asked."""
    from functools import partial

    from search.lut import MissingEntriesError
    from search.app.plots import plot_search
    from search.app.progress import EpochProgress
    from search.quant.cost import Int8LatencyCost
    from search.quant.searcher import run_quant_search as run_bare

    # The app's progress bars and plots (the library draws neither).
    run_quant_search = partial(run_bare, progress=EpochProgress, on_finish=plot_search if config.run.plots else None)
    source = config.cost_source
    if source.kind != "latency":
        return run_quant_search(config)
    from search.app.commands._table import job_intent, missing_header, offer_job, source_table

    cost = Int8LatencyCost(source_table(source, empty_if_unknown=bool(create_job), offers_job=True))
    try:
        return run_quant_search(config, cost_model=cost)
    except MissingEntriesError as exc:
        intent = job_intent(create_job, source.from_server, bool(cost.table.imported_from))
        typer.echo(
            missing_header(
                len(exc.keys), f"(int8/fp32) missing from the latency table{' of ' + exc.table if exc.table else ''}", intent
            ),
            err=True,
        )
        for key in exc.keys[:50]:
            typer.echo(f"  {key}", err=True)
        if not offer_job(source, cost.table, exc.keys, create_job, wait_timeout):
            raise typer.Exit(1) from None
        return run_quant_search(config, cost_model=Int8LatencyCost(source_table(source, empty_if_unknown=True)))


__all__ = ["register"]
