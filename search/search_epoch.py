"""One epoch of the search: the weights' pass, then θ's after the warm-up, then the super net's evaluation.

Kept apart from the run folder (no file I/O here) so that every rank of a distributed search runs the
same code and only the loop in ``search.searcher`` writes. Every epoch re-seeds torch from
``(seed, epoch)``, so a resumed run draws the same batches and Gumbel noise as an uninterrupted one.
"""

from __future__ import annotations

import contextlib
import math
import time
from typing import Any

import torch
from torch import nn

from search.data import iterate_batches, num_batches
from search.evaluate import evaluate_model as evaluate
from search.evaluate import recalibrated_bn
from search.hooks import Progress
from search.loss import search_loss
from search.mixed import normalised_entropy
from search.search_setup import SearchSetup


def _epoch_seed(seed: int, epoch: int, phase: int = 0) -> int:
    return (seed * 1_000_003 + epoch * 101 + phase) % (2**63 - 1)


def entropy_term(model: Any) -> torch.Tensor:
    """Mean over layers of the normalised entropy of ``softmax(θ_l)``, differentiable in θ."""
    terms = [
        -(torch.softmax(t, -1) * torch.log_softmax(t, -1)).sum() / math.log(t.numel())
        for t in model.arch_parameters()
        if t.numel() > 1
    ]
    return torch.stack(terms).mean() if terms else torch.zeros(())


def _sandwich_step(setup: SearchSetup, x: torch.Tensor, y: torch.Tensor, optimizer: torch.optim.Optimizer) -> dict[str, float]:
    """One weight step on the costliest path, the cheapest and a uniformly random one, gradients averaged.

    With ``--paths distill`` only the costliest path learns the labels; the other two learn its predictions
    (in-place distillation): soft targets shared by every child pull their rankings towards the one network
    trained most, instead of each child fitting label noise on its own few updates.
    """
    model = setup.model
    distill = setup.config.schedule.paths == "distill"
    teacher: torch.Tensor | None = None
    costliest = [int(c.argmax()) for c in setup.cost_tensors]
    cheapest = [int(c.argmin()) for c in setup.cost_tensors]
    optimizer.zero_grad(set_to_none=True)
    total = 0.0
    for path in (costliest, cheapest, None):
        if path is None:
            logits = model(x)  # uniform path (SuperNet.uniform_paths)
        else:
            with model.fixed_choices([model.candidates(l)[i] for l, i in enumerate(path)]):
                logits = model(x)
        ce = nn.functional.cross_entropy(logits, y)
        if teacher is None:
            loss = ce
            if distill:
                teacher = torch.softmax(logits.detach(), 1)
        else:
            loss = nn.functional.kl_div(torch.log_softmax(logits, 1), teacher, reduction="batchmean")
        (loss / 3).backward()
        total += float(ce.detach()) / 3
    optimizer.step()
    lat = model.expected_cost(setup.cost_tensors, setup.costs.fixed)
    correct = (logits.detach().argmax(1) == y).sum()
    return {
        "loss": total,
        "ce": float(ce.detach()),
        "cost": float(lat.detach()),
        "correct": float(correct),
        "n": float(y.shape[0]),
    }


def train_step(
    setup: SearchSetup, x: torch.Tensor, y: torch.Tensor, optimizer: torch.optim.Optimizer, decide: float = 0.0
) -> dict[str, float]:
    """One step of ``optimizer``; ``decide`` > 0 (θ steps only) adds that times θ's entropy to the loss."""
    model = setup.model
    x, y = x.to(setup.device, non_blocking=True), y.to(setup.device, non_blocking=True)
    theta_step = optimizer is setup.theta_optimizer
    objective = setup.config.objective
    if not theta_step and setup.config.schedule.paths in ("sandwich", "distill"):
        return _sandwich_step(setup, x, y, optimizer)
    logits = setup.replica.forward(x, optimizer) if setup.replica is not None else model(x)
    ce = nn.functional.cross_entropy(logits, y)
    lat = model.expected_cost(setup.cost_tensors, setup.costs.fixed)
    # The target loss holds the cost of the distribution the search ships from (softmax θ), not of this step's
    # relaxed sample: at a high τ the sample is nearly uniform whatever θ is, and holding *its* cost at a low
    # budget drove every layer to its cheapest candidates before the accuracy signal could say which layers
    # deserve the cost (measured: θ's rank correlation with trained accuracy at equal latency fell to −0.6).
    held = (
        model.expected_cost(setup.cost_tensors, setup.costs.fixed, masks=[torch.softmax(t, -1) for t in model.arch_parameters()])
        if objective.has_target
        else lat
    )
    projection = objective.has_target and objective.budget == "projection"
    if projection:
        loss = ce  # the budget is held by projecting θ after the step, not by a term here
    else:
        loss = search_loss(ce, held, objective.loss_config(), cost_scale=setup.cost_scale, reference=setup.reference)
        if decide > 0:
            loss = loss + decide * entropy_term(model)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if setup.replica is not None:
        setup.replica.reduce_gradients(optimizer)  # θ: mean over the ranks (DDP does the weights)
    optimizer.step()
    if theta_step and projection:
        project_theta(setup)
    correct = (logits.detach().argmax(1) == y).sum()
    return {
        "loss": float(loss.detach()),
        "ce": float(ce.detach()),
        "cost": float(lat.detach()),
        "correct": float(correct),
        "n": float(y.shape[0]),
    }


