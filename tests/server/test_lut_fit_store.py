"""`hwnas lut fit --server`: a table fitted from whole networks is stored like an imported table, with its fit quality."""

from __future__ import annotations

import csv
import hashlib
import json
import random
import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from hwnas.client import ConflictError
from hwnas.schemas import Lut, LutImport
from search.app.cli import app
from search.random_search import uniform_random
from search.space import get_space
from tests.support.browser import Browser
from tests.support.live_server import LiveServer
from tests.support.measurements import batch, result

SPACE = "fbnet-fmnist"
RUNTIME, THREADS = "npu-sdk", 2


def hwnas(*args: str, env: dict[str, str] | None = None) -> tuple[int, str]:
    r = CliRunner().invoke(app, list(args), env=env)
    return r.exit_code, r.output


def timed_networks(path: Path, seed: int = 4) -> Path:
    """120 random networks of the space 'timed' by an additive device with a few per cent of noise."""
    space = get_space(SPACE)
    rng = random.Random(2)
    per_candidate = {c: rng.uniform(0.002, 0.03) for c in space.layers()[0].candidates}
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["choices", "ms"])
        for a in uniform_random(space, 120, seed=seed):
            w.writerow([" ".join(a), (0.05 + sum(per_candidate[c] for c in a)) * rng.uniform(0.95, 1.05)])
    return path


def fit_args(server: LiveServer, device: str, networks: Path, *extra: str) -> list[str]:
    return [
        "lut",
        "fit",
        "--space",
        SPACE,
        "--networks",
        str(networks),
        "--device",
        device,
        "--runtime",
        RUNTIME,
        "--threads",
        str(THREADS),
        "--server",
        server.url,
        *extra,
    ]


def get_lut(server: LiveServer, device: str) -> Lut:
    response = httpx.get(f"{server.url}/lut/{device}", params={"runtime": RUNTIME, "threads": THREADS}, timeout=30)
    assert response.status_code == 200, response.text
    return Lut.model_validate_json(response.content)


@dataclass(frozen=True)
class Stored:
    device: str
    networks: Path
    local: Path
    output: str


@pytest.fixture(scope="module")
def stored(server: LiveServer, tmp_path_factory: pytest.TempPathFactory) -> Stored:
    """One fitted table, written to a file and stored on the server (once per database)."""
    tmp = tmp_path_factory.mktemp("fit")
    device = f"npu-{uuid.uuid4().hex[:6]}"
    networks = timed_networks(tmp / "timed.csv")
    code, output = hwnas(*fit_args(server, device, networks, "--token", server.admin_token, "-o", str(tmp / "npu.json")))
    assert code == 0, output
    return Stored(device, networks, tmp / "npu.json", output)


def test_the_stored_table_carries_the_fit_quality_the_command_printed(server: LiveServer, stored: Stored) -> None:
    printed = re.search(r"hold-out MAPE (\d+\.\d)%, Kendall τ (-?\d\.\d\d) on 24 networks", stored.output)
    assert printed, stored.output
    assert f"{stored.device} {RUNTIME}/{THREADS}: created," in stored.output
    source = get_lut(server, stored.device).source
    assert source is not None and source.format == "hwnas-fit" and source.read_only and source.gauge and "fitted" in source.gauge
    fit = source.fit
    assert fit is not None and fit.mape_pct is not None and fit.kendall_tau is not None
    assert (f"{fit.mape_pct:.1f}", f"{fit.kendall_tau:.2f}") == printed.groups() and fit.mape_pct > 0.1
    assert (fit.space, fit.train_networks, fit.test_networks, fit.networks_file) == (SPACE, 96, 24, "timed.csv")
    assert fit.networks_sha256 == hashlib.sha256(stored.networks.read_bytes()).hexdigest()
    with server.client("client") as client:  # the device's tables show it too
        (table,) = [t for t in client.get_device(stored.device).tables if t.runtime == RUNTIME]
    assert table.source is not None and table.source.fit == fit


def test_the_stored_entries_are_the_local_files(server: LiveServer, stored: Stored) -> None:
    local = json.loads(stored.local.read_text())
    served = get_lut(server, stored.device)
    assert {k: e.median_ms for k, e in served.entries.items()} == {k: e["median_ms"] for k, e in local["entries"].items()}
    assert served.overhead_ms == local["overhead_ms"] and len(served.entries) > 10
    assert local["fit"] == get_lut(server, stored.device).source.fit.model_dump(mode="json")  # type: ignore[union-attr]


