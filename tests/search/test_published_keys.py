"""hwnas/published.py: the published key grammars (ProxylessNAS, OFA, HW-NAS-Bench) to operator keys and back."""

from __future__ import annotations

import json

import pytest
import yaml

from hwnas.opkey import OpSpec
from hwnas.published import UnmappableKey, from_published, map_keys, ofa_net_config_keys, proxyless_net_config_keys, to_published
from tests.support import synthetic_tables as synthetic
from tests.support.reference_data import OFA_NET, ofa_lut, ref


@pytest.mark.parametrize(
    ("grammar", "published", "ours"),
    [
        (
            "proxyless",
            "expanded_conv-input:56x56x24-output:28x28x40-expand:6-kernel:5-stride:2-idskip:0",
            "ir_k5_e6_g1_s2_o40@1x24x56x56",
        ),
        (
            "proxyless",
            "expanded_conv-input:112x112x32-output:112x112x16-expand:1-kernel:3-stride:1-idskip:0",
            "mb_k3_s1_o16_m32@1x32x112x112",
        ),
        ("proxyless", "Conv-input:224x224x3-output:112x112x32", "conv_k3_s2_o32@1x3x224x224"),
        ("proxyless", "Conv_1-input:7x7x320-output:7x7x1280", "conv_k1_s1_o1280@1x320x7x7"),
        ("proxyless", "Logits-input:7x7x1280-output:1000", "gap_fc_o1000@1x1280x7x7"),
        (
            "ofa",
            "expanded_conv-input:14x14x136-output:7x7x192-expand:408-kernel:3-stride:2-idskip:0-se:1-hs:1",
            "mb_se_hs_k3_s2_o192_m408@1x136x14x14",
        ),
        (
            "ofa",
            "expanded_conv-input:112x112x24-output:56x56x32-expand:144-kernel:3-stride:2-idskip:0-se:0-hs:0",
            "mb_k3_s2_o32_m144@1x24x112x112",
        ),
        (
            "ofa",
            "expanded_conv-input:28x28x48-output:14x14x96-expand:144-kernel:5-stride:2-idskip:0-se:0-hs:1",
            "mb_hs_k5_s2_o96_m144@1x48x28x28",
        ),
        ("ofa", "Conv-input:224x224x3-output:112x112x24", "conv_hs_k3_s2_o24@1x3x224x224"),
        ("ofa", "Conv_1-input:7x7x192-output:7x7x1152", "conv_hs_k1_s1_o1152@1x192x7x7"),
        ("ofa", "AvgPool2D-input:7x7x1152-output:1x1x1152", "gap@1x1152x7x7"),
        ("ofa", "Conv_2-input:1x1x1152-output:1x1x1536", "conv_hs_nobn_k1_s1_o1536@1x1152x1x1"),
        ("ofa", "Logits-input:1x1x1536-output:1000", "fc_o1000@1x1536x1x1"),
        ("hwnasbench", "ConvBlock_H32_W32_Cin16_Cout24_exp6_kernel3_stride1_group1", "ir_k3_e6_g1_s1_o24@1x16x32x32"),
        ("hwnasbench", "ConvBlock_H16_W16_Cin32_Cout32_exp1_kernel5_stride1_group2", "ir_k5_e1_g2_s1_o32@1x32x16x16"),
        ("hwnasbench", "Skip_H32_W32_Cin16_Cout16_stride1", "skip_s1_o16@1x16x32x32"),
        ("hwnasbench", "ConvNorm_H32_W32_Cin3_Cout16_kernel3_stride1_group1", "conv_k3_s1_o16@1x3x32x32"),
        ("hwnasbench", "AvgP_H4_W4_Cin1504_Cout1504_kernel4_stride1", "gap@1x1504x4x4"),
        ("hwnasbench", "FC_Cin1504_Cout100", "fc_o100@1x1504x1x1"),
    ],
)
def test_published_keys_map_to_one_operator_key_and_back(grammar: str, published: str, ours: str) -> None:
    assert from_published(grammar, published).key == ours  # type: ignore[arg-type]
    assert to_published(grammar, ours) == published  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("grammar", "published", "reason"),
    [
        (
            "proxyless",
            "expanded_conv-input:56x56x24-output:56x56x24-expand:3-kernel:3-stride:1-idskip:0",
            "idskip:0 but our block has a residual",
        ),
        (
            "proxyless",
            "expanded_conv-input:56x56x24-output:28x28x24-expand:3-kernel:3-stride:1-idskip:0",
            "stride 1 does not take 56x56 to 28x28",
        ),
        (
            "proxyless",
            "expanded_conv-input:56x56x24-output:28x28x40-expand:6-kernel:5-stride:2-idskip:0-se:0-hs:0",
            "fields must be",
        ),
        ("ofa", "expanded_conv-input:56x56x24-output:28x28x40-expand:6-kernel:5-stride:2-idskip:0", "fields must be"),
        (
            "ofa",
            "expanded_conv-input:56x56x24-output:28x28x40-expand:96-kernel:4-stride:2-idskip:0-se:0-hs:0",
            "kernel 4 is not odd",
        ),
        ("ofa", "Pool-input:7x7x320-output:1x1x320", "'Pool'"),
        ("proxyless", "AvgPool2D-input:7x7x1152-output:1x1x1152", "not a block the proxyless grammar defines"),
        ("hwnasbench", "ConvNorm_H32_W32_Cin3_Cout16_kernel3_stride1_group2", "grouped ConvNorm"),
        ("hwnasbench", "ConvBlock_H32_W32_Cin16_Cout24_kernel3_exp6_stride1_group1", "fields must be"),
        ("ofa", "Conv-input:224x224x0-output:112x112x24", "not HxWxC"),
    ],
)
def test_keys_without_an_exact_operator_key_are_refused_with_the_reason(grammar: str, published: str, reason: str) -> None:
    with pytest.raises(UnmappableKey, match=reason.replace("(", r"\(")) as err:
        from_published(grammar, published)  # type: ignore[arg-type]
    assert err.value.key == published