def _phase(
    setup: SearchSetup,
    index: torch.Tensor,
    optimizer: torch.optim.Optimizer,
    frozen: list[nn.Parameter],
    generator: torch.Generator,
    progress: Progress | None,
    label: str,
    when: tuple[float, float] = (0.0, 1.0),
    decide: tuple[float, float] = (0.0, 0.0),
) -> dict[str, float]:
    """One pass over ``index`` stepping ``optimizer``'s parameters (``frozen`` get no gradient: no backward for them).

    ``when``: the span of the search (in epochs, fractional) this pass covers; τ follows the schedule across it.
    ``decide``: the decision term's weight at the pass's first and last step (θ passes only).
    """
    for p in frozen:
        p.requires_grad_(False)
    sums = {"loss": 0.0, "ce": 0.0, "cost": 0.0, "correct": 0.0, "n": 0.0}
    batches = 0
    batch_size, shuffle = setup.config.schedule.batch_size, True
    if setup.replica is not None:  # this rank's shard of the split, already shuffled, and its share of the batch
        index, batch_size = setup.replica.shard(index, generator)
        shuffle = False
    try:
        setup.model.train()
        total = num_batches(len(index), batch_size, drop_last=True)
        if progress:
            progress.start(label, total)
        for x, y in iterate_batches(
            setup.train_set,
            index,
            batch_size,
            shuffle=shuffle,
            generator=generator,
            workers=setup.config.run.workers,
            drop_last=True,
        ):
            share = batches / max(total - 1, 1)
            setup.model.temperature = setup.config.schedule.tau(when[0] + (when[1] - when[0]) * batches / max(total, 1))
            r = train_step(setup, x, y, optimizer, decide[0] + (decide[1] - decide[0]) * share)
            batches += 1
            for k in sums:
                sums[k] += r[k] if k in ("correct", "n") else r[k] * r["n"]
            if progress:
                progress.advance(loss=r["loss"], acc=sums["correct"] / sums["n"], cost=r["cost"], tau=setup.model.temperature)
    finally:
        for p in frozen:
            p.requires_grad_(True)
    if setup.replica is not None:
        sums = setup.replica.sum_over_ranks(sums)  # the epoch log covers the whole job's images
    n = max(sums["n"], 1.0)
    return {
        "loss": sums["loss"] / n,
        "ce": sums["ce"] / n,
        "acc": sums["correct"] / n,
        "cost": sums["cost"] / n,
        "batches": batches,
    }


def _evaluation_path(setup: SearchSetup) -> contextlib.AbstractContextManager:
    """Hard mode evaluates the argmax architecture, with BatchNorm statistics recomputed for that path.

    Its running statistics mix all the random paths it trained (an argmax child evaluated with them
    is badly off); soft mode evaluates the noise-free mixture its statistics were gathered under.
    """
    sched, run, model = setup.config.schedule, setup.config.run, setup.model
    if sched.mode != "hard" or run.bn_calibration <= 0:
        return contextlib.nullcontext()
    stack = contextlib.ExitStack()
    stack.enter_context(model.fixed_choices(model.argmax_choices()))
    stack.enter_context(
        recalibrated_bn(model, setup.train_set, setup.w_index[: run.bn_calibration], sched.batch_size, setup.device, run.workers)
    )
    return stack


def project_theta(setup: SearchSetup) -> None:
    """Tilt θ back onto the target: the expected cost of softmax(θ) equals it again (search.budget.project_logits)."""
    from search.budget import project_logits

    target = setup.config.objective.target
    assert target is not None  # projection runs only for an objective with a target (has_target)
    theta = setup.model.arch_parameters()
    logits = project_logits(
        [t.detach().cpu().tolist() for t in theta],
        [c.tolist() for c in setup.cost_tensors],
        setup.costs.fixed,
        target,
    )
    with torch.no_grad():
        for t, v in zip(theta, logits):
            t.copy_(torch.as_tensor(v, dtype=t.dtype, device=t.device))


