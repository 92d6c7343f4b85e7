"""The operator registry: every candidate builds, keeps the promised shape, and a new operator is one registration."""

from __future__ import annotations

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
