"""After the search: sample architectures from the learned distribution softmax(θ), plus the argmax one.

Each sample becomes an architecture document (``DIR/samples/NN_<id>.json``) whose ``meta`` holds
its predicted cost under the search's cost model, its MACs and parameters (and latency when the
search used a latency table), its log-probability under θ, and its accuracy inside the trained
super net (weights shared, no retraining: a cheap proxy that ranks candidates). The list is
ranked by predicted cost and also written as ``DIR/samples/index.json``.
"""

from __future__ import annotations

import dataclasses
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from hwnas.errors import HwnasError
from search.hooks import ProgressFactory, no_progress
from search.rundir import RunDir


class SampleError(HwnasError, ValueError):
    """A search folder that cannot be sampled (missing files, no epoch finished)."""


@dataclass
class Sample:
    """One sampled architecture and what is predicted and measured about it."""

    choices: list[str]
    log_prob: float
    is_argmax: bool
    predicted: dict[str, float | None] = field(default_factory=dict)
    supernet_acc: float | None = None
    trained_acc: float | None = None
    path: Path | None = None
    id: str = ""
    classes: int = 0  # of the space: what chance level is for trained_acc
    shortlisted: bool = True  # trained (when training is asked for); False: left out by --shortlist


def draw(probabilities: list[list[float]], candidates: list[list[str]], k: int, seed: int = 0) -> list[list[str]]:
    """``k`` architectures, each layer drawn independently from its distribution (repeats kept)."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(k):
        arch = []
        for p, names in zip(probabilities, candidates):
            i = int(torch.multinomial(torch.tensor(p, dtype=torch.float64), 1, generator=g))
            arch.append(names[i])
        out.append(arch)
    return out


def log_probability(choices: list[str], probabilities: list[list[float]], candidates: list[list[str]]) -> float:
    """log P(choices) under the per-layer distributions."""
    return float(sum(math.log(max(p[names.index(c)], 1e-30)) for c, p, names in zip(choices, probabilities, candidates)))


def _load_run(out: Path) -> dict[str, Any]:
    rd = RunDir(out)
    for path in (rd.config, rd.theta, rd.costs, rd.root / "space.json"):
        if not path.is_file():
            raise SampleError(f"{out} is not a finished search folder: {path.name} is missing (run `hwnas search --out {out}`)")
    theta = rd.read_json(rd.theta)
    if not theta.get("epochs"):
        raise SampleError(f"{out}: no epoch of the search has finished yet")
    from search.search_config import flat_options

    # Flat option names, whichever layout the folder's config.json has (it was split into parts).
    return {
        "config": flat_options(rd.read_json(rd.config)),
        "theta": theta,
        "costs": rd.read_json(rd.costs),
        "space": rd.read_json(rd.root / "space.json"),
        "rundir": rd,
    }


def _supernet_accuracy(run: dict[str, Any], samples: list[Sample], val_subset: int | None, batch_size: int) -> None:
    from search.data import NoEvaluationSplit, dataset_len, load_dataset
    from search.evaluate import evaluate_model as evaluate
    from search.evaluate import recalibrated_bn
    from search.space import get_space
    from search.supernet import SuperNet

    rd: RunDir = run["rundir"]
    if not rd.checkpoint.is_file():
        return
    cfg = run["config"]
    space = get_space(run["space"])
    model = SuperNet(space, mode=cfg["mode"], weights=cfg.get("weights", "separate"))
    model.load_state_dict(rd.load_checkpoint()["model"])
    seed = cfg.get("seed", 0)
    try:
        val = load_dataset(cfg["data"], "test", subset=val_subset, image_size=cfg.get("image_size"), seed=seed)
    except NoEvaluationSplit:
        val = load_dataset(cfg["data"], "train", subset=val_subset, image_size=cfg.get("image_size"), seed=seed + 1)
    calib = load_dataset(cfg["data"], "train", subset=2000, image_size=cfg.get("image_size"), seed=seed)
    index, calib_index = torch.arange(dataset_len(val)), torch.arange(dataset_len(calib))
    device = torch.device("cpu")
    for s in samples:
        # BN statistics recomputed for this path: the super net's mix every path it trained.
        with model.fixed_choices(s.choices), recalibrated_bn(model, calib, calib_index, batch_size, device):
            s.supernet_acc = evaluate(model, val, index, batch_size, device)


def supernet_accuracies(
    out: str | Path, architectures: list[list[str]], val_subset: int | None = 2000, batch_size: int = 256
) -> list[float | None]:
    """Each architecture's accuracy inside a finished search's super net (shared weights, BN recomputed per path).

    ``None`` for all of them when the folder has no checkpoint (only its small JSON files were kept).
    """
    run = _load_run(Path(out))
    samples = [Sample(list(choices), 0.0, False) for choices in architectures]
    _supernet_accuracy(run, samples, val_subset, batch_size)
    return [s.supernet_acc for s in samples]


def sample_search(
    out: str | Path,
    k: int = 6,
    seed: int = 0,
    evaluate: bool = True,
    val_subset: int | None = 2000,
    batch_size: int = 256,
    train_epochs: int = 0,
    train_subset: int | None = None,
    progress: ProgressFactory = no_progress,
    train_config: Any = None,
    at_target: bool = False,
    holdout: int | None = None,
    shortlist: int | None = None,
) -> list[Sample]:
    """Sample ``k`` architectures plus the argmax from a search folder; write and return them ranked by predicted cost.

    ``train_config`` (a ``search.train.TrainConfig``): how to train each sample when ``train_epochs`` > 0
    (its ``epochs`` is replaced by ``train_epochs``); default: the search's data, all test images. ``progress`` shows
    their training (``search.hooks``).

    ``at_target`` (a search with a target): the found network and ``k`` draws from softmax(θ) whose predicted
    cost lies in the target's window ``target·(1 ± target_tolerance)``, instead of the argmax and free draws.
    Trained (``train_epochs`` > 0), each is evaluated on ``holdout`` (default 1000) images held out of its
    training images, not on the test split, and the best is written to ``DIR/picked.json``: the network to ship
    after training, chosen without looking at the images it will be reported on.

    ``shortlist`` (with ``train_epochs``): train only the found network (with ``at_target``) and the
    ``shortlist`` samples the super net rates most accurate (its shared weights, BN recomputed per path), so that
    many candidates cost the training of few. Worth it only where the super net ranks networks: measure that
    first (benchmarks/supernet_rank.py).
    """
    from search.arch import Architecture
    from search.cost import predict
    from search.cost import CostTable
    from search.arch import make_architecture
    from search.space import get_space

    out = Path(out)
    holdout = holdout or (DEFAULT_HOLDOUT if at_target else None)
    if shortlist is not None and (shortlist < 1 or train_epochs < 1 or not evaluate):
        raise SampleError(
            "--shortlist N (N ≥ 1) picks which samples to train by their super-net accuracy: it needs "
            "--train-epochs and the super-net evaluation (not --no-eval)"
        )
    run = _load_run(out)
    last = run["theta"]["epochs"][-1]
    probs, cands = last["probabilities"], run["theta"]["candidates"]
    costs = CostTable.from_dict(run["costs"])
    space = get_space(run["space"])
    cfg = run["config"]

    if at_target:
        unique = _target_draws(run, probs, cands, costs, space, k, seed)
    else:
        # Argmax of θ itself: the rounded probabilities could tie.
        argmax = [names[max(range(len(t)), key=t.__getitem__)] for t, names in zip(last["theta"], cands)]
        unique = {tuple(argmax): True}
        for drawn in draw(probs, cands, k, seed):
            unique.setdefault(tuple(drawn), False)
    samples = [Sample(list(c), log_probability(list(c), probs, cands), is_argmax) for c, is_argmax in unique.items()]
    for s in samples:
        arch: Architecture = make_architecture(cfg["space"], space, s.choices)
        pred = predict(arch)
        s.predicted = {
            costs.name: costs.arch_cost(space, s.choices),
            "unit": costs.unit,  # type: ignore[dict-item]
            "mmacs": pred.macs / 1e6,
            "mparams": pred.params / 1e6,
            "latency_ms": costs.arch_cost(space, s.choices) if costs.name == "latency" else None,
        }
        s.id = arch.id
    samples.sort(key=lambda s: (s.predicted[costs.name], -s.log_prob))
    if evaluate:
        _supernet_accuracy(run, samples, val_subset, batch_size)
    if shortlist is not None:
        _mark_shortlist(run, samples, shortlist, found=_found_choices(run) if at_target else None)
    if train_epochs > 0:
        from search.train import TrainConfig, train_arch

        for s in (s for s in samples if s.shortlisted):
            arch = make_architecture(cfg["space"], space, s.choices)
            if train_config is not None:
                tc = dataclasses.replace(train_config, epochs=train_epochs)
            else:
                tc = TrainConfig(
                    data=cfg["data"], epochs=train_epochs, subset=train_subset, seed=seed, image_size=cfg.get("image_size")
                )
            if holdout:
                tc = dataclasses.replace(tc, holdout=holdout)
            s.trained_acc = train_arch(arch, tc, out_dir=run["rundir"].samples, stem=f"{s.id}", progress=progress).accuracy
            s.classes = space.classes

    rd: RunDir = run["rundir"]
    rd.mkdir(rd.samples)
    if rd.main:
        # A previous `hwnas sample` left its ranked documents: drop them so the folder holds exactly this index
        # (otherwise one id can sit under two rank prefixes). Trained weights are named by id alone and stay.
        for old in rd.samples.glob("[0-9][0-9]_*.json"):
            if re.fullmatch(r"\d\d_[0-9a-f]{16}\.json", old.name):
                old.unlink()
    index = []
    for rank, s in enumerate(samples):
        meta = {
            "predicted": s.predicted,
            "log_prob": s.log_prob,
            "argmax": s.is_argmax,
            "rank": rank,
            "supernet_acc": s.supernet_acc,
            "source": f"hwnas sample {out}",
        }
        if shortlist is not None:
            meta["shortlisted"] = s.shortlisted
        if s.trained_acc is not None:
            meta["trained_acc"] = s.trained_acc
        arch = make_architecture(
            cfg["space"], space, s.choices, name=f"sample-{rank:02d}" + ("-argmax" if s.is_argmax else ""), meta=meta
        )
        s.path = rd.samples / f"{rank:02d}_{arch.id}.json"
        if rd.main:
            arch.save(s.path)
        index.append({"rank": rank, "file": s.path.name, "id": arch.id, "choices": s.choices, **meta})
    rd.write_json(rd.samples / "index.json", {"cost": costs.name, "unit": costs.unit, "samples": index})
    if at_target and train_epochs > 0 and rd.main:
        best = max((s for s in samples if s.trained_acc is not None), key=lambda s: s.trained_acc or 0.0)
        make_architecture(
            cfg["space"],
            space,
            best.choices,
            name="picked",
            meta={
                "predicted": best.predicted,
                "trained_acc": best.trained_acc,
                "train_epochs": train_epochs,
                "evaluated_on": f"{holdout} images held out of the training images",
                "candidates": len(samples),
                "trained": sum(s.trained_acc is not None for s in samples),
                "shortlist": None if shortlist is None else f"the found network and the {shortlist} best by super-net accuracy",
                "source": f"hwnas sample {out} --at-target",
            },
        ).save(rd.root / "picked.json")
    return samples


DEFAULT_HOLDOUT = 1000  # training images held out to choose between trained samples


def _found_choices(run: dict[str, Any]) -> list[str]:
    """The choices of the search's shipped network (found.json)."""
    from search.arch import Architecture

    return Architecture.load(run["rundir"].found).choices


