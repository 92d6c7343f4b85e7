"""Issue 25, D3: caller-supplied text in the comment header of a YAML export cannot add entries to it.

The header names the runtime and its version (the agent's words) and, for an imported table, the project, file,
commit and licence (the importer's words). Line breaks in them — \\n, \\r, and the ones only YAML or Python count
(NEL, LS, PS) — are escaped, so parsing the export finds exactly the table's entries.
"""

from __future__ import annotations

import uuid

import pytest
import yaml

from hwnas.published import to_published
from tests.support.app_server import AppServer
from tests.support.measurements import batch, result

INJECTED = "Conv-input:1x1x1-output:1x1x1: {count: 1, mean: 0, std: 0}"
SHORT = "Conv-input:1x1x1-output:1x1x1: {mean: 0}"
BREAKS = ["\n", "\r", "\r\n", "\x85", "\u2028", "\u2029", "\x0b", "\x0c"]
KEYS = {"mb_k3_s2_o32_m72@1x24x112x112": 1.5, "conv_hs_k3_s2_o24@1x3x224x224": 1.0}


def export(server: AppServer, device: str, fmt: str, runtime: str | None = None) -> str:
    params = {"format": fmt, **({"runtime": runtime} if runtime else {})}
    response = server.http.get(f"/lut/{device}", params=params)
    assert response.status_code == 200, response.text[:300]
    return response.text


def expected_keys(grammar: str) -> set[str]:
    return {k for k in (to_published(grammar, key) for key in KEYS) if k is not None}


@pytest.mark.parametrize("brk", BREAKS, ids=[repr(b) for b in BREAKS])
@pytest.mark.parametrize("field", ["runtime_version", "runtime"])
def test_an_agents_header_fields_cannot_add_entries(server: AppServer, device: str, field: str, brk: str) -> None:
    text = f"1{brk}{INJECTED}{brk}#"
    fields = {"runtime": "ort", "runtime_version": "1.17"} | {field: text}
    with server.client("agent") as agent:
        agent.post_measurements(batch(device, [result(k, ms) for k, ms in KEYS.items()], **fields))  # type: ignore[arg-type]
    for fmt, grammar in (("ofa-yaml", "ofa"), ("proxyless-yaml", "proxyless")):
        out = export(server, device, fmt, runtime=fields["runtime"])
        parsed = yaml.safe_load(out) or {}
        assert set(parsed) == expected_keys(grammar), out
        assert "Conv-input:1x1x1-output:1x1x1" not in parsed
        # Every line the header added is still a comment: the injected text is there, escaped, on a '#' line.
        injected = [line for line in out.splitlines() if INJECTED in line]
        assert injected and all(line.startswith("# ") for line in injected), out


@pytest.mark.parametrize("source_field", ["project", "file", "commit", "licence"])
def test_an_importers_provenance_cannot_add_entries(server: AppServer, source_field: str) -> None:
    device = f"imp-{uuid.uuid4().hex[:8]}"
    content = "Conv-input:160x160x3-output:80x80x24:\n  count: 498\n  mean: 0.495\n  std: 0.0102\n"
    source = {
        "project": "mit-han-lab/once-for-all",
        "file": "160_lookup_table.yaml",
        "commit": "abc",
        "source_device": "Note10",
        "licence": "MIT",
    }
    source[source_field] = f"x\n{SHORT}\u2028{SHORT}\r#"[:64]  # commit holds 64 characters
    body = {"format": "ofa-yaml", "content": content, "device": device, "runtime": "tflite", "threads": 1, "source": source}
    r = server.http.post("/lut/import", json=body, headers={"Authorization": f"Bearer {server.admin_token}"})
    assert r.status_code == 200, r.text[:300]
    out = export(server, device, "ofa-yaml")
    assert yaml.safe_load(out) == yaml.safe_load(content), out  # exactly the imported entry, nothing more
