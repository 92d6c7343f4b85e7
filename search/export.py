"""Export a module, one operator (by key) or a whole architecture to ONNX, TorchScript (lite interpreter) or ExecuTorch.

ONNX goes through ``torch.onnx.export(..., dynamo=False)``: the TorchScript-based exporter,
which needs no extra packages. TorchScript is ``torch.jit.trace`` saved for the lite
interpreter (``.ptl``, what ``speed_benchmark_torch`` on a phone loads); ``optimize_for_mobile``
is applied only when this torch build has XNNPACK, because without it the pass fails.
ExecuTorch (``.pte``, the optional ``executorch`` package: ``pip install 'hwnas[executorch]'``) is
``torch.export`` → ``to_edge_transform_and_lower(..., partitioner=[XnnpackPartitioner()])`` →
``to_executorch()``: what PyTorch users ship to phones today, with the operators XNNPACK takes
delegated to it (``pte_delegation`` reads back which were).
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn

from hwnas.errors import HwnasError
from hwnas.opkey import OpSpec
from search.arch import Architecture, build
from search.ops import _as_spec, build_op

Format = Literal["onnx", "torchscript", "pte"]
FORMATS: tuple[str, ...] = ("onnx", "torchscript", "pte")
OPSET = 17
EXECUTORCH_PIN = "1.5.1"  # the version of the [executorch] extra (pyproject.toml)
EXECUTORCH_INSTALL = "pip install 'hwnas[executorch]'"


class ExportError(HwnasError, RuntimeError):
    """An export that cannot be done: unknown format, unreadable or mismatching weights."""


def _check_format(fmt: str) -> None:
    if fmt not in FORMATS:
        raise ExportError(f"format {fmt!r} is not one of {', '.join(FORMATS)}")


def mobile_optimizer_available() -> bool:
    """True when ``optimize_for_mobile`` can run (needs a torch build with XNNPACK)."""
    try:
        import torch.backends.xnnpack  # `import torch` does not import it: without this, the attribute is missing

        # `enabled` is a property of the object that replaces the module in sys.modules, which the stub does not know
        return bool(torch.backends.xnnpack.enabled)  # type: ignore[attr-defined]
    except Exception:  # noqa: BLE001  # pragma: no cover - very old or unusual builds
        return False


def export_module(
    module: nn.Module, example_input: torch.Tensor, fmt: Format | str, path: str | Path, optimize: bool = True
) -> Path:
    """Write ``module`` (put in eval mode) traced on ``example_input`` as ONNX, TorchScript lite or ExecuTorch; returns the path."""
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
                module,
                (example_input,),
                str(path),
                dynamo=False,
                opset_version=OPSET,
                input_names=["input"],
                output_names=["output"],
                do_constant_folding=True,
            )
        elif fmt == "pte":
            _export_pte(module, example_input, path)
        else:
            traced = torch.jit.trace(module, example_input)
            if optimize and mobile_optimizer_available():
                from torch.utils.mobile_optimizer import optimize_for_mobile

                traced = optimize_for_mobile(traced)
            traced._save_for_lite_interpreter(str(path))
    return path


def executorch_version() -> str | None:
    """The installed ExecuTorch's version (``1.5.1+cpu``), None when the package is absent."""
    try:
        from executorch.version import __version__
    except ImportError:
        return None
    return str(__version__)


def require_executorch() -> str:
    """The installed ExecuTorch's version, or an ``ExportError`` that says how to install it."""
    version = executorch_version()
    if version is None:
        raise ExportError(
            f"the pte format needs ExecuTorch, which is not installed: {EXECUTORCH_INSTALL} (executorch=={EXECUTORCH_PIN})"
        )
    return version


def _export_pte(module: nn.Module, example_input: torch.Tensor, path: Path) -> None:
    """``module`` as an ExecuTorch program with the XNNPACK delegate, written to ``path``.

    ``torch.export`` (strict=False: the operator library's modules are plain eager code, and the
    non-strict tracer is the one ExecuTorch's docs use) → the Edge dialect with XNNPACK taking
    every subgraph it supports → ExecuTorch's own program (memory planned, serialised). What
    XNNPACK does not take runs on ExecuTorch's portable kernels; ``pte_delegation`` says which.
    """
    require_executorch()
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.exir import to_edge_transform_and_lower

    exported = torch.export.export(module, (example_input,), strict=False)
    edge = to_edge_transform_and_lower(exported, partitioner=[XnnpackPartitioner()])
    program = edge.to_executorch()
    with open(path, "wb") as fh:
        program.write_to_file(fh)


def pte_delegation(path: str | Path) -> dict[str, Any]:
    """What of a ``.pte`` program runs in a delegate: ``{"delegated": "all" | "partial" | "none" | "empty",
    "backends": [...], "delegate_calls": n, "portable_ops": [...]}``.

    Read from the file itself (its flatbuffer: the execution plan's delegates and the operators
    left to ExecuTorch's own kernels), so a cached program says the same as a fresh one.
    ``portable_ops`` are ``name.overload`` of the non-delegated operators. A graph with neither
    (the Identity of the empty model, a skip without projection, ``zero``: the output is the input
    or a constant) is "empty": nothing runs but the program's own bookkeeping.
    """
    require_executorch()
    from executorch.exir._serialize._program import deserialize_pte_binary

    plan = deserialize_pte_binary(Path(path).read_bytes()).program.execution_plan[0]
    backends = sorted({d.id for d in plan.delegates})
    ops = [f"{op.name}.{op.overload}" if op.overload else op.name for op in plan.operators]
    calls = sum(1 for chain in plan.chains for ins in chain.instructions if type(ins.instr_args).__name__ == "DelegateCall")
    if not ops:
        state = "all" if plan.delegates else "empty"
    else:
        state = "partial" if plan.delegates else "none"
    return {"delegated": state, "backends": backends, "delegate_calls": calls, "portable_ops": ops}


def run_pte(path: str | Path, x: torch.Tensor) -> torch.Tensor:
    """Run a ``.pte`` program once on ``x`` through ExecuTorch's Python runtime; its first output."""
    require_executorch()
    from executorch.runtime import Runtime

    method = Runtime.get().load_program(Path(path)).load_method("forward")
    if method is None:
        raise ExportError(f"{path}: the program has no forward method")
    return method.execute([x])[0]


def check_export(module: nn.Module, x: torch.Tensor, fmt: str, path: str | Path) -> float | None:
    """Max abs difference between eager PyTorch and the exported file run in its runtime (onnxruntime for
    ONNX, ExecuTorch for pte); None for a format with no runtime to check it in here (TorchScript)."""
    with torch.no_grad():
        ref = module.eval()(x)
    if fmt == "onnx":
        import onnxruntime as ort

        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        got = torch.from_numpy(session.run(None, {session.get_inputs()[0].name: x.numpy()})[0])
    elif fmt == "pte":
        got = run_pte(path, x)
    else:
        return None
    return float((ref - got).abs().max())


def example_input(spec: OpSpec | str, seed: int = 0) -> torch.Tensor:
    """A deterministic random input of the spec's shape."""
    spec = _as_spec(spec)
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(spec.shape, generator=gen)


def export_op(spec: OpSpec | str, fmt: Format | str, path: str | Path) -> Path:
    """Export the standalone model of one operator key (random weights: latency does not depend on them)."""
    module, x = op_module(spec)
    return export_module(module, x, fmt, path)


class WeightsFileError(HwnasError, ValueError):
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
