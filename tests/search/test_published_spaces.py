"""The spaces and networks of published latency tables (issue 15): ProxylessNAS (Pixel 1), Once-for-All (Note10),
HW-NAS-Bench's FBNet layout — their keys meet the tables, their sums meet the published numbers, a search runs on them.

The Once-for-All and HW-NAS-Bench files are the copies shipped in profiler_server/published; ProxylessNAS's Pixel 1
table is not shipped, so its tests run on a synthetic table in its layout (tests/support/synthetic_tables.py) with
expectations computed from it, and the checks of the released network and its 63.7 ms are figures of
benchmarks/published_tables.py. Tables become our local table format through hwnas/published.py, the same mapping
the server's import uses.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml
from typer.testing import CliRunner

from hwnas.published import from_published, map_keys
from search.arch import build, get_arch
from search.app.cli import app
from search.cost import LatencyCost
from search.lut import load_table
from search.ops import is_free
from search.searcher import cost_table
from search.space import SearchSpace, get_space
from search.supernet import SuperNet
from tests.support import synthetic_tables as synthetic
from tests.support.reference_data import HWNB_SPEC, OFA_NET, ofa_lut, ref

OFA_SIZES = (160, 176, 192, 208, 224)
# The released ProxylessNAS-Mobile widens stage 2 to 32; the Pixel 1 table has that stage at 24.
PROXYLESS_MISSING = ["ir_k5_e3_g1_s2_o32@1x16x112x112", "ir_k3_e3_g1_s1_o32@1x32x56x56", "ir_k7_e3_g1_s2_o40@1x32x56x56"]


def published_table(grammar: str, text: str, device: str) -> dict:
    """A published YAML table's text as our local table document (mean ms per mapped key); every key must map."""
    raw = yaml.safe_load(text)
    mapping = map_keys(grammar, list(raw))  # type: ignore[arg-type]
    assert mapping.unmappable == {}, mapping.unmappable
    entries = {spec.key: {"median_ms": raw[key]["mean"]} for key, spec in mapping.mapped.items()}
    return {"device": device, "runtime": "tflite", "threads": 1, "unit": "ms", "entries": entries}


def write_table(doc: dict, folder: Path) -> Path:
    path = folder / f"{doc['device']}.json"
    path.write_text(json.dumps(doc))
    return path


def priced_keys(keys: list[str]) -> set[str]:
    """The keys a table must hold: all but the free (dropped-layer) operators."""
    return {k for k in keys if not is_free(k)}


def proxyless_table() -> dict:
    """The synthetic table in the layout of ProxylessNAS's Pixel 1 table (which is not shipped), as a local table."""
    return published_table("proxyless", synthetic.proxyless_yaml(), "pixel1-proxylessnas")


def covered_ms(table: dict, arch: str) -> float:
    """The sum of ``table``'s entries over the operators of ``arch`` that it holds."""
    return sum(table["entries"][k]["median_ms"] for k in get_arch(arch).op_keys() if k in table["entries"])


def middle_target_ms(table: dict, folder: Path) -> float:
    """Halfway between the fastest and the slowest proxyless-mobile network on ``table``: a target a search can meet."""
    space = get_space("proxyless-mobile")
    costs = cost_table(LatencyCost(load_table(write_table(table, folder))), space)
    slowest = costs.fixed + sum(max(row) for row in costs.layer_costs)
    return round((costs.min_cost() + slowest) / 2, 3)


# ---- Once-for-All, Samsung Note10 -------------------------------------------------------------------
def test_ofa_note10_30ms_sums_to_the_published_29_97_ms(tmp_path: Path) -> None:
    table = published_table("ofa", ref(ofa_lut(224)).read_text(), "note10-ofa")
    keys = get_arch("ofa_note10_30ms").op_keys()
    assert len(keys) == 26 and priced_keys(keys) <= set(table["entries"])  # every operator of the net is in the table
    out = CliRunner().invoke(app, ["predict", "ofa_note10_30ms", "--lut", str(write_table(table, tmp_path)), "--json"])
    assert out.exit_code == 0, out.output
    result = json.loads(out.output)
    assert result["latency_ms"] == pytest.approx(29.97, abs=0.05)
    assert result["space"] == "ofa-mbv3" and result["ops"] == 26


