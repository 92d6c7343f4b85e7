"""The dashboard in a real browser (Debian's headless Chromium over the DevTools protocol), against a
live server filled through the real API: devices, a table, a job an agent is working on, failures.

Each page must load with no console error and show what the API's JSON says; the job page's
progress must advance while the agent uploads; cancel must work with a token and be refused
without; markup in agent-written fields must come out as text.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator

import httpx
import pytest

from hwnas.schemas import DeviceInfo, JobClaim, JobCreate, JobFail
from tests.support.browser import Browser
from tests.support.live_server import LiveServer, start_live_server
from tests.support.measurements import batch, key, result

HOSTILE = '<script>document.title="pwned"</script><img src=x onerror="window.pwned=1">'


@pytest.fixture(scope="module")
def lab(server: LiveServer) -> dict[str, object]:
    """A device with a hostile model string and a 12-entry table, a second device, and a job in progress."""
    name = f"pixel-{uuid.uuid4().hex[:6]}"
    with server.client("agent") as agent:
        agent.put_device(
            name,
            DeviceInfo(
                manufacturer="Google",
                model=HOSTILE,
                soc="gs201",
                abi="arm64-v8a",
                os_version="14",
                cpu_cores=8,
                cpu_max_freqs_khz=[1800000] * 4 + [2850000] * 4,
            ),
        )
        agent.put_device(name + "-b", DeviceInfo(model="Galaxy S22"))
        agent.post_measurements(
            batch(
                name,
                [result(key(i), median=0.1 * (i + 1)) for i in range(12)],
                device_state={"thermal_before": {"status": 2, "temperatures_c": {"cpu": 41.5, "skin": 33.0}}},
            )
        )
        # The second phone: twice as slow on everything, but key(5) is 5 times slower on it than the trend says.
        agent.post_measurements(
            batch(name + "-b", [result(key(i), median=0.2 * (i + 1) * (5 if i == 5 else 1)) for i in range(12)])
        )
    with server.client("client") as client:
        job = client.create_job(JobCreate(device=name, runtime="onnxruntime", threads=1, keys=[key(100 + i) for i in range(6)]))
    with server.client("agent") as agent:
        claimed = agent.claim_job(JobClaim(device=name, agent="lab-agent", lease_s=600))
        assert claimed is not None and claimed.id == job.id
        agent.fail_key(job.id, JobFail(key=key(100), error=HOSTILE))
    return {"device": name, "job": job.id}


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with Browser() as b:
        yield b


def test_overview_shows_the_apis_devices_and_jobs_and_escapes_agent_text(
    server: LiveServer, lab: dict[str, object], browser: Browser
) -> None:
    browser.open(f"{server.url}/ui/")
    assert browser.errors == [], browser.errors
    assert "null" not in browser.eval("document.getElementById('main').textContent")
    devices = httpx.get(f"{server.url}/devices").json()
    assert browser.eval("document.querySelectorAll('#devices tbody tr').length") == len(devices)
    assert browser.eval("document.getElementById('n-devices').querySelector('.value').textContent") == str(len(devices))
    row = f"#devices tr[data-device='{lab['device']}']"
    assert browser.eval(f'document.querySelector("{row} .model").textContent') == f"Google {HOSTILE}"
    assert browser.eval(f'document.querySelector("{row} .tables").textContent') == "ort × 1: 12 entries"
    assert browser.eval(f'document.querySelector("{row}").textContent').count("4 × 1.80 GHz + 4 × 2.85 GHz") == 1
    assert browser.eval(f'document.querySelector("{row} .thermal").textContent') == "moderate · 41.5 °C"
    # The markup stayed text: no element was made from it and nothing ran.
    assert browser.eval("document.querySelectorAll('main script, main img').length") == 0
    assert browser.eval("document.title") != "pwned" and browser.eval("window.pwned === undefined")
    job = httpx.get(f"{server.url}/jobs/{lab['job']}").json()
    jrow = f"#jobs tr[data-job='{lab['job']}']"
    for field in ("done", "failed", "pending"):
        assert browser.eval(f'document.querySelector("{jrow} .n-{field}").textContent') == str(job[field])


def test_the_job_page_follows_the_agent_and_shows_failures_as_text(
    server: LiveServer, lab: dict[str, object], browser: Browser
) -> None:
    job_id = lab["job"]
    browser.open(f"{server.url}/ui/job.html?id={job_id}")
    assert browser.errors == [], browser.errors
    assert browser.eval("document.getElementById('job-done').textContent") == "0"
    assert browser.eval("document.getElementById('job-holder').textContent") == "test-agent"
    assert browser.eval("document.querySelector('#job-errors .message').textContent") == HOSTILE
    assert browser.eval("document.querySelectorAll('main img, main script').length") == 0
    assert "null" not in browser.eval("document.getElementById('main').textContent")  # optional parts left out
    # The agent uploads two results: the open page shows them without a reload.
    with server.client("agent") as agent:
        agent.post_measurements(
            batch(str(lab["device"]), [result(key(101)), result(key(102))], runtime="onnxruntime", job_id=job_id)
        )
    browser.wait_for("document.getElementById('job-done').textContent === '2'", timeout_s=20)
    api_job = httpx.get(f"{server.url}/jobs/{job_id}").json()
    assert browser.eval("document.getElementById('pending-keys').children.length") == len(api_job["pending_keys"]) == 3, api_job
    assert browser.errors == [], browser.errors


def test_cancel_is_refused_without_a_token_and_works_with_one(
    server: LiveServer, lab: dict[str, object], browser: Browser
) -> None:
    with server.client("client") as client:
        job = client.create_job(JobCreate(device=str(lab["device"]), runtime="onnxruntime", threads=1, keys=[key(200)]))
    browser.open(f"{server.url}/ui/job.html?id={job.id}")
    browser.eval("sessionStorage.clear(); document.getElementById('cancel').click()")
    browser.wait_for("document.getElementById('cancel-status').textContent.startsWith('cannot cancel')")
    assert "token" in browser.eval("document.getElementById('cancel-status').textContent")
    assert httpx.get(f"{server.url}/jobs/{job.id}").json()["state"] == "queued"
    browser.open(f"{server.url}/ui/job.html?id={job.id}#token={server.client_token}")
    assert browser.eval("location.hash") == ""  # the token left the address bar
    browser.eval("document.getElementById('cancel').click()")
    browser.wait_for("document.getElementById('job-state').textContent === 'cancelled'")
    assert httpx.get(f"{server.url}/jobs/{job.id}").json()["state"] == "cancelled"
    browser.eval("sessionStorage.clear()")


def test_the_table_page_lists_every_entry_and_draws_the_heatmap(
    server: LiveServer, lab: dict[str, object], browser: Browser
) -> None:
    device = lab["device"]
    browser.open(f"{server.url}/ui/table.html?device={device}&runtime=ort&threads=1")
    assert browser.errors == [], browser.errors
    lut = httpx.get(f"{server.url}/lut/{device}", params={"runtime": "ort", "threads": 1}).json()
    assert browser.eval("document.querySelectorAll('#entries tbody tr').length") == len(lut["entries"]) == 12
    assert browser.eval("document.querySelectorAll('#heatmap rect').length") == 12
    shown = json.loads(
        browser.eval(
            "JSON.stringify([...document.querySelectorAll('#entries tbody tr')].map(r => [r.dataset.key, r.querySelector('.median').textContent]))"
        )
    )
    assert {k: float(v) for k, v in shown} == pytest.approx({k: e["median_ms"] for k, e in lut["entries"].items()}, abs=1e-3)
    assert [k for k, _ in shown] == sorted(lut["entries"], key=lambda k: lut["entries"][k]["median_ms"])  # by median
    # All twelve keys are one candidate (ir_k3_e6_g1) at twelve layers (output channels).
    assert browser.eval("document.querySelectorAll('#heatmap text').length") == 1 + 12


def test_comparing_two_devices_names_what_is_relatively_slow(
    server: LiveServer, lab: dict[str, object], browser: Browser
) -> None:
    a, b = lab["device"], f"{lab['device']}-b"
    browser.open(f"{server.url}/ui/")
    browser.eval(
        f"(() => {{ const s = document.getElementById('compare-a'); s.value = [...s.options].find(o => "
        f"o.textContent.startsWith('{a} · ort ×')).value; const t = document.getElementById('compare-b'); t.value = "
        f"[...t.options].find(o => o.textContent.startsWith('{b} · ort ×')).value; "
        f"document.getElementById('compare-go').click(); }})()"
    )
    browser.wait_for("document.body.dataset.page === 'compare' && document.body.dataset.ready === '1'")
    assert browser.errors == [], browser.errors
    assert browser.eval("document.getElementById('shared').textContent").startswith("12 shared keys")
    assert browser.eval("document.querySelectorAll('#compare-plot circle').length") == 12
    top = browser.eval("document.querySelector('#outliers tbody tr').dataset.key")
    assert top == key(5), top
    assert browser.eval("document.querySelector('#outliers tbody tr .ratio').textContent").startswith("×")


def test_the_validation_page_plots_the_calibrations_networks_and_their_figures(
    server: LiveServer, lab: dict[str, object], browser: Browser
) -> None:
    from hwnas.schemas import Calibration, CalibrationPoint
    from search.validate import kendall_tau

    device = str(lab["device"])
    measured = [0.5, 0.8, 1.0, 1.3, 2.0, 2.6]
    predicted = [0.42, 0.75, 0.81, 1.2, 1.5, 2.4]  # the table misses some networks by 20% and more
    points = [
        CalibrationPoint(arch_id=f"{i:016x}", predicted_ms=p, measured_ms=m) for i, (p, m) in enumerate(zip(predicted, measured))
    ]
    with server.client("agent") as client:  # the device's owner (a client's calibration is refused: the owner rule)
        client.put_calibration(
            device,
            Calibration(
                runtime="ort", threads=1, scale=1.1, offset_ms=0.01, networks=6, mape_before=12.0, mape_after=5.0, points=points
            ),
        )
        detail = client.get_calibration(device, runtime="ort", threads=1)
    assert [p.arch_id for p in detail.points] == [p.arch_id for p in points]  # stored and served back
    browser.open(f"{server.url}/ui/table.html?device={device}&runtime=ort&threads=1")
    browser.eval("document.getElementById('validation-link').click()")
    browser.wait_for("document.body.dataset.page === 'validation' && document.body.dataset.ready === '1'")
    assert browser.errors == [], browser.errors
    assert browser.eval("document.querySelectorAll('#validation-plot circle.calibrated').length") == 6
    figure = lambda k: browser.eval(f"document.querySelector('[data-figure=\"{k}\"]').textContent")  # noqa: E731
    mape = 100 * sum(abs(p - m) / m for p, m in zip(predicted, measured)) / 6
    calibrated = 100 * sum(abs(1.1 * p + 0.01 - m) / m for p, m in zip(predicted, measured)) / 6
    assert figure("MAPE, table sum, all networks") == f"{mape:.1f}%"
    assert figure("MAPE, calibrated, all networks") == f"{calibrated:.1f}%"  # includes the networks it was fitted on
    assert figure("MAPE, calibrated, held out") == "5.0%"  # the headline: the hold-out figure hwnas validate stored
    assert figure("Kendall τ") == f"{kendall_tau(predicted, measured):.3f}"


def test_reads_that_need_a_token_ask_for_one(tmp_path_factory: pytest.TempPathFactory, browser: Browser) -> None:
    srv = start_live_server(tmp_path=tmp_path_factory.mktemp("closed"), env={"READ_REQUIRES_TOKEN": "true"})
    try:
        browser.eval("sessionStorage.clear()")
        browser.open(f"{srv.url}/ui/")
        assert "needs a token" in browser.eval("document.getElementById('page-error').textContent")
        browser.open(f"{srv.url}/ui/#token={srv.client_token}")
        assert browser.eval("document.getElementById('n-devices').textContent").endswith("0")
        assert browser.errors == [], browser.errors
        browser.eval("sessionStorage.clear()")
    finally:
        srv.stop()


def test_api_clients_still_get_json_at_the_root(server: LiveServer) -> None:
    r = httpx.get(f"{server.url}/")
    assert r.status_code == 200 and r.json()["dashboard"] == "/ui/"
    page = httpx.get(f"{server.url}/", headers={"Accept": "text/html"}, follow_redirects=True)
    assert page.status_code == 200 and 'data-page="index"' in page.text
    assert "script-src 'self'" in page.headers["content-security-policy"]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    srv = start_live_server(tmp_path=tmp_path_factory.mktemp("dash"))
    try:
        yield srv
    finally:
        srv.stop()
