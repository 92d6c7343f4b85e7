"""`hwnas predict`: predicted latency (from a latency table), MACs and parameters of an architecture."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

import typer

from search.app.commands import _options as opts
from search.app.commands._errors import fail, user_errors

if TYPE_CHECKING:
    from search.arch import Architecture
    from search.lut import LatencyTable


def register(app: typer.Typer) -> None:
    @app.command("predict")
    def predict(
        arch_path: str = typer.Argument(
            ...,
            metavar="ARCH",
            help="ARCH.json or a shipped architecture (fbnet_a, fbnet_b, fbnet_c, proxyless_mobile, ofa_note10_30ms).",
        ),
        cost: str = typer.Option(
            "", "--cost", "-c", help="latency, flops or params; default: latency when a table source is given, else flops."
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
        poll: float = typer.Option(1.0, "--poll", help="Seconds between job status checks."),
        as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
        partial: bool = typer.Option(
            False,
            "--partial",
            help="When the table lacks operators: print the sum over the ones "
            "it has and list the others (a lower bound; nothing is estimated), exit 0.",
        ),
    ) -> None:
        """Predict an architecture's latency on a device (overhead + Σ(entry − overhead)), MACs and parameters.

        Examples: `hwnas predict fbnet_b` (MACs, params) ·
        `hwnas predict proxyless_mobile --lut pixel1.json --partial` (covered sum, missing keys listed) ·
        `hwnas predict best.json --cost latency --server http://127.0.0.1:8000 --device pixel7 --create-job`
        """
        from search.arch import get_arch
        from search.app.commands._table import decide_job, job_intent, missing_header, missing_hint, obtain_table, run_job
        from search.cost import predict as predict_arch
        from search.lut import MissingEntriesError

        cost = cost or ("latency" if (lut or (server and device)) else "flops")
        if cost not in ("latency", "flops", "params"):
            raise fail(f"--cost must be latency, flops or params, got {cost!r}", 2)
        with user_errors():
            arch = get_arch(arch_path)
            table = None
            if cost == "latency":
                table = obtain_table(
                    server, device, runtime, threads, token, lut, cache_dir, empty_if_unknown=bool(create_job), offers_job=True
                )
                try:
                    result = predict_arch(arch, table)
                except MissingEntriesError as exc:
                    if partial:
                        _print_partial(arch, arch_path, table, as_json)
                        return
                    intent = job_intent(create_job, lut is None and bool(server), bool(table.imported_from))
                    typer.echo(
                        missing_header(len(exc.keys), f"missing from the latency table of {table.describe()}", intent), err=True
                    )
                    for key in exc.keys:
                        typer.echo(f"  {key}", err=True)
                    if lut is not None or not server:
                        raise typer.Exit(1) from None
                    if table.imported_from or not decide_job(create_job, len(exc.keys)):
                        typer.echo(missing_hint(table, token), err=True)
                        raise typer.Exit(1) from None
                    run_job(server, token, table, exc.keys, runtime, threads, wait_timeout, poll)
                    table = obtain_table(
                        server, table.device, runtime or table.runtime, threads or table.threads, token, None, cache_dir
                    )
                    result = predict_arch(arch, table)
            else:
                result = predict_arch(arch)
            space = arch.resolve_space()
            if as_json:
                doc: dict[str, Any] = {"name": arch.name, "id": arch.id, "space": space.name, **result.to_dict()}
                if table is not None:
                    doc.update(
                        device=table.device,
                        runtime=table.runtime,
                        threads=table.threads,
                        overhead_ms=table.overhead_ms,
                        stale=table.stale,
                        calibration=table.calibration.to_dict() if table.calibration else None,
                    )
                typer.echo(json.dumps(doc))
                return
            typer.echo(
                f"{arch.name or arch_path}  (id {arch.id}, space {space.name}, "
                f"{'x'.join(map(str, space.input_shape))} input, {space.classes} classes, {result.ops} operators)"
            )
            if table is not None and result.latency_ms is not None:
                cal = table.calibration
                typer.echo(
                    f"latency  {result.latency_ms:.3f} ms  on {table.describe()}, overhead {table.overhead:.3f} ms counted once"
                    + (f", calibrated ({cal.scale:.4f} · sum {cal.offset_ms:+.4f} ms)" if cal else "")
                    + (" [cached table, server unreachable]" if table.stale else "")
                )
            typer.echo(f"MACs     {result.macs / 1e6:.2f} M")
            typer.echo(f"params   {result.params / 1e6:.3f} M")


def _print_partial(arch: Architecture, arch_path: str, table: LatencyTable, as_json: bool) -> None:
    """--partial: the covered operators' sum and every missing key, without pretending it is the network's latency."""
    from search.cost import partial_latency

    part = partial_latency(arch, table)
    if as_json:
        typer.echo(
            json.dumps(
                {
                    "name": arch.name,
                    "id": arch.id,
                    "latency_ms": None,
                    **part.to_dict(),
                    "device": table.device,
                    "runtime": table.runtime,
                    "threads": table.threads,
                }
            )
        )
        return
    typer.echo(f"{arch.name or arch_path}  (id {arch.id})")
    dropped = f" (and {part.dropped} dropped layers, 0 ms)" if part.dropped else ""
    typer.echo(
        f"covered  {part.covered_ms:.3f} ms  over {part.covered} operators{dropped} on {table.describe()} — "
        f"not the network's latency: {len(part.missing)} operator(s) have no entry"
    )
    typer.echo("missing (not estimated):")
    for key in part.missing:
        typer.echo(f"  {key}")
