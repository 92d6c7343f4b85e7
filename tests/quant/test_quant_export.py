"""QDQ ONNX export: batch norm folded exactly, 8-bit parts as int8 tensors and int8 kernels in ONNX Runtime."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from torch import nn

from search.quant.export import export_onnx, freeze_for_export, frozen_model, qdq_summary
from search.quant.network import BitsConfig
from search.quant.space import get_bits_space


def _trained_like(config: BitsConfig) -> nn.Module:
    """A network with non-trivial batch-norm statistics and calibrated clips (as after training)."""
    model = config.build()
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.weight.data.uniform_(-1.5, 1.5)  # negative γ too: folding must flip those channels
            m.bias.data.normal_()
            m.running_mean.normal_()
            m.running_var.uniform_(0.5, 2.0)
    model.train()
    model(torch.randn(16, *config.space.input_shape))  # sets every PACT clip from data
    return model.eval()


@pytest.mark.parametrize("tag", ["w8a8", "w4a4", "w2a8", "w8a32", "w32a4"])
def test_folding_batch_norm_changes_nothing(tag: str) -> None:
    space = get_bits_space("resnet8-w8")
    model = _trained_like(BitsConfig(space, space.uniform(tag)))
    frozen = freeze_for_export(model)  # no calibration: no output quantization, only the fold
    assert not any(isinstance(m, nn.BatchNorm2d) for m in frozen.modules())
    x = torch.randn(4, 1, 28, 28)
    with torch.no_grad():
        ref, got = model(x), frozen(x)
    # Exact up to float rounding (an occasional activation rounding tie may flip one level).
    assert torch.allclose(ref, got, atol=2e-2 * float(ref.abs().max()))


def test_mixed_network_exports_its_8_bit_parts_as_qdq(tmp_path: Path) -> None:
    space = get_bits_space("resnet8-w8")
    bits = space.uniform("w8a8")
    bits["layers.1.conv2"] = "w32a32"  # one float layer stays float
    bits["layers.2.conv1"] = "w4a4"
    config = BitsConfig(space, bits)
    model = _trained_like(config)
    calib = [torch.randn(32, 1, 28, 28)]
    path = export_onnx(model, (1, 1, 28, 28), tmp_path / "m.onnx", calibration=calib)
    counts = qdq_summary(path)
    assert counts["int8_initializers"] == space.num_layers - 1  # every quantized weight stored as int8
    assert counts["QuantizeLinear"] >= 2 * (space.num_layers - 1)
    assert "BatchNormalization" not in counts
    # ONNX Runtime turns the QDQ groups into integer kernels.
    so = ort.SessionOptions()
    so.optimized_model_filepath = str(tmp_path / "opt.onnx")
    sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    ops = [n.op_type for n in onnx.load(str(tmp_path / "opt.onnx")).graph.node]
    assert ops.count("QLinearConv") == space.num_layers - 2  # all convs but the float one
    assert "QGemm" in ops
    x = torch.randn(8, 1, 28, 28)
    got = sess.run(None, {"input": x.numpy()})[0]
    with torch.no_grad():
        ref = frozen_model(model, calib)(x).numpy()
    # ONNX Runtime's integer kernels requantize between layers with their own rounding (it changed between
    # releases): with onnxruntime 1.32 the outputs differ by up to ~8 output quantization steps, 6% of the range.
    assert np.abs(got - ref).max() <= 0.1 * np.abs(ref).max()
    assert (got.argmax(1) == ref.argmax(1)).mean() >= 0.75


def test_fp32_configuration_exports_plain_float(tmp_path: Path) -> None:
    space = get_bits_space("resnet8-w4")
    model = _trained_like(BitsConfig(space, space.uniform("fp32")))
    path = export_onnx(model, (1, 1, 28, 28), tmp_path / "f.onnx")
    counts = qdq_summary(path)
    assert "QuantizeLinear" not in counts and counts["int8_initializers"] == 0
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    x = torch.randn(2, 1, 28, 28)
    with torch.no_grad():
        assert np.allclose(sess.run(None, {"input": x.numpy()})[0], model(x).numpy(), atol=1e-4)
