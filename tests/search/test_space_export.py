"""Export: ONNX (TorchScript-based exporter) runs in onnxruntime and matches PyTorch; TorchScript lite loads."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch
from typer.testing import CliRunner

from search.arch import Architecture, build
from search.app.cli import app
from search.export import ExportError, export_arch, export_module, export_op, op_module


def _ort(path: Path, x: torch.Tensor) -> np.ndarray:
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: x.numpy()})[0]


def _arch() -> Architecture:
    return Architecture(
        space="fbnet-fmnist",
        name="t",
        choices=["ir_k3_e1_g2", "skip", "ir_k5_e6", "maxpool_k3", "ir_k3_e3", "avgpool_k3", "ir_k5_e1_g2", "skip", "ir_k3_e6"],
    )


@pytest.mark.parametrize(
    "key",
    [
        "ir_k5_e1_g2_s1_o24@1x24x14x14",  # grouped 1x1 convs + channel shuffle + residual
        "ir_k3_e6_g1_s2_o32@1x24x14x14",
        "skip_s1_o16@1x16x8x8",  # pure identity
        "avgpool_k3_s2_o32@1x16x8x8",  # pool + projection
        "conv_k3_s2_o16@1x3x32x32",
        "gap_fc_o10@1x64x4x4",
    ],
)
def test_operator_onnx_matches_pytorch(key: str, tmp_path: Path) -> None:
    path = export_op(key, "onnx", tmp_path / "op.onnx")
    module, x = op_module(key)  # what export_op exported: seed-0 weights, seed-0 input
    with torch.no_grad():
        ref = module(x).numpy()
    np.testing.assert_allclose(_ort(path, x), ref, atol=1e-4, rtol=0)


def test_architecture_onnx_and_torchscript_with_weights(tmp_path: Path) -> None:
    arch = _arch()
    net = build(arch)
    with torch.no_grad():  # "trained" weights: BN statistics away from their defaults
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 1.5)
    torch.save(net.state_dict(), tmp_path / "w.pt")
    x = torch.randn(2, 1, 28, 28)
    with torch.no_grad():
        ref = net.eval()(x).numpy()

    onnx_path = export_arch(arch, "onnx", tmp_path / "a.onnx", weights=tmp_path / "w.pt")
    np.testing.assert_allclose(_ort(onnx_path, x[:1]), ref[:1], atol=1e-4, rtol=0)

    ptl = export_arch(arch, "torchscript", tmp_path / "a.ptl", weights=tmp_path / "w.pt")
    from torch.jit.mobile import _load_for_lite_interpreter

    lite = _load_for_lite_interpreter(str(ptl))
    np.testing.assert_allclose(lite(x[:1]).detach().numpy(), ref[:1], atol=1e-4, rtol=0)


def test_weights_that_do_not_fit_are_a_clear_error(tmp_path: Path) -> None:
    torch.save({"state_dict": {"stem.0.weight": torch.zeros(1)}}, tmp_path / "w.pt")
    with pytest.raises(ExportError, match="does not fit the architecture"):
        export_arch(_arch(), "onnx", tmp_path / "a.onnx", weights=tmp_path / "w.pt")
    with pytest.raises(ExportError, match="not one of onnx, torchscript"):
        export_module(torch.nn.Identity(), torch.zeros(1), "tflite", tmp_path / "x")


def test_cli_export(tmp_path: Path) -> None:
    runner = CliRunner()
    arch_file = _arch().save(tmp_path / "a.json")
    out = runner.invoke(app, ["export", str(arch_file), "--format", "onnx", "-o", str(tmp_path / "a.onnx")])
    assert out.exit_code == 0, out.output
    assert "checked: onnxruntime matches PyTorch" in out.output and (tmp_path / "a.onnx").stat().st_size > 1000
    key = "ir_k3_e6_g1_s2_o24@1x16x28x28"
    out = runner.invoke(app, ["export", key, "-f", "torchscript", "-o", str(tmp_path / "op.ptl")])
    assert out.exit_code == 0, out.output and (tmp_path / "op.ptl").exists()
    bad = runner.invoke(app, ["export", "ir_k3_e6_s2_o24@1x16x28x28", "-f", "onnx", "-o", str(tmp_path / "x.onnx")])
    assert bad.exit_code == 1 and bad.output.startswith("error: ") and "missing parameter(s) g" in bad.output
