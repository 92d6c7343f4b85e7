"""Export a quantized network to ONNX with QuantizeLinear/DequantizeLinear (QDQ) around its 8-bit parts.

What an int8 runtime (ONNX Runtime) needs, and what this writes:

* batch norm folded into the preceding convolution. Folding is exact for per-channel
  symmetric weights: scaling channel c by γ_c/σ_c keeps its weights on a grid, with step
  ``s_c·|γ_c|/σ_c``;
* for a layer with weights ≤ 8 bits: the weight as an int8 initializer + DequantizeLinear with
  the per-channel step (2- and 4-bit weights are int8 values too: the int8 kernel computes them
  exactly);
* for a layer with inputs ≤ 8 bits: the PACT clip (only below 8 bits; at 8 bits the uint8
  range saturates at α by itself) and Quantize/DequantizeLinear with step α/(2^b − 1);
* for a layer with both ≤ 8 bits: also a QDQ on its output, with a range calibrated on data.
  An int8 convolution kernel always writes 8-bit outputs; the explicit pair lets ONNX Runtime
  fuse DQ→Conv→Q into QLinearConv (and residual adds into QLinearAdd). It is the only step
  not seen in training; ``check_export`` measures what it costs.

Layers with a 32-bit side stay float (their other side is still fake-quantized in float).
"""

from __future__ import annotations

import copy
import warnings
from pathlib import Path

import numpy as np
import onnx
import torch
import torch.fx as fx
import torch.nn.functional as F
from onnx import numpy_helper
from torch import Tensor, nn

from search.export import ExportError  # one error for every export (here: what cannot be written as ONNX QDQ)
from search.quant.bits import Bits
from search.quant.fakequant import pact_quantize, quantize_weight, weight_integers
from search.quant.modules import QuantLayer, replace_module

OPSET = 17


class _QuantTracer(fx.Tracer):
    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        return isinstance(m, QuantLayer) or super().is_leaf_module(m, qualname)


