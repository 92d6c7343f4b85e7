"""The DNAS training loop (FBNet): weights on 80% of the training set, θ on the other 20%.

Per epoch: the weights take a pass over their split (SGD, cosine learning rate), then — after the
warm-up epochs — θ takes a pass over its split (Adam); then the super net is evaluated, the
epoch is logged to ``DIR/theta.json`` and a checkpoint is written.

Schedules that work at any length (docs/search.md, "Schedules"): the warm-up is a share of the
epochs but at least one (the weights must be past chance before θ reads their loss); τ is
annealed every step from ``tau0`` to ``tau_end``, reached at the last step, whatever the number of
epochs (``tau_schedule="epoch"`` is the paper's ``τ0·e^(−0.045·epoch)``); θ's Adam step, when not
given, is sized by the number of θ steps the search will take. A θ split smaller than one batch
is an error, and a search whose θ stayed near uniform says so instead of ending quietly.

The pieces are separate so that a distributed launcher can wrap them: ``search.search_setup.build_setup``
(data, cost table, model, optimisers), ``search.search_epoch.train_epoch`` (one epoch, no file I/O),
``search.resume`` (checkpoints and the resume check), ``search.search_result`` (what the search ships)
and, here, ``run_search`` (the loop, with every write through ``RunDir``, which only rank 0 performs).
``cost_table`` is importable from here as well: most scripts that price a space import it from this module.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from search.arch import make_architecture
from search.hooks import ProgressFactory, RunFinished, no_progress
from search.resume import checkpoint_state, restore_checkpoint
from search.rundir import RunDir
from search.search_config import SearchConfig, SearchConfigError
from search.search_epoch import train_epoch
from search.search_result import SearchResult, argmax_architecture, found_network, theta_document
from search.search_setup import SearchSetup, build_setup
from search.search_setup import cost_table as cost_table  # re-exported: the name most callers import from here


EpochCallback = Callable[[int, dict[str, Any]], None]


def open_rundir(config: SearchConfig) -> RunDir:
    """The run folder of a new search, or of one to resume (checked either way); joins torchrun's group first."""
    run = config.run
    if run.num_threads:
        torch.set_num_threads(run.num_threads)
    from search.distributed import init_from_env

    init_from_env(run.torch_device)  # before RunDir, which asks whether this process is rank 0 (the writer)
    rundir = RunDir(config.out)
    if rundir.checkpoint.exists() and not run.resume:
        raise SearchConfigError(f"{rundir.root} already holds a search: pass --resume to continue it, or another --out")
    if run.resume and not rundir.checkpoint.exists():
        raise SearchConfigError(f"--resume: no checkpoint in {rundir.root}")
    return rundir


def run_epochs(
    setup: SearchSetup,
    rundir: RunDir,
    start: int,
    history: list[dict[str, Any]],
    on_epoch_end: EpochCallback | None = None,
    progress: ProgressFactory = no_progress,
) -> float:
    """Epochs ``start`` to ``config.epochs``, each checkpointed and logged to ``theta.json``; appends to ``history``.

    Returns the ``time.perf_counter()`` at which the search would have started had it run in one
    go (resumed epochs count their recorded seconds).
    """
    config = setup.config
    t_start = time.perf_counter() - sum(e["seconds"] for e in history)
    with progress(enabled=config.run.progress and rundir.main, unit=setup.costs.unit) as bars:
        for epoch in range(start, config.schedule.epochs):
            entry = train_epoch(setup, epoch, bars)
            history.append(entry)
            rundir.save_checkpoint(checkpoint_state(setup, epoch + 1, history))
            rundir.write_json(rundir.theta, theta_document(setup, history))
            bars.epoch_done(entry)
            if on_epoch_end is not None:
                on_epoch_end(epoch, entry)
    return t_start


def run_search(
    config: SearchConfig,
    cost_model=None,
    on_epoch_end: EpochCallback | None = None,
    progress: ProgressFactory = no_progress,
    on_finish: RunFinished | None = None,
) -> SearchResult:
    """Run (or resume) a search into ``config.out``; ``on_epoch_end(epoch, entry)`` runs after each checkpoint.

    ``progress`` shows the epochs (``search.hooks``); ``on_finish(folder)`` runs on rank 0 once the results are
    written (the app draws its plots there).
    """
    rundir = open_rundir(config)
    setup = build_setup(config, cost_model)
    start = 0
    history: list[dict[str, Any]] = []
    if config.run.resume:
        start, history = restore_checkpoint(setup, rundir.load_checkpoint(map_location=setup.device))
    rundir.mkdir()
    rundir.write_json(rundir.config, config.to_dict())
    rundir.write_json(rundir.root / "space.json", setup.space.to_dict())
    rundir.write_json(
        rundir.costs,
        {
            **setup.costs.to_dict(),
            "candidates": [l.candidates for l in setup.space.layers()],
            "cost_scale": setup.cost_scale,
            "reference": setup.reference,
        },
    )
    t_start = run_epochs(setup, rundir, start, history, on_epoch_end, progress)
    last = history[-1]
    arch = argmax_architecture(setup, last["argmax"], last["argmax_cost"])
    found, found_cost, warnings = found_network(setup, history)
    result = SearchResult(
        out=rundir.root,
        epochs=config.schedule.epochs,
        history=history,
        argmax=last["argmax"],
        argmax_cost=last["argmax_cost"],
        unit=setup.costs.unit,
        val_acc=last["val_acc"],
        seconds=time.perf_counter() - t_start,
        architecture=arch,
        found=found,
        found_cost=found_cost,
        theta_entropy=last["theta_entropy"],
        warnings=warnings,
    )
    if rundir.main:
        arch.save(rundir.argmax)
        source = (
            "hwnas search (most likely under θ within the target)"
            if config.objective.loss == "target"
            else "hwnas search (argmax of θ)"
        )
        make_architecture(
            config.space,
            setup.space,
            found,
            name="found",
            meta={
                "predicted": {setup.costs.name: found_cost, "unit": setup.costs.unit},
                "target": config.objective.target if config.objective.loss == "target" else None,
                "source": source,
            },
        ).save(rundir.found)
        rundir.write_json(rundir.result, result.summary())
        if on_finish is not None:
            on_finish(rundir.root)
    return result


def load_history(out: str | Path) -> dict[str, Any]:
    """``DIR/theta.json`` of a search folder."""
    return json.loads(RunDir(out).theta.read_text())
