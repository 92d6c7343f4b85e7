"""Does the latency table predict whole networks? ``hwnas validate`` measures and tells.

1. Sample N architectures of a space, each layer's candidate drawn uniformly.
2. Create ONE profiling job holding the union of their operator keys (``force``: measured
   again now) and the N whole networks, so the agent measures table entries and networks in
   the same shuffled, interleaved rounds (device_agent/networks.py): host drift then hits both
   alike instead of biasing the prediction.
3. Predict each network from the table (``LatencyCost``, uncalibrated) and compare with its
   measured latency (median over rounds of the burst minimum, the table's own estimator).
4. Report MAPE, bias, share within ±5% / ±10%, RMSE, Kendall τ, a scatter plot, and the
   measurement's own noise floor: each network's even rounds against its odd rounds (MAPE and
   τ between the two halves), and the ratio prediction-MAPE / noise-MAPE.
5. ``calibrate``: fit ``measured ≈ scale · predicted + offset`` on half of the networks (least
   squares on relative error), report on the other half, and store the fit with the table on
   the server, so every search that pulls the table applies it (``LatencyCost``). The server's
   owner rule lets only the device's owner (its agent token) or an admin store it: a client
   token's fit is reported, not stored (``calibration_token`` / ``--calibration-token``).
"""

from __future__ import annotations

import json
import math
import random
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from hwnas.errors import HwnasError
from hwnas.schemas import MAX_CALIBRATION_POINTS, Calibration, CalibrationPoint, JobCreate, NetworkSpec, NetworkTable
from search.arch import Architecture
from search.hooks import JobPoll
from search.lut import LatencyTable, LutError, fetch_table, wait_for_job
from search.space import SearchSpace, get_space
from search.stats import kendall_tau


class ValidateError(HwnasError, RuntimeError):
    """Validation cannot go on: the job failed, networks were not measured, too few to calibrate."""


# The runtimes a device agent measures (device_agent/runtimes/base.py: RUNTIMES and OPTIONAL_RUNTIMES; executorch is
# served by an agent started with --runtime executorch). Checked before a job is created: a misspelt name would
# otherwise be a job no agent ever claims, found out only at --timeout.
RUNTIMES = ("onnxruntime", "torchscript", "executorch")


def check_runtime(runtime: str) -> str:
    """``runtime`` when an agent can measure it; a ``ValidateError`` naming the choices otherwise."""
    if runtime not in RUNTIMES:
        raise ValidateError(f"unknown runtime {runtime!r}: use one of {', '.join(RUNTIMES)}")
    return runtime


# ---- sampling ------------------------------------------------------------------------------------
def sample_archs(space: SearchSpace, n: int, seed: int = 0, space_ref: str | None = None) -> list[Architecture]:
    """``n`` distinct architectures, every layer's candidate drawn uniformly (distinct as long as the space allows)."""
    rng = random.Random(seed)
    layers = space.layers()
    ref = space_ref or space.name
    size = math.prod(len(layer.candidates) for layer in layers)
    archs: dict[str, Architecture] = {}
    tries = 0
    while len(archs) < min(n, size) and tries < 100 * n:
        tries += 1
        choices = [rng.choice(layer.candidates) for layer in layers]
        arch = Architecture(
            space=ref,
            choices=choices,
            input_size=space.input_shape[-1],
            classes=space.classes,
            name=f"uniform-{seed}-{len(archs)}",
        )
        archs.setdefault(arch.id, arch)
    return list(archs.values())


def network_spec(arch: Architecture) -> NetworkSpec:
    """What a job carries for one network: its id, its document and its NCHW input."""
    space = arch.resolve_space()
    doc = arch.to_dict()
    doc.pop("name", None)
    return NetworkSpec(arch_id=arch.id, arch=doc, input_shape=[1, *space.input_shape])


