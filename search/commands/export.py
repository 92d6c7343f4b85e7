"""`hwnas export`: an architecture document or a single operator key to ONNX or TorchScript (lite)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from search.commands._errors import fail, user_errors


def _is_op_key(target: str) -> bool:
    return "@" in target and not Path(target).exists()


def register(app: typer.Typer) -> None:
    @app.command("export")
    def export(
        target: str = typer.Argument(..., help="ARCH.json, a shipped architecture (fbnet_a, fbnet_b, fbnet_c) or an operator key."),
        fmt: str = typer.Option("onnx", "--format", "-f", help="onnx or torchscript (lite interpreter .ptl)."),
        out: Path = typer.Option(..., "--out", "-o", help="Output file."),
        weights: Optional[Path] = typer.Option(None, "--weights", "-w", help="Trained weights (state dict) for an architecture."),
        check: bool = typer.Option(True, "--check/--no-check", help="ONNX: run the file in onnxruntime and compare with PyTorch."),
    ) -> None:
        """Export a network or one operator for on-device benchmarking.

        Examples: `hwnas export fbnet_b --format onnx -o fbnet_b.onnx` ·
        `hwnas export best.json --weights best.pt --format torchscript -o best.ptl` ·
        `hwnas export 'ir_k3_e6_g1_s2_o24@1x16x112x112' -f onnx -o op.onnx`
        """
        from search.export import FORMATS

        if fmt not in FORMATS:
            raise fail(f"--format must be one of {', '.join(FORMATS)}, got {fmt!r}", 2)
        with user_errors():
            import torch

            from search.arch import get_arch
            from search.export import arch_module, export_module, op_module

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
            if check and fmt == "onnx":
                import numpy as np
                import onnxruntime as ort

                with torch.no_grad():
                    ref = module.eval()(x).numpy()
                session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
                got = session.run(None, {session.get_inputs()[0].name: x.numpy()})[0]
                diff = float(np.abs(ref - got).max())
                if diff > 1e-4:
                    raise fail(f"onnxruntime output differs from PyTorch by {diff:.3g} (> 1e-4)")
                typer.echo(f"checked: onnxruntime matches PyTorch (max abs diff {diff:.2g})")
