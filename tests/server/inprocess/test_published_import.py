"""Published latency tables imported into the server (POST /lut/import): entries, provenance, read-only, idempotence,
and the published checks (OFA Note10 30 ms network, HW-NAS-Bench's network sums).

The OFA and HW-NAS-Bench files are the shipped copies; ProxylessNAS's Pixel 1 table and HELP's CSV are not shipped,
so their tests run on synthetic files in the same layouts (tests/support/synthetic_tables.py)."""

from __future__ import annotations

import csv
import gzip
import json
import math
import uuid
from pathlib import Path

import pytest
import yaml

from hwnas.client import AuthError, ConflictError, ProfilerClient
from hwnas.opkey import OVERHEAD_KEY
from hwnas.published import from_published, ofa_net_config_keys
from hwnas.schemas import DeviceInfo, JobCreate, Lut
from hwnas.published_presets import PRESETS
from profiler_server.services.published_files import HWNB_OPS, hwnasbench_layer_keys, hwnasbench_layers, read_published
from tests.support.app_server import AppServer
from tests.support import synthetic_tables as synthetic
from tests.support.measurements import batch, result
from tests.support.reference_data import HWNB_LUT, HWNB_SPEC, OFA_NET, ref


def text(preset: str) -> str:
    """The preset's file: the shipped copy, or for ProxylessNAS's (not shipped) the synthetic one in its layout."""
    if preset == "pixel1-proxylessnas":
        return synthetic.proxyless_yaml()
    return ref(PRESETS[preset].path).read_text()


def lut(server: AppServer, device: str) -> Lut:
    response = server.http.get(f"/lut/{device}")
    assert response.status_code == 200, response.text
    return Lut.model_validate_json(response.content)


@pytest.fixture(scope="module")
def admin(server: AppServer) -> ProfilerClient:
    client = server.client("admin")
    yield client  # type: ignore[misc]
    client.close()


@pytest.fixture(scope="module")
def imported(server: AppServer, admin: ProfilerClient) -> dict[str, str]:
    """The ProxylessNAS (synthetic), OFA 224 and HW-NAS-Bench Pixel 3 tables, imported once per database: role -> device."""
    done = {}
    for role, name in (("proxyless", "pixel1-proxylessnas"), ("ofa", "note10-ofa"), ("hwnasbench", "pixel3-hwnasbench")):
        assert admin.import_lut(PRESETS[name].request(text(name))).status == "created"
        done[role] = name
    return done


def test_proxylessnas_entries_are_the_published_statistics_under_our_keys(server: AppServer, imported: dict[str, str]) -> None:
    published = yaml.safe_load(text("pixel1-proxylessnas"))
    table = lut(server, imported["proxyless"])
    assert len(table.entries) == len(published) == 72
    for key, stats in published.items():
        entry = table.entries[from_published("proxyless", key).key]
        assert entry.median_ms == stats["mean"] and entry.n == stats["count"]
        assert entry.std_ms == pytest.approx(math.sqrt(stats["var"]), rel=1e-12)
    e6 = table.entries["ir_k5_e6_g1_s2_o40@1x24x56x56"]  # expand is a ratio in this grammar
    assert e6.median_ms == published["expanded_conv-input:56x56x24-output:28x28x40-expand:6-kernel:5-stride:2-idskip:0"]["mean"]
    assert "mb_k3_s1_o16_m32@1x32x112x112" in table.entries  # expand 1: no expansion conv


def test_an_imported_table_shows_its_provenance_in_the_table_and_the_device(server: AppServer, imported: dict[str, str]) -> None:
    table = lut(server, imported["ofa"])
    assert table.source is not None and table.source.read_only
    assert (table.source.project, table.source.source_device, table.source.commit) == (
        "mit-han-lab/once-for-all",
        "Samsung Galaxy Note10",
        "a7c9bcd525e17404968bc55aa43772bf7e51909e",
    )
    assert "224_lookup_table.yaml" in table.source.file and "MIT" in table.source.licence and table.source.unmappable == []
    device = server.http.get(f"/devices/{imported['ofa']}").json()
    assert [(t["runtime"], t["entries"], t["source"]["project"]) for t in device["tables"]] == [
        ("tflite", 96, "mit-han-lab/once-for-all")
    ]


