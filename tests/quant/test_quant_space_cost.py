"""Bits spaces (ResNet, architecture documents), operator keys with the dtype, size / BOPs / int8-latency costs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from hwnas.opkey import OpSpec
from search.lut import LatencyTable, MissingEntriesError
from search.ops import build_op, check_spec
from search.quant.bits import Bits
from search.quant.cost import BopsCost, Int8LatencyCost, SizeCost, config_cost, config_figures, latency_key
from search.quant.network import BitsConfig, ConfigError, QuantSuperNet
from search.quant.space import SpaceError, get_bits_space


def test_resnet20_space_has_every_conv_and_the_classifier() -> None:
    space = get_bits_space("resnet20")  # 28×28 gray images, 10 classes by default
    layers = space.layers()
    assert space.num_layers == 20  # 19 convolutions + the classifier: the "20" of ResNet-20
    assert sum(lay.weight_params for lay in layers) == 268_336 - 288  # He et al.: 0.27M (no BN/bias here)
    assert len(layers[0].candidates) == 4 * 3  # weights {2,4,8,32} × activations {4,8,32}
    # The image is signed (normalised), every later input follows a ReLU.
    assert layers[0].signed and not any(lay.signed for lay in layers[1:])
    key = layers[1].spec("w4a8").key
    assert key == "qconv_k3_g1_s1_o16@1x16x28x28#w4a8"
    assert OpSpec.parse(key).dtype == "w4a8"
    assert layers[-1].spec("w32a32").key == "qlinear_o10@1x64x1x1"  # fp32 is implied, never written
    assert get_bits_space("resnet20", (3, 32, 32), 10).layers()[0].spec("w8a8").key == "qconv_k3_g1_s1_o16@1x3x32x32#w8a8"


def test_unknown_space_and_bad_pin_are_one_line_errors() -> None:
    with pytest.raises(SpaceError, match="neither a bits space"):
        get_bits_space("resnet21-nope")
    with pytest.raises(SpaceError, match="pinned layer"):
        get_bits_space("resnet8", pins={"no.such.layer": "w8a8"})
    space = get_bits_space("resnet8", pins={"conv1": "w8a8"})
    assert space.layer("conv1").candidates == ("w8a8",)


def test_size_and_bops_follow_the_definitions() -> None:
    space = get_bits_space("resnet8-w8")
    size, bops = SizeCost(), BopsCost()
    params = sum(lay.weight_params for lay in space.layers())
    biases = sum(lay.out_channels for lay in space.layers())
    fp32 = space.uniform("fp32")
    assert config_cost(size, space, fp32) == pytest.approx((params * 32 + biases * 32) / 8 / 1024)
    assert config_cost(size, space, space.uniform("w4a8")) == pytest.approx((params * 4 + biases * 32) / 8 / 1024)
    macs = sum(lay.macs for lay in space.layers())
    assert config_cost(bops, space, space.uniform("w4a8")) == pytest.approx(macs * 32 / 1e6)
    figures = config_figures(space, space.uniform("w2a4"))
    assert 10 < figures["compression_x"] < 16  # 2-bit weights; the 32-bit biases keep it under 16×
    assert figures["bops_reduction_x"] == pytest.approx(1024 / 8)
    # Layer costs come in candidate order, so the search's expected cost is Σ mask · cost.
    costs = size.layer_costs(space)
    lay = space.layers()[1]
    assert costs[1][lay.candidates.index("w2a32")] == pytest.approx(lay.weight_params * 2 / 8 / 1024)


def test_quantized_operators_are_in_the_registry() -> None:
    spec = check_spec("qconv_k3_g1_s2_o32@1x16x28x28#w4a8")
    module = build_op(spec)
    assert module.bits == Bits(4, 8)
    assert module(torch.randn(1, 16, 28, 28)).shape == (1, 32, 14, 14)
    assert build_op("qlinear_o10@1x64x1x1#w2a4")(torch.randn(3, 64, 1, 1)).shape == (3, 10)
    from search.ops import OpError

    with pytest.raises(OpError):
        check_spec("qconv_k3_g1_s1_o16@1x16x28x28#w0a8")


def test_int8_latency_uses_the_int8_kernel_for_up_to_8_bits_and_fp32_otherwise(tmp_path: Path) -> None:
    from search.quant.report import measure_latency
    from search.export import export_op

    space = get_bits_space("resnet8-w4", weight_bits=[4, 8, 32], act_bits=[8, 32])
    keys = Int8LatencyCost(LatencyTable("host", "onnxruntime", 1, {})).required_keys(space)
    assert all(k.endswith("#w8a8") or "#" not in k for k in keys)
    # A real table: every operator exported and timed in ONNX Runtime on this host.
    entries = {}
    for i, key in enumerate(keys):
        path = export_op(key, "onnx", tmp_path / f"op{i}.onnx")
        entries[key] = measure_latency(path, OpSpec.parse(key).shape, warmup=3, runs=15)["median_ms"]
    table = LatencyTable("host", "onnxruntime", 1, entries, overhead_ms=min(entries.values()) / 2)
    cost = Int8LatencyCost(table)
    rows = cost.layer_costs(space)
    lay = space.layers()[1]
    c = list(lay.candidates)
    assert rows[1][c.index("w4a8")] == rows[1][c.index("w8a8")]  # the same int8 kernel
    assert rows[1][c.index("w4a32")] == rows[1][c.index("w32a32")]  # a float side: the fp32 kernel
    assert rows[1][c.index("w8a8")] == pytest.approx(entries[latency_key(lay, "w8a8")] - table.overhead)
    assert cost.fixed_cost(space) == pytest.approx(table.overhead)
    with pytest.raises(MissingEntriesError):
        Int8LatencyCost(LatencyTable("host", "onnxruntime", 1, {keys[0]: 1.0})).layer_costs(space)
    # The same table as a file drives a latency search from the command line.
    from typer.testing import CliRunner

    from search.app.cli import app

    table.save(tmp_path / "lut.json")
    out = tmp_path / "qs"
    r = CliRunner().invoke(
        app,
        [
            "quant-search",
            "--space",
            "resnet8-w4",
            "--cost",
            "latency",
            "--lut",
            str(tmp_path / "lut.json"),
            "--weight-bits",
            "4,8,32",
            "--act-bits",
            "8,32",
            "--subset",
            "200",
            "--val-subset",
            "64",
            "--epochs",
            "1",
            "--batch-size",
            "32",
            "--out",
            str(out),
            "--no-progress",
        ],
    )
    assert r.exit_code == 0, r.output
    doc = json.loads((out / "bits.json").read_text())
    assert doc["meta"]["predicted"]["unit"] == "ms" and doc["meta"]["predicted"]["latency"] > 0
    r = CliRunner().invoke(
        app,
        [
            "quant-search",
            "--space",
            "resnet8-w8",
            "--cost",
            "latency",
            "--lut",
            str(tmp_path / "lut.json"),
            "--subset",
            "64",
            "--out",
            str(tmp_path / "qs2"),
            "--no-progress",
        ],
    )  # other widths: missing
    assert r.exit_code == 1 and "missing from the latency table" in r.output


def test_an_architecture_document_becomes_a_bits_space(tmp_path: Path) -> None:
    from search.space import get_space

    fm = get_space("fbnet-fmnist")
    doc = {"space": "fbnet-fmnist", "choices": [lay.candidates[0] for lay in fm.layers()], "name": "tiny"}
    path = tmp_path / "arch.json"
    path.write_text(json.dumps(doc))
    space = get_bits_space(str(path))
    assert space.name == "tiny"
    assert space.input_shape == (1, 28, 28)
    kinds = {lay.kind for lay in space.layers()}
    assert kinds == {"conv", "linear"}
    # Depthwise convolutions keep their groups in the key.
    assert any(lay.groups > 1 and f"_g{lay.groups}_" in lay.spec("w8a8").key for lay in space.layers())
    net = QuantSuperNet(space)
    assert net(torch.randn(2, 1, 28, 28)).shape == (2, 10)
    # The bits document carries the architecture inline: it rebuilds without the original file.
    config = net.argmax_config()
    saved = config.save(tmp_path / "bits.json")
    path.unlink()
    again = BitsConfig.load(saved)
    assert again.id == config.id
    assert again.build()(torch.randn(1, 1, 28, 28)).shape == (1, 10)


def test_bits_documents_are_checked() -> None:
    space = get_bits_space("resnet8-w4")
    with pytest.raises(ConfigError, match="unknown layers"):
        BitsConfig(space, {**space.uniform("w8a8"), "nope": "w8a8"})
    with pytest.raises(ConfigError, match="no bits"):
        BitsConfig(space, {"conv1": "w8a8"})
    with pytest.raises(ConfigError, match="kind"):
        BitsConfig.from_json({"bits": {}})
