"""`hwnas demo`: the whole loop on one machine, no phone — server, agent, table, search, training, measurement, report.

Phases, in order (each timed into ``<out>/timings.json``):

1. ``server``  — ``profiler-server serve`` on a SQLite file in ``<out>``, free port; agent and client tokens
   (``profiler-server token create``).
2. ``agent``   — ``device-agent run --local`` for device ``host-cpu`` (``config.runtime``: ONNX Runtime by default,
   TorchScript or ExecuTorch; 1 thread); waits until it has registered the device.
3. ``table``   — a profiling job for every operator key of the space; the agent measures, the demo waits.
4. ``search``  — a target-latency FBNet search (``search.searcher.run_search``, target loss) with the latency
   table pulled over HTTP (``search.lut.fetch_table``); the target is ``target_share`` of the all-``ir_k3_e6``
   baseline's predicted latency. What it ships is ``result.found`` (``found.json``): the most likely
   architecture under θ within ±2% of the target, not the argmax.
5. ``random``  — uniformly random architectures whose predicted latency is within ±5% of the found network's
   (``search.random_search.matched_random``; the networks: ``search.app.demo_networks``): random search at equal
   latency, the search's real competitor.
6. ``train``   — the found network, the matched random ones and the hand-made baseline (every layer
   ``ir_k3_e6``, MobileNetV2-like), each from scratch with one recipe (``search.train.train_arch``).
7. ``export``  — the found network and the baseline to ONNX with their trained weights (``search.export``).
8. ``measure`` — one network job: the agent measures every trained network whole.
9. ``report``  — ``<out>/report.md`` (with the gain at equal latency), plots, ``summary.json``.

The server and agent are stopped on success, error or Ctrl-C (``search.app.demo_services``).
"""

from __future__ import annotations

import json
import shutil
import signal
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from search.app.demo_model import (
    DATA,
    DEVICE,
    PHASES,
    SPACE,
    THREADS,
    Console,
    DemoConfig,
    DemoResult,
    NetworkResult,
    Timings,
)
from search.app.demo_networks import baseline_choices, compared_networks
from search.app.demo_services import DemoError, Services, device_registered

_MARKER = ".hwnas-demo"  # marks a folder as the demo's own, so a rerun may replace it


# ---- the run ------------------------------------------------------------------------------------
def prepare_out(out: Path) -> None:
    """Create ``out``; a previous demo's folder is replaced, any other non-empty folder is refused."""
    if out.exists() and any(out.iterdir()):
        if not (out / _MARKER).exists():
            raise DemoError(f"{out} exists and is not a demo output folder; remove it or pass another --out")
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / _MARKER).write_text("written by `hwnas demo`; the next run replaces this folder\n")


@contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """SIGTERM and SIGHUP end the demo like Ctrl-C does: through every ``finally`` (the services stop)."""

    def handler(signum: int, _frame: object) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    previous = {}
    try:
        for sig in (signal.SIGTERM, signal.SIGHUP):
            previous[sig] = signal.signal(sig, handler)
    except ValueError:  # not the main thread
        pass
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def run_demo(config: DemoConfig, on_done: Callable[[DemoResult], None] | None = None) -> DemoResult:
    """Run every phase; the server and agent are stopped whatever happens (``keep_server``: after Ctrl-C).

    ``on_done(result)`` runs once the report is written, before ``keep_server`` waits.
    """
    from device_agent.errors import ConfigError
    from device_agent.runtimes.base import check_runtime
    from search.data import DataError, load_dataset

    try:  # a runtime that is not installed (ExecuTorch is an extra): one line now, before any process starts
        check_runtime(config.runtime)
    except ConfigError as exc:
        raise DemoError(str(exc)) from None
    try:  # no data set: fail in one line now, before any process starts
        load_dataset(DATA, "test", subset=10)
    except DataError as exc:
        raise DemoError(
            f"{str(exc).split(':')[0]}: the demo needs it (`apt-get install dataset-fashion-mnist`, "
            "or HWNAS_FASHION_MNIST=DIR of its IDX files)"
        ) from None
    out = Path(config.out)
    prepare_out(out)
    console = Console(config.progress)
    timings = Timings(out / "timings.json", config.to_dict())
    timings.write()
    if config.torch_threads:
        import torch

        torch.set_num_threads(config.torch_threads)
    with _sigterm_as_interrupt(), Services(out) as services:
        ctx = _Run(config, out, console, timings, services)
        ctx.start_services()
        result = ctx.run_pipeline()
        timings.complete = True
        timings.write()
        result.timings = timings.to_dict()
        (out / "summary.json").write_text(json.dumps({**result.to_dict(), "timings": result.timings}, indent=2) + "\n")
        if on_done is not None:
            on_done(result)
        if config.keep_server:
            ctx.wait_for_interrupt()
    return result


