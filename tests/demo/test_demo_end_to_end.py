"""`hwnas demo --quick --keep-server` end to end: real server, local agent and Fashion-MNIST; sane report; clean stop."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from search.app.demo_model import PHASES
from tests.demo.procs import TINY, processes_mentioning, services, start_demo, wait_gone

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, subprocess.CompletedProcess[str]]:
    """One `hwnas demo --quick --keep-server` run: checked while its server is still up, then stopped with Ctrl-C."""
    base = tmp_path_factory.mktemp("demo")
    out = base / "demo-output"
    with open(base / "stderr.txt", "w") as err:
        proc = start_demo(out, *TINY, "--keep-server", stderr=err)
        try:
            stdout = _read_summary(proc)
            _check_server_kept(out)
            proc.send_signal(signal.SIGINT)
            rest, _ = proc.communicate(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
    return out, subprocess.CompletedProcess(proc.args, proc.returncode, stdout + rest, (base / "stderr.txt").read_text())


def _read_summary(proc: subprocess.Popen[str]) -> str:
    """stdout up to the summary's last line (the demo then waits with its server up)."""
    lines = []
    deadline = time.monotonic() + 420
    assert proc.stdout is not None
    for line in proc.stdout:
        lines.append(line)
        if (line.startswith("search ") and "report" in line) or time.monotonic() > deadline:
            break
    return "".join(lines)


def _check_server_kept(out: Path) -> None:
    """--keep-server: the API still answers, with the table and the whole-network measurements."""
    url = services(out).get("url")
    if not url:
        return  # the demo failed; the tests below say how
    lut = httpx.get(f"{url}/lut/host-cpu", params={"runtime": "onnxruntime", "threads": 1}, timeout=10).json()
    assert len(lut["entries"]) == 102
    # Served with the calibration the demo fitted on random whole networks (quick: 4), so every search applies it.
    assert lut["calibration"]["networks"] == 4 and lut["calibration"]["scale"] > 0, lut.get("calibration")
    nets = httpx.get(f"{url}/devices/host-cpu/networks", params={"runtime": "onnxruntime", "threads": 1}, timeout=10)
    assert nets.status_code == 200 and len(nets.json()["entries"]) >= 4  # found, 2 random, baseline
    assert httpx.get(f"{url}/docs", timeout=10).status_code == 200


def test_demo_finishes_and_prints_the_summary(demo_run) -> None:
    out, done = demo_run
    # --keep-server: Ctrl-C after the report ends the demo normally.
    assert done.returncode == 0, done.stderr[-3000:]
    assert "found" in done.stdout and "baseline" in done.stdout
    assert str(out / "report.md") in done.stdout
    assert "server still running" in done.stderr and "stopping the server and agent" in done.stderr
    assert "Traceback" not in done.stderr


def test_report_and_files_are_there(demo_run) -> None:
    out, done = demo_run
    assert done.returncode == 0, done.stderr[-3000:]
    report = (out / "report.md").read_text()
    for section in (
        "## Summary",
        "## At equal latency: found vs random",
        "## The found architecture",
        "## Predicted vs measured latency",
        "## Timings",
    ):
        assert section in report
    for plot in ("theta_heatmap.png", "equal_latency.png", "predicted_vs_measured.png"):
        path = out / "plots" / plot
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", plot
        assert f"plots/{plot}" in report
    for onnx in ("found.onnx", "baseline.onnx"):
        assert (out / onnx).stat().st_size > 1000
    assert (out / "search" / "theta.json").is_file() and (out / "search" / "found.json").is_file()
    for name in ("found", "random-1", "random-2", "baseline"):
        assert (out / "train" / f"{name}.train.json").is_file(), name