def test_reimporting_the_same_file_changes_nothing(server: AppServer, imported: dict[str, str], admin: ProfilerClient) -> None:
    before = server.http.get(f"/lut/{imported['ofa']}")
    again = admin.import_lut(PRESETS["note10-ofa"].request(text("note10-ofa")))
    after = server.http.get(f"/lut/{imported['ofa']}")
    assert again.status == "unchanged" and again.entries == 96
    assert after.headers["etag"] == before.headers["etag"] and after.content == before.content
    # The same content with replace restates the provenance only.
    restated = PRESETS["note10-ofa"].request(text("note10-ofa"), replace=True)
    restated = restated.model_copy(update={"source": restated.source.model_copy(update={"licence": "MIT (restated)"})})
    assert admin.import_lut(restated).status == "replaced"
    table = lut(server, imported["ofa"])
    assert table.source is not None and table.source.licence == "MIT (restated)" and len(table.entries) == 96
    assert admin.import_lut(PRESETS["note10-ofa"].request(text("note10-ofa"))).status == "unchanged"


def test_other_content_into_an_imported_table_needs_replace(server: AppServer, admin: ProfilerClient) -> None:
    device = f"ofa-{uuid.uuid4().hex[:6]}"
    first = PRESETS["note10-ofa-160"].request(text("note10-ofa-160")).model_copy(update={"device": device})
    assert admin.import_lut(first).status == "created"
    other = first.model_copy(update={"content": text("note10-ofa-176")})
    with pytest.raises(ConflictError, match="replace"):
        admin.import_lut(other)
    assert admin.import_lut(other.model_copy(update={"replace": True})).status == "replaced"
    table = lut(server, device)
    assert len(table.entries) == 96 and all("x88x88" in k for k in table.entries if k.startswith("mb_k3_s1_o24_m24"))


def test_agents_cannot_write_into_an_imported_table(server: AppServer, admin: ProfilerClient) -> None:
    device = f"ofa-{uuid.uuid4().hex[:6]}"
    admin.import_lut(PRESETS["note10-ofa"].request(text("note10-ofa")).model_copy(update={"device": device}))
    with server.client("agent") as agent, pytest.raises(ConflictError, match="read-only") as err:
        agent.post_measurements(batch(device, [result("mb_k3_s1_o24_m24@1x24x112x112", 0.5)], runtime="tflite"))
    assert err.value.status == 409
    with server.client("client") as client, pytest.raises(ConflictError, match="imported from mit-han-lab/once-for-all"):
        client.create_job(JobCreate(device=device, runtime="tflite", threads=1, keys=["conv_k3_s2_o16@1x3x224x224"]))
    assert lut(server, device).entries["mb_k3_s1_o24_m24@1x24x112x112"].median_ms == 1.7728020000000002  # unchanged
    with server.client("agent") as agent, pytest.raises(AuthError, match="read-only"):
        agent.put_device(device, DeviceInfo(model="my Note10"))  # nor take the imported device over
    # Another runtime of the same device is an ordinary, measured table: the device is the admins' (the owner rule),
    # so an agent measures into it with a token an admin granted the device.
    with server.client("agent") as agent, pytest.raises(AuthError, match="owner rule"):
        agent.post_measurements(batch(device, [result("conv_k3_s2_o16@1x3x224x224")], runtime="ort"))
    with server.client_holding(server.new_token(f"granted-{device}", "agent", devices=[device])) as granted:
        assert granted.post_measurements(batch(device, [result("conv_k3_s2_o16@1x3x224x224")], runtime="ort")).stored == 1


def test_unmappable_entries_are_listed_with_their_reason_and_left_out(server: AppServer, admin: ProfilerClient) -> None:
    # The table plus one entry whose idskip contradicts its shape, and one that names no block we know.
    bad = (
        "expanded_conv-input:56x56x24-output:56x56x24-expand:3-kernel:3-stride:1-idskip:0:\n  count: 3\n  mean: 1.0\n  var: 0.1\n"
        "Pool-input:7x7x320-output:1x1x320:\n  count: 3\n  mean: 1.0\n  var: 0.1\n"
    )
    content = text("pixel1-proxylessnas") + bad
    request = PRESETS["pixel1-proxylessnas"].request(content).model_copy(update={"device": f"px1-{uuid.uuid4().hex[:6]}"})
    done = admin.import_lut(request)
    reasons = {u.key: u.reason for u in done.unmappable}
    assert done.entries == 72 and len(reasons) == 2
    assert (
        "idskip:0 but our block has a residual"
        in reasons["expanded_conv-input:56x56x24-output:56x56x24-expand:3-kernel:3-stride:1-idskip:0"]
    )
    assert "'Pool'" in reasons["Pool-input:7x7x320-output:1x1x320"]
    assert lut(server, request.device).source.unmappable[0].reason  # type: ignore[union-attr]


