"""`hwnas spaces`: list the built-in search spaces, or show one as a stage table / YAML / JSON."""

from __future__ import annotations

import json
import sys
from typing import Optional

import typer
import yaml

from search.app.commands._errors import fail, user_errors


def size_text(counts: list[int]) -> str:
    """``9^22 ≈ 9.85e+20`` when every layer has the same number of candidates, else ``≈ 2.4e+09``."""
    import math

    total = math.prod(counts)
    approx = f"{total:.3g}" if total >= 1e6 else str(total)
    if counts and len(set(counts)) == 1:
        return f"{counts[0]}^{len(counts)} ≈ {approx}"
    return f"≈ {approx}"


def register(app: typer.Typer) -> None:
    @app.command("spaces")
    def spaces(
        name: Optional[str] = typer.Argument(None, help="A built-in space name or a space file to show in detail."),
        fmt: str = typer.Option("table", "--format", "-f", help="table, yaml or json (yaml/json print the space document)."),
    ) -> None:
        """List the built-in search spaces (layers, candidates, size, distinct operator keys) or show one.

        Examples: `hwnas spaces` · `hwnas spaces fbnet` · `hwnas spaces fbnet-fmnist --format yaml > my-space.yaml`
        """
        from rich.console import Console
        from rich.table import Table

        from search.space import get_space, list_spaces

        if fmt not in ("table", "yaml", "json"):
            raise fail(f"--format must be table, yaml or json, got {fmt!r}", 2)
        # Piped or captured, rich assumes 80 columns and cuts cells ("3x224x…"); a file has no width to respect.
        console = Console() if sys.stdout.isatty() else Console(width=200)
        with user_errors():
            if name is None:
                table = Table(title="built-in search spaces (hwnas spaces NAME for the stage table)")
                table.add_column("name", no_wrap=True, min_width=max(len(n) for n in list_spaces()))
                for col in ("input", "classes", "layers", "candidates", "size", "op keys"):
                    table.add_column(col, no_wrap=col in ("input", "size"))
                docs = {}
                for n in list_spaces():
                    s = get_space(n)
                    counts = [len(layer.candidates) for layer in s.layers()]
                    docs[n] = s.to_dict()
                    table.add_row(
                        n,
                        "x".join(map(str, s.input_shape)),
                        str(s.classes),
                        str(s.num_layers),
                        str(max(counts)),
                        size_text(counts),
                        str(len(s.op_keys())),
                    )
                if fmt == "table":
                    console.print(table)
                else:
                    typer.echo(json.dumps(docs, indent=1) if fmt == "json" else yaml.safe_dump(docs, sort_keys=False))
                return
            s = get_space(name)
            if fmt != "table":
                doc = s.to_dict()
                typer.echo(json.dumps(doc, indent=1) if fmt == "json" else yaml.safe_dump(doc, sort_keys=False, width=120))
                return
            counts = [len(layer.candidates) for layer in s.layers()]
            console.print(f"[bold]{s.name}[/]  {s.description}")
            console.print(
                f"input {'x'.join(map(str, s.input_shape))}, {s.classes} classes, {s.num_layers} searchable layers, "
                f"size {size_text(counts)}, {len(s.op_keys())} distinct operator keys"
            )
            if s.candidates:
                console.print(f"candidates (all stages unless a stage lists its own): {', '.join(s.candidates)}")
            table = Table()
            for col in ("stage", "input", "channels", "repeats", "stride", "candidates"):
                table.add_column(col)
            table.add_row("stem", "x".join(map(str, s.input_shape)), str(s.stem.channels), "1", str(s.stem.stride), s.stem.op)
            layers = s.layers()
            for si, st in enumerate(s.stages):
                first = next(layer for layer in layers if layer.stage == si)
                cands = "(all)" if tuple(st.candidates) == tuple(s.candidates) else ", ".join(st.candidates)
                table.add_row(
                    str(si), "x".join(map(str, first.in_shape[1:])), str(st.channels), str(st.repeats), str(st.stride), cands
                )
            for spec in s.head_specs():
                table.add_row(
                    "head",
                    "x".join(map(str, spec.shape[1:])),
                    str(spec.get("o", spec.shape[1])),
                    "1",
                    str(spec.get("s", 1)),
                    spec.block_name,
                )
            console.print(table)
