"""Export a module, one operator (by key) or a whole architecture to ONNX or TorchScript (lite interpreter).

ONNX goes through ``torch.onnx.export(..., dynamo=False)``: the TorchScript-based exporter,
which needs no extra packages. TorchScript is ``torch.jit.trace`` saved for the lite
interpreter (``.ptl``, what ``speed_benchmark_torch`` on a phone loads); ``optimize_for_mobile``
is applied only when this torch build has XNNPACK, because without it the pass fails.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn

from hwnas.opkey import OpSpec
from search.arch import Architecture, build
from search.ops import _as_spec, build_op

Format = Literal["onnx", "torchscript"]
FORMATS: tuple[str, ...] = ("onnx", "torchscript")
OPSET = 17


class ExportError(RuntimeError):
    """An export that cannot be done: unknown format, unreadable or mismatching weights."""


def _check_format(fmt: str) -> None:
    if fmt not in FORMATS:
        raise ExportError(f"format {fmt!r} is not one of {', '.join(FORMATS)}")


def mobile_optimizer_available() -> bool:
    """True when ``optimize_for_mobile`` can run (needs a torch build with XNNPACK)."""
    try:
        return bool(torch.backends.xnnpack.enabled)
    except Exception:  # pragma: no cover - very old or unusual builds
        return False


def export_module(module: nn.Module, example_input: torch.Tensor, fmt: Format | str, path: str | Path,
                  optimize: bool = True) -> Path:
    """Write ``module`` (put in eval mode) traced on ``example_input`` as ONNX or TorchScript lite; returns the path."""
    _check_format(fmt)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    module = module.eval()
    with torch.no_grad(), warnings.catch_warnings():
        # Tracing warnings (e.g. shape arithmetic in channel shuffle) are about dynamic shapes,
        # which an operator benchmark with a fixed input does not have.
        warnings.simplefilter("ignore")
        if fmt == "onnx":
            torch.onnx.export(
                module, (example_input,), str(path), dynamo=False, opset_version=OPSET,
                input_names=["input"], output_names=["output"], do_constant_folding=True,
            )
        else:
            traced = torch.jit.trace(module, example_input)
            if optimize and mobile_optimizer_available():
                from torch.utils.mobile_optimizer import optimize_for_mobile

                traced = optimize_for_mobile(traced)
            traced._save_for_lite_interpreter(str(path))
    return path


def example_input(spec: OpSpec | str, seed: int = 0) -> torch.Tensor:
    """A deterministic random input of the spec's shape."""
    spec = _as_spec(spec)
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(spec.shape, generator=gen)


def export_op(spec: OpSpec | str, fmt: Format | str, path: str | Path) -> Path:
    """Export the standalone model of one operator key (random weights: latency does not depend on them)."""
    module, x = op_module(spec)
    return export_module(module, x, fmt, path)


class WeightsFileError(ValueError):
    """A weights file that is missing, unreadable or holds no state dict."""


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """A state dict from a file: a bare one, or a checkpoint dict holding one under ``state_dict``/``model``/``weights``."""
    try:
        obj: Any = torch.load(str(path), map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise WeightsFileError(f"weights file {path} not found") from None
    except Exception as exc:  # noqa: BLE001 - torch.load raises many types
        first = (str(exc).splitlines() or [""])[0]
        raise WeightsFileError(f"weights file {path}: cannot read ({exc.__class__.__name__}: {first})") from None
    if isinstance(obj, dict):
        for key in ("state_dict", "model", "weights"):
            if isinstance(obj.get(key), dict):
                obj = obj[key]
                break
    if not isinstance(obj, dict):
        raise WeightsFileError(f"weights file {path}: expected a state dict, got {type(obj).__name__}")
    return obj


def load_weights(module: nn.Module, weights: str | Path) -> None:
    """Load a state dict (or a checkpoint dict holding one under ``state_dict``/``model``) into ``module``."""
    try:
        obj = read_state_dict(weights)
    except WeightsFileError as exc:
        raise ExportError(str(exc)) from None
    try:
        module.load_state_dict(obj)
    except RuntimeError as exc:
        first = str(exc).splitlines()
        raise ExportError(f"weights file {weights} does not fit the architecture: {' '.join(first[:3])[:500]}") from None


def arch_module(arch: Architecture, weights: str | Path | None = None) -> tuple[nn.Module, torch.Tensor]:
    """The eval-mode network of ``arch`` (trained weights if given, else seed-0 random ones) and a batch-1 input."""
    space = arch.resolve_space()
    with torch.random.fork_rng(devices=[]):  # deterministic weights without disturbing the caller's RNG
        torch.manual_seed(0)
        model = build(arch)
    if weights is not None:
        load_weights(model, weights)
    x = torch.randn(1, *space.input_shape, generator=torch.Generator().manual_seed(0))
    return model.eval(), x


def op_module(spec: OpSpec | str) -> tuple[nn.Module, torch.Tensor]:
    """The eval-mode module of one operator (seed-0 random weights) and its example input."""
    spec = _as_spec(spec)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        module = build_op(spec)
    return module.eval(), example_input(spec)


def export_arch(arch: Architecture, fmt: Format | str, path: str | Path, weights: str | Path | None = None) -> Path:
    """Export a whole architecture at batch 1 and its input size, with trained weights if given."""
    _check_format(fmt)
    model, x = arch_module(arch, weights)
    return export_module(model, x, fmt, path)