class ExportQuantLayer(nn.Module):
    """A frozen quantized layer with BN folded, written with ONNX-exportable fake-quant ops."""

    # Buffers, registered in __init__; declared so that they read as Tensor, not nn.Module's Tensor | Module.
    w_int: Tensor
    w_step: Tensor
    bias: Tensor
    alpha: Tensor
    out_absmax: Tensor
    out_min: Tensor

    def __init__(self, layer: QuantLayer, bn: nn.BatchNorm2d | None) -> None:
        super().__init__()
        op = layer.op
        self.kind = "conv" if isinstance(op, nn.Conv2d) else "linear"
        self.bits: Bits = layer.bits
        self.conv_args = (op.stride, op.padding, op.dilation, op.groups) if isinstance(op, nn.Conv2d) else None
        w = op.weight.detach()
        bias = op.bias.detach() if op.bias is not None else torch.zeros(w.shape[0])
        if self.bits.w <= 8:
            q, step = weight_integers(w, self.bits.w)
        else:
            q, step = quantize_weight(w, self.bits.w).detach(), torch.ones(w.shape[0])
        if bn is not None:
            # Folding needs the running statistics; the networks built here keep them (BatchNorm2d's default).
            assert bn.running_var is not None and bn.running_mean is not None, "batch norm without running stats"
            g = bn.weight.detach() / torch.sqrt(bn.running_var + bn.eps)
            bias = bn.bias.detach() + (bias - bn.running_mean) * g
            sign = torch.where(g < 0, -1.0, 1.0)
            if self.bits.w <= 8:
                q = q * sign.view(-1, *([1] * (w.dim() - 1)))
                step = (step * g.abs()).clamp_min(1e-12)
            else:
                q = q * g.view(-1, *([1] * (w.dim() - 1)))
        self.register_buffer("w_int", q)  # integer levels (≤ 8 bits) or float weights
        self.register_buffer("w_step", step)
        self.register_buffer("bias", bias)
        self.signed = layer.signed
        self.register_buffer("alpha", layer.act.alpha.detach().abs().clone())
        # Output range for the int8 output QDQ; set by calibrate().
        self.register_buffer("out_absmax", torch.tensor(0.0))
        self.register_buffer("out_min", torch.tensor(0.0))
        self.calibrating = False

    def weight(self) -> Tensor:
        if self.bits.w <= 8:
            w = self.w_int * self.w_step.view(-1, *([1] * (self.w_int.dim() - 1)))
            return torch.fake_quantize_per_channel_affine(
                w, self.w_step, torch.zeros_like(self.w_step, dtype=torch.int32), 0, -128, 127
            )
        return self.w_int

    def quant_input(self, x: Tensor) -> Tensor:
        a = self.bits.a
        if a > 8:
            return pact_quantize(x, self.alpha, a, self.signed) if a < 32 else x
        alpha = float(self.alpha)
        if self.signed:
            levels = 2 ** (a - 1) - 1
            if a < 8:
                x = torch.clamp(x, -alpha, alpha)
            return torch.fake_quantize_per_tensor_affine(x, alpha / levels, 0, -128, 127)
        levels = 2**a - 1
        # The explicit clip is needed below 8 bits; at 8 bits uint8 saturates at exactly α.
        x = torch.clamp(x, 0.0, alpha) if a < 8 else x
        return torch.fake_quantize_per_tensor_affine(x, alpha / levels, 0, 0, 255)

    def forward(self, x: Tensor) -> Tensor:
        x = self.quant_input(x)
        w = self.weight()
        if self.conv_args is not None:
            stride, padding, dilation, groups = self.conv_args
            y = F.conv2d(x, w, self.bias, stride, padding, dilation, groups)
        else:
            y = F.linear(x, w, self.bias)
        if not self.bits.is_int8_runnable:
            return y
        if self.calibrating:
            self.out_absmax.copy_(torch.maximum(self.out_absmax, y.detach().abs().max()))
            self.out_min.copy_(torch.minimum(self.out_min, y.detach().min()))
            return y
        if float(self.out_absmax) <= 0:
            return y  # never calibrated: leave the output float
        if float(self.out_min) >= 0:
            return torch.fake_quantize_per_tensor_affine(y, float(self.out_absmax) / 255, 0, 0, 255)
        return torch.fake_quantize_per_tensor_affine(y, float(self.out_absmax) / 127, 0, -128, 127)


def freeze_for_export(model: nn.Module) -> nn.Module:
    """A copy of ``model`` with each QuantLayer frozen, its following batch norm folded in."""
    model = copy.deepcopy(model).eval()
    try:
        gm = fx.GraphModule(model, _QuantTracer().trace(model))
    except Exception as e:  # noqa: BLE001 - fx raises many types on untraceable code
        raise ExportError(f"cannot trace the network to fold batch norm: {e}") from None
    modules = dict(gm.named_modules())
    for node in list(gm.graph.nodes):
        if node.op != "call_module" or not isinstance(modules.get(node.target), QuantLayer):
            continue
        layer = modules[node.target]
        bn: nn.BatchNorm2d | None = None
        users = list(node.users)
        if (
            len(users) == 1
            and users[0].op == "call_module"
            and isinstance(modules.get(users[0].target), nn.BatchNorm2d)
            and isinstance(layer.op, nn.Conv2d)
        ):
            bn_node = users[0]
            bn = modules[bn_node.target]
            bn_node.replace_all_uses_with(node)
            gm.graph.erase_node(bn_node)
        replace_module(gm, node.target, ExportQuantLayer(layer, bn))
    gm.graph.lint()
    gm.recompile()
    gm.delete_all_unused_submodules()
    return gm


@torch.no_grad()
def calibrate(frozen: nn.Module, batches: list[Tensor]) -> None:
    """Record the output range of every int8 layer (for its output QDQ)."""
    layers = [m for m in frozen.modules() if isinstance(m, ExportQuantLayer)]
    for m in layers:
        m.calibrating = True
    try:
        for x in batches:
            frozen(x)
    finally:
        for m in layers:
            m.calibrating = False