def test_ofa_note10_30ms_is_the_released_network() -> None:
    # Kernel, mid width, SE, activation and stride of every block, against its net.config.
    config = json.loads(ref(OFA_NET).read_text())
    blocks = [b["mobile_inverted_conv"] for b in config["blocks"]]
    arch = get_arch("ofa_note10_30ms")
    space = arch.resolve_space()
    specs = [layer.spec(c) for layer, c in zip(space.layers(), arch.choices) if c != "zero"]
    assert len(specs) == len(blocks) == 16
    for spec, b in zip(specs, blocks):
        words = spec.block.split("_")
        assert (spec.shape[1], spec.get("o"), spec.get("k"), spec.get("s")) == (
            b["in_channels"],
            b["out_channels"],
            b["kernel_size"],
            b["stride"],
        )
        assert spec.get("m") == (b["mid_channels"] or b["in_channels"])
        assert ("se" in words, "hs" in words) == (b["use_se"], b["act_func"] == "h_swish")
    assert [s.key for s in space.fixed_specs()] == [
        "conv_hs_k3_s2_o24@1x3x224x224",
        "conv_hs_k1_s1_o1152@1x192x7x7",
        "gap@1x1152x7x7",
        "conv_hs_nobn_k1_s1_o1536@1x1152x1x1",
        "fc_o1000@1x1536x1x1",
    ]


@pytest.mark.parametrize("size", OFA_SIZES)
def test_ofa_mbv3_at_each_resolution_is_exactly_the_table_of_that_resolution(size: int) -> None:
    table = published_table("ofa", ref(ofa_lut(size)).read_text(), f"note10-{size}")
    space = get_space("ofa-mbv3").with_input(size)
    assert priced_keys(space.op_keys()) == set(table["entries"])  # the 96 entries, no more, no fewer
    assert space.num_layers == 21 and [len(layer.candidates) for layer in space.layers()] == [1] + [9, 9, 10, 10] * 5


# ---- ProxylessNAS, Google Pixel 1 (the layout of its table, synthetic numbers) ---------------------------------------
def test_proxyless_mobile_space_is_covered_by_the_pixel1_tables_layout() -> None:
    table = proxyless_table()
    keys = priced_keys(get_space("proxyless-mobile").op_keys())
    assert keys <= set(table["entries"])
    # The table's only other entries: the first block at k5 and k7, which ProxylessNAS fixes at k3.
    assert set(table["entries"]) - keys == {"mb_k5_s1_o16_m32@1x32x112x112", "mb_k7_s1_o16_m32@1x32x112x112"}


def test_proxyless_mobile_reports_its_three_missing_blocks_and_sums_the_covered_ones(tmp_path: Path) -> None:
    table = proxyless_table()
    lut = str(write_table(table, tmp_path))
    refused = CliRunner().invoke(app, ["predict", "proxyless_mobile", "--lut", lut])
    assert refused.exit_code == 1 and "3 operator(s) missing" in refused.output
    assert all(k in refused.output for k in PROXYLESS_MISSING) and "Traceback" not in refused.output

    partial = CliRunner().invoke(app, ["predict", "proxyless_mobile", "--lut", lut, "--partial", "--json"])
    assert partial.exit_code == 0, partial.output
    got = json.loads(partial.output)
    assert got["missing"] == PROXYLESS_MISSING and got["latency_ms"] is None  # listed, never estimated
    assert got["covered_ms"] == pytest.approx(covered_ms(table, "proxyless_mobile"), rel=1e-12)
    assert got["covered_ops"] == 20 and got["dropped_layers"] == 2
    shown = CliRunner().invoke(app, ["predict", "proxyless_mobile", "--lut", lut, "--partial"])
    assert "not the network's latency" in shown.output and PROXYLESS_MISSING[0] in shown.output


# ---- HW-NAS-Bench's FBNet layout --------------------------------------------------------------------
def _layout(space: SearchSpace) -> list[tuple[int, int, int, int]]:
    return [(layer.in_shape[2], layer.in_shape[1], layer.out_channels, layer.stride) for layer in space.layers()]


