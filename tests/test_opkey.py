"""Operator keys: parse and format round-trip exactly; malformed keys name the bad part."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hwnas.opkey import OVERHEAD_KEY, PARAM_ORDER, OpKeyError, OpSpec, is_valid_key

# A type word is [a-z][a-z0-9]* but not <letter><digits> (that would read as a parameter).
words = st.from_regex(r"[a-z][a-z0-9]{0,6}", fullmatch=True).filter(lambda w: not (len(w) > 1 and w[1:].isdigit()))
block_types = st.lists(words, min_size=1, max_size=3).map("_".join)
letters = st.sampled_from(list(PARAM_ORDER) + ["b", "d", "r", "x"])
params = st.dictionaries(letters, st.integers(0, 4096), max_size=6)
dims = st.integers(1, 4096)
shapes = st.tuples(dims, dims, dims, dims)
dtypes = st.one_of(
    st.none(),
    st.sampled_from(["int8", "fp16"]),
    st.tuples(st.integers(1, 16), st.integers(1, 16)).map(lambda wa: f"w{wa[0]}a{wa[1]}"),
)
specs = st.builds(
    lambda b, p, s, d: OpSpec(block=b, params=tuple(p.items()), shape=s, dtype=d), block_types, params, shapes, dtypes
)


@settings(max_examples=300, deadline=None)
@given(specs)
def test_parse_format_round_trip(spec: OpSpec) -> None:
    parsed = OpSpec.parse(spec.key)
    assert parsed == spec
    assert parsed.key == spec.key
    assert is_valid_key(spec.key)


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet="abegkosx0123456789_@#", max_size=30))
def test_any_text_parses_canonically_or_raises_opkeyerror(text: str) -> None:
    try:
        spec = OpSpec.parse(text)
    except OpKeyError as exc:
        assert exc.part and exc.reason and exc.key == text
        assert not is_valid_key(text) or text == OVERHEAD_KEY
    else:
        assert spec.key == text


def test_examples_from_the_grammar() -> None:
    spec = OpSpec.parse("ir_k3_e6_g1_s2_o24@1x16x112x112")
    assert (spec.block, spec.get("k"), spec.get("e"), spec.get("s"), spec.get("o"), spec.shape, spec.dtype) == (
        "ir",
        3,
        6,
        2,
        24,
        (1, 16, 112, 112),
        None,
    )
    assert OpSpec.make("ir", (1, 16, 56, 56), k=3, e=6, g=1, s=2, o=24).key == "ir_k3_e6_g1_s2_o24@1x16x56x56"
    assert OpSpec.make("gap_fc", (1, 1984, 7, 7), o=1000).key == "gap_fc_o1000@1x1984x7x7"
    assert OpSpec.parse("conv_k3_s2_o16@1x3x224x224#int8").dtype == "int8"
    assert OpSpec.make("ir", (1, 8, 8, 8), dtype="fp32", k=3).key == "ir_k3@1x8x8x8"  # fp32 is implied
    assert is_valid_key(OVERHEAD_KEY)


@pytest.mark.parametrize(
    ("key", "part"),
    [
        ("", "key"),
        ("ir_k3_e6", "key"),
        ("ir@1x2@3x4", "key"),
        ("ir_k3@1x16x56", "shape"),
        ("ir_k3@1x16x56x0", "shape.W"),
        ("ir_k3@1x016x56x56", "shape.C"),
        ("ir_k3@1x16x56xW", "shape.W"),
        ("ir_k3@1x16x56x56#fp32", "dtype"),
        ("ir_k3@1x16x56x56#int4", "dtype"),
        ("ir_e6_k3@1x16x56x56", "params"),
        ("ir_k3_k5@1x16x56x56", "params"),
        ("ir_k3_mbconv@1x16x56x56", "param 'mbconv'"),
        ("IR_k3@1x16x56x56", "type word 'IR'"),
        ("k3@1x16x56x56", "type word 'k3'"),
        ("ir_k03@1x16x56x56", "type word 'k03'"),  # leading zero: not a parameter,
    ],
)
def test_malformed_keys_name_the_bad_part(key: str, part: str) -> None:
    with pytest.raises(OpKeyError) as err:
        OpSpec.parse(key)
    assert err.value.part == part, err.value
    assert part.split(" ")[0] in str(err.value)
    assert not is_valid_key(key)