def _fold_constant_quantize(model: onnx.ModelProto) -> onnx.ModelProto:
    """Replace QuantizeLinear(constant float) by the int8 constant it produces (smaller file)."""
    g = model.graph
    consts: dict[str, np.ndarray] = {t.name: numpy_helper.to_array(t) for t in g.initializer}
    for n in g.node:
        if n.op_type == "Constant" and n.attribute and n.attribute[0].name == "value":
            consts[n.output[0]] = numpy_helper.to_array(n.attribute[0].t)
    keep = []
    new_inits = []
    for n in g.node:
        if n.op_type == "QuantizeLinear" and all(i in consts for i in n.input[:3] if i):
            x, scale = consts[n.input[0]].astype(np.float32), consts[n.input[1]].astype(np.float32)
            zp = consts[n.input[2]] if len(n.input) > 2 and n.input[2] else np.zeros((), np.uint8)
            axis = next((a.i for a in n.attribute if a.name == "axis"), 1)
            if scale.ndim == 1 and x.ndim > 1:
                shape = [1] * x.ndim
                shape[axis] = -1
                scale_b, zp_b = scale.reshape(shape), zp.astype(np.int32).reshape(shape)
            else:
                scale_b, zp_b = scale, zp.astype(np.int32)
            info = np.iinfo(zp.dtype)
            q = np.clip(np.rint(x / scale_b) + zp_b, info.min, info.max).astype(zp.dtype)
            new_inits.append(numpy_helper.from_array(q, n.output[0]))
            continue
        keep.append(n)
    del g.node[:]
    g.node.extend(keep)
    g.initializer.extend(new_inits)
    # Drop constants nobody reads any more.
    used = {i for n in g.node for i in n.input} | {o.name for o in g.output}
    live = [n for n in g.node if not (n.op_type == "Constant" and n.output[0] not in used)]
    del g.node[:]
    g.node.extend(live)
    dead = [t for t in g.initializer if t.name not in used]
    for t in dead:
        g.initializer.remove(t)
    return model


def export_onnx(
    model: nn.Module, input_shape: tuple[int, int, int, int], path: str | Path, calibration: list[Tensor] | None = None
) -> Path:
    """Write ``model`` as ONNX: QDQ for its 8-bit parts if it has QuantLayers, plain float otherwise."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    has_quant = any(isinstance(m, QuantLayer) for m in model.modules())
    net = freeze_for_export(model) if has_quant else copy.deepcopy(model).eval()
    example = torch.zeros(input_shape)
    if has_quant:
        calibrate(net, calibration if calibration else [torch.randn(input_shape)])
    try:
        with torch.no_grad(), warnings.catch_warnings():
            # Tracer warnings are about Python floats taken from buffers: constants here, on purpose.
            warnings.simplefilter("ignore")
            torch.onnx.export(
                net, (example,), str(path), dynamo=False, opset_version=OPSET,
                input_names=["input"], output_names=["logits"], dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}},
            )  # fmt: skip
    except Exception as e:  # noqa: BLE001 - the exporter raises many types
        raise ExportError(f"ONNX export failed: {e}") from None
    proto = onnx.load(str(path))
    if has_quant:
        proto = _fold_constant_quantize(proto)
    onnx.checker.check_model(proto)
    onnx.save(proto, str(path))
    return path


def frozen_model(model: nn.Module, calibration: list[Tensor]) -> nn.Module:
    """The exact network ``export_onnx`` writes, as a torch module (for accuracy checks)."""
    net = freeze_for_export(model)
    calibrate(net, calibration)
    return net


def qdq_summary(path: str | Path) -> dict[str, int]:
    """Counts of QuantizeLinear/DequantizeLinear/Conv/… nodes and int8 initializers in a model."""
    proto = onnx.load(str(path))
    counts: dict[str, int] = {}
    for n in proto.graph.node:
        counts[n.op_type] = counts.get(n.op_type, 0) + 1
    counts["int8_initializers"] = sum(
        1 for t in proto.graph.initializer if t.data_type in (onnx.TensorProto.INT8, onnx.TensorProto.UINT8) and len(t.dims) > 1
    )
    return counts