def test_agents_cannot_write_into_a_stored_fit(server: LiveServer, stored: Stored) -> None:
    key = next(iter(get_lut(server, stored.device).entries))
    with server.client("agent") as agent, pytest.raises(ConflictError, match="read-only") as err:
        agent.post_measurements(batch(stored.device, [result(key, 0.5)], runtime=RUNTIME, threads=THREADS))
    assert err.value.status == 409


def test_the_same_fit_again_is_unchanged_and_another_needs_replace(server: LiveServer, stored: Stored, tmp_path: Path) -> None:
    code, output = hwnas(*fit_args(server, stored.device, stored.networks, "--token", server.admin_token))
    assert code == 0 and f"{stored.device} {RUNTIME}/{THREADS}: unchanged," in output, output
    before = get_lut(server, stored.device)
    other = timed_networks(tmp_path / "timed.csv", seed=5)
    code, output = hwnas(*fit_args(server, stored.device, other, "--token", server.admin_token))
    assert code == 1 and "HTTP 409" in output and "replace" in output, output
    assert get_lut(server, stored.device) == before
    code, output = hwnas(*fit_args(server, stored.device, other, "--token", server.admin_token, "--replace"))
    assert code == 0 and ": replaced," in output, output
    fit = get_lut(server, stored.device).source.fit  # type: ignore[union-attr]
    assert fit is not None and fit.networks_sha256 == hashlib.sha256(other.read_bytes()).hexdigest()
    code, output = hwnas(*fit_args(server, stored.device, stored.networks, "--token", server.admin_token, "--replace"))
    assert code == 0 and ": replaced," in output, output  # back to the first fit, for the other tests


def test_where_the_table_goes_must_be_said_and_only_an_admin_stores(server: LiveServer, stored: Stored) -> None:
    code, output = hwnas("lut", "fit", "--space", SPACE, "--networks", str(stored.networks))
    assert code == 2 and "give --out FILE, --server URL" in output, output
    code, output = hwnas("lut", "fit", "--space", SPACE, "--networks", str(stored.networks), "--server", server.url)
    assert code == 2 and "give the device name" in output, output
    # A shell that exports HWNAS_SERVER still fits locally: storing needs --server on the command line.
    local = stored.local.parent / "env-only.json"
    code, output = hwnas(
        "lut", "fit", "--space", SPACE, "--networks", str(stored.networks), "-o", str(local), env={"HWNAS_SERVER": server.url}
    )
    assert code == 0 and local.is_file() and "stored" not in output.lower(), output
    code, output = hwnas(*fit_args(server, f"npu-{uuid.uuid4().hex[:6]}", stored.networks, "--token", server.client_token))
    assert code == 1 and "HTTP 403" in output and "Traceback" not in output, output


def test_a_fitted_table_without_its_fit_is_refused_whole(server: LiveServer, stored: Stored) -> None:
    doc = json.loads(stored.local.read_text())
    body = LutImport.model_validate(
        {
            "format": "hwnas-fit",
            "device": f"npu-{uuid.uuid4().hex[:6]}",
            "runtime": RUNTIME,
            "content": "",
            "source": {"project": "p", "file": "f", "source_device": "d", "licence": "l"},
        }
    )
    with server.client("admin") as admin:
        for broken, named in (
            (dict(doc, fit=None), "fit"),
            (dict(doc, fit=dict(doc["fit"], kendall_tau=2.0)), "fit.kendall_tau"),
            (dict(doc, entries={"conv3x3": {"median_ms": 1.0}}), "entries['conv3x3']"),
        ):
            response = httpx.post(
                f"{server.url}/lut/import",
                json=body.model_copy(update={"content": json.dumps(broken)}).model_dump(mode="json"),
                headers={"Authorization": f"Bearer {server.admin_token}"},
                timeout=30,
            )
            assert response.status_code == 422 and named in response.text, response.text
        assert body.device not in [d.name for d in admin.list_devices()]


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with Browser() as b:
        yield b


def test_the_dashboard_shows_the_fit_quality(server: LiveServer, stored: Stored, browser: Browser) -> None:
    fit = get_lut(server, stored.device).source.fit  # type: ignore[union-attr]
    assert fit is not None and fit.mape_pct is not None
    browser.open(f"{server.url}/ui/table.html?device={stored.device}&runtime={RUNTIME}&threads={THREADS}")
    assert browser.errors == [], browser.errors
    note = browser.eval("document.querySelector('#source p.fit').textContent")
    assert note.startswith(f"Fitted from whole networks of {SPACE}: hold-out MAPE {fit.mape_pct:.1f}%") and "fitted on 96" in note
