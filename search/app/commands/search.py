"""`hwnas search`: the FBNet differentiable architecture search."""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Optional

import typer

from search.app.commands import _options as opts
from search.app.commands._errors import fail, user_errors


def register(app: typer.Typer) -> None:
    @app.command("search")
    def search(
        ctx: typer.Context,
        out: Path = typer.Option(..., "--out", "-o", help="Output folder: config, checkpoint, theta.json, samples, plots."),
        space: str = typer.Option("fbnet-fmnist", "--space", "-s", help="Built-in space name or a space JSON/YAML file."),
        data: str = typer.Option(
            "fashion-mnist",
            "--data",
            help="fashion-mnist, or a folder: Fashion-MNIST IDX files, a CIFAR python-pickle folder, or an image-folder tree.",
        ),
        cost: str = typer.Option(
            "", "--cost", "-c", help="latency, flops or params (default: latency when a table source is given, else flops)."
        ),
        server: Optional[str] = opts.SERVER,
        device: Optional[str] = opts.DEVICE,
        runtime: Optional[str] = opts.RUNTIME,
        threads: Optional[int] = opts.THREADS,
        token: Optional[str] = opts.TOKEN,
        lut: Optional[Path] = opts.LUT,
        cache_dir: Optional[Path] = opts.CACHE_DIR,
        create_job: Optional[bool] = opts.CREATE_JOB,
        wait_timeout: float = opts.WAIT_TIMEOUT,
        mode: str = typer.Option(
            "soft",
            "--mode",
            help="soft (FBNet: all candidates, Gumbel-softmax mix) or hard "
            "(one candidate per layer in the weight steps; θ steps still mix all: about a third "
            "of soft's time).",
        ),
        weights: str = typer.Option(
            "separate",
            "--weights",
            help="separate (FBNet: a weight set per candidate) or "
            "shared (one set per layer that every candidate slices: a k3 kernel is the centre "
            "of the k5, e1/e3 are channel prefixes of e6; single paths learn).",
        ),
        paths: str = typer.Option(
            "theta",
            "--paths",
            help="Hard mode's weight steps: theta (a path drawn from θ, "
            "FBNet's), uniform (every candidate trained alike) or sandwich (uniform plus the "
            "costliest and cheapest paths each step) or distill (sandwich where the costliest path teaches the "
            "others its predictions).",
        ),
        budget: str = typer.Option(
            "penalty",
            "--budget",
            help="With --target-ms: penalty (λ·|E/T−1| in θ's loss) or "
            "projection (θ learns from cross-entropy alone and is tilted back onto the target "
            "after every step).",
        ),
        theta_estimator: str = typer.Option(
            "soft",
            "--theta-estimator",
            help="Hard mode's θ step: soft (every candidate, "
            "the accuracy signal) or straight-through (single path; θ then follows the "
            "cost alone — for comparison).",
        ),
        epochs: int = typer.Option(10, "--epochs", "-e", min=1, help="Search epochs (the paper: 90)."),
        warmup_epochs: Optional[int] = typer.Option(
            None, "--warmup-epochs", min=0, help="Weights-only epochs (default: 10% of --epochs, at least 1)."
        ),
        warmup_steps: Optional[int] = typer.Option(
            None,
            "--warmup-steps",
            min=0,
            help="Weights-only SGD steps, rounded "
            "up to whole epochs (instead of --warmup-epochs: the same training "
            "whatever --subset is; single-path super nets need ≥ 1,000).",
        ),
        batch_size: int = typer.Option(128, "--batch-size", "-b", min=1),
        w_split: float = typer.Option(0.8, "--w-split", help="Share of the training set for the weights; the rest trains θ."),
        w_lr: float = typer.Option(0.1, "--w-lr", help="SGD learning rate of the weights (cosine schedule)."),
        theta_lr: Optional[float] = typer.Option(
            None,
            "--theta-lr",
            help="Adam learning rate of θ (default: FBNet's 0.01, "
            "raised for short searches so θ can move 8 logits over its steps).",
        ),
        theta_decide: float = typer.Option(
            3.0,
            "--theta-decide",
            min=0.0,
            help="Weight of θ's entropy in its loss at "
            "the last θ step, ramped from 0 at the first: makes a short search commit "
            "to the candidates that lead (0: off).",
        ),
        tau0: float = typer.Option(5.0, "--tau0", help="Initial Gumbel-softmax temperature."),
        tau_end: float = typer.Option(0.5, "--tau-end", help="Temperature at the last step (step schedule)."),
        tau_schedule: str = typer.Option(
            "step",
            "--tau-schedule",
            help="step: τ0 → --tau-end every step, at any length; epoch: the paper's τ0·exp(−decay·epoch).",
        ),
        tau_decay: float = typer.Option(0.045, "--tau-decay", help="Epoch schedule: τ is multiplied by exp(-decay) every epoch."),
        loss: str = typer.Option(
            "fbnet", "--loss", help="fbnet: CE·α·(log LAT)^β; additive: CE + λ·LAT/ref; target: CE + λ·|LAT/target − 1|."
        ),
        alpha: float = typer.Option(0.2, "--alpha", help="α of the FBNet loss."),
        beta: float = typer.Option(0.6, "--beta", help="β of the FBNet loss."),
        lam: Optional[float] = typer.Option(
            None, "--lambda", help="λ of the additive (default 0.1) and target (default 5.0) losses."
        ),
        target: Optional[float] = typer.Option(
            None, "--target", help="Budget of the target loss, in the cost's unit (ms, MMACs, Mparams)."
        ),
        target_ms: Optional[float] = typer.Option(
            None,
            "--target-ms",
            help="Search for a network of this latency (ms): --cost latency --loss target --target X; ships found.json at X.",
        ),
        target_tolerance: float = typer.Option(
            0.02, "--target-tolerance", help="The shipped network's predicted cost is within target·(1 ± this)."
        ),
        target_start: bool = typer.Option(
            True,
            "--budget-start/--uniform-start",
            help="Target loss: θ's first step starts "
            "from the most even distribution whose expected cost is the target (networks "
            "of equal cost equally likely), or from uniform θ.",
        ),
        cost_scale: Optional[float] = typer.Option(
            None,
            "--cost-scale",
            help="FBNet loss: multiply the cost by this before "
            "the log (default: the uniform-θ cost maps to 20, FBNet's operating point).",
        ),
        subset: Optional[int] = typer.Option(None, "--subset", min=1, help="Use N random training images (quick runs)."),
        val_subset: Optional[int] = typer.Option(None, "--val-subset", min=1, help="Evaluate the super net on N test images."),
        image_size: Optional[int] = typer.Option(
            None, "--image-size", min=1, help="Image folders: resize to this side (default 224)."
        ),
        seed: int = typer.Option(0, "--seed"),
        torch_device: str = typer.Option("auto", "--torch-device", help="auto, cpu, cuda, cuda:1 …"),
        torch_threads: Optional[int] = typer.Option(None, "--torch-threads", min=1, help="torch.set_num_threads for the search."),
        workers: int = typer.Option(0, "--workers", min=0, help="DataLoader workers (image folders)."),
        samples: int = typer.Option(
            6, "--samples", min=0, help="After the search, sample K architectures plus the argmax (0: skip)."
        ),
        resume: bool = typer.Option(False, "--resume", help="Continue the search in --out from its last checkpoint."),
        progress: bool = typer.Option(True, "--progress/--no-progress", help="Progress bars."),
        nproc: int = typer.Option(
            1,
            "--nproc",
            min=1,
            help="Processes on this machine (torchrun: gloo on CPU, one GPU "
            "each with NCCL); --batch-size is the batch of the whole job. docs/distributed.md",
        ),
        amp: str = typer.Option("off", "--amp", help="off or bf16: forward passes under autocast with bfloat16 (GPUs)."),
        channels_last: bool = typer.Option(
            False, "--channels-last/--no-channels-last", help="NHWC weights and inputs (faster on GPUs)."
        ),
        sync_bn: bool = typer.Option(
            False,
            "--sync-bn/--no-sync-bn",
            help="Several processes: BatchNorm statistics of the whole batch (SyncBatchNorm, GPUs only).",
        ),
    ) -> None:
        """Run the FBNet differentiable architecture search of a space on a data set.

        Examples: `hwnas search --space fbnet-fmnist --data fashion-mnist --cost flops --epochs 10 --out runs/flops` ·
        `hwnas search --cost latency --server http://127.0.0.1:8000 --device host-cpu --runtime onnxruntime --threads 1
        --out runs/lat` (a device without a table: add --create-job --token TOKEN) · `hwnas search --out runs/lat --resume` ·
        `hwnas search --nproc 2 --batch-size 256 --out runs/ddp` (or `torchrun --nproc-per-node 8 -m search search ...`)
        """
        from search.distributed import init_from_env, is_main, main_then_broadcast, shutdown
        from search.app.launch import distributed_errors, launch_local, preflight
        from search.search_config import SearchConfig
        from search.app.plots import plot_search
        from search.app.progress import EpochProgress
        from search.searcher import run_search

        if target_ms is not None:
            if (cost and cost != "latency") or (loss not in ("fbnet", "target")) or target is not None:
                raise fail(
                    "--target-ms is --cost latency --loss target --target X: do not combine it with another "
                    "--cost, --loss or --target",
                    2,
                )
            cost, loss, target = "latency", "target", target_ms
        cost = cost or ("latency" if (lut or (server and device)) else "flops")
        if warmup_steps is not None and warmup_epochs is not None:
            raise fail("give --warmup-steps or --warmup-epochs, not both", 2)
        with user_errors(), distributed_errors():
            kw = dict(
                out=str(out),
                space=_space_arg(space),
                data=_data_arg(data),
                cost=cost,
                server=server,
                device=device,
                runtime=runtime,
                threads=threads,
                token=token,
                lut=str(lut) if lut else None,
                cache_dir=str(cache_dir) if cache_dir else None,
                mode=mode,
                epochs=epochs,
                warmup_epochs=warmup_epochs,
                warmup_steps=warmup_steps,
                batch_size=batch_size,
                w_split=w_split,
                w_lr=w_lr,
                theta_lr=theta_lr,
                theta_decide=theta_decide,
                tau0=tau0,
                tau_decay=tau_decay,
                tau_end=tau_end,
                tau_schedule=tau_schedule,
                theta_estimator=theta_estimator,
                weights=weights,
                paths=paths,
                budget=budget,
                loss=loss,
                alpha=alpha,
                beta=beta,
                lam=lam,
                target=target,
                target_tolerance=target_tolerance,
                target_start=target_start,
                cost_scale=cost_scale,
                subset=subset,
                val_subset=val_subset,
                image_size=image_size,
                seed=seed,
                torch_device=torch_device,
                num_threads=torch_threads,
                workers=workers,
                progress=progress,
                resume=resume,
                amp=amp,
                channels_last=channels_last,
                sync_bn=sync_bn,
            )
            if resume and (out / "config.json").is_file():
                kw = _resume_arguments(ctx, out, kw)
            config = SearchConfig.from_flat(**kw)
            if nproc > 1:  # the same command under torchrun (search/app/launch.py)
                preflight(config, nproc)
                raise typer.Exit(launch_local(ctx, nproc, torch_threads))
            init_from_env(config.run.torch_device)  # under torchrun: join the group; rank 0 alone fetches and writes
            cost_model = main_then_broadcast(lambda: _cost_model(config, create_job, wait_timeout))
            try:
                result = _run_with_jobs(
                    config,
                    cost_model,
                    create_job,
                    wait_timeout,
                    partial(run_search, progress=EpochProgress, on_finish=plot_search if config.run.plots else None),
                )
            except KeyboardInterrupt:
                _resume_hint(out)
                raise
            if not is_main():
                shutdown()
                return
            typer.echo(f"search done in {result.seconds:.0f} s: super-net val acc {result.val_acc:.4f}")
            typer.echo(f"argmax architecture ({result.argmax_cost:.4g} {result.unit} predicted): {' '.join(result.argmax)}")
            typer.echo(f"  {out / 'argmax.json'}")
            if result.found != result.argmax:
                typer.echo(f"found at the target ({result.found_cost:.4g} {result.unit} predicted): {' '.join(result.found)}")
                typer.echo(f"  {out / 'found.json'}")
            typer.echo(f"θ mean normalised entropy {result.theta_entropy:.2f} (1.0 uniform, 0 decided)")
            for warning in result.warnings:
                typer.echo(f"warning: {warning}", err=True)
            if samples > 0:
                from search.app.plots import plot_search
                from search.sample import sample_search

                ranked = sample_search(out, k=samples, seed=config.run.seed, val_subset=config.run.val_subset or 2000)
                plot_search(out)
                typer.echo(f"{len(ranked)} samples ranked by predicted {result.unit} in {out / 'samples'}")
            typer.echo(f"plots in {out / 'plots'}")
            shutdown()