def test_numbers_are_sane(demo_run) -> None:
    out, done = demo_run
    assert done.returncode == 0, done.stderr[-3000:]
    s = json.loads((out / "summary.json").read_text())
    assert s["device"] == "host-cpu" and s["runtime"] == "onnxruntime" and s["threads"] == 1
    assert s["table_entries"] == 102  # every operator of fbnet-fmnist, measured through the job
    cal = s["table_calibration"]
    assert cal["networks"] == 4 and cal["scale"] > 0 and cal["mape_after"] >= 0, cal
    found, base = s["found"], s["baseline"]
    assert base["choices"] == ["ir_k3_e6"] * 9
    # What the demo ships is the search's found.json, not the argmax.
    assert found["choices"] == json.loads((out / "search" / "found.json").read_text())["choices"]
    for net in (found, base, *s["matched"]):
        assert net["predicted_ms"] > 0 and net["measured_ms"] > 0
        # The table's prediction of a whole network is within a factor 2 of its measurement.
        assert 0.5 < net["predicted_ms"] / net["measured_ms"] < 2.0, net
    for net in (found, base, *s["matched"]):
        assert net["accuracy"] > 0.2, net  # 10 classes: chance is 0.1
        assert net["mmacs"] > 0 and net["mparams"] > 0
    # A target-latency search: 35% of the baseline's predicted latency (a window of the ground truth), shipped
    # within ±2% of it.
    assert s["target_ms"] == pytest.approx(0.35 * base["predicted_ms"], rel=1e-6)
    assert abs(found["predicted_ms"] / s["target_ms"] - 1) <= 0.021
    assert s["search_s"] > 0


def test_report_compares_at_equal_latency(demo_run) -> None:
    """Random networks within ±5% of the found one's predicted latency, trained the same way; the report's gain is summary.json's."""
    out, done = demo_run
    assert done.returncode == 0, done.stderr[-3000:]
    s = json.loads((out / "summary.json").read_text())
    found, matched = s["found"], s["matched"]
    assert len(matched) == 2 and {m["role"] for m in matched} == {"matched"}
    for m in matched:
        assert abs(m["predicted_ms"] / found["predicted_ms"] - 1) <= 0.05 + 1e-9, m
        assert m["choices"] != found["choices"]
    # Exactly the same recipe for every trained network.
    recipes = []
    for name in ("found", "random-1", "random-2", "baseline"):
        cfg = json.loads((out / "train" / f"{name}.train.json").read_text())["config"]
        recipes.append({k: cfg[k] for k in ("epochs", "subset", "val_subset", "seed", "batch_size", "lr")})
    assert all(r == recipes[0] for r in recipes), recipes
    eq = s["equal_latency"]
    accs = [m["accuracy"] for m in matched]
    assert eq["n"] == 2 and eq["random_mean_acc"] == pytest.approx(sum(accs) / 2)
    assert eq["gain_pts"] == pytest.approx(100 * (found["accuracy"] - sum(accs) / 2))
    report = (out / "report.md").read_text()
    m = re.search(
        r"\*\*Gain at equal latency: ([+-]\d+\.\d\d) accuracy points\*\* — the found network (\d+\.\d\d)%, "
        r"the random networks (\d+\.\d\d)% on average \(min–max (\d+\.\d\d)%–(\d+\.\d\d)%\)",
        report,
    )
    assert m, report
    assert float(m[1]) == pytest.approx(eq["gain_pts"], abs=0.006)
    assert float(m[2]) == pytest.approx(100 * found["accuracy"], abs=0.006)
    assert float(m[3]) == pytest.approx(100 * eq["random_mean_acc"], abs=0.006)
    assert float(m[4]) == pytest.approx(100 * min(accs), abs=0.006)
    assert float(m[5]) == pytest.approx(100 * max(accs), abs=0.006)
    assert "illustration, not as evidence" in report and "search_quality.py" in report
    ratio = s["baseline"]["measured_ms"] / found["measured_ms"]
    assert f"baseline (every layer `ir_k3_e6`), {ratio:.1f}× the found network's latency" in report
    assert "at equal latency:" in done.stdout
    # --quick trains with a shorter recipe than the ground truth's: not placed on it, and the report says why.
    assert s["ground_truth"]["placed"] is False and "another recipe" in s["ground_truth"]["reason"]
    assert "Not placed on the ground truth of search quality: this run trained with another recipe" in report


def test_timings_cover_every_phase(demo_run) -> None:
    out, done = demo_run
    assert done.returncode == 0, done.stderr[-3000:]
    t = json.loads((out / "timings.json").read_text())
    assert t["complete"] is True
    assert list(t["phases"]) == list(PHASES)
    assert all(p["wall_s"] >= 0 for p in t["phases"].values())
    assert t["total_s"] >= sum(p["wall_s"] for p in t["phases"].values()) * 0.99


def test_no_process_left_behind(demo_run) -> None:
    out, _ = demo_run
    started = json.loads((out / "services.json").read_text())["started"]
    assert set(started) == {"server", "agent"}
    assert wait_gone(list(started.values())) == []
    assert processes_mentioning(str(out)) == []
