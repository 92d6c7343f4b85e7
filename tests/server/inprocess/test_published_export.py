"""GET /lut/{device}?format=ofa-yaml|proxyless-yaml: any table in the Once-for-All / ProxylessNAS layout; import(export) round trip.

The OFA table is the shipped file; ProxylessNAS's is not shipped, so its round trips run on a synthetic table in its
layout (tests/support/synthetic_tables.py)."""

from __future__ import annotations

import uuid

import httpx
import pytest
import yaml

from hwnas.client import ProfilerClient
from hwnas.opkey import OVERHEAD_KEY
from hwnas.schemas import Lut
from hwnas.published_presets import PRESETS
from tests.support.app_server import AppServer
from tests.support import synthetic_tables as synthetic
from tests.support.measurements import batch, result
from tests.support.reference_data import ref


def published_text(preset: str) -> str:
    """The preset's file: the shipped copy, or for ProxylessNAS's (not shipped) the synthetic one in its layout."""
    if preset == "pixel1-proxylessnas":
        return synthetic.proxyless_yaml()
    return ref(PRESETS[preset].path).read_text()


def lut(server: AppServer, device: str) -> Lut:
    return Lut.model_validate_json(server.http.get(f"/lut/{device}").content)


def export(server: AppServer, device: str, fmt: str) -> httpx.Response:
    response = server.http.get(f"/lut/{device}", params={"format": fmt})
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/yaml")
    return response


def imported(admin: ProfilerClient, preset: str, content: str | None = None) -> str:
    device = f"{preset}-{uuid.uuid4().hex[:6]}"
    request = PRESETS[preset].request(content if content is not None else published_text(preset))
    admin.import_lut(request.model_copy(update={"device": device}))
    return device


@pytest.mark.parametrize(("preset", "fmt"), [("note10-ofa", "ofa-yaml"), ("pixel1-proxylessnas", "proxyless-yaml")])
def test_an_imported_table_exports_as_the_file_it_came_from(server: AppServer, preset: str, fmt: str) -> None:
    published = yaml.safe_load(published_text(preset))
    with server.client("admin") as admin:
        device = imported(admin, preset)
    assert yaml.safe_load(export(server, device, fmt).text) == published  # every key, count, mean and std/var, exactly


@pytest.mark.parametrize(("preset", "fmt"), [("note10-ofa", "ofa-yaml"), ("pixel1-proxylessnas", "proxyless-yaml")])
def test_import_of_an_export_gives_back_the_same_entries(server: AppServer, preset: str, fmt: str) -> None:
    with server.client("admin") as admin:
        first = imported(admin, preset)
        again = imported(admin, preset, export(server, first, fmt).text)
    a, b = lut(server, first), lut(server, again)
    assert a.entries.keys() == b.entries.keys()
    assert max(abs(a.entries[k].median_ms - b.entries[k].median_ms) for k in a.entries) == 0.0
    assert all((a.entries[k].n, a.entries[k].std_ms) == (b.entries[k].n, b.entries[k].std_ms) for k in a.entries)


def test_a_measured_table_exports_what_its_layout_can_say(server: AppServer, device: str) -> None:
    keys = {
        "mb_se_hs_k5_s1_o136_m408@1x136x14x14": 2.0,
        "mb_k3_s2_o32_m72@1x24x112x112": 1.5,
        "conv_hs_k3_s2_o24@1x3x224x224": 1.0,
        "ir_k3_e6_g1_s2_o24@1x16x112x112": 3.0,
        "skip_s1_o16@1x16x112x112": 0.1,
        OVERHEAD_KEY: 0.05,
    }
    with server.client("agent") as agent:
        agent.post_measurements(batch(device, [result(k, ms) for k, ms in keys.items()], runtime="ort"))
    ofa = export(server, device, "ofa-yaml").text
    header = [line for line in ofa.splitlines() if line.startswith("#")]
    assert any("ir_k3_e6_g1_s2_o24@1x16x112x112" in line for line in header) and any("skip_s1_o16" in line for line in header)
    assert any("overhead_ms 0.05" in line for line in header)
    entries = yaml.safe_load(ofa)
    assert set(entries) == {
        "expanded_conv-input:14x14x136-output:14x14x136-expand:408-kernel:5-stride:1-idskip:1-se:1-hs:1",
        "expanded_conv-input:112x112x24-output:56x56x32-expand:72-kernel:3-stride:2-idskip:0-se:0-hs:0",
        "Conv-input:224x224x3-output:112x112x24",
    }
    # "mean" is the key's share of a network as hwnas predicts it: the burst minimum of a measured entry (result()
    # sets min = 0.8 median) less the table's overhead, so their estimators, which add the means of a network's
    # blocks, do not count the per-network overhead once per block.
    overhead = lut(server, device).overhead_ms
    assert overhead is not None and overhead > 0
    assert entries["Conv-input:224x224x3-output:112x112x24"] == {"count": 50, "mean": pytest.approx(0.8 - overhead), "std": 0.05}
    proxyless = yaml.safe_load(export(server, device, "proxyless-yaml").text)
    assert proxyless == {
        "expanded_conv-input:112x112x16-output:56x56x24-expand:6-kernel:3-stride:2-idskip:0": {
            "count": 50,
            "mean": pytest.approx(2.4 - overhead),
            "var": 0.05**2,
        }
    }
    # Their sum plus the overhead once is hwnas's prediction of a network of those blocks.
    table = lut(server, device)
    blocks = ["mb_se_hs_k5_s1_o136_m408@1x136x14x14", "mb_k3_s2_o32_m72@1x24x112x112", "conv_hs_k3_s2_o24@1x3x224x224"]
    hwnas = overhead + sum(table.entries[k].min_ms - overhead for k in blocks)
    assert overhead + sum(e["mean"] for e in entries.values()) == pytest.approx(hwnas)
    with server.client("admin") as admin:
        back = imported(admin, "note10-ofa", ofa)
    assert {k: e.median_ms for k, e in lut(server, back).entries.items()} == pytest.approx(
        {
            "mb_se_hs_k5_s1_o136_m408@1x136x14x14": 1.6 - overhead,
            "mb_k3_s2_o32_m72@1x24x112x112": 1.2 - overhead,
            "conv_hs_k3_s2_o24@1x3x224x224": 0.8 - overhead,
        }
    )


def test_an_unknown_format_is_a_422_naming_the_parameter(server: AppServer, device: str) -> None:
    response = server.http.get(f"/lut/{device}", params={"format": "tflite-yaml"})
    assert response.status_code == 422 and response.json()["errors"][0]["field"] == "format"
    assert "ofa-yaml" in response.json()["detail"]
