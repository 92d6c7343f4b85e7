"""`hwnas validate --calibrate` under the server's owner rule (issue 25, D2): a client token's fit is reported and not
stored, naming the rule; ``--calibration-token`` with the device owner's token stores it with the table."""

from __future__ import annotations

import uuid

import httpx

from hwnas.schemas import Calibration, DeviceInfo
from search.validate import ValidateConfig, _store_calibration
from tests.support.live_server import LiveServer
from tests.support.measurements import batch, key, result


def _table(server: LiveServer) -> str:
    device = f"val-{uuid.uuid4().hex[:8]}"
    with server.client("agent") as agent:
        agent.put_device(device, DeviceInfo(model="host"))
        agent.post_measurements(batch(device, [result(key(1))], runtime="onnxruntime"))
    return device


def test_a_client_tokens_fit_is_reported_not_stored_and_the_owners_is_stored(live_server: LiveServer) -> None:
    device = _table(live_server)
    body = Calibration(runtime="onnxruntime", threads=1, scale=1.2, offset_ms=0.0, networks=4)
    lines: list[str] = []
    cfg = ValidateConfig(server=live_server.url, device=device, space="fbnet-fmnist", token=live_server.client_token)
    c: dict[str, object] = {}
    with live_server.client("client") as client:
        assert _store_calibration(cfg, client, body, c, lines.append) is False
        assert "owner rule" in str(c["not_stored"]) and "--calibration-token" in str(c["not_stored"])
        assert lines and lines[0].startswith("calibration NOT stored")
        assert httpx.get(f"{live_server.url}/lut/{device}", timeout=30).json()["calibration"] is None
        owner = ValidateConfig(
            server=live_server.url,
            device=device,
            space="fbnet-fmnist",
            token=live_server.client_token,
            calibration_token=live_server.agent_token,
        )
        assert _store_calibration(owner, client, body, {}, lines.append) is True
    assert httpx.get(f"{live_server.url}/lut/{device}", timeout=30).json()["calibration"]["scale"] == 1.2
