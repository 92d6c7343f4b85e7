"""Architecture documents: JSON → module → operator keys, FBNet-A/B/C against the released models, clear errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from search.arch import ArchError, Architecture, build, builtin_archs, get_arch
from search.space import get_space

# mobile-vision README (released Caffe2 models): MFLOPs (= MMACs) and M params.
RELEASED = {"fbnet_a": (249.4, 4.3), "fbnet_b": (295.6, 4.8), "fbnet_c": (383.0, 5.5)}


def _fmnist_arch(name: str = "demo") -> Architecture:
    space = get_space("fbnet-fmnist")
    picks = ["ir_k3_e1_g2", "skip", "ir_k5_e6", "maxpool_k3", "ir_k3_e3", "avgpool_k3", "ir_k5_e1_g2", "skip", "ir_k3_e6"]
    assert len(picks) == space.num_layers
    return Architecture(space="fbnet-fmnist", choices=picks, input_size=28, classes=10, name=name)


def test_json_to_module_to_op_keys_round_trip(tmp_path: Path) -> None:
    arch = _fmnist_arch()
    path = arch.save(tmp_path / "a.json")
    loaded = Architecture.load(path)
    assert loaded == arch and loaded.id == arch.id and json.loads(path.read_text())["choices"] == arch.choices

    net = build(loaded).eval()
    seen: list[tuple[str, tuple[int, ...]]] = []
    for module in net.op_modules():
        module.register_forward_hook(lambda m, inp, out: seen.append((m.op_key, tuple(inp[0].shape))))
    logits = net(torch.randn(1, 1, 28, 28))
    assert logits.shape == (1, 10)
    keys = loaded.op_keys()
    # The module says what it is made of, and every operator really saw the input its key names.
    assert net.op_keys() == keys == [k for k, _ in seen]
    assert all(k.endswith("@" + "x".join(map(str, shape))) for k, shape in seen)
    assert keys[0] == "conv_k3_s1_o8@1x1x28x28" and keys[-1] == "gap_fc_o10@1x128x4x4" and len(keys) == 9 + 3


def test_id_is_stable_and_ignores_name_and_meta() -> None:
    a, b = _fmnist_arch("one"), _fmnist_arch("two")
    b.meta["predicted"] = {"latency_ms": 1.0}
    assert a.id == b.id and len(a.id) == 16
    c = _fmnist_arch()
    c.choices[0] = "ir_k3_e6"
    assert c.id != a.id


@pytest.mark.parametrize("name", sorted(RELEASED))
def test_fbnet_abc_match_the_released_models(name: str) -> None:
    arch = get_arch(name)
    net = build(arch).eval()
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        net(torch.randn(1, 3, 224, 224))
    macs = counter.get_total_flops() / 2
    params = sum(p.numel() for p in net.parameters())
    mmacs, mparams = RELEASED[name]
    assert abs(macs / 1e6 - mmacs) / mmacs < 0.02, macs
    assert abs(params / 1e6 - mparams) / mparams < 0.02, params


def test_shipped_documents() -> None:
    assert set(RELEASED) <= set(builtin_archs())
    a = get_arch("FBNet-A")
    assert a.head_channels == 1504 and a.op_keys()[-2:] == ["conv_k1_s1_o1504@1x352x7x7", "gap_fc_o1000@1x1504x7x7"]
    # FBNet-B/C's released graphs have cascaded-depthwise layers outside the paper's 9 candidates;
    # the documents declare them instead of rounding them away.
    b = get_arch("fbnet_b")
    assert b.extra_candidates == ["ir_cdw_k3_e6"] and b.choices[8] == "ir_cdw_k3_e6"
    assert "ir_cdw_k3_e6_g1_s1_o32@1x32x28x28" in b.op_keys()


def _doc() -> dict:
    return _fmnist_arch().to_dict()


@pytest.mark.parametrize(
    ("edit", "field", "reason"),
    [
        (lambda d: d.pop("choices"), "choices", "missing"),
        (lambda d: d.update(choices=d["choices"][:-1]), "choices", "8 given, space 'fbnet-fmnist' has 9 searchable layers"),
        (lambda d: d["choices"].__setitem__(3, "ir_k7_e6"), "choices[3]", "'ir_k7_e6' is not a candidate of layer 3"),
        (lambda d: d["choices"].__setitem__(2, 5), "choices", "list of candidate names"),
        (lambda d: d.update(input_size=-28), "input_size", "positive integer"),
        (lambda d: d.update(classes="ten"), "classes", "positive integer"),
        (lambda d: d.update(space="no-such-space"), "space", "no built-in space"),
        (lambda d: d.update(colour="red"), "colour", "unknown field"),
    ],
)
def test_malformed_architectures_name_the_field(edit, field: str, reason: str) -> None:
    doc = _doc()
    edit(doc)
    with pytest.raises(ArchError) as info:
        Architecture.from_dict(doc, source="a.json").resolve_space()
    assert info.value.field == field and reason in str(info.value)
    assert str(info.value).startswith("architecture a.json: " + field)


def test_extra_candidates_must_fit_the_layer() -> None:
    doc = _doc()
    doc["choices"][4] = "ir_cdw_k3_e6"
    with pytest.raises(ArchError, match="extra_candidates"):
        Architecture.from_dict(doc).resolve_space()
    doc["extra_candidates"] = ["ir_cdw_k3_e6"]
    Architecture.from_dict(doc).resolve_space()  # declared: fine
    doc["choices"][4], doc["extra_candidates"] = "ir_k3_e1_g5", ["ir_k3_e1_g5"]
    with pytest.raises(ArchError, match=r"choices\[4\].*not divisible by groups g5"):
        Architecture.from_dict(doc).resolve_space()


def test_space_path_relative_to_document_and_inline(tmp_path: Path) -> None:
    import yaml

    (tmp_path / "spaces").mkdir()
    space = get_space("fbnet-fmnist").to_dict() | {"name": "mine"}
    (tmp_path / "spaces" / "mine.yaml").write_text(yaml.safe_dump(space))
    doc = _doc() | {"space": "spaces/mine.yaml"}
    (tmp_path / "a.json").write_text(json.dumps(doc))
    assert Architecture.load(tmp_path / "a.json").resolve_space().name == "mine"
    inline = Architecture.from_dict(_doc() | {"space": space})
    assert inline.op_keys() == _fmnist_arch().op_keys()


def test_unreadable_document(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text('{"space": ')
    with pytest.raises(ArchError, match="bad.json: file: not valid JSON"):
        Architecture.load(bad)
    with pytest.raises(ArchError, match="file"):
        Architecture.load(tmp_path / "missing.json")


def test_a_mistyped_shipped_name_lists_the_shipped_ones() -> None:
    with pytest.raises(ArchError, match=r"fbnet_z: name: .*shipped: fbnet_a, fbnet_b, fbnet_c"):
        get_arch("fbnet_z")
    # A path-looking argument is still a missing file, not a name.
    with pytest.raises(ArchError, match="nothere.json: file"):
        get_arch("nothere.json")