@dataclass
class _Run:
    """The state shared by the phases of one demo."""

    config: DemoConfig
    out: Path
    console: Console
    timings: Timings
    services: Services
    tokens: dict[str, str] = field(default_factory=dict)
    table: Any = None
    table_calibration: dict[str, Any] | None = None
    space: Any = None
    costs: Any = None  # search.cost.CostTable of the latency table: the search's, matched_random's and the target's
    target_ms: float = 0.0

    @property
    def url(self) -> str:
        assert self.services.url is not None
        return self.services.url

    def client(self) -> Any:
        from hwnas.client import ProfilerClient

        return ProfilerClient(self.url, token=self.tokens["client"])

    # -- 1, 2 --------------------------------------------------------------------------------
    def start_services(self) -> None:
        c = self.console
        c.phase(1, "server", "profiler-server on SQLite, tokens")
        with self.timings.phase("server"):
            url = self.services.start_server(self.config.port)
            self.tokens = {role: self.services.create_token(f"demo-{role}", role) for role in ("agent", "client")}
        c.info(f"{url} (API docs: {url}/docs), database {self.services.database_url}")
        c.phase(2, "agent", f"device-agent --local for device {DEVICE!r} ({self.runtime}, {THREADS} thread)")
        with self.timings.phase("agent"):
            self.services.start_agent(self.tokens["agent"], *self.agent_arguments())
            self.services.wait_for(
                lambda: device_registered(self.url, self.tokens["client"], DEVICE),
                "agent",
                120.0,
                f"device {DEVICE!r} registration",
            )
        c.info(f"registered; log {self.services.get('agent').log}")

    @property
    def runtime(self) -> str:
        return self.config.runtime

    def agent_arguments(self) -> tuple[str, str, int, list[str]]:
        """Device, runtime, threads and extra options of the agent's ``device-agent run --local`` (after its token)."""
        # Poll every second (default 5): each job starts within a second of being created.
        return DEVICE, self.runtime, THREADS, ["--poll-s", "1", *self.config.agent_args]

    def request_table(self, client: Any, keys: list[str]) -> Any:
        """The profiling job of the operator table (``JobCreated``): this run's runtime on the demo's device."""
        from search.lut import request_measurements

        return request_measurements(client, DEVICE, self.runtime, THREADS, keys)

    def request_networks(self, client: Any, archs: list[Any]) -> Any:
        """A network job measuring ``archs`` whole (``JobCreated``), with this run's runtime."""
        from hwnas.schemas import JobCreate
        from search.validate import network_spec

        return client.create_job(
            JobCreate(device=DEVICE, runtime=self.runtime, threads=THREADS, networks=[network_spec(a) for a in archs])
        )

    def run_pipeline(self) -> DemoResult:
        table_entries = self.phase_table()
        search = self.phase_search()
        found, matched, baseline = self.phase_random(search)
        self.phase_train([found, *matched, baseline])
        self.phase_export(found, baseline)
        self.phase_measure(found, matched, baseline)
        return self.phase_report(search, found, matched, baseline, table_entries)

    # -- 3 ------------------------------------------------------------------------------------
    def phase_table(self) -> int:
        from search.lut import fetch_table
        from search.space import get_space

        self.space = get_space(SPACE)
        keys = self.space.op_keys()
        export = (
            " (ExecuTorch: each exported to a .pte first, seconds apiece unless cached)" if self.runtime == "executorch" else ""
        )
        self.console.phase(
            3, "table", f"measure the {len(keys)} operators of {SPACE} on {DEVICE} with {self.runtime} (profiling job){export}"
        )
        with self.timings.phase("table"), self.client() as client:
            created = self.request_table(client, keys)
            self._wait_job(client, created.id)

            def fetch() -> Any:
                return fetch_table(
                    self.url,
                    DEVICE,
                    runtime=self.runtime,
                    threads=THREADS,
                    token=self.tokens["client"],
                    cache_dir=self.out / "cache",
                )

            self.table = fetch()
            if self.config.calibration_networks > 0:
                self.table_calibration = self._calibrate(client)
                self.table = fetch()  # now served with its calibration, which every prediction below applies
        overhead = f"{self.table.overhead_ms:.4f} ms" if self.table.overhead_ms is not None else "none"
        self.console.info(f"table: {len(self.table.entries)} entries, per-model overhead {overhead}")
        if self.table_calibration is not None:
            c = self.table_calibration
            self.console.info(
                f"calibration on {c['networks']} random whole networks: measured ≈ {c['scale']:.3f} × "
                f"table sum {'+' if c['offset_ms'] >= 0 else '−'} {abs(c['offset_ms']):.4f} ms (error {c['mape_before']:.1f}% → "
                f"{c['mape_after']:.1f}% on them)"
            )
        return len(self.table.entries)

    def _calibrate(self, client: Any) -> dict[str, Any]:
        """Measure random whole networks and store ``measured ≈ a·Σ + b`` with the table (``hwnas validate --calibrate``
        fits the same, on half of its networks and checked on the other half: here all are fitted, being few)."""
        from hwnas.schemas import Calibration, CalibrationPoint
        from search.cost import LatencyCost, arch_cost
        from search.validate import Fidelity, fit_linear, sample_archs

        archs = sample_archs(self.space, self.config.calibration_networks, seed=self.config.seed + 1)
        created = self.request_networks(client, archs)
        self._wait_job(client, created.id)
        nets = client.get_networks(DEVICE, self.runtime, THREADS)
        raw = LatencyCost(self.table, calibrated=False)
        pairs = [(a.id, arch_cost(raw, a), measured_ms(nets.entries[a.id])) for a in archs if a.id in nets.entries]
        if len(pairs) < 3:
            raise DemoError(f"the calibration job measured {len(pairs)} of {len(archs)} networks")
        predicted, measured = [p for _, p, _ in pairs], [m for _, _, m in pairs]
        scale, offset = fit_linear(predicted, measured)
        c = {
            "scale": scale,
            "offset_ms": offset,
            "networks": len(pairs),
            "mape_before": Fidelity.of(predicted, measured).mape,
            "mape_after": Fidelity.of([scale * p + offset for p in predicted], measured).mape,
        }
        from hwnas.client import ProfilerClient

        # The server's owner rule: a table's calibration is stored by its device's owner (the demo's agent token, which
        # registered DEVICE) or an admin, never by a client, since every search that pulls the table applies it.
        with ProfilerClient(self.url, token=self.tokens["agent"]) as owner:
            owner.put_calibration(
                DEVICE,
                Calibration(
                    runtime=self.runtime,
                    threads=THREADS,
                    scale=scale,
                    offset_ms=offset,
                    networks=len(pairs),
                    method="linear",
                    mape_before=c["mape_before"],
                    mape_after=c["mape_after"],
                    points=[CalibrationPoint(arch_id=i, predicted_ms=p, measured_ms=m) for i, p, m in pairs],
                ),
            )
        return c

    def _wait_job(self, client: Any, job_id: int) -> Any:
        """Poll the job until it is done, with a progress bar; a server or agent that dies meanwhile ends it at once.

        (Waiting out ``job_timeout_s`` for a job that no agent is left to work off cost ten minutes when the agent
        was killed during a long phase.)
        """
        from search.lut import LutError, wait_for_job
        from search.app.progress import JobBar

        try:
            with JobBar(enabled=self.config.progress) as bar:
                job = wait_for_job(
                    client,
                    job_id,
                    timeout_s=self.config.job_timeout_s,
                    poll_s=0.5,
                    on_poll=bar,
                    alive=self.services.check_alive,
                    hint=f"see {self.services.get('agent').log}",
                )
        except LutError as exc:
            raise DemoError(str(exc)) from None
        if job.state.value == "failed" or job.failed:
            errors = "; ".join(f"{k}: {v}" for k, v in list(job.errors.items())[:3])
            raise DemoError(f"profiling job {job.id} finished with {job.failed} failure(s): {errors}")
        return job

    # -- 4 ------------------------------------------------------------------------------------
    def phase_search(self) -> Any:
        from search.cost import LatencyCost
        from search.search_config import CostSource, Objective, RunSettings, Schedule, SearchConfig
        from search.app.plots import plot_search
        from search.app.progress import EpochProgress
        from search.searcher import cost_table, run_search

        cfg = self.config
        self.costs = cost_table(LatencyCost(self.table), self.space)
        baseline_ms = self.costs.arch_cost(self.space, baseline_choices(self.space))
        self.target_ms = cfg.target_share * baseline_ms
        self.console.phase(
            4,
            "search",
            f"FBNet DNAS for {self.target_ms:.4f} ms ({cfg.target_share:.0%} of the "
            f"baseline's {baseline_ms:.4f} ms), latency table from {self.url}: "
            f"{cfg.search_epochs} epochs ({cfg.warmup_epochs} warm-up), {cfg.mode} mode, "
            f"{cfg.search_subset} images",
        )
        config = SearchConfig(
            out=str(self.out / "search"),
            space=SPACE,
            schedule=Schedule(
                mode=cfg.mode,
                epochs=cfg.search_epochs,
                warmup_epochs=cfg.warmup_epochs,
                batch_size=cfg.batch_size,
                theta_lr=cfg.theta_lr,
            ),
            cost_source=CostSource(
                kind="latency",
                server=self.url,
                device=DEVICE,
                runtime=self.runtime,
                threads=THREADS,
                token=self.tokens["client"],
                cache_dir=str(self.out / "cache"),
            ),
            objective=Objective(loss="target", target=self.target_ms),
            run=RunSettings(
                data=DATA,
                subset=cfg.search_subset,
                val_subset=cfg.search_val_subset,
                seed=cfg.seed,
                num_threads=cfg.torch_threads,
                progress=cfg.progress,
                plots=True,
            ),
        )

        with self.timings.phase("search"):
            result = run_search(config, cost_model=LatencyCost(self.table), progress=EpochProgress, on_finish=plot_search)
        self.console.info(
            f"found: {' '.join(result.found)}  ({result.found_cost:.4f} ms predicted; argmax of θ "
            f"{result.argmax_cost:.4f} ms; θ entropy {result.theta_entropy:.2f}, super-net val acc "
            f"{result.val_acc:.3f})"
        )
        for warning in result.warnings:
            self.console.info(f"warning: {warning}", always=True)
        return result

    # -- 5 ------------------------------------------------------------------------------------
    def phase_random(self, search: Any) -> tuple[NetworkResult, list[NetworkResult], NetworkResult]:
        """The found network (``found.json``), the matched random networks and the baseline, not yet trained."""
        cfg = self.config
        self.console.phase(
            5,
            "random",
            f"{cfg.matched} uniformly random architectures within ±{cfg.match_tol:.0%} of "
            f"the found network's predicted {search.found_cost:.4f} ms",
        )
        with self.timings.phase("random"):
            found, matched, baseline = compared_networks(cfg, search, self.space, self.costs, self.table)
        if matched:
            self.console.info(
                f"{len(matched)} random networks, predicted "
                f"{min(m.predicted_ms for m in matched):.4f}–{max(m.predicted_ms for m in matched):.4f} ms"
            )
        if len(matched) < cfg.matched:
            self.console.info(
                f"only {len(matched)} of {cfg.matched} random networks fall within ±{cfg.match_tol:.0%} "
                f"of {search.found_cost:.4f} ms",
                always=True,
            )
        return found, matched, baseline

    # -- 6 ------------------------------------------------------------------------------------
    def phase_train(self, nets: list[NetworkResult]) -> None:
        from search.app.progress import EpochProgress
        from search.train import TrainConfig, train_arch

        cfg = self.config
        self.console.phase(
            6,
            "train",
            f"{len(nets)} networks from scratch, one recipe: {cfg.train_epochs} epochs, "
            f"{cfg.train_subset or 'all'} images, seed {cfg.seed}, tested on "
            f"{cfg.val_subset or 'all'}",
        )
        tc = TrainConfig(
            data=DATA,
            epochs=cfg.train_epochs,
            batch_size=cfg.train_batch_size,
            subset=cfg.train_subset,
            val_subset=cfg.val_subset,
            seed=cfg.seed,
            num_threads=cfg.torch_threads,
            progress=cfg.progress,
            validation_images=cfg.validation_images,
            eval_every_epoch=False,
        )
        with self.timings.phase("train"):
            for net in nets:
                net.arch.save(self.out / "train" / f"{net.name}.json")
                trained = train_arch(net.arch, tc, out_dir=self.out / "train", stem=net.name, progress=EpochProgress)
                net.accuracy, net.train_s = trained.accuracy, trained.seconds
                self.console.info(f"{net.name}: test accuracy {trained.accuracy:.4f} ({trained.seconds:.0f} s)")

    # -- 7 ------------------------------------------------------------------------------------
    def phase_export(self, found: NetworkResult, baseline: NetworkResult) -> None:
        from search.export import export_arch

        self.console.phase(7, "export", "ONNX with the trained weights")
        with self.timings.phase("export"):
            for net in (found, baseline):
                net.onnx = export_arch(
                    net.arch, "onnx", self.out / f"{net.name}.onnx", weights=self.out / "train" / f"{net.name}.pt"
                )
                self.console.info(str(net.onnx))

    # -- 8 ------------------------------------------------------------------------------------
    def phase_measure(self, found: NetworkResult, matched: list[NetworkResult], baseline: NetworkResult) -> None:
        nets = [found, *matched, baseline]
        unique = list({n.arch.id: n for n in nets}.values())
        self.console.phase(8, "measure", f"{len(unique)} whole networks on {DEVICE} with {self.runtime} (one network job)")
        with self.timings.phase("measure"), self.client() as client:
            created = self.request_networks(client, [n.arch for n in unique])
            self._wait_job(client, created.id)
            table = client.get_networks(DEVICE, self.runtime, THREADS)
        missing = [n.name for n in nets if n.arch.id not in table.entries]
        if missing:
            raise DemoError(f"the network job finished but the server has no measurement of {', '.join(missing)}")
        for n in nets:
            n.measured_ms = measured_ms(table.entries[n.arch.id])
        for n in (found, baseline):
            self.console.info(
                f"{n.name}: predicted {n.predicted_ms:.4f} ms, measured {n.measured_ms:.4f} ms ({n.error_pct:+.1f}%)"
            )
        if matched:
            self.console.info(
                f"random: measured {min(m.measured_ms or 0 for m in matched):.4f}–"
                f"{max(m.measured_ms or 0 for m in matched):.4f} ms"
            )

    # -- 9 ------------------------------------------------------------------------------------
    def phase_report(
        self, search: Any, found: NetworkResult, matched: list[NetworkResult], baseline: NetworkResult, table_entries: int
    ) -> DemoResult:
        from search.app.demo_ground_truth import place
        from search.app.demo_report import write_report
        from search.searcher import load_history

        self.console.phase(9, "report", f"{self.out / 'report.md'}")
        with self.timings.phase("report"):
            theta = load_history(search.out)
            result = DemoResult(
                config=self.config,
                server=self.url,
                table_entries=table_entries,
                table_overhead_ms=self.table.overhead_ms,
                search_s=self.timings.phases["search"]["wall_s"],
                search_epochs=search.epochs,
                supernet_val_acc=search.val_acc,
                target_ms=self.target_ms,
                found=found,
                baseline=baseline,
                matched=matched,
                theta_history=theta["epochs"],
                candidates=theta["candidates"],
                theta_entropy=search.theta_entropy,
                argmax=list(search.argmax),
                argmax_ms=search.argmax_cost,
                search_warnings=list(search.warnings),
                table_calibration=self.table_calibration,
                placement=place(found, matched, self.config),
            )
            result.report = write_report(result, self.out, self.timings.to_dict())
        return result

    def wait_for_interrupt(self) -> None:
        """``--keep-server``: leave the server and agent up until Ctrl-C (or SIGTERM), which ends the demo normally."""
        self.console.info(
            f"server still running: {self.url}/docs  (client token {self.tokens['client']}); Ctrl-C stops it", always=True
        )
        try:
            while True:
                self.services.check_alive()
                time.sleep(1.0)
        except KeyboardInterrupt:
            self.console.info("stopping the server and agent", always=True)