def start_at_budget(setup: SearchSetup) -> None:
    """Set θ to the most even distribution whose expected cost is the target (``search.budget.budget_logits``).

    At the first θ step only: the weights warmed up under uniform θ (every candidate trained alike), and a
    resumed search past this point keeps its θ from the checkpoint.
    """
    from search.budget import budget_logits

    target = setup.config.objective.target
    assert target is not None
    logits = budget_logits([c.tolist() for c in setup.cost_tensors], setup.costs.fixed, target)
    with torch.no_grad():
        for t, v in zip(setup.model.arch_parameters(), logits):
            t.copy_(torch.as_tensor(v, dtype=t.dtype, device=t.device))


def train_epoch(setup: SearchSetup, epoch: int, progress: Progress | None = None) -> dict[str, Any]:
    """Run epoch ``epoch`` (0-based): weights, then θ unless warming up, then evaluation; returns its log entry."""
    cfg, run, model = setup.config.schedule, setup.config.run, setup.model
    t0 = time.perf_counter()
    model.temperature = cfg.tau(epoch)
    torch.manual_seed(_epoch_seed(run.seed, epoch))  # Gumbel noise of this epoch (the same on every rank)
    if setup.replica is not None:
        setup.replica.set_epoch(epoch)
    lr = cfg.w_lr_at(epoch)
    for group in setup.w_optimizer.param_groups:
        group["lr"] = lr
    searching = epoch >= cfg.num_warmup_epochs
    # τ runs through the epoch in step order: the weights' pass first, then θ's, each over its share of images.
    w_share = len(setup.w_index) / (len(setup.w_index) + (len(setup.theta_index) if searching else 0))
    w = _phase(
        setup,
        setup.w_index,
        setup.w_optimizer,
        model.arch_parameters(),
        torch.Generator().manual_seed(_epoch_seed(run.seed, epoch, 1)),
        progress,
        f"epoch {epoch + 1} weights",
        when=(epoch, epoch + w_share),
    )
    th: dict[str, Any] = {}
    objective = setup.config.objective
    if searching and epoch == cfg.num_warmup_epochs and objective.has_target and objective.target_start:
        start_at_budget(setup)
    if searching:
        # The decision term ramps over the θ epochs: from 0 at the first θ step to theta_decide at the last.
        span = max(cfg.epochs - cfg.num_warmup_epochs, 1)
        done = epoch - cfg.num_warmup_epochs
        decide = (cfg.decide_weight(done / span), cfg.decide_weight((done + 1) / span))
        with model.theta_pass(cfg.theta_estimator):  # hard mode: θ sees every candidate (search/mixed.py)
            th = _phase(
                setup,
                setup.theta_index,
                setup.theta_optimizer,
                model.weight_parameters(),
                torch.Generator().manual_seed(_epoch_seed(run.seed, epoch, 2)),
                progress,
                f"epoch {epoch + 1} θ",
                when=(epoch + w_share, epoch + 1),
                decide=decide,
            )
    with _evaluation_path(setup):
        if setup.replica is not None:  # split over the ranks, after checking θ and taking rank 0's BN statistics
            val_acc = setup.replica.evaluate(model, setup.val_set, setup.val_index, cfg.batch_size, setup.device, run.workers)
        else:
            val_acc = evaluate(model, setup.val_set, setup.val_index, cfg.batch_size, setup.device, run.workers)
    probs = model.probabilities()
    argmax = model.argmax_choices()
    return {
        "epoch": epoch + 1,
        "phase": "search" if searching else "warmup",
        "tau": model.temperature,
        "lr": lr,
        "train_loss": w["loss"],
        "train_ce": w["ce"],
        "train_acc": w["acc"],
        "theta_loss": th.get("loss"),
        "theta_acc": th.get("acc"),
        "sampled_cost": th.get("cost", w["cost"]),
        "expected_cost": model.distribution_cost(setup.cost_tensors, setup.costs.fixed),
        "val_acc": val_acc,
        "argmax": argmax,
        "argmax_cost": setup.costs.arch_cost(setup.space, argmax),
        "probabilities": [[round(float(v), 6) for v in p] for p in probs],
        "theta_entropy": normalised_entropy([p.tolist() for p in probs]),
        "theta_lr": setup.theta_lr,
        "theta": [[float(v) for v in t.detach().cpu()] for t in model.arch_parameters()],
        "seconds": time.perf_counter() - t0,
    }
