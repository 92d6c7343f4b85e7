"""`hwnas search`: the FBNet differentiable architecture search."""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Optional

import typer

from search.app.commands import _options as opts
from search.app.commands._config_options import config_option
from search.app.commands._errors import fail, user_errors
from search.search_config import Objective, RunSettings, Schedule, SearchConfig


def register(app: typer.Typer) -> None:
    @app.command("search")
    def search(
        ctx: typer.Context,
        out: Path = typer.Option(..., "--out", "-o", help="Output folder: config, checkpoint, theta.json, samples, plots."),
        config_file: Optional[Path] = typer.Option(
            None,
            "--config",
            help="Start from a search's config.json (any run folder's); the options given on this command line override it.",
        ),
        space: str = config_option(SearchConfig, "space"),
        data: str = config_option(RunSettings, "data"),
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
        mode: str = config_option(Schedule, "mode"),
        weights: str = config_option(Schedule, "weights"),
        paths: str = config_option(Schedule, "paths"),
        budget: str = config_option(Objective, "budget"),
        theta_estimator: str = config_option(Schedule, "theta_estimator"),
        epochs: int = config_option(Schedule, "epochs"),
        warmup_epochs: Optional[int] = config_option(Schedule, "warmup_epochs"),
        warmup_steps: Optional[int] = config_option(Schedule, "warmup_steps"),
        batch_size: int = config_option(Schedule, "batch_size"),
        w_split: float = config_option(Schedule, "w_split"),
        w_lr: float = config_option(Schedule, "w_lr"),
        theta_lr: Optional[float] = config_option(Schedule, "theta_lr"),
        theta_decide: float = config_option(Schedule, "theta_decide"),
        tau0: float = config_option(Schedule, "tau0"),
        tau_end: float = config_option(Schedule, "tau_end"),
        tau_schedule: str = config_option(Schedule, "tau_schedule"),
        tau_decay: float = config_option(Schedule, "tau_decay"),
        loss: str = config_option(Objective, "loss"),
        alpha: float = config_option(Objective, "alpha"),
        beta: float = config_option(Objective, "beta"),
        lam: Optional[float] = config_option(Objective, "lam"),
        target: Optional[float] = config_option(Objective, "target"),
        target_ms: Optional[float] = typer.Option(
            None,
            "--target-ms",
            help="Search for a network of this latency (ms): --cost latency --loss target --target X; ships found.json at X.",
        ),
        target_tolerance: float = config_option(Objective, "target_tolerance"),
        target_start: bool = config_option(Objective, "target_start"),
        cost_scale: Optional[float] = config_option(Objective, "cost_scale"),
        subset: Optional[int] = config_option(RunSettings, "subset"),
        val_subset: Optional[int] = config_option(
            RunSettings, "val_subset", help="Evaluate the super net on N test images (default: all)."
        ),
        image_size: Optional[int] = config_option(RunSettings, "image_size"),
        seed: int = config_option(RunSettings, "seed"),
        torch_device: str = config_option(RunSettings, "torch_device"),
        torch_threads: Optional[int] = config_option(RunSettings, "num_threads"),
        workers: int = config_option(RunSettings, "workers"),
        samples: int = typer.Option(
            6, "--samples", min=0, help="After the search, sample K architectures plus the argmax (0: skip)."
        ),
        resume: bool = config_option(RunSettings, "resume"),
        progress: bool = config_option(RunSettings, "progress"),
        nproc: int = typer.Option(
            1,
            "--nproc",
            min=1,
            help="Processes on this machine (torchrun: gloo on CPU, one GPU "
            "each with NCCL); --batch-size is the batch of the whole job. docs/distributed.md",
        ),
        amp: str = config_option(RunSettings, "amp"),
        channels_last: bool = config_option(RunSettings, "channels_last"),
        sync_bn: bool = config_option(RunSettings, "sync_bn"),
    ) -> None:
        """Run the FBNet differentiable architecture search of a space on a data set.

        Examples: `hwnas search --space fbnet-fmnist --data fashion-mnist --cost flops --epochs 10 --out runs/flops` ·
        `hwnas search --cost latency --server http://127.0.0.1:8000 --device host-cpu --runtime onnxruntime --threads 1
        --out runs/lat` (a device without a table: add --create-job --token TOKEN) · `hwnas search --out runs/lat --resume` ·
        `hwnas search --nproc 2 --batch-size 256 --out runs/ddp` (or `torchrun --nproc-per-node 8 -m search search ...`)
        """
        from search.distributed import init_from_env, is_main, main_then_broadcast, shutdown
        from search.app.launch import distributed_errors, launch_local, preflight
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
        if config_file is not None and resume:
            raise fail("give --config (a new search from a saved config) or --resume (go on in --out), not both", 2)
        given = _given_options(ctx) | ({"cost", "loss", "target"} if target_ms is not None else set())
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
                kw = _saved_arguments(_read_config(out / "config.json"), kw, given)
            elif config_file is not None:
                kw = _saved_arguments(_read_config(config_file), kw, given)
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


def _given_options(ctx: typer.Context) -> set[str]:
    """The config fields set on this command line (or from the environment), as opposed to left at their defaults."""
    given = set()
    for name in ctx.params:
        source = ctx.get_parameter_source(name)
        # By name: typer ships its own copy of click, whose enum is not click's.
        if source is not None and source.name in ("COMMANDLINE", "ENVIRONMENT"):
            given.add(_FIELD_OF.get(name, name))
    return given


def _read_config(path: Path) -> dict:
    """A saved search config (``config.json``, or a run folder holding one), or a clear error."""
    import json

    if path.is_dir():
        path = path / "config.json"
    try:
        doc = json.loads(path.read_text())
    except OSError as exc:
        raise fail(f"cannot read the config {path}: {exc.strerror or exc}", 2) from None
    except json.JSONDecodeError as exc:
        raise fail(f"{path} is not JSON ({exc.msg}, line {exc.lineno}): give a search's config.json", 2) from None
    if not isinstance(doc, dict):
        raise fail(f"{path} holds a JSON {type(doc).__name__}, not a search config", 2)
    return doc


def _saved_arguments(saved_doc: dict, kw: dict, given: set[str]) -> dict:
    """A saved config's options, overridden only by those ``given`` on this command line (e.g. more --epochs)."""
    from search.resume import BEFORE_OPTION
    from search.search_config import flat_options

    # A config from before an option existed means what it ran with, not today's default.
    saved = {**BEFORE_OPTION, **flat_options(saved_doc)}
    merged = {**kw, **{k: v for k, v in saved.items() if k in kw}}
    merged.update({k: kw[k] for k in given if k in kw})
    # Where this run writes and how it talks to the user are this command's, never the saved run's.
    merged.update(out=kw["out"], resume=kw["resume"], progress=kw["progress"], token=kw["token"])
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