def test_hwnasbench_fbnet_has_hwnasbench_layout_which_fbnet_cifar_does_not() -> None:
    doc = json.loads(ref(HWNB_SPEC).read_text())
    spec = doc["datasets"]
    cifar = spec["cifar100"]
    want = [(row["H_in"], row["Cin"], row["Cout"], row["stride"]) for row in cifar["layers"]]
    space = get_space("hwnasbench-fbnet")
    assert _layout(space) == want and space.classes == cifar["classes"] == 100
    # Stem, head conv, pool and classifier: HW-NAS-Bench's own keys map onto ours one for one.
    assert [s.key for s in space.fixed_specs()] == [from_published("hwnasbench", k).key for k in cifar["fixed_keys"]]
    # The 9 candidates in HW-NAS-Bench's op index order (0 k3_e1 … 8 skip), so its index vectors read directly.
    assert all([c.removeprefix("ir_") for c in layer.candidates] == doc["op_order"] for layer in space.layers())
    assert _layout(get_space("fbnet-cifar")) != want  # hence a space of its own
    # At 224 the same layout is the FBNet paper's (our `fbnet`), head 1984 as HW-NAS-Bench's ImageNet set.
    imagenet = spec["ImageNet"]
    assert _layout(get_space("fbnet")) == [(r["H_in"], r["Cin"], r["Cout"], r["stride"]) for r in imagenet["layers"]]


# ---- the spaces as documents and super nets ----------------------------------------------------------
@pytest.mark.parametrize("name", ["proxyless-mobile", "ofa-mbv3", "hwnasbench-fbnet"])
def test_published_spaces_round_trip_as_documents(name: str) -> None:
    space = get_space(name)
    assert SearchSpace.from_dict(space.to_dict()) == space
    assert SearchSpace.from_dict(json.loads(json.dumps(space.to_dict()))).op_keys() == space.op_keys()


def test_ofa_mbv3_super_net_builds_and_runs_at_a_small_image_size() -> None:
    # The 224 space is for latency-driven search with imported tables; the same stage table runs at 32x32.
    space = get_space("ofa-mbv3").with_input(32, classes=10)
    net = SuperNet(space, mode="hard").eval()
    with torch.no_grad():
        logits = net(torch.randn(2, 3, 32, 32))
    assert tuple(logits.shape) == (2, 10) and bool(torch.isfinite(logits).all())
    assert sum(len(m.ops) for m in net.mixed) == 1 + 4 * 9 * 5 + 2 * 5  # every candidate of every layer built


def test_published_networks_build_and_report_their_keys() -> None:
    for name in ("ofa_note10_30ms", "proxyless_mobile"):
        arch = get_arch(name)
        net = build(arch)
        assert net.op_keys() == arch.op_keys()


# ---- a search on an imported table -------------------------------------------------------------------
def _image_folder(root: Path, classes: int, images: int) -> Path:
    """An image-folder data set with ``classes`` class folders (the table's classifier has 1000) and a few 224 images."""
    from PIL import Image

    gen = torch.Generator().manual_seed(0)
    for split, n in (("train", images), ("val", 2)):
        for c in range(classes):
            (root / split / f"c{c:04d}").mkdir(parents=True)
        for i in range(n):
            pixels = torch.randint(0, 256, (224, 224, 3), generator=gen, dtype=torch.uint8).numpy()
            Image.fromarray(pixels).save(root / split / f"c{i % 4:04d}" / f"{i}.png")
    return root


def test_search_proxyless_mobile_on_the_imported_pixel1_table(tmp_path: Path) -> None:
    # 224x224 (the table's keys are at 224), 1000 classes (its classifier), 8 images, batch 2, one epoch.
    table = proxyless_table()
    target = middle_target_ms(table, tmp_path)
    lut = write_table(table, tmp_path)
    data = _image_folder(tmp_path / "images", classes=1000, images=8)
    out = tmp_path / "run"
    result = CliRunner().invoke(
        app,
        [
            "search",
            "--space",
            "proxyless-mobile",
            "--lut",
            str(lut),
            "--target-ms",
            str(target),
            "--data",
            str(data),
            "--epochs",
            "1",
            "--warmup-epochs",
            "0",
            "--batch-size",
            "2",
            "--mode",
            "hard",
            "--samples",
            "0",
            "--no-progress",
            "--torch-threads",
            "1",
            "--out",
            str(out),
        ],
    )
    assert result.exit_code == 0, result.output
    found = out / "found.json"
    assert found.is_file() and "found at the target" in result.output
    predicted = CliRunner().invoke(app, ["predict", str(found), "--lut", str(lut), "--json"])
    assert predicted.exit_code == 0, predicted.output
    doc = json.loads(predicted.output)
    assert doc["space"] == "proxyless-mobile" and doc["latency_ms"] == pytest.approx(target, rel=0.02)