# ---- statistics (no scipy: small n, exact formulas) --------------------------------------------------
@dataclass
class Fidelity:
    """How well one series predicts another (errors relative to ``measured``)."""

    n: int
    mape: float  # %
    bias: float  # mean signed relative error, %
    within5: float  # share in [0, 1]
    within10: float
    rmse_ms: float
    kendall_tau: float

    @classmethod
    def of(cls, predicted: Sequence[float], measured: Sequence[float]) -> "Fidelity":
        if not measured:
            raise ValidateError("no measured networks to compare")
        rel = [(p - m) / m for p, m in zip(predicted, measured)]
        n = len(rel)
        return cls(
            n=n,
            mape=100.0 * sum(abs(r) for r in rel) / n,
            bias=100.0 * sum(rel) / n,
            within5=sum(abs(r) <= 0.05 + 1e-12 for r in rel) / n,  # 5.0% counts as within ±5%
            within10=sum(abs(r) <= 0.10 + 1e-12 for r in rel) / n,
            rmse_ms=math.sqrt(sum((p - m) ** 2 for p, m in zip(predicted, measured)) / n),
            kendall_tau=kendall_tau(predicted, measured),
        )


@dataclass
class NoiseFloor:
    """Two independent measurements of every network (even rounds, odd rounds) compared like a prediction."""

    n: int
    mape: float  # %
    kendall_tau: float
    rounds: int

    @classmethod
    def of(cls, samples: Sequence[Sequence[float]]) -> "NoiseFloor | None":
        """From each network's per-round burst minima; None when a network has fewer than 2 rounds."""
        if not samples or any(len(s) < 2 for s in samples):
            return None
        even = [statistics.median(s[0::2]) for s in samples]
        odd = [statistics.median(s[1::2]) for s in samples]
        fid = Fidelity.of(even, odd)
        return cls(n=len(samples), mape=fid.mape, kendall_tau=fid.kendall_tau, rounds=min(len(s) for s in samples))


def fit_linear(predicted: Sequence[float], measured: Sequence[float]) -> tuple[float, float]:
    """``(scale, offset)`` minimising Σ((scale·p + offset − m)/m)²: least squares on relative error, like MAPE.

    Falls back to a pure scale (offset 0) when the predictions span too little to pin two parameters.
    """
    w = [1.0 / (m * m) for m in measured]
    sw = sum(w)
    swp = sum(wi * p for wi, p in zip(w, predicted))
    swpp = sum(wi * p * p for wi, p in zip(w, predicted))
    swm = sum(wi * m for wi, m in zip(w, measured))
    swpm = sum(wi * p * m for wi, p, m in zip(w, predicted, measured))
    det = swpp * sw - swp * swp
    if len(predicted) >= 3 and det > 1e-12 * swpp * sw:
        scale = (swpm * sw - swp * swm) / det
        offset = (swm - scale * swp) / sw
        if scale > 0:
            return scale, offset
    return (swpm / swpp if swpp > 0 else 1.0), 0.0


# ---- the run ------------------------------------------------------------------------------------
@dataclass
class ValidateConfig:
    """What ``hwnas validate`` is asked to do."""

    server: str
    device: str
    space: str
    runtime: str = "onnxruntime"
    threads: int = 1
    n: int = 50
    seed: int = 0
    calibrate: bool = False
    input_size: int | None = None
    out: Path | None = None
    token: str | None = None
    # Stores the calibration (the device owner's agent token, or an admin's); None: ``token``.
    calibration_token: str | None = None
    cache_dir: Path | None = None
    timeout_s: float = 1800.0
    poll_s: float = 1.0
    # Networks measured and fitted besides the ``n`` uniform ones (choices per layer): e.g. networks near the latency a
    # search will aim at, so the calibration is fitted where it is used and not only around the uniform draws' median.
    extra: list[list[str]] = field(default_factory=list)


@dataclass
class NetworkRow:
    arch_id: str
    choices: list[str]
    predicted_ms: float
    measured_ms: float
    even_ms: float | None
    odd_ms: float | None
    rounds: int
    mmacs: float
    calibration_half: str = ""  # "fit" or "test" with --calibrate
    calibrated_ms: float | None = None


