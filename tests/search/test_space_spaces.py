"""Search spaces: the FBNet table, the small spaces, operator keys, and clear errors for malformed documents."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import yaml

from search.space import SearchSpace, SpaceError, get_space, list_spaces, load_space


def test_builtin_spaces() -> None:
    assert {"fbnet", "fbnet-fmnist", "fbnet-cifar"} <= set(list_spaces())


def test_fbnet_space_is_the_papers_table_1() -> None:
    s = get_space("fbnet")
    layers = s.layers()
    assert s.num_layers == 22 and all(len(layer.candidates) == 9 for layer in layers)
    assert [layer.out_channels for layer in layers] == [16] + [24] * 4 + [32] * 4 + [64] * 4 + [112] * 4 + [184] * 4 + [352]
    assert [i for i, layer in enumerate(layers) if layer.stride == 2] == [1, 5, 9, 17]
    assert layers[0].in_shape == (1, 16, 112, 112) and layers[-1].in_shape == (1, 184, 7, 7)
    assert s.size == 9**22
    assert [spec.key for spec in s.fixed_specs()] == [
        "conv_k3_s2_o16@1x3x224x224",
        "conv_k1_s1_o1984@1x352x7x7",
        "gap_fc_o1000@1x1984x7x7",
    ]


def test_fbnet_distinct_operator_keys() -> None:
    keys = get_space("fbnet").op_keys()
    # 12 distinct layer geometries (layer 0; first and other layers of the five 4-layer stages; the
    # last layer) x 9 candidates, plus stem, head conv and classifier; equal specs share one key.
    assert len(keys) == len(set(keys)) == 12 * 9 + 3 == 111
    assert "conv_k3_s2_o16@1x3x224x224" in keys and "gap_fc_o1000@1x1984x7x7" in keys
    assert "ir_k3_e6_g1_s2_o24@1x16x112x112" in keys and "skip_s1_o24@1x24x56x56" in keys


def test_small_spaces_are_small() -> None:
    fm = get_space("fbnet-fmnist")
    assert fm.input_shape == (1, 28, 28) and fm.classes == 10 and fm.stem.stride == 1
    assert 8 <= fm.num_layers <= 10 and "maxpool_k3" in fm.layers()[0].candidates
    assert len(fm.op_keys()) == 9 * 11 + 3
    cifar = get_space("fbnet-cifar")
    assert cifar.input_shape == (3, 32, 32) and cifar.layers()[-1].out_shape[2] >= 2  # no 1x1 maps on CIFAR


def test_with_input_recomputes_geometry() -> None:
    s = get_space("fbnet").with_input(96, classes=10, head_channels=1504)
    assert s.stem_spec().key == "conv_k3_s2_o16@1x3x96x96"
    assert s.head_specs()[-1].key == "gap_fc_o10@1x1504x3x3"


def test_round_trip_through_yaml_and_json_files(tmp_path: Path) -> None:
    s = get_space("fbnet-cifar")
    (tmp_path / "s.yaml").write_text(yaml.safe_dump(s.to_dict()))
    (tmp_path / "s.json").write_text(json.dumps(s.to_dict()))
    for f in ("s.yaml", "s.json"):
        loaded = load_space(tmp_path / f)
        assert loaded.op_keys() == s.op_keys() and loaded.to_dict() == s.to_dict()
    assert get_space(str(tmp_path / "s.yaml")).num_layers == s.num_layers


def _doc() -> dict:
    return copy.deepcopy(get_space("fbnet-fmnist").to_dict())


def _set(path: str, value):  # type: ignore[no-untyped-def]
    def edit(doc: dict) -> None:
        *parents, last = path.split(".")
        node = doc
        for p in parents:
            node = node[int(p)] if p.isdigit() else node[p]
        if value is _DELETE:
            del node[last]
        else:
            node[int(last) if last.isdigit() else last] = value

    return edit


_DELETE = object()


@pytest.mark.parametrize(
    ("edit", "field", "reason"),
    [
        (_set("stages.2.channels", 0), "stages[2].channels", "greater than 0"),
        (_set("stages.1.repeats", "two"), "stages[1].repeats", "integer"),
        (_set("stages.0.width", 8), "stages[0].width", "not permitted"),
        (_set("stages.3.candidates", ["ir_k3_e6", "ir_k7_x1"]), "stages[3].candidates[1]", "unknown parameter(s) x"),
        (_set("stages.3.candidates", ["ir_k3"]), "stages[3].candidates[0]", "missing parameter(s) e"),
        (_set("stages.3.candidates", ["ir_k3_e6", "warp_k3"]), "stages[3].candidates[1]", "not registered"),
        (_set("input_shape", [1, 28]), "input_shape", "at least 3"),
        (_set("stem", _DELETE), "stem", "required"),
        (_set("stages", []), "stages", "at least 1"),
        (_set("head.op", "conv_k2"), "head.op", "odd"),
    ],
)
def test_malformed_spaces_name_the_stage_and_field(edit, field: str, reason: str) -> None:
    doc = _doc()
    edit(doc)
    with pytest.raises(SpaceError) as info:
        SearchSpace.from_dict(doc)
    assert info.value.field == field
    assert reason in str(info.value) and field in str(info.value)


def test_group_candidates_need_divisible_channels() -> None:
    doc = _doc()
    doc["stages"][0]["channels"] = 9  # a group-2 candidate cannot split 9 channels
    with pytest.raises(SpaceError) as info:
        SearchSpace.from_dict(doc)
    assert info.value.field == "stages[0].candidates[1]" and "output channels 9 not divisible by groups g2" in str(info.value)


def test_candidates_must_agree_on_the_output_shape() -> None:
    from torch import nn

    from search.ops import register_op, unregister_op

    # An operator that ignores the stride: the space must refuse it next to ones that honour it.
    @register_op("lazy", params=("k",), replace=True)
    def _lazy(spec):  # type: ignore[no-untyped-def]
        return nn.Conv2d(spec.shape[1], spec.get("o"), spec.get("k"), 1, spec.get("k") // 2)

    doc = _doc()
    doc["stages"][1]["candidates"] = ["ir_k3_e1", "lazy_k3"]
    try:
        with pytest.raises(SpaceError, match=r"stages\[1\].candidates: candidates disagree on the output shape"):
            SearchSpace.from_dict(doc)
    finally:
        unregister_op("lazy")


def test_unknown_space_and_bad_files(tmp_path: Path) -> None:
    with pytest.raises(SpaceError, match="built in: fbnet"):
        get_space("fbnet-huge")
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nstages: [\n")
    with pytest.raises(SpaceError, match="not valid JSON/YAML"):
        get_space(str(bad))