# CLI parameter name -> SearchConfig field, where they differ.
_FIELD_OF = {"torch_threads": "num_threads", "lam": "lam"}


def _resume_hint(out: Path) -> None:
    """After Ctrl-C: say how to go on, so a user does not start an hours-long search again from scratch."""
    from search.rundir import RunDir

    if RunDir(out).checkpoint.is_file():
        typer.echo(
            f"the search is saved up to its last finished epoch; continue it with: hwnas search --out {out} --resume", err=True
        )
    else:
        typer.echo("no epoch had finished, so there is nothing to resume: run the same command again", err=True)


def _resume_arguments(ctx: typer.Context, out: Path, kw: dict) -> dict:
    """The saved config of ``out``, overridden only by options given on this command line (e.g. more --epochs)."""
    from search.rundir import RunDir

    from search.search_config import flat_options

    from search.resume import BEFORE_OPTION

    # A folder from before an option existed resumes with what it ran with, not with today's default.
    saved = {**BEFORE_OPTION, **flat_options(RunDir(out).read_json(RunDir(out).config))}
    merged = {**kw, **{k: v for k, v in saved.items() if k in kw}}
    for name in ctx.params:
        field = _FIELD_OF.get(name, name)
        source = ctx.get_parameter_source(name)
        # By name: typer ships its own copy of click, whose enum is not click's.
        if field in kw and source is not None and source.name in ("COMMANDLINE", "ENVIRONMENT"):
            merged[field] = kw[field]
    merged.update(out=kw["out"], resume=True, progress=kw["progress"], token=kw["token"])
    return merged