def test_grammars_that_cannot_express_a_spec_say_none() -> None:
    assert (
        to_published("proxyless", "ir_k3_e1_g1_s1_o16@1x32x112x112") is None
    )  # our e1 keeps the expansion conv; theirs has none
    assert to_published("proxyless", "mb_se_hs_k3_s2_o192_m408@1x136x14x14") is None
    assert to_published("ofa", "ir_k3_e6_g1_s2_o24@1x16x112x112") is None
    assert to_published("ofa", "mb_k3_s2_o32_m144@1x24x112x112#int8") is None
    assert to_published("hwnasbench", "mb_k3_s2_o32_m144@1x24x112x112") is None
    assert (
        to_published("proxyless", OpSpec.parse("mb_k3_s1_o16_m32@1x32x112x112"))
        == "expanded_conv-input:112x112x32-output:112x112x16-expand:1-kernel:3-stride:1-idskip:0"
    )


def every_key_maps_and_comes_back(grammar: str, keys: list[str]) -> None:
    mapping = map_keys(grammar, keys)  # type: ignore[arg-type]
    assert mapping.unmappable == {} and len(mapping.mapped) == len(keys)
    assert all(to_published(grammar, spec) == key for key, spec in mapping.mapped.items())  # type: ignore[arg-type]


@pytest.mark.parametrize("resolution", [160, 176, 192, 208, 224])
def test_every_key_of_the_shipped_ofa_files_maps_and_comes_back(resolution: int) -> None:
    every_key_maps_and_comes_back("ofa", list(yaml.safe_load(ref(ofa_lut(resolution)).read_text())))


def test_every_key_of_a_table_in_the_proxylessnas_layout_maps_and_comes_back() -> None:
    # ProxylessNAS's Pixel 1 table is not shipped: a synthetic one with every key its layout has (72).
    keys = list(yaml.safe_load(synthetic.proxyless_yaml()))
    assert len(keys) == 72
    every_key_maps_and_comes_back("proxyless", keys)


def test_the_published_ofa_network_names_keys_of_its_table() -> None:
    ofa = yaml.safe_load(ref(ofa_lut(224)).read_text())
    net = json.loads(ref(OFA_NET).read_text())
    keys = ofa_net_config_keys(net, 224)
    assert len(keys) == 21 and all(k in ofa for k in keys)
    assert keys[1] == "expanded_conv-input:112x112x24-output:112x112x24-expand:24-kernel:3-stride:1-idskip:1-se:0-hs:0"


def test_a_proxylessnas_network_names_the_keys_its_estimator_sums() -> None:
    # A net.config in ProxylessNAS's layout (synthetic: the released one is not shipped) with stage 2 at 32 channels
    # as released, dropped layers and identity shortcuts, against the synthetic table whose stage 2 is at 24.
    proxyless = yaml.safe_load(synthetic.proxyless_yaml())
    keys = proxyless_net_config_keys(json.loads(json.dumps(synthetic.net_config())))
    assert keys == synthetic.network_keys()
    dropped = sum(b is None for b in synthetic.network_blocks())
    assert dropped > 0 and len(keys) == 1 + 22 - dropped + 2
    missing = [k for k in keys if k not in proxyless]
    assert missing and missing == [k for k in keys if "56x56x32" in k]  # the width-32 stage, which the table lacks