@dataclass
class ValidationReport:
    """Everything ``hwnas validate`` found; ``figures()`` is the flat summary."""

    device: str
    runtime: str
    threads: int
    space: str
    input_shape: list[int]
    job_id: int
    entries_measured: int
    rows: list[NetworkRow]
    uncalibrated: Fidelity
    noise: NoiseFloor | None
    macs_tau: float  # Kendall τ of MACs against measured latency: what a FLOPs proxy would rank
    calibration: dict[str, Any] | None = None  # scale, offset, fit/test sizes, before/after on the test half
    seconds: dict[str, float] = field(default_factory=dict)
    files: dict[str, str] = field(default_factory=dict)

    @property
    def mape_over_noise(self) -> float | None:
        if self.noise is None or self.noise.mape <= 0:
            return None
        return self.uncalibrated.mape / self.noise.mape

    def figures(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "networks": self.uncalibrated.n,
            "mape_pct": self.uncalibrated.mape,
            "bias_pct": self.uncalibrated.bias,
            "within5": self.uncalibrated.within5,
            "within10": self.uncalibrated.within10,
            "rmse_ms": self.uncalibrated.rmse_ms,
            "kendall_tau": self.uncalibrated.kendall_tau,
            "macs_kendall_tau": self.macs_tau,
            "noise_mape_pct": self.noise.mape if self.noise else None,
            "noise_kendall_tau": self.noise.kendall_tau if self.noise else None,
            "mape_over_noise": self.mape_over_noise,
        }
        if self.calibration:
            after: Fidelity = self.calibration["test_after"]
            before: Fidelity = self.calibration["test_before"]
            out.update(
                {
                    "calibrated_scale": self.calibration["scale"],
                    "calibrated_offset_ms": self.calibration["offset_ms"],
                    "test_mape_pct_before": before.mape,
                    "test_mape_pct_after": after.mape,
                    "test_within10_before": before.within10,
                    "test_within10_after": after.within10,
                    "test_kendall_tau_after": after.kendall_tau,
                }
            )
        return out

    def to_dict(self) -> dict[str, Any]:
        cal = None
        if self.calibration:
            cal = {k: (asdict(v) if isinstance(v, Fidelity) else v) for k, v in self.calibration.items()}
        return {
            "device": self.device,
            "runtime": self.runtime,
            "threads": self.threads,
            "space": self.space,
            "input_shape": self.input_shape,
            "job_id": self.job_id,
            "entries_measured": self.entries_measured,
            "figures": self.figures(),
            "uncalibrated": asdict(self.uncalibrated),
            "noise_floor": asdict(self.noise) if self.noise else None,
            "calibration": cal,
            "seconds": self.seconds,
            "files": self.files,
            "networks": [asdict(r) for r in self.rows],
        }

    def summary_lines(self) -> list[str]:
        f, nz = self.uncalibrated, self.noise
        lines = [
            f"{f.n} networks of {self.space} ({'x'.join(map(str, self.input_shape))}) on {self.device} "
            f"({self.runtime}, {self.threads} thread(s)), {self.entries_measured} table entries, job {self.job_id}",
            f"prediction: MAPE {f.mape:.2f}%  bias {f.bias:+.2f}%  within ±5% {f.within5:.0%}  within ±10% {f.within10:.0%}  "
            f"RMSE {f.rmse_ms:.4f} ms  Kendall τ {f.kendall_tau:.3f}  (MACs τ {self.macs_tau:.3f})",
        ]
        if nz is not None:
            ratio = self.mape_over_noise
            lines.append(
                f"noise floor (even vs odd of {nz.rounds} rounds): MAPE {nz.mape:.2f}%  τ {nz.kendall_tau:.3f}  "
                f"prediction/noise MAPE {ratio:.2f}"
                if ratio is not None
                else "noise floor: 0"
            )
        else:
            lines.append("noise floor: needs at least 2 rounds per network (device-agent run --rounds)")
        if self.calibration:
            c = self.calibration
            b, a = c["test_before"], c["test_after"]
            lines.append(
                f"calibration (fit on {c['fit_networks']}, tested on {c['test_networks']}): measured ≈ "
                f"{c['scale']:.4f} · predicted {c['offset_ms']:+.4f} ms; test MAPE {b.mape:.2f}% → {a.mape:.2f}%, "
                f"within ±10% {b.within10:.0%} → {a.within10:.0%}, τ {a.kendall_tau:.3f}"
                + ("; stored with the table" if c.get("stored") else "")
            )
            if c.get("not_stored"):
                lines.append(f"calibration NOT stored: {c['not_stored']}")
        return lines