def _space_arg(space: str) -> str:
    # A space file is stored by absolute path so the run folder works from any directory.
    p = Path(space)
    return str(p.resolve()) if p.is_file() else space


def _data_arg(data: str) -> str:
    p = Path(data)
    return str(p.resolve()) if p.exists() else data


def _cost_model(config, create_job: bool | None, wait_timeout: float):
    """The latency table through the shared table helper (server, cache, or file); FLOPs/params need nothing."""
    if config.cost_source.kind != "latency":
        return None
    from search.app.commands._table import source_table
    from search.cost import LatencyCost

    return LatencyCost(source_table(config.cost_source, empty_if_unknown=bool(create_job), offers_job=True))


def _run_with_jobs(config, cost_model, create_job: bool | None, wait_timeout: float, run_search):
    """Run the search; when the table lacks operators, list them and (if asked) have an agent measure them first."""
    from search.lut import MissingEntriesError

    try:
        return run_search(config, cost_model=cost_model)
    except MissingEntriesError as exc:
        from search.distributed import is_main, main_then_broadcast

        if is_main():  # under torchrun every rank has the same table: rank 0 alone reports, asks and runs the job
            from search.app.commands._table import job_intent, missing_header

            intent = job_intent(create_job, config.cost_source.from_server, bool(cost_model.table.imported_from))
            typer.echo(
                missing_header(
                    len(exc.keys), f"of the space missing from the latency table{' of ' + exc.table if exc.table else ''}", intent
                ),
                err=True,
            )
            for key in exc.keys[:50]:
                typer.echo(f"  {key}", err=True)
            if len(exc.keys) > 50:
                typer.echo(f"  … and {len(exc.keys) - 50} more (`hwnas lut keys --space {config.space}` lists all)", err=True)
        from search.app.commands._table import offer_job

        source, missing = config.cost_source, exc.keys
        # Rank 0 alone asks and runs the job; every rank learns whether it ran.
        if not main_then_broadcast(lambda: offer_job(source, cost_model.table, missing, create_job, wait_timeout)):
            raise typer.Exit(1) from None
        return run_search(config, cost_model=main_then_broadcast(lambda: _cost_model(config, False, wait_timeout)))


__all__ = ["register", "fail"]
