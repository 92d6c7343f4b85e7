"""What defines a search, in four parts that each have one reader.

* ``Schedule`` — how the super net is trained: mode, epochs and warm-up, the weights' SGD, θ's Adam
  and its decision term, τ. Read by the training loop (``search.search_epoch``).
* ``CostSource`` — what a candidate costs: FLOPs, parameters, or latency from a table (server or
  file). Read once, to build the cost model.
* ``Objective`` — the loss that weighs accuracy against that cost (FBNet, additive, target) and its
  constants. Read by the loss and by the choice of the shipped network.
* ``RunSettings`` — the data, the seed, and the machinery (torch device, threads, workers, AMP,
  progress, plots, resume).

``SearchConfig`` holds one of each plus the output folder and the space. The command line and
``config.json`` of older runs are flat; ``SearchConfig.from_flat`` routes each option to its
part by name (they are unique across parts; ``cost`` names ``CostSource.kind``), and
``from_dict`` reads either layout, so a run folder written before the split still resumes.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ClassVar, cast

from hwnas.errors import HwnasError
from search.option_fields import option
from search.run_options import DataAndMachine

if TYPE_CHECKING:
    from search.loss import LossConfig

COSTS: tuple[str, ...] = ("latency", "flops", "params")
TAU_SCHEDULES: tuple[str, ...] = ("step", "epoch")
# FBNet's θ learning rate, for its ~90 epochs of ImageNet-100 (thousands of θ steps).
PAPER_THETA_LR = 0.01
# How far (in logits) Adam may carry θ over the whole search when --theta-lr is not given: enough to
# decide a layer of 11 candidates (normalised entropy 0.5 needs p ≈ 0.75, a lead of about log 30 ≈ 3.4 over
# the others) with room for the first θ epochs' detours. Measured on fbnet-fmnist (45 θ steps): 4 logits
# left the entropy at 0.92 after 5 of 6 epochs, 8 brought it to 0.55 with the decision term.
THETA_TRAVEL = 8.0
# ... but no step larger than this share of the travel: with fewer than 40 θ steps the gradient is too noisy
# to follow further, and one step may not overturn a layer's ranking (0.2 for the default travel).
MIN_THETA_STEPS = 40
# Weight of the decision term (mean normalised entropy of softmax θ) at the last θ step; it ramps up linearly
# from 0 at the first. A short search's accuracy gradient is too noisy to carry θ far by itself (measured: soft
# searches of 8 epochs on 5,000 images ended at entropy 0.93–0.94); the term makes θ commit to the candidates
# that lead by then, while the cost term keeps the expected cost on its target. Measured on fbnet-fmnist (soft,
# 5 epochs on 3,000 images, target loss λ 5): entropy 0.48 at the end with 3, expected cost 4% off the target.
THETA_DECIDE = 3.0


class SearchConfigError(HwnasError, ValueError):
    """A search that cannot start as configured (bad option, output folder in use, resume mismatch)."""


PATHS = ("theta", "uniform", "sandwich", "distill")


@dataclass
class Schedule:
    """How the super net is trained. Defaults follow the FBNet paper where a short search allows."""

    mode: str = option(
        "soft",
        "--mode",
        help="soft (FBNet: all candidates, Gumbel-softmax mix) or hard (one candidate per layer in the weight steps; "
        "θ steps still mix all: about a third of soft's time).",
    )
    # separate: a weight set per candidate (FBNet's); shared: one per layer, sliced by its candidates (search/shared.py)
    weights: str = option(
        "separate",
        "--weights",
        help="separate (FBNet: a weight set per candidate) or shared (one set per layer that every candidate slices: "
        "a k3 kernel is the centre of the k5, e1/e3 are channel prefixes of e6; single paths learn).",
    )
    # Hard mode's weight steps: theta (a path drawn from θ: disfavoured candidates train less), uniform (every
    # candidate alike, whatever θ says), sandwich (uniform plus the costliest and the cheapest path every step,
    # BigNAS/OFA's rule: the extremes of the space stay trained), distill (sandwich with in-place distillation: the
    # costliest path learns the labels, the others its predictions, as in BigNAS/OFA)
    paths: str = option(
        "theta",
        "--paths",
        help="Hard mode's weight steps: theta (a path drawn from θ, FBNet's), uniform (every candidate trained alike) "
        "or sandwich (uniform plus the costliest and cheapest paths each step) or distill (sandwich where the "
        "costliest path teaches the others its predictions).",
    )
    # hard mode's θ step: soft (every candidate) or straight-through (search/mixed.py)
    theta_estimator: str = option(
        "soft",
        "--theta-estimator",
        help="Hard mode's θ step: soft (every candidate, the accuracy signal) or straight-through (single path; θ "
        "then follows the cost alone — for comparison).",
    )
    epochs: int = option(10, "--epochs", "-e", min=1, help="Search epochs (the paper: 90).")
    warmup_fraction: float = 0.1  # first 10% of the epochs (at least one) train the weights only
    # overrides warmup_fraction
    warmup_epochs: int | None = option(
        None, "--warmup-epochs", min=0, help="Weights-only epochs (default: 10% of --epochs, at least 1)."
    )
    # overrides both: weights-only SGD steps, rounded up to whole epochs once the weights' split is known
    # (resolve_warmup, which sets warmup_epochs): a warm-up sized in steps is the same training whatever the data
    warmup_steps: int | None = option(
        None,
        "--warmup-steps",
        min=0,
        help="Weights-only SGD steps, rounded up to whole epochs (instead of --warmup-epochs: the same training "
        "whatever --subset is; single-path super nets need ≥ 1,000).",
    )
    batch_size: int = option(128, "--batch-size", "-b", min=1, help="Images per step.")
    w_split: float = option(0.8, "--w-split", help="Share of the training set for the weights; the rest trains θ.")
    w_lr: float = option(0.1, "--w-lr", help="SGD learning rate of the weights (cosine schedule).")
    w_momentum: float = 0.9
    w_wd: float = 1e-4
    # None: sized by the θ steps, see resolved_theta_lr
    theta_lr: float | None = option(
        None,
        "--theta-lr",
        help="Adam learning rate of θ (default: FBNet's 0.01, raised for short searches so θ can move 8 logits over its steps).",
    )
    theta_wd: float = 5e-4
    # weight of θ's entropy in its loss at the last θ step (0 at the first)
    theta_decide: float = option(
        THETA_DECIDE,
        "--theta-decide",
        min=0.0,
        help="Weight of θ's entropy in its loss at the last θ step, ramped from 0 at the first: makes a short search "
        "commit to the candidates that lead (0: off).",
    )
    theta_travel: float = THETA_TRAVEL  # theta_lr None: Adam's step is sized to carry θ this many logits
    tau0: float = option(5.0, "--tau0", help="Initial Gumbel-softmax temperature.")
    # τ at the last step of the "step" schedule
    tau_end: float = option(0.5, "--tau-end", help="Temperature at the last step (step schedule).")
    # step: τ0 → tau_end per step; epoch: the paper's τ0·exp(−tau_decay·epoch)
    tau_schedule: str = option(
        "step",
        "--tau-schedule",
        help="step: τ0 → --tau-end every step, at any length; epoch: the paper's τ0·exp(−decay·epoch).",
    )
    tau_decay: float = option(0.045, "--tau-decay", help="Epoch schedule: τ is multiplied by exp(-decay) every epoch.")

    def validate(self) -> None:
        if self.mode not in ("soft", "hard"):
            raise SearchConfigError(f"--mode must be soft or hard, not {self.mode!r}")
        if self.paths not in PATHS:
            raise SearchConfigError(f"--paths must be one of {', '.join(PATHS)}, not {self.paths!r}")
        if self.paths != "theta" and self.mode != "hard":
            raise SearchConfigError(
                f"--paths {self.paths} samples single paths: it needs --mode hard (soft mode runs every candidate in every step)"
            )
        if self.weights not in ("separate", "shared"):
            raise SearchConfigError(f"--weights must be separate or shared, not {self.weights!r}")
        from search.mixed import THETA_ESTIMATORS  # here, not above: the CLI builds its options from this module without torch

        if self.theta_estimator not in THETA_ESTIMATORS:
            raise SearchConfigError(
                f"--theta-estimator must be one of {', '.join(THETA_ESTIMATORS)}, not {self.theta_estimator!r}"
            )
        if self.tau_schedule not in TAU_SCHEDULES:
            raise SearchConfigError(f"--tau-schedule must be one of {', '.join(TAU_SCHEDULES)}, not {self.tau_schedule!r}")
        if not (self.tau0 > 0 and self.tau_end > 0):
            raise SearchConfigError("--tau0 and --tau-end must be positive")
        if self.theta_decide < 0:
            raise SearchConfigError("--theta-decide must be 0 (off) or positive")
        if self.theta_lr is not None and self.theta_lr <= 0:
            raise SearchConfigError("--theta-lr must be positive")
        if self.epochs < 1:
            raise SearchConfigError("--epochs must be at least 1")
        if self.warmup_steps is not None and self.warmup_steps < 0:
            raise SearchConfigError("--warmup-steps must be 0 or more")
        if not 0.0 < self.w_split < 1.0:
            raise SearchConfigError("--w-split must be between 0 and 1 (share of the training set for the weights)")
        if self.batch_size < 1:
            raise SearchConfigError("--batch-size must be at least 1")

    @property
    def num_warmup_epochs(self) -> int:
        """Weights-only epochs: as given, else ``warmup_fraction`` of them but at least one (none in a 1-epoch search)."""
        if self.warmup_epochs is not None:
            return max(0, min(self.warmup_epochs, self.epochs))
        return max(0, min(max(1, round(self.warmup_fraction * self.epochs)), self.epochs - 1))

    def resolve_warmup(self, weight_images: int) -> None:
        """Turn ``warmup_steps`` into whole warm-up epochs of ``weight_images // batch_size`` steps each.

        Rounded up, so the weights get at least the steps asked for; capped at ``epochs`` (a warm-up longer than
        the search leaves θ untrained, which ``run_search`` warns about).
        """
        if self.warmup_steps is None:
            return
        per_epoch = max(1, weight_images // self.batch_size)
        self.warmup_epochs = min(self.epochs, math.ceil(self.warmup_steps / per_epoch))

    def tau(self, epoch: float) -> float:
        """Gumbel-softmax temperature at ``epoch`` (0-based; a fraction is a point inside the epoch)."""
        if self.tau_schedule == "epoch":
            return self.tau0 * math.exp(-self.tau_decay * math.floor(epoch))
        return self.tau0 * (self.tau_end / self.tau0) ** min(1.0, max(0.0, epoch / self.epochs))

    def w_lr_at(self, epoch: int) -> float:
        """Cosine learning rate of the weights in epoch ``epoch``: from w_lr down towards 0 at the last epoch.

        A closed form rather than a scheduler object: a resumed search that is given more epochs
        follows the cosine of its new length.
        """
        return self.w_lr * 0.5 * (1.0 + math.cos(math.pi * epoch / self.epochs))

    def theta_steps(self, theta_images: int) -> int:
        """θ steps of the whole search: θ batches per epoch (incomplete ones dropped) times the searching epochs."""
        return (theta_images // self.batch_size) * (self.epochs - self.num_warmup_epochs)

    def resolved_theta_lr(self, theta_images: int) -> float:
        """``--theta-lr`` as given, else FBNet's 0.01 raised so that θ can travel ``theta_travel`` logits in its steps.

        Adam's step is about its learning rate whatever the gradient's size, so the distance θ can move
        is about lr × steps: 0.01 suits the paper's thousands of θ steps, a short search needs more.
        """
        if self.theta_lr is not None:
            return float(self.theta_lr)
        steps = max(MIN_THETA_STEPS, self.theta_steps(theta_images))
        return max(PAPER_THETA_LR, self.theta_travel / steps)

    def decide_weight(self, progress: float) -> float:
        """Weight of the decision term at ``progress`` ∈ [0, 1] through the θ steps: a linear ramp to ``theta_decide``."""
        return self.theta_decide * min(1.0, max(0.0, progress))

    def check_splits(self, n_w: int, n_theta: int) -> None:
        """Both splits hold at least one batch (incomplete batches are dropped, so a smaller split never trains)."""
        bs = self.batch_size
        need = math.ceil(bs / min(self.w_split, 1.0 - self.w_split) - 1e-9)
        hint = f"use --subset {need} or more, or a smaller --batch-size"
        if n_w < bs:
            raise SearchConfigError(f"the weights' split has {n_w} images, fewer than one batch of {bs}: {hint}")
        if self.epochs > self.num_warmup_epochs and n_theta < bs:
            raise SearchConfigError(
                f"the θ split has {n_theta} images ({1 - self.w_split:.0%} of {n_w + n_theta}), "
                f"fewer than one batch of {bs}: θ would never take a step; {hint}"
            )


@dataclass
class CostSource:
    """What a candidate costs: ``kind`` (flops, params, latency, or a bits search's size/bops) and, for
    latency, the table: from a profiler-server (``server``, ``device``, ``runtime``, ``threads``,
    ``token``, ETag-cached in ``cache_dir``) or a local file (``lut``)."""

    kind: str = "flops"
    server: str | None = None
    device: str | None = None
    runtime: str | None = None
    threads: int | None = None
    token: str | None = None
    lut: str | None = None
    cache_dir: str | None = None

    def validate(self, kinds: tuple[str, ...]) -> None:
        if self.kind not in kinds:
            raise SearchConfigError(f"--cost must be one of {', '.join(kinds)}, not {self.kind!r}")
        if self.kind == "latency" and not self.lut and not (self.server and self.device):
            raise SearchConfigError("--cost latency needs --server URL --device NAME (or --lut FILE)")

    @property
    def from_server(self) -> bool:
        """The table comes from a profiler-server (a local ``--lut`` file wins when both are given)."""
        return bool(self.server and not self.lut)

    def describe(self) -> dict[str, Any]:
        """Where the table came from, for ``costs.json`` (never the token)."""
        return {"server": self.server, "device": self.device, "runtime": self.runtime, "threads": self.threads, "lut": self.lut}


@dataclass
class Objective:
    """The loss: ``loss`` is the form (fbnet ``CE·α·log(C)^β``, additive, target) with its constants."""

    loss: str = option(
        "fbnet",
        "--loss",
        help="fbnet: CE·α·(log LAT)^β; additive: CE + λ·LAT/ref; target: CE + λ·|LAT/target − 1|.",
    )
    alpha: float = option(0.2, "--alpha", help="α of the FBNet loss.")
    beta: float = option(0.6, "--beta", help="β of the FBNet loss.")
    lam: float | None = option(None, "--lambda", help="λ of the additive (default 0.1) and target (default 5.0) losses.")
    target: float | None = option(None, "--target", help="Budget of the target loss, in the cost's unit (ms, MMACs, Mparams).")
    # target loss: the shipped network's predicted cost within target·(1 ± this)
    target_tolerance: float = option(
        0.02, "--target-tolerance", help="The shipped network's predicted cost is within target·(1 ± this)."
    )
    # Target loss: θ's first step starts from the most even distribution whose expected cost is the target (every
    # layer tilted by the same exp(−κ·cost)), not from uniform θ far above a low budget. Under it, networks of
    # equal cost are equally likely, so whatever θ learns after is the accuracy signal's (search/budget.py).
    target_start: bool = option(
        True,
        "--budget-start/--uniform-start",
        help="Target loss: θ's first step starts from the most even distribution whose expected cost is the target "
        "(networks of equal cost equally likely), or from uniform θ.",
    )
    # Target loss: how θ is held at the budget. penalty: λ·|E/T − 1| in θ's loss (with the decision term);
    # projection: θ's loss is the cross-entropy alone and, after every θ step, θ is tilted back onto the budget
    # (search.budget.project_logits), so the cost never sets Adam's step sizes and no decision term forces choices.
    budget: str = option(
        "penalty",
        "--budget",
        help="With --target-ms: penalty (λ·|E/T−1| in θ's loss) or projection (θ learns from cross-entropy alone "
        "and is tilted back onto the target after every step).",
    )
    reference: float | None = None
    # FBNet form only; None: see search.loss.default_cost_scale
    cost_scale: float | None = option(
        None,
        "--cost-scale",
        help="FBNet loss: multiply the cost by this before the log (default: the uniform-θ cost maps to 20, FBNet's "
        "operating point).",
    )

    def validate(self) -> None:
        try:
            self.loss_config()
        except ValueError as exc:
            raise SearchConfigError(str(exc)) from None
        if self.budget not in ("penalty", "projection"):
            raise SearchConfigError(f"--budget must be penalty or projection, not {self.budget!r}")
        if self.budget == "projection" and self.loss != "target":
            raise SearchConfigError("--budget projection holds a target cost: use it with --target-ms (the target loss)")

    def loss_config(self) -> LossConfig:
        from search.loss import LossConfig

        return LossConfig(
            form=self.loss, alpha=self.alpha, beta=self.beta, lam=self.lam, reference=self.reference, target=self.target
        )

    @property
    def has_target(self) -> bool:
        return self.loss == "target" and self.target is not None


@dataclass
class RunSettings(DataAndMachine):
    """The data and the machinery a search runs on (search.run_options; docs/distributed.md for the last three)."""

    bn_calibration: int = 2000  # hard mode: training images that recompute BN statistics of the evaluated path
    plots: bool = True
    resume: bool = option(False, "--resume", help="Continue the search in --out from its last checkpoint.")
    # "bf16": forward passes under torch.autocast with bfloat16
    amp: str = option("off", "--amp", help="off or bf16: forward passes under autocast with bfloat16 (GPUs).")
    channels_last: bool = option(False, "--channels-last/--no-channels-last", help="NHWC weights and inputs (faster on GPUs).")
    # SyncBatchNorm across processes (GPUs only)
    sync_bn: bool = option(
        False,
        "--sync-bn/--no-sync-bn",
        help="Several processes: BatchNorm statistics of the whole batch (SyncBatchNorm, GPUs only).",
    )


# The parts, by the attribute that holds them; the flat name of CostSource.kind is "cost".
PARTS: dict[str, type] = {"schedule": Schedule, "cost_source": CostSource, "objective": Objective, "run": RunSettings}
_FLAT_RENAMES = {("cost_source", "kind"): "cost"}
# flat (command-line) name -> (part, field); the names are unique across the parts.
_ROUTES: dict[str, tuple[str, str]] = {
    _FLAT_RENAMES.get((part, f.name), f.name): (part, f.name) for part, cls in PARTS.items() for f in dataclasses.fields(cls)
}


@dataclass
class SearchConfig:
    """Everything that defines a search; saved as ``DIR/config.json``."""

    COST_KINDS: ClassVar[tuple[str, ...]] = COSTS

    out: str
    space: str = option("fbnet-fmnist", "--space", "-s", help="Built-in space name or a space JSON/YAML file.")
    schedule: Schedule = field(default_factory=Schedule)
    cost_source: CostSource = field(default_factory=CostSource)
    objective: Objective = field(default_factory=Objective)
    run: RunSettings = field(default_factory=RunSettings)

    def __post_init__(self) -> None:
        self.schedule.validate()
        self.cost_source.validate(self.COST_KINDS)
        self.objective.validate()

    @classmethod
    def from_flat(cls, **options: Any) -> "SearchConfig":
        """A config from flat options (the command line's names), each routed to its part.

        Parts start from this class's defaults (a bits search's differ), so only the given
        options change. An unknown name is an error, as a misspelt keyword argument would be.
        """
        # Every part is declared with field(default_factory=...): a fresh default per config.
        defaults = {f.name: cast(Callable[[], Any], f.default_factory)() for f in dataclasses.fields(cls) if f.name in PARTS}
        routed: dict[str, dict[str, Any]] = {name: {} for name in PARTS}
        top: dict[str, Any] = {}
        own = {f.name for f in dataclasses.fields(cls)} - set(PARTS)
        for name, value in options.items():
            if name in _ROUTES:
                part, field_name = _ROUTES[name]
                routed[part][field_name] = value
            elif name in own:
                top[name] = value
            else:
                raise TypeError(f"{cls.__name__} has no option {name!r}")
        parts = {part: dataclasses.replace(defaults[part], **given) for part, given in routed.items()}
        return cls(**top, **parts)

    def flat(self) -> dict[str, Any]:
        """Every option under its flat (command-line) name."""
        d = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name not in PARTS}
        d.update({flat: getattr(getattr(self, part), name) for flat, (part, name) in _ROUTES.items()})
        return d

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["cost_source"].pop("token", None)  # never write a secret into the run folder
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "SearchConfig":
        """A config from ``to_dict``'s layout or the flat one of runs made before the split; unknown keys are ignored."""
        known = ({f.name for f in dataclasses.fields(cls)} - set(PARTS)) | set(_ROUTES)
        return cls.from_flat(**{k: v for k, v in flat_options(d).items() if k in known})


def flat_options(d: dict[str, Any]) -> dict[str, Any]:
    """A saved config (either layout) as flat options."""
    flat = {k: v for k, v in d.items() if k not in PARTS}
    names = {route: flat_name for flat_name, route in _ROUTES.items()}
    for part in PARTS:
        if isinstance(d.get(part), dict):
            flat.update({names.get((part, k), k): v for k, v in d[part].items()})
    return flat
