"""`hwnas baseline`: the network of most MACs (or params) a latency target allows — no training, no search."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from search.app.commands import _options as opts
from search.app.commands._errors import fail, user_errors


def register(app: typer.Typer) -> None:
    @app.command("baseline")
    def baseline(
        target_ms: float = typer.Option(..., "--target-ms", help="Latency target in ms; the window is target ± --tol."),
        by: str = typer.Option("macs", "--by", help="What to maximise inside the window: macs or params."),
        tol: float = typer.Option(0.05, "--tol", min=0.0, max=0.5, help="Window half-width as a share of the target."),
        space_name: str = typer.Option("fbnet-fmnist", "--space", help="Search space."),
        lut: Optional[Path] = opts.LUT,
        server: Optional[str] = opts.SERVER,
        device: Optional[str] = opts.DEVICE,
        runtime: Optional[str] = opts.RUNTIME,
        threads: Optional[int] = opts.THREADS,
        token: Optional[str] = opts.TOKEN,
        cache_dir: Optional[Path] = opts.CACHE_DIR,
        out: Optional[Path] = typer.Option(
            None, "--out", "-o", help="Write the network as an architecture JSON (what `hwnas train` and `hwnas export` read)."
        ),
        as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
    ) -> None:
        """The zero-training baseline every search must beat: most MACs (or params) inside the latency window.

        Exact dynamic programming over the table's per-layer costs (Pareto front of latency and count per
        layer): seconds, no training. If a search's network does not train better than this one at the same
        latency, the search knows no more than a count of multiply-adds.

        Examples: `hwnas baseline --target-ms 0.047 --lut table.json` ·
        `hwnas baseline --target-ms 0.06 --by params --server http://127.0.0.1:8000 --device host-cpu -o base.json`
        """
        from search.arch import Architecture
        from search.app.commands._table import obtain_table
        from search.cost import FlopsCost, LatencyCost, ParamsCost
        from search.count_baseline import BaselineError, most_under
        from search.searcher import cost_table
        from search.space import get_space

        if by not in ("macs", "params"):
            raise fail(f"--by must be macs or params, not {by!r}", 2)
        if target_ms <= 0:
            raise fail("--target-ms must be positive", 2)
        with user_errors():
            space = get_space(space_name)
            table = obtain_table(server, device, runtime, threads, token, lut, cache_dir)
            latency = cost_table(LatencyCost(table), space)
            count = cost_table(FlopsCost() if by == "macs" else ParamsCost(), space)
            other = cost_table(ParamsCost() if by == "macs" else FlopsCost(), space)
            lo, hi = target_ms * (1 - tol), target_ms * (1 + tol)
            try:
                best = most_under(latency, count, [layer.candidates for layer in space.layers()], lo, hi, by)
            except BaselineError as exc:
                raise fail(f"{exc} (--target-ms; table of {table.describe()})") from None
            arch = Architecture(
                space=space.name,
                choices=best.choices,
                input_size=space.input_shape[-1],
                classes=space.classes,
                name=f"max-{by}-{target_ms:g}ms",
                meta={
                    "baseline": f"most {by} with predicted latency in {lo:.4g}..{hi:.4g} ms",
                    "predicted_ms": best.predicted_ms,
                    "table": table.describe(),
                },
            )
            macs = count.arch_cost(space, best.choices) if by == "macs" else other.arch_cost(space, best.choices)
            params = other.arch_cost(space, best.choices) if by == "macs" else count.arch_cost(space, best.choices)
            if out is not None:
                arch.save(out)
            if as_json:
                typer.echo(
                    json.dumps(
                        {
                            "id": arch.id,
                            **best.to_dict(),
                            "mmacs": macs,
                            "mparams": params,
                            "window_ms": [lo, hi],
                            "table": table.describe(),
                        }
                    )
                )
                return
            typer.echo(f"most {by} in {lo:.4g}..{hi:.4g} ms on {table.describe()}: id {arch.id}")
            typer.echo(f"  {' '.join(best.choices)}")
            typer.echo(f"  predicted {best.predicted_ms:.4f} ms  {macs:.3f} MMACs  {params:.4f} Mparams")
            if not best.in_window:
                typer.echo(f"note: no network in the window has more {by}: this one is cheaper than {lo:.4g} ms", err=True)
            if out is not None:
                typer.echo(f"wrote {out}")