def _predict(archs: Sequence[Architecture], table: LatencyTable) -> list[float]:
    from search.cost import LatencyCost, arch_cost

    cost = LatencyCost(table, calibrated=False)
    return [arch_cost(cost, a) for a in archs]


def _macs(archs: Sequence[Architecture]) -> list[float]:
    from search.cost import FlopsCost, arch_cost

    return [arch_cost(FlopsCost(), a) for a in archs]


def scatter_plot(rows: Sequence[NetworkRow], path: Path, title: str) -> Path:
    """Predicted against measured latency with the y = x line and the ±10% band (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    meas = [r.measured_ms for r in rows]
    pred = [r.predicted_ms for r in rows]
    lo, hi = min(meas + pred) * 0.95, max(meas + pred) * 1.05
    fig, ax = plt.subplots(figsize=(5.2, 5.0), dpi=110)
    ax.plot([lo, hi], [lo, hi], color="black", lw=1, label="y = x")
    ax.fill_between([lo, hi], [lo * 0.9, hi * 0.9], [lo * 1.1, hi * 1.1], color="tab:green", alpha=0.12, label="±10%")
    ax.scatter(meas, pred, s=18, color="tab:blue", label="table prediction", zorder=3)
    cal = [r for r in rows if r.calibrated_ms is not None and r.calibration_half == "test"]
    if cal:
        ax.scatter(
            [r.measured_ms for r in cal],
            # every row of cal has one: the filter only narrows the type
            [r.calibrated_ms for r in cal if r.calibrated_ms is not None],
            s=18,
            marker="x",
            color="tab:orange",
            label="calibrated (test half)",
            zorder=4,
        )
    ax.set_xlim(lo, hi)
    ax.set_ylim(lo, hi)
    ax.set_xlabel("measured latency (ms)")
    ax.set_ylabel("predicted latency (ms)")
    ax.set_title(title, fontsize=9)
    ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path


def _calibrate(rows: list[NetworkRow], seed: int) -> dict[str, Any]:
    """Fit on a random half, test on the other; fills the rows' ``calibrated_ms`` and ``calibration_half``."""
    if len(rows) < 4:
        raise ValidateError(f"--calibrate needs at least 4 measured networks, got {len(rows)}")
    order = list(range(len(rows)))
    random.Random(seed + 7919).shuffle(order)
    fit_idx, test_idx = order[: len(rows) // 2], order[len(rows) // 2 :]
    scale, offset = fit_linear([rows[i].predicted_ms for i in fit_idx], [rows[i].measured_ms for i in fit_idx])
    for i, r in enumerate(rows):
        r.calibration_half = "fit" if i in fit_idx else "test"
        r.calibrated_ms = scale * r.predicted_ms + offset
    test = [rows[i] for i in test_idx]
    fit = [rows[i] for i in fit_idx]
    return {
        "method": "linear",
        "scale": scale,
        "offset_ms": offset,
        "fit_networks": len(fit),
        "test_networks": len(test),
        "fit_before": Fidelity.of([r.predicted_ms for r in fit], [r.measured_ms for r in fit]),
        "test_before": Fidelity.of([r.predicted_ms for r in test], [r.measured_ms for r in test]),
        "test_after": Fidelity.of([r.calibrated_ms for r in test], [r.measured_ms for r in test]),  # type: ignore[misc]
        "stored": False,
    }


def _store_calibration(
    cfg: ValidateConfig, client: Any, body: Calibration, c: dict[str, Any], log: Callable[[str], None]
) -> bool:
    """PUT the fit with the table; True when stored. A refusal by the owner rule (403) is reported, not raised: the
    measurements and figures are still worth having, and the message says whose token may store the fit."""
    from hwnas.client import AuthError, ProfilerClient

    try:
        if cfg.calibration_token is not None and cfg.calibration_token != cfg.token:
            with ProfilerClient(cfg.server, token=cfg.calibration_token) as owner:
                owner.put_calibration(cfg.device, body)
        else:
            client.put_calibration(cfg.device, body)
    except AuthError as exc:
        if exc.status != 403:
            raise
        c["not_stored"] = (
            f"{exc.detail} (pass --calibration-token with the device owner's agent token or an admin token "
            "to store it with the table)"
        )
        log(f"calibration NOT stored: {c['not_stored']}")
        return False
    return True


def markdown(report: ValidationReport) -> str:
    """A short human report (report.md next to the plot)."""
    lines = ["# Latency table validation", ""] + [f"- {line}" for line in report.summary_lines()] + [""]
    if report.files.get("scatter"):
        lines += [f"![predicted vs measured]({Path(report.files['scatter']).name})", ""]
    lines += ["| arch id | measured ms | predicted ms | error | even ms | odd ms |", "|---|---|---|---|---|---|"]
    for r in sorted(report.rows, key=lambda r: r.measured_ms):
        err = 100.0 * (r.predicted_ms - r.measured_ms) / r.measured_ms
        even = f"{r.even_ms:.4f}" if r.even_ms is not None else "-"
        odd = f"{r.odd_ms:.4f}" if r.odd_ms is not None else "-"
        lines.append(f"| {r.arch_id} | {r.measured_ms:.4f} | {r.predicted_ms:.4f} | {err:+.1f}% | {even} | {odd} |")
    return "\n".join(lines) + "\n"


def run_validation(cfg: ValidateConfig, log: Callable[[str], None] = print, on_poll: JobPoll | None = None) -> ValidationReport:
    """Sample, measure (one interleaved job, its polls shown by ``on_poll``), predict, compare; optionally calibrate
    and store the fit."""
    from hwnas.client import ProfilerClient

    check_runtime(cfg.runtime)
    t0 = time.perf_counter()
    base = get_space(cfg.space)
    space = base.with_input(cfg.input_size, None) if cfg.input_size else base
    ref = cfg.space if not Path(cfg.space).is_file() else str(Path(cfg.space).resolve())
    archs = sample_archs(space, cfg.n, cfg.seed, space_ref=ref)
    if len(archs) < cfg.n:
        log(f"note: the space has only {len(archs)} distinct architectures")
    known = {a.id for a in archs}
    for i, choices in enumerate(cfg.extra):
        arch = Architecture(
            space=ref, choices=list(choices), input_size=space.input_shape[-1], classes=space.classes, name=f"extra-{i}"
        )
        if arch.id not in known:
            known.add(arch.id)
            archs.append(arch)
    keys = list(dict.fromkeys(k for a in archs for k in a.op_keys()))
    specs = [network_spec(a) for a in archs]
    seconds: dict[str, float] = {"sample_s": time.perf_counter() - t0}
    with ProfilerClient(cfg.server, token=cfg.token) as client:
        t = time.perf_counter()
        created = client.create_job(
            JobCreate(device=cfg.device, runtime=cfg.runtime, threads=cfg.threads, keys=keys, networks=specs, force=True)
        )
        log(f"job {created.id}: {len(keys)} operator keys and {len(specs)} networks, measured together in interleaved rounds")
        job = wait_for_job(client, created.id, timeout_s=cfg.timeout_s, poll_s=cfg.poll_s, on_poll=on_poll)
        seconds["measure_s"] = time.perf_counter() - t
        if job.state.value == "failed":
            errors = "; ".join(f"{k}: {v}" for k, v in list(job.errors.items())[:5])
            raise ValidateError(f"job {job.id} failed: {errors or 'nothing measured'}")
        table = fetch_table(
            cfg.server,
            cfg.device,
            runtime=cfg.runtime,
            threads=cfg.threads,
            token=cfg.token,
            cache_dir=cfg.cache_dir,
            client=client,
        )
        nets: NetworkTable = client.get_networks(cfg.device, runtime=cfg.runtime, threads=cfg.threads)
        measured = [a for a in archs if a.id in nets.entries and a.id not in job.errors]
        if len(measured) < 2:
            raise ValidateError(
                f"only {len(measured)} of {len(archs)} networks were measured (job {job.id} errors: "
                f"{'; '.join(f'{k}: {v}' for k, v in list(job.errors.items())[:3]) or 'none'})"
            )
        missing = table.missing(keys)
        if missing:
            raise LutError(
                f"{len(missing)} operator(s) of the sampled networks are not in the table after job {job.id}: "
                + ", ".join(missing[:5])
            )
        predicted = _predict(measured, table)
        macs = _macs(measured)
        rows = []
        for arch, pred, mac in zip(measured, predicted, macs):
            e = nets.entries[arch.id]
            samples = e.samples_ms or []
            rows.append(
                NetworkRow(
                    arch_id=arch.id,
                    choices=list(arch.choices),
                    predicted_ms=pred,
                    measured_ms=e.min_ms if e.min_ms is not None else e.median_ms,
                    even_ms=statistics.median(samples[0::2]) if len(samples) >= 2 else None,
                    odd_ms=statistics.median(samples[1::2]) if len(samples) >= 2 else None,
                    rounds=len(samples),
                    mmacs=mac,
                )
            )
        meas = [r.measured_ms for r in rows]
        report = ValidationReport(
            device=cfg.device,
            runtime=cfg.runtime,
            threads=cfg.threads,
            space=space.name,
            input_shape=[1, *space.input_shape],
            job_id=job.id,
            entries_measured=len(keys),
            rows=rows,
            uncalibrated=Fidelity.of([r.predicted_ms for r in rows], meas),
            noise=NoiseFloor.of([nets.entries[r.arch_id].samples_ms or [] for r in rows]),
            macs_tau=kendall_tau([r.mmacs for r in rows], meas),
            seconds=seconds,
        )
        if cfg.calibrate:
            report.calibration = _calibrate(rows, cfg.seed)
            c = report.calibration
            body = Calibration(
                runtime=cfg.runtime,
                threads=cfg.threads,
                scale=c["scale"],
                offset_ms=c["offset_ms"],
                networks=c["fit_networks"],
                method="linear",
                mape_before=c["test_before"].mape,
                mape_after=c["test_after"].mape,
                points=[
                    CalibrationPoint(arch_id=r.arch_id, predicted_ms=r.predicted_ms, measured_ms=r.measured_ms)
                    for r in rows[:MAX_CALIBRATION_POINTS]
                    if r.predicted_ms > 0 and r.measured_ms > 0
                ],
            )
            c["stored"] = _store_calibration(cfg, client, body, c, log)
    seconds["total_s"] = time.perf_counter() - t0
    if cfg.out is not None:
        out = Path(cfg.out)
        out.mkdir(parents=True, exist_ok=True)
        title = f"{space.name} on {cfg.device} ({cfg.runtime}, {cfg.threads}T): MAPE {report.uncalibrated.mape:.1f}%, τ {report.uncalibrated.kendall_tau:.2f}"
        report.files["scatter"] = str(scatter_plot(rows, out / "scatter.png", title))
        report.files["json"] = str(out / "validation.json")
        report.files["report"] = str(out / "report.md")
        (out / "validation.json").write_text(json.dumps(report.to_dict(), indent=1) + "\n")
        (out / "report.md").write_text(markdown(report))
    return report
