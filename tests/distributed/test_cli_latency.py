"""`hwnas search --nproc 2` with the latency cost of a live profiler server: one GET /lut for the whole job."""

from __future__ import annotations

import json
import re
import uuid
from pathlib import Path

from hwnas.opkey import OVERHEAD_KEY
from hwnas.schemas import DeviceInfo, MeasurementBatch, MeasurementResult
from search.space import get_space
from tests.distributed.conftest import hwnas

DEVICE = "ddp-phone"


def _lut_requests(log: Path) -> int:
    """GET /lut/<DEVICE> lines in the server's access log (uvicorn logs every request)."""
    return len(re.findall(rf'"GET /lut/{DEVICE}[?" ]', log.read_text()))


def test_latency_table_is_fetched_once_and_broadcast(live_server, tiny_space: Path, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    keys = get_space(str(tiny_space)).op_keys()
    results = [MeasurementResult(key=k, median_ms=0.2 + 0.01 * i, iterations=20) for i, k in enumerate(keys)]
    results.append(MeasurementResult(key=OVERHEAD_KEY, median_ms=0.05, iterations=20))
    with live_server.client("agent") as c:
        c.put_device(DEVICE, DeviceInfo(manufacturer="Test", model="DDP", cpu_cores=4))
        c.post_measurements(
            MeasurementBatch(device=DEVICE, runtime="onnxruntime", threads=1, agent="test", run_id=uuid.uuid4(), results=results)
        )
    before = _lut_requests(live_server.log_path)
    out = tmp_path / "run"
    proc = hwnas(
        [
            "search",
            "--nproc",
            "2",
            "--space",
            str(tiny_space),
            "--cost",
            "latency",
            "--server",
            live_server.url,
            "--device",
            DEVICE,
            "--runtime",
            "onnxruntime",
            "--threads",
            "1",
            "--cache-dir",
            str(tmp_path / "cache"),
            "--subset",
            "600",
            "--val-subset",
            "200",
            "--epochs",
            "1",
            "--batch-size",
            "32",
            "--samples",
            "0",
            "--torch-threads",
            "1",
            "--no-progress",
            "--out",
            str(out),
        ]
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert _lut_requests(live_server.log_path) - before == 1  # rank 0 asked; rank 1 got the table by broadcast
    costs = json.loads((out / "costs.json").read_text())
    assert costs["cost"] == "latency" and costs["source"]["table_device"] == DEVICE
    assert proc.stdout.count("search done") == 1  # rank 0 alone reports
    assert "running 2 processes" in proc.stderr


def test_batch_that_does_not_split_is_refused_before_launch(tiny_space: Path, tmp_path: Path) -> None:
    proc = hwnas(["search", "--nproc", "2", "--space", str(tiny_space), "--batch-size", "33", "--out", str(tmp_path / "r")])
    assert proc.returncode == 1
    assert proc.stderr.strip() == "error: --batch-size 33 is the batch of the whole job: it must be a multiple of --nproc 2"
    assert not (tmp_path / "r").exists()
