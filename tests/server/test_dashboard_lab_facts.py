"""Issue 27's dashboard items, against a live server filled through the real API and read in headless Chromium:

* a device's "last seen" is its latest activity (an upload, a claim, a heartbeat, an idle agent's poll that found
  no job), not its registration; a client queueing or cancelling a job is no sign of the device;
* the agent's loopback phone, registered from what the agent really reads off it, is marked as fake;
* the heatmap sorts layers and candidates by the key's numbers (o8 < o16 < o128) and has a numbered colour scale;
* the validation page's headline is the calibration's hold-out MAPE; the MAPE over every network is labelled as
  including the ones it was fitted on;
* the job page lists its whole networks with their states and measurements.

On SQLite and PostgreSQL (the ``server`` fixture of tests/server/conftest.py).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path

import httpx
import pytest

from hwnas.schemas import (
    Calibration,
    CalibrationPoint,
    DeviceInfo,
    JobClaim,
    JobCreate,
    JobFail,
    JobHeartbeat,
    NetworkMeasurementBatch,
    NetworkResult,
    NetworkSpec,
)
from tests.support.browser import Browser
from tests.support.live_server import LiveServer
from tests.support.measurements import batch, key, result


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with Browser() as b:
        yield b


def device_json(server: LiveServer, name: str) -> dict[str, object]:
    r = httpx.get(f"{server.url}/devices/{name}")
    assert r.status_code == 200, r.text
    return r.json()


def at(iso: object) -> datetime:
    return datetime.fromisoformat(str(iso))


def test_last_seen_is_the_devices_latest_activity(server: LiveServer, browser: Browser) -> None:
    name = f"seen-{uuid.uuid4().hex[:6]}"
    with server.client("agent") as agent:
        agent.put_device(name, DeviceInfo(model="Pixel 7"))
    registered = device_json(server, name)
    assert registered["last_seen_at"] == registered["updated_at"]  # nothing but the registration yet

    before_upload = datetime.now(timezone.utc)
    with server.client("agent") as agent:
        agent.post_measurements(batch(name, [result(key(0))]))
    uploaded = device_json(server, name)
    assert uploaded["updated_at"] == registered["updated_at"]  # the registration did not change...
    assert at(uploaded["last_seen_at"]) >= before_upload  # ...but the device was seen uploading

    with server.client("client") as client:  # a client queueing work is no sign of the device
        job = client.create_job(JobCreate(device=name, runtime="ort", threads=1, keys=[key(1), key(2)]))
    assert device_json(server, name)["last_seen_at"] == uploaded["last_seen_at"]

    before_claim = datetime.now(timezone.utc)
    with server.client("agent") as agent:
        assert agent.claim_job(JobClaim(device=name, agent="lab-agent", lease_s=600)) is not None
    claimed = device_json(server, name)
    assert at(claimed["last_seen_at"]) >= before_claim

    before_beat = datetime.now(timezone.utc)
    with server.client("agent") as agent:
        agent.heartbeat(job.id, JobHeartbeat(agent="lab-agent", lease_s=600))
    beat = device_json(server, name)
    assert at(beat["last_seen_at"]) >= before_beat > at(claimed["last_seen_at"])

    cancelled = httpx.delete(f"{server.url}/jobs/{job.id}", headers={"Authorization": f"Bearer {server.client_token}"})
    assert cancelled.status_code == 200, cancelled.text
    # The cancel is the client's: "last seen" falls back to the upload, not to the cancel time.
    assert device_json(server, name)["last_seen_at"] == uploaded["last_seen_at"]

    listed = next(d for d in httpx.get(f"{server.url}/devices").json() if d["name"] == name)
    assert listed["last_seen_at"] == uploaded["last_seen_at"]  # GET /devices computes the same
    browser.open(f"{server.url}/ui/")
    assert browser.errors == [], browser.errors
    cell = f"document.querySelector(\"#devices tr[data-device='{name}'] .last-seen\")"
    assert browser.eval(f"{cell}.dataset.at") == uploaded["last_seen_at"] != registered["updated_at"]
    assert browser.eval(f"{cell}.textContent") == browser.eval(
        f"new Date({json.dumps(uploaded['last_seen_at'])}).toLocaleString()"
    )


def test_an_idle_agents_poll_is_last_seen_on_the_overview(server: LiveServer, browser: Browser) -> None:
    name = f"idle-{uuid.uuid4().hex[:6]}"
    with server.client("agent") as agent:
        agent.put_device(name, DeviceInfo(model="Pixel 7"))
        registered = device_json(server, name)
        assert agent.claim_job(JobClaim(device=name, agent="idle-agent", lease_s=600)) is None  # nothing to do
    polled = device_json(server, name)
    assert polled["updated_at"] == registered["updated_at"] and at(polled["last_seen_at"]) > at(registered["updated_at"])
    browser.open(f"{server.url}/ui/")
    assert browser.errors == [], browser.errors
    cell = f"document.querySelector(\"#devices tr[data-device='{name}'] .last-seen\")"
    assert browser.eval(f"{cell}.dataset.at") == polled["last_seen_at"]


def test_the_loopback_phone_is_marked_and_a_phone_is_not(server: LiveServer, browser: Browser, tmp_path: Path) -> None:
    from device_agent.loopback.adbd import LoopbackAdbd
    from device_agent.deviceinfo import read_facts
    from device_agent.loopback.fakephone import load_phone
    from device_agent.platforms.adb import AdbDevice

    daemon = LoopbackAdbd(tmp_path / "phone", load_phone("pixel-7")).start()
    try:
        dev = AdbDevice(daemon.serial)
        try:
            facts = read_facts(dev)  # what the agent reads off the fake phone and registers
        finally:
            dev.close()
    finally:
        daemon.stop()
    fake, real = f"fake-{uuid.uuid4().hex[:6]}", f"real-{uuid.uuid4().hex[:6]}"
    info = facts.device_info()
    assert info.model == "Pixel 7"  # it looks like a phone...
    # ...as does a real Pixel 7: the same facts, but its own build.
    android = {**info.props["android"], "ro.build.version.incremental": "9325679"}
    with server.client("agent") as agent:
        agent.put_device(fake, info)
        agent.put_device(real, info.model_copy(update={"props": {**info.props, "android": android}}))
    assert device_json(server, fake)["loopback"] is True and device_json(server, real)["loopback"] is False
    browser.open(f"{server.url}/ui/")
    assert browser.errors == [], browser.errors
    row = "document.querySelector(\"#devices tr[data-device='{}']\")"
    assert browser.eval(f"{row.format(fake)}.querySelector('.badge.loopback').textContent") == "loopback (fake)"
    assert browser.eval(f"{row.format(fake)}.classList.contains('loopback')")
    assert browser.eval(f"{row.format(real)}.querySelector('.badge') === null")


def test_the_heatmap_sorts_by_the_keys_numbers_and_numbers_its_colour_scale(server: LiveServer, browser: Browser) -> None:
    name = f"heat-{uuid.uuid4().hex[:6]}"
    channels, expansions = [128, 8, 24, 16], [12, 3, 6]
    medians = {f"ir_k3_e{e}_g1_s1_o{o}@1x16x28x28": 0.001 * o * e for o in channels for e in expansions}
    with server.client("agent") as agent:
        agent.put_device(name, DeviceInfo(model="Pixel 7"))
        agent.post_measurements(batch(name, [result(k, median=m) for k, m in medians.items()]))
    browser.open(f"{server.url}/ui/table.html?device={name}&runtime=ort&threads=1")
    assert browser.errors == [], browser.errors

    def texts(sel: str) -> list[str]:
        return json.loads(browser.eval(f"JSON.stringify([...document.querySelectorAll('{sel}')].map(t => t.textContent))"))

    assert texts("#heatmap text.row") == [f"s1 o{o} @ 1x16x28x28" for o in (8, 16, 24, 128)]  # not o128, o16, o24, o8
    assert texts("#heatmap text.col") == ["ir_k3_e3_g1", "ir_k3_e6_g1", "ir_k3_e12_g1"]
    # The colour scale is numbered: its ends are the lowest and highest median, its middle their geometric mean.
    lo, hi = min(medians.values()), max(medians.values())
    ticks = json.loads(
        browser.eval(
            "JSON.stringify([...document.querySelectorAll('#heatmap-legend text.tick')]"
            ".map(t => [Number(t.dataset.t), Number(t.dataset.ms), t.textContent]))"
        )
    )
    assert [t for t, _, _ in ticks] == [0, 0.25, 0.5, 0.75, 1]
    assert ticks[0][1] == pytest.approx(lo) and ticks[-1][1] == pytest.approx(hi)
    assert ticks[2][1] == pytest.approx((lo * hi) ** 0.5)
    assert ticks[0][2] == f"{lo:.4f}" and ticks[-1][2] == f"{hi:.3f}"  # as the table prints ms (< 1: 4 decimals)
    fill = lambda k: browser.eval(f"document.querySelector('#heatmap rect[data-key=\"{k}\"]').getAttribute('fill')")  # noqa: E731
    by_ms = sorted(medians, key=medians.__getitem__)
    assert (fill(by_ms[0]), fill(by_ms[-1])) == ("#440154", "#fde725")  # the scale's ends: viridis, as in the plots


def test_the_validation_headline_is_the_held_out_mape(server: LiveServer, browser: Browser) -> None:
    name = f"cal-{uuid.uuid4().hex[:6]}"
    measured = [0.5, 0.8, 1.0, 1.3, 2.0, 2.6]
    predicted = [0.42, 0.75, 0.81, 1.2, 1.5, 2.4]
    with server.client("agent") as agent:
        agent.put_device(name, DeviceInfo(model="Pixel 7"))
        agent.post_measurements(batch(name, [result(key(0))]))
        agent.put_calibration(
            name,
            Calibration(
                runtime="ort",
                threads=1,
                scale=1.1,
                offset_ms=0.01,
                networks=3,
                mape_before=12.0,
                mape_after=7.4,
                points=[
                    CalibrationPoint(arch_id=f"{i:016x}", predicted_ms=p, measured_ms=m)
                    for i, (p, m) in enumerate(zip(predicted, measured))
                ],
            ),
        )
    browser.open(f"{server.url}/ui/validation.html?device={name}&runtime=ort&threads=1")
    assert browser.errors == [], browser.errors
    headline = "document.querySelector('.card.headline')"
    assert browser.eval("document.querySelectorAll('.card.headline').length") == 1
    assert browser.eval(f"{headline}.querySelector('.muted').textContent") == "MAPE, calibrated, held out"
    assert browser.eval(f"{headline}.querySelector('.value').textContent") == "7.4%"  # stored by hwnas validate
    assert "table sum there: 12.0%" in browser.eval(f"{headline}.querySelector('.note').textContent")
    # The first card is the headline; the MAPE over every network comes after, saying it includes the fitted ones.
    assert browser.eval("document.querySelector('.cards .card') === document.querySelector('.card.headline')")
    everything = 100 * sum(abs(1.1 * p + 0.01 - m) / m for p, m in zip(predicted, measured)) / 6
    card = "[...document.querySelectorAll('.card')].find(c => c.querySelector('.value').dataset.figure === 'MAPE, calibrated, all networks')"
    assert browser.eval(f"{card}.querySelector('.value').textContent") == f"{everything:.1f}%"
    assert browser.eval(f"{card}.querySelector('.note').textContent") == "all 6 plotted, including the 3 it was fitted on"
    # One colour per role, as in hwnas validate's scatter plot (search/validate.py): table sum tab:blue, calibrated tab:orange.
    from matplotlib.colors import to_hex

    fills = json.loads(
        browser.eval(
            "JSON.stringify(['raw', 'calibrated'].map(c => [...new Set([...document.querySelectorAll("
            "`#validation-plot circle.${c}`)].map(e => e.getAttribute('fill')))]))"
        )
    )
    assert fills == [[to_hex("tab:blue")], [to_hex("tab:orange")]]


def _net(i: int) -> NetworkSpec:
    doc = {"space": "fbnet-fmnist", "choices": ["ir_k3_e1"] * 8 + [["skip", "ir_k3_e3", "maxpool_k3"][i]]}
    return NetworkSpec(arch_id=f"{i:016x}", arch=doc, input_shape=[1, 1, 28, 28])


def test_the_job_page_lists_its_whole_networks(server: LiveServer, browser: Browser) -> None:
    name = f"nets-{uuid.uuid4().hex[:6]}"
    nets = [_net(i) for i in range(3)]
    with server.client("agent") as agent:
        agent.put_device(name, DeviceInfo(model="Pixel 7"))
    with server.client("client") as client:
        job = client.create_job(JobCreate(device=name, runtime="ort", threads=1, keys=[key(0), key(1)], networks=nets))
    with server.client("agent") as agent:
        assert agent.claim_job(JobClaim(device=name, agent="lab-agent", lease_s=600)) is not None
        agent.post_network_measurements(
            NetworkMeasurementBatch(
                device=name,
                runtime="ort",
                threads=1,
                agent="lab-agent",
                run_id=uuid.uuid4(),
                job_id=job.id,
                results=[
                    NetworkResult(
                        arch_id=nets[0].arch_id, median_ms=1.25, min_ms=1.125, iterations=8, samples_ms=[1.125, 1.25, 1.3]
                    )
                ],
            )
        )
        agent.fail_key(job.id, JobFail(arch_id=nets[1].arch_id, error="<b>export failed</b>"))
    api = httpx.get(f"{server.url}/jobs/{job.id}").json()
    assert {k: api["networks"][k] for k in ("total", "done", "failed", "pending")} == {
        "total": 3,
        "done": 1,
        "failed": 1,
        "pending": 1,
    }
    assert [(n["arch_id"], n["state"], n["median_ms"], n["error"]) for n in api["networks"]["items"]] == [
        (nets[0].arch_id, "done", 1.25, None),
        (nets[1].arch_id, "failed", None, "<b>export failed</b>"),
        (nets[2].arch_id, "pending", None, None),
    ]
    assert httpx.get(f"{server.url}/jobs/{client_only_job(server, name)}").json()["networks"] is None

    browser.open(f"{server.url}/ui/job.html?id={job.id}")
    assert browser.errors == [], browser.errors
    assert browser.eval("document.getElementById('job-composition').textContent").startswith(
        "2 operator keys and 3 whole networks"
    )
    rows = json.loads(
        browser.eval(
            "JSON.stringify([...document.querySelectorAll('#job-networks tbody tr')].map(r => "
            "[r.dataset.arch, r.querySelector('.state').textContent, r.querySelector('.median').textContent, "
            "r.querySelector('.message').textContent]))"
        )
    )
    assert rows == [
        [nets[0].arch_id, "done", "1.250", ""],
        [nets[1].arch_id, "failed", "–", "<b>export failed</b>"],
        [nets[2].arch_id, "pending", "–", ""],
    ]
    assert browser.eval("document.querySelectorAll('#job-networks b').length") == 0  # the error stayed text
    assert browser.eval("document.getElementById('pending-keys').children.length") == 2  # operator keys only


def client_only_job(server: LiveServer, device: str) -> int:
    """An operator-only job (the usual kind): its JSON says nothing about networks."""
    with server.client("client") as client:
        return client.create_job(JobCreate(device=device, runtime="ort", threads=1, keys=[key(7)])).id