def test_a_file_that_is_not_its_format_is_refused_whole(server: AppServer, admin: ProfilerClient) -> None:
    device = f"bad-{uuid.uuid4().hex[:6]}"
    broken = text("note10-ofa").replace("mean: 0.994418", "mean: fast", 1)
    response = server.http.post(
        "/lut/import",
        headers={"Authorization": f"Bearer {server.admin_token}"},
        json=PRESETS["note10-ofa"].request(broken).model_copy(update={"device": device}).model_dump(mode="json"),
    )
    assert response.status_code == 422
    body = response.json()
    assert (
        "224_lookup_table.yaml" in body["detail"]
        and "Conv-input:224x224x3-output:112x112x24" in body["detail"]
        and "mean" in body["detail"]
    )
    assert body["errors"][0]["field"] == "content"
    assert server.http.get(f"/devices/{device}").status_code == 404  # nothing half-imported


def test_only_an_admin_may_import(server: AppServer) -> None:
    body = PRESETS["note10-ofa"].request(text("note10-ofa")).model_dump(mode="json")
    for role, status in ((None, 401), ("client", 403), ("agent", 403)):
        headers = {"Authorization": f"Bearer {server.token(role)}"} if role else {}
        assert server.http.post("/lut/import", json=body, headers=headers).status_code == status


def test_the_ofa_note10_30ms_network_sums_to_its_published_latency(server: AppServer, imported: dict[str, str]) -> None:
    config = json.loads(ref(OFA_NET).read_text())
    table = lut(server, imported["ofa"])
    keys = [from_published("ofa", k).key for k in ofa_net_config_keys(config, 224)]
    assert len(keys) == 21
    assert abs(sum(table.entries[k].median_ms for k in keys) - 29.97) <= 0.05


def test_the_hwnasbench_pixel3_table_reproduces_its_network_sums(
    server: AppServer, imported: dict[str, str], tmp_path: Path
) -> None:
    # HELP's pixel3 column holds HW-NAS-Bench's table sums (benchmarks/published_tables.py checks the real one); the
    # synthetic CSV in HELP's layout holds the sums of random networks computed from the shipped file's own terms.
    help_csv = synthetic.write_help_csv(tmp_path / "help.csv.gz", 500)
    table = lut(server, imported["hwnasbench"])
    assert table.source is not None and "delta gauge" in (table.source.gauge or "")
    overhead = table.overhead_ms
    assert overhead is not None and OVERHEAD_KEY not in table.entries
    keys = [[from_published("hwnasbench", layer[op]).key for op in HWNB_OPS] for layer in hwnasbench_layer_keys()]
    fixed = [k for k in table.entries if k.startswith(("conv_", "gap@", "fc_"))]
    assert len(fixed) == 4
    with gzip.open(help_csv, "rt") as f:
        rows = list(csv.DictReader(f))
    worst = 0.0
    for r in rows:
        ms = overhead + sum(table.entries[k].median_ms - overhead for k in fixed)
        ms += sum(table.entries[keys[i][int(r[f"L{i}"])]].median_ms - overhead for i in range(22))
        worst = max(worst, abs(ms - float(r["pixel3"])))
    assert len(rows) == 500 and worst <= 1e-6


def test_the_hwnasbench_layout_is_the_published_spec() -> None:
    spec = json.loads(ref(HWNB_SPEC).read_text())
    cifar = spec["datasets"]["cifar100"]
    assert hwnasbench_layers() == [(layer["H_in"], layer["Cin"], layer["Cout"], layer["stride"]) for layer in cifar["layers"]]
    assert list(HWNB_OPS) == spec["op_order"]
    assert HWNB_OPS == {op: (d["kernel"], d["exp"], d["group"]) if d else None for op, d in spec["op_defs"].items()}
    table = read_published("hwnasbench-json", ref(HWNB_LUT).read_text(), "pixel3")
    assert {from_published("hwnasbench", k).key for k in cifar["fixed_keys"]} <= set(table.entries)
    assert len(table.entries) == 112 and table.unmappable == {}
