"""The operator registry: every candidate builds, keeps the promised shape, and a new operator is one registration."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from hwnas.opkey import OpSpec
from search.blocks import ChannelShuffle, InvertedResidual
from search.ops import OpError, build_op, candidate_spec, output_shape, register_op, registered_ops, unregister_op
from search.space import SearchSpace, get_space

FBNET_CANDIDATES = ["ir_k3_e1", "ir_k3_e1_g2", "ir_k3_e3", "ir_k3_e6", "ir_k5_e1", "ir_k5_e1_g2", "ir_k5_e3", "ir_k5_e6", "skip"]


def test_candidate_spec_places_a_candidate_in_a_layer() -> None:
    assert candidate_spec("ir_k3_e6", (1, 16, 112, 112), 24, 2).key == "ir_k3_e6_g1_s2_o24@1x16x112x112"
    assert candidate_spec("ir_k5_e1_g2", (1, 24, 56, 56), 24, 1).key == "ir_k5_e1_g2_s1_o24@1x24x56x56"
    assert candidate_spec("skip", (1, 16, 112, 112), 16, 1).key == "skip_s1_o16@1x16x112x112"
    assert candidate_spec("maxpool_k3", (1, 16, 28, 28), 16, 1).key == "maxpool_k3_s1_o16@1x16x28x28"
    assert candidate_spec("conv_k3", (1, 3, 224, 224), 16, 2).key == "conv_k3_s2_o16@1x3x224x224"


@pytest.mark.parametrize("candidate", FBNET_CANDIDATES + ["maxpool_k3", "avgpool_k3", "ir_cdw_k3_e6"])
@pytest.mark.parametrize("geometry", [((1, 16, 20, 20), 16, 1), ((1, 16, 20, 20), 24, 2), ((1, 8, 7, 7), 16, 2)])
def test_every_candidate_builds_with_the_shape_it_promises(candidate: str, geometry: tuple) -> None:
    in_shape, out_ch, stride = geometry
    spec = candidate_spec(candidate, in_shape, out_ch, stride)
    module = build_op(spec).eval()
    y = module(torch.randn(in_shape))
    assert tuple(y.shape) == output_shape(spec) == (1, out_ch, -(-in_shape[2] // stride), -(-in_shape[3] // stride))
    assert module.op_key == spec.key


def test_inverted_residual_structure() -> None:
    # e1_g2: both 1x1 convs grouped, a channel shuffle after the first; residual when shapes match.
    m = build_op("ir_k3_e1_g2_s1_o24@1x24x8x8")
    assert isinstance(m, InvertedResidual) and m.use_residual
    assert isinstance(m.shuffle, ChannelShuffle) and m.shuffle.groups == 2
    assert m.pw[0].groups == 2 and m.pwl[0].groups == 2 and m.dw[0].groups == 24
    assert not isinstance(m.pwl[-1], nn.ReLU)  # linear bottleneck: no ReLU after the last 1x1
    e6 = build_op("ir_k5_e6_g1_s2_o32@1x24x8x8")
    assert not e6.use_residual and e6.pw[0].out_channels == 144 and e6.dw[0].kernel_size == (5, 5) and e6.dw[0].stride == (2, 2)


def test_channel_shuffle_interleaves_groups() -> None:
    x = torch.arange(4.0).reshape(1, 4, 1, 1)
    assert ChannelShuffle(2)(x).flatten().tolist() == [0.0, 2.0, 1.0, 3.0]


def test_skip_is_identity_or_projection() -> None:
    x = torch.randn(1, 16, 8, 8)
    assert torch.equal(build_op("skip_s1_o16@1x16x8x8")(x), x)
    proj = build_op("skip_s2_o24@1x16x8x8")
    assert proj.proj is not None and tuple(proj(x).shape) == (1, 24, 4, 4)


def test_gap_fc_gives_logits() -> None:
    assert tuple(build_op("gap_fc_o1000@1x1984x7x7")(torch.randn(1, 1984, 7, 7)).shape) == (1, 1000)
    assert output_shape("gap_fc_o1000@1x1984x7x7") == (1, 1000, 1, 1)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: build_op("conv9_k3_s1_o8@1x3x8x8"), "not registered"),
        (lambda: build_op("ir_k3_g1_s1_o8@1x8x8x8"), "missing parameter(s) e"),
        (lambda: build_op("ir_k3_e1_g1_s1_o8_z3@1x8x8x8"), "unknown parameter(s) z"),
        (lambda: build_op("ir_k3_e1_g3_s1_o8@1x8x8x8"), "not divisible by groups g3"),
        (lambda: build_op("ir_k4_e1_g1_s1_o8@1x8x8x8"), "must be odd"),
        (lambda: build_op("ir_k3_e1@1x8x8"), "shape"),
        (lambda: candidate_spec("ir_k3_e6_s2", (1, 8, 8, 8), 8, 1), "must not set s"),
        (lambda: candidate_spec("IR_k3", (1, 8, 8, 8), 8, 1), "candidate 'IR_k3'"),
    ],
)
def test_bad_operators_fail_clearly(call, message: str) -> None:
    with pytest.raises(OpError, match=message.replace("(", r"\(").replace(")", r"\)")):
        call()


def test_a_new_operator_is_one_registration_and_everything_sees_it() -> None:
    # The docs/search-spaces.md example: a depthwise-separable conv, searchable right away.
    @register_op("sep", params=("k",), doc="depthwise kxk + pointwise 1x1", replace=True)
    def _sep(spec: OpSpec) -> nn.Module:
        c, o, k, s = spec.shape[1], spec.get("o"), spec.get("k"), spec.get("s")
        return nn.Sequential(nn.Conv2d(c, c, k, s, k // 2, groups=c), nn.Conv2d(c, o, 1))

    try:
        doc = get_space("fbnet-fmnist").to_dict()
        doc["name"] = "with-sep"
        doc["candidates"] = doc["candidates"] + ["sep_k3", "sep_k7"]
        space = SearchSpace.from_dict(doc)
        assert "sep_k7_s2_o16@1x8x28x28" in space.op_keys()
        from search.cost import FlopsCost

        costs = FlopsCost().layer_costs(space)
        assert costs[1][-1] > costs[1][-2] > 0  # k7 costs more than k3
        spec = space.layers()[1].spec("sep_k7")
        assert tuple(build_op(spec)(torch.randn(spec.shape)).shape) == output_shape(spec) == (1, 16, 14, 14)
        assert "sep" in registered_ops()
    finally:
        unregister_op("sep")  # the registry is global to the process


# ---- MobileNetV3 / Once-for-All / ProxylessNAS operators (issue 15) -----------------------------
PUBLISHED_OP_KEYS = {
    # key: output shape
    "mb_se_hs_k3_s2_o192_m408@1x136x14x14": (1, 192, 7, 7),
    "mb_k3_s2_o32_m144@1x24x112x112": (1, 32, 56, 56),
    "mb_se_k5_s1_o48_m144@1x48x28x28": (1, 48, 28, 28),
    "mb_hs_k7_s1_o96_m288@1x96x14x14": (1, 96, 14, 14),
    "mb_k3_s1_o16_m32@1x32x112x112": (1, 16, 112, 112),
    "conv_hs_k3_s2_o24@1x3x224x224": (1, 24, 112, 112),
    "conv_k1_s1_o1280@1x320x7x7": (1, 1280, 7, 7),
    "conv_hs_nobn_k1_s1_o1536@1x1152x1x1": (1, 1536, 1, 1),
    "gap@1x1152x7x7": (1, 1152, 1, 1),
    "fc_o1000@1x1536x1x1": (1, 1000, 1, 1),
    "zero_s1_o32@1x32x56x56": (1, 32, 56, 56),
}


@pytest.mark.parametrize("key", sorted(PUBLISHED_OP_KEYS))
def test_published_operator_keys_parse_round_trip_and_build_to_their_shape(key: str) -> None:
    spec = OpSpec.parse(key)
    assert spec.key == key and OpSpec.parse(spec.key) == spec
    module = build_op(spec).eval()
    with torch.no_grad():
        y = module(torch.randn(spec.shape))
    assert output_shape(spec) == PUBLISHED_OP_KEYS[key]
    assert tuple(y.shape) + (1,) * (4 - y.dim()) == PUBLISHED_OP_KEYS[key] and module.op_key == key


def test_mb_candidates_give_the_mid_width_the_way_ofa_rounds_it() -> None:
    # e -> m = make_divisible(C_in * e, 8): one candidate list for a stage's first and later layers.
    assert candidate_spec("mb_se_hs_k3_e3", (1, 136, 14, 14), 192, 2).key == "mb_se_hs_k3_s2_o192_m408@1x136x14x14"
    assert candidate_spec("mb_k3_e6", (1, 24, 112, 112), 32, 2).key == "mb_k3_s2_o32_m144@1x24x112x112"
    assert candidate_spec("mb_k3_e1", (1, 32, 112, 112), 16, 1).key == "mb_k3_s1_o16_m32@1x32x112x112"
    assert candidate_spec("mb_k5_m100", (1, 20, 8, 8), 20, 1).key == "mb_k5_s1_o20_m100@1x20x8x8"
    assert candidate_spec("mb_k3_e3", (1, 12, 8, 8), 12, 1).get("m") == 40  # 36 rounds up to a multiple of 8
    with pytest.raises(OpError, match="m or the expansion e, not both"):
        candidate_spec("mb_k3_e3_m40", (1, 12, 8, 8), 12, 1)
    with pytest.raises(OpError, match="below the input channels"):
        build_op("mb_k3_s1_o16_m8@1x16x8x8")


def test_mb_structure_se_hswish_and_the_expansion_conv() -> None:
    from search.blocks import MobileBlock, SqueezeExcite

    full = build_op("mb_se_hs_k3_s2_o192_m408@1x136x14x14")
    assert isinstance(full, MobileBlock) and full.expand is not None and full.expand[0].out_channels == 408
    assert full.dw[0].groups == 408 and full.dw[0].stride == (2, 2) and isinstance(full.dw[-1], nn.Hardswish)
    assert isinstance(full.se, SqueezeExcite) and full.se.reduce.out_channels == 104  # 408 // 4 = 102, rounded to 8
    assert isinstance(full.se.gate, nn.Hardsigmoid) and isinstance(full.expand[-1], nn.Hardswish)
    plain = build_op("mb_k3_s2_o32_m144@1x24x112x112")
    assert plain.se is None and not any(isinstance(m, nn.Hardswish) for m in plain.modules())
    assert any(isinstance(m, nn.ReLU) for m in plain.modules())
    no_expand = build_op("mb_k3_s1_o16_m32@1x32x112x112")  # mid == input: OFA/ProxylessNAS expand-1 block
    assert no_expand.expand is None and no_expand.dw[0].in_channels == 32


def test_mb_squeeze_excite_gates_each_channel() -> None:
    from search.blocks import SqueezeExcite

    se = SqueezeExcite(16).eval()
    x = torch.randn(2, 16, 5, 5)
    with torch.no_grad():
        gate = se(x) / x
    # One factor in [0, 1] per (image, channel), constant over the map: a channel gate.
    assert torch.allclose(gate, gate[:, :, :1, :1].expand_as(gate), atol=1e-5)
    assert float(gate.min()) >= 0.0 and float(gate.max()) <= 1.0


@pytest.mark.parametrize(
    ("key", "residual"),
    [
        ("mb_k3_s1_o24_m72@1x24x8x8", True),
        ("mb_se_hs_k5_s1_o24_m24@1x24x8x8", True),
        ("mb_k3_s2_o24_m72@1x24x8x8", False),
        ("mb_k3_s1_o32_m72@1x24x8x8", False),
    ],
)
def test_mb_residual_exactly_when_stride_1_and_channels_unchanged(key: str, residual: bool) -> None:
    m = build_op(key).eval()
    assert m.use_residual is residual
    nn.init.zeros_(m.project[1].weight)  # the block's own branch now outputs exactly 0
    x = torch.randn(OpSpec.parse(key).shape)
    with torch.no_grad():
        y = m(x)
    assert torch.equal(y, x) if residual else float(y.abs().max()) == 0.0


def test_hswish_convs_pool_and_classifier() -> None:
    stem = build_op("conv_hs_k3_s2_o24@1x3x224x224")
    assert isinstance(stem[1], nn.BatchNorm2d) and isinstance(stem[2], nn.Hardswish)
    mix = build_op("conv_hs_nobn_k1_s1_o1536@1x1152x1x1")
    assert mix[0].bias is None and not any(isinstance(m, nn.BatchNorm2d) for m in mix) and isinstance(mix[-1], nn.Hardswish)
    x = torch.randn(1, 8, 5, 5)
    assert torch.allclose(build_op("gap@1x8x5x5")(x), x.mean(dim=(2, 3), keepdim=True))
    fc = build_op("fc_o10@1x8x1x1")
    assert tuple(fc(torch.randn(3, 8, 1, 1)).shape) == (3, 10)


def test_zero_is_a_free_dropped_layer() -> None:
    from search.cost import FlopsCost, LatencyCost
    from search.lut import LatencyTable, MissingEntriesError
    from search.ops import is_free

    x = torch.randn(1, 32, 6, 6)
    assert torch.equal(build_op("zero_s1_o32@1x32x6x6")(x), x)
    assert is_free("zero_s1_o32@1x32x6x6") and not is_free("skip_s1_o32@1x32x6x6")
    for bad in ("zero_s2_o32@1x32x6x6", "zero_s1_o48@1x32x6x6"):
        with pytest.raises(OpError, match="only an identity can be dropped"):
            build_op(bad)
    # A table has no entry for a layer that is not there; the cost models price it at nothing.
    doc = {
        "name": "z",
        "input_shape": [3, 16, 16],
        "classes": 10,
        "stem": {"op": "conv_k3", "channels": 8},
        "stages": [{"channels": 8, "repeats": 1, "stride": 1, "candidates": ["ir_k3_e3", "zero"]}],
    }
    space = SearchSpace.from_dict(doc)
    entries = {k: 1.0 for k in space.op_keys() if not k.startswith("zero")}
    table = LatencyTable("d", "r", 1, entries, overhead_ms=0.25)
    assert LatencyCost(table).layer_costs(space) == [[0.75, 0.0]] and FlopsCost().layer_costs(space)[0][1] == 0.0
    del table.entries[space.layers()[0].spec("ir_k3_e3").key]
    with pytest.raises(MissingEntriesError) as info:
        LatencyCost(table).layer_costs(space)
    assert info.value.keys == ["ir_k3_e3_g1_s1_o8@1x8x16x16"]  # the real operator is named, zero never is


@pytest.mark.parametrize(
    "key", ["mb_se_hs_k5_s1_o24_m72@1x24x8x8", "conv_hs_nobn_k1_s1_o32@1x16x1x1", "gap@1x16x5x5", "fc_o10@1x16x1x1"]
)
def test_the_device_agent_exports_the_new_operators_and_onnxruntime_agrees(key: str, tmp_path: Path) -> None:
    # The agent turns a job's key into a model through the same registry (device_agent/models.py -> search.export).
    import numpy as np
    import onnxruntime as ort

    from device_agent.models import ModelCache
    from search.export import op_module

    item = ModelCache(tmp_path).item(key, "onnxruntime")
    assert item.model.is_file() and tuple(item.input_shape) == OpSpec.parse(key).shape
    module, x = op_module(key)
    with torch.no_grad():
        want = module(x).numpy()
    session = ort.InferenceSession(str(item.model), providers=["CPUExecutionProvider"])
    got = session.run(None, {session.get_inputs()[0].name: x.numpy()})[0]
    np.testing.assert_allclose(got, want, atol=1e-4, rtol=0)
    assert ModelCache(tmp_path).item(key, "torchscript").model.stat().st_size > 0