def measured_ms(entry: Any) -> float:
    """A network's measured latency with the table's own estimator: burst minimum when there is one, else median."""
    return float(entry.min_ms if entry.min_ms is not None else entry.median_ms)


def main_summary(result: DemoResult) -> list[str]:
    """The few lines the command prints at the end."""
    f, b = result.found, result.baseline
    lines = [f"{'':9} {'accuracy':>9} {'predicted':>11} {'measured':>11} {'MMACs':>8} {'Mparams':>8}"]
    for n in (f, *result.matched, b):
        measured = f"{n.measured_ms:.4f} ms" if n.measured_ms is not None else "-"
        lines.append(f"{n.name:9} {n.accuracy or 0:9.4f} {n.predicted_ms:8.4f} ms {measured:>11} {n.mmacs:8.2f} {n.mparams:8.3f}")
    eq = result.equal_latency()
    if eq is not None:
        lines.append(
            f"at equal latency: found {100 * eq['found_acc']:.2f}% vs random {100 * eq['random_mean_acc']:.2f}% "
            f"(mean of {eq['n']}, {100 * eq['random_min_acc']:.2f}–{100 * eq['random_max_acc']:.2f}%): "
            f"{eq['gain_pts']:+.2f} points (one seed: an illustration, see the report)"
        )
    lines.append(f"search {result.search_s:.0f} s; total {result.timings.get('total_s', 0):.0f} s; report {result.report}")
    if not result.config.keep_server:  # the README's everyday commands start with this server on the demo's database
        lines.append(
            f"serve its database again (host-cpu's table): profiler-server serve --database-url "
            f"sqlite:///{Path(result.config.out) / 'hwnas.db'} --port 8000"
        )
    return lines


__all__ = ["DemoConfig", "DemoError", "DemoResult", "run_demo", "PHASES", "measured_ms", "main_summary"]
