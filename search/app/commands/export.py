"""`hwnas export`: an architecture document or a single operator key to ONNX, TorchScript (lite) or ExecuTorch (.pte)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from search.app.commands._errors import fail, user_errors


def _is_op_key(target: str) -> bool:
    return "@" in target and not Path(target).exists()


def register(app: typer.Typer) -> None:
    @app.command("export")
    def export(
        target: str = typer.Argument(
            ..., help="ARCH.json, a shipped architecture (fbnet_a, fbnet_b, fbnet_c) or an operator key."
        ),
        fmt: str = typer.Option(
            "onnx",
            "--format",
            "-f",
            help="onnx, torchscript (lite interpreter .ptl) or pte "
            "(ExecuTorch with the XNNPACK delegate; pip install 'hwnas\\[executorch]').",
        ),
        out: Path = typer.Option(..., "--out", "-o", help="Output file."),
        weights: Optional[Path] = typer.Option(None, "--weights", "-w", help="Trained weights (state dict) for an architecture."),
        check: bool = typer.Option(
            True, "--check/--no-check", help="ONNX / pte: run the file in onnxruntime / ExecuTorch and compare with PyTorch."
        ),
    ) -> None:
        """Export a network or one operator for on-device benchmarking.

        Examples: `hwnas export fbnet_b --format onnx -o fbnet_b.onnx` ·
        `hwnas export best.json --weights best.pt --format torchscript -o best.ptl` ·
        `hwnas export 'ir_k3_e6_g1_s2_o24@1x16x112x112' -f onnx -o op.onnx` ·
        `hwnas export best.json --weights best.pt --format pte -o best.pte`
        """
        from search.export import FORMATS

        if fmt not in FORMATS:
            raise fail(f"--format must be one of {', '.join(FORMATS)}, got {fmt!r}", 2)
        with user_errors():
            from search.arch import get_arch
            from search.export import arch_module, check_export, export_module, op_module, pte_delegation

            if _is_op_key(target):
                if weights is not None:
                    raise fail("--weights applies to architectures, not single operators", 2)
                module, x = op_module(target)
                what = f"operator {target}"
            else:
                arch = get_arch(target)
                module, x = arch_module(arch, weights)
                what = f"architecture {arch.name or target} (id {arch.id})"
            path = export_module(module, x, fmt, out)
            typer.echo(f"wrote {path} ({fmt}, {path.stat().st_size / 1024:.1f} KiB): {what}")
            if fmt == "pte":
                d = pte_delegation(path)
                left = f"; left to ExecuTorch's kernels: {', '.join(d['portable_ops'])}" if d["portable_ops"] else ""
                typer.echo(f"delegated to XNNPACK: {d['delegated']} ({d['delegate_calls']} delegate call(s)){left}")
            diff = check_export(module, x, fmt, path) if check else None
            if diff is not None:
                runner = "onnxruntime" if fmt == "onnx" else "ExecuTorch"
                if diff > 1e-4:
                    raise fail(f"{runner} output differs from PyTorch by {diff:.3g} (> 1e-4)")
                typer.echo(f"checked: {runner} matches PyTorch (max abs diff {diff:.2g})")