# ---- the same through the profiler server's import ------------------------------------------------------
@pytest.fixture(scope="module")
def imported_server(live_server, tmp_path_factory):  # type: ignore[no-untyped-def]
    """A live server holding the Pixel 1 (synthetic) and Note10 (224) tables, imported by `hwnas lut import --preset`."""
    proxyless = tmp_path_factory.mktemp("proxyless") / "mobile_trim.yaml"
    proxyless.write_text(synthetic.proxyless_yaml())
    for preset, path in (("pixel1-proxylessnas", proxyless), ("note10-ofa", ref(ofa_lut(224)))):
        out = CliRunner().invoke(
            app, ["lut", "import", str(path), "--preset", preset, "--server", live_server.url, "--token", live_server.admin_token]
        )
        assert out.exit_code == 0 and "0 unmappable" in out.output, out.output
    return live_server


def test_predict_through_the_server_meets_the_published_ofa_number(imported_server, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    source = ["--server", imported_server.url, "--cache-dir", str(tmp_path), "--json"]
    ofa = CliRunner().invoke(app, ["predict", "ofa_note10_30ms", "--device", "note10-ofa", *source])
    assert ofa.exit_code == 0, ofa.output
    assert json.loads(ofa.output)["latency_ms"] == pytest.approx(29.97, abs=0.05)


def test_predict_through_the_server_sums_the_covered_proxyless_blocks(imported_server, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    source = ["--server", imported_server.url, "--cache-dir", str(tmp_path), "--json"]
    prox = CliRunner().invoke(
        app, ["predict", "proxyless_mobile", "--device", "pixel1-proxylessnas", "--partial", "--no-create-job", *source]
    )
    assert prox.exit_code == 0, prox.output
    got = json.loads(prox.output)
    assert got["missing"] == PROXYLESS_MISSING
    assert got["covered_ms"] == pytest.approx(covered_ms(proxyless_table(), "proxyless_mobile"), rel=1e-12)


def test_missing_keys_of_an_imported_table_are_not_offered_a_job(imported_server, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    # An imported table is read-only: a profiling job for it answers 409, so "--create-job" must not be the advice.
    r = CliRunner().invoke(
        app,
        [
            "predict",
            "proxyless_mobile",
            "--device",
            "pixel1-proxylessnas",
            "--create-job",
            "--server",
            imported_server.url,
            "--cache-dir",
            str(tmp_path),
        ],
    )
    assert r.exit_code == 1, r.output
    assert "imported from" in r.output and "read-only" in r.output and "rerun with --create-job" not in r.output
    assert "409" not in r.output and "created profiling job" not in r.output


def test_search_proxyless_mobile_against_the_server_device(imported_server, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    target = round(middle_target_ms(proxyless_table(), tmp_path) * 0.8, 3)  # below the middle, unlike the local search
    data = _image_folder(tmp_path / "images", classes=1000, images=8)
    out = tmp_path / "run"
    result = CliRunner().invoke(
        app,
        [
            "search",
            "--space",
            "proxyless-mobile",
            "--server",
            imported_server.url,
            "--device",
            "pixel1-proxylessnas",
            "--cache-dir",
            str(tmp_path / "cache"),
            "--no-create-job",
            "--target-ms",
            str(target),
            "--data",
            str(data),
            "--epochs",
            "1",
            "--warmup-epochs",
            "0",
            "--batch-size",
            "2",
            "--mode",
            "hard",
            "--samples",
            "0",
            "--no-progress",
            "--torch-threads",
            "1",
            "--out",
            str(out),
        ],
    )
    assert result.exit_code == 0, result.output
    found = json.loads((out / "found.json").read_text())
    assert found["space"] == "proxyless-mobile" and len(found["choices"]) == 22
    predicted = CliRunner().invoke(
        app,
        [
            "predict",
            str(out / "found.json"),
            "--server",
            imported_server.url,
            "--device",
            "pixel1-proxylessnas",
            "--cache-dir",
            str(tmp_path / "cache"),
            "--json",
        ],
    )
    assert predicted.exit_code == 0, predicted.output
    assert json.loads(predicted.output)["latency_ms"] == pytest.approx(target, rel=0.02)