def _mark_shortlist(run: dict[str, Any], samples: list[Sample], n: int, found: list[str] | None) -> None:
    """Keep for training the ``n`` samples of highest super-net accuracy, and ``found`` whatever its accuracy."""
    if any(s.supernet_acc is None for s in samples):
        raise SampleError(
            f"{run['rundir'].root}: --shortlist needs the super net's weights (checkpoint.pt), which this folder lacks"
        )
    ranked = sorted(samples, key=lambda s: -(s.supernet_acc or 0.0))  # stable: ties keep the cost order
    keep = {id(s) for s in ranked[:n]}
    for s in samples:
        s.shortlisted = id(s) in keep or (found is not None and s.choices == found)


MAX_TARGET_DRAWS = 100_000


def _target_draws(
    run: dict[str, Any], probs: list[list[float]], cands: list[list[str]], costs: Any, space: Any, k: int, seed: int
) -> dict[tuple[str, ...], bool]:
    """The found network, then up to ``k`` distinct draws from softmax(θ) inside the target's cost window."""
    from search.arch import Architecture

    cfg, rd = run["config"], run["rundir"]
    target = cfg.get("target")
    if cfg.get("loss") != "target" or not target:
        raise SampleError(
            f"{rd.root}: --at-target needs a search with a target (hwnas search --target-ms X); "
            f"this one used the {cfg.get('loss')} loss"
        )
    if not rd.found.is_file():
        raise SampleError(f"{rd.root}: found.json is missing; the search has not finished")
    tol = float(cfg.get("target_tolerance", 0.02))
    lo, hi = target * (1 - tol), target * (1 + tol)
    unique: dict[tuple[str, ...], bool] = {tuple(Architecture.load(rd.found).choices): False}
    drawn = 0
    while len(unique) < k + 1 and drawn < MAX_TARGET_DRAWS:
        for arch in draw(probs, cands, 512, seed + drawn):
            if lo <= costs.arch_cost(space, arch) <= hi:
                unique.setdefault(tuple(arch), False)
                if len(unique) == k + 1:
                    break
        drawn += 512
    return unique
