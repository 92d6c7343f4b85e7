"""Screenshots of the dashboard for docs/dashboard.md: ``python -m tests.support.dashboard_screenshots docs/images``.

A live SQLite server filled through the API (two phones and the agent's loopback phone, a table, a job half
done with a failure and whole networks), each page opened in headless Chromium and saved as a PNG.
"""

from __future__ import annotations

import sys
import tempfile
import uuid
from pathlib import Path

from hwnas.schemas import (
    DeviceInfo,
    JobClaim,
    JobCreate,
    JobFail,
    NetworkMeasurementBatch,
    NetworkResult,
    NetworkSpec,
)
from tests.support.browser import Browser
from tests.support.live_server import start_live_server
from tests.support.measurements import batch, result


def loopback_info(root: Path) -> DeviceInfo:
    """What the agent registers for its loopback phone (read over ADB from an in-process one, as the agent does)."""
    from device_agent.loopback.adbd import LoopbackAdbd
    from device_agent.deviceinfo import read_facts
    from device_agent.loopback.fakephone import load_phone
    from device_agent.platforms.adb import AdbDevice

    daemon = LoopbackAdbd(root, load_phone("galaxy-a51")).start()
    try:
        dev = AdbDevice(daemon.serial)
        try:
            return read_facts(dev).device_info()
        finally:
            dev.close()
    finally:
        daemon.stop()


def networks() -> list[NetworkSpec]:
    """Three whole networks of the FBNet Fashion-MNIST space (they differ in the last layer)."""
    return [
        NetworkSpec(
            arch_id=f"{i:016x}", arch={"space": "fbnet-fmnist", "choices": ["ir_k3_e1"] * 8 + [last]}, input_shape=[1, 1, 28, 28]
        )
        for i, last in enumerate(["skip", "ir_k3_e3", "maxpool_k3"])
    ]


def main(out: Path) -> None:
    work = Path(tempfile.mkdtemp())
    srv = start_live_server(tmp_path=work)
    keys = [
        f"{b}_s{s}_o{o}@1x{c}x{h}x{h}"
        for (s, o, c, h) in [(1, 16, 16, 28), (2, 24, 16, 28), (1, 24, 24, 14), (2, 32, 24, 14), (1, 32, 32, 7)]
        for b in ("ir_k3_e1_g1", "ir_k3_e3_g1", "ir_k3_e6_g1", "ir_k5_e3_g1", "ir_k5_e6_g1", "skip")
    ]
    try:
        with srv.client("agent") as agent:
            agent.put_device(
                "pixel7",
                DeviceInfo(
                    manufacturer="Google",
                    model="Pixel 7",
                    soc="gs201",
                    abi="arm64-v8a",
                    os_version="14",
                    cpu_cores=8,
                    cpu_max_freqs_khz=[1803000] * 4 + [2348000] * 2 + [2850000] * 2,
                ),
            )
            agent.put_device(
                "galaxy-s22",
                DeviceInfo(
                    manufacturer="Samsung", model="SM-S901B", soc="exynos2200", abi="arm64-v8a", os_version="13", cpu_cores=8
                ),
            )
            agent.post_measurements(
                batch(
                    "pixel7",
                    [result(k, median=0.02 * (1 + i % 6) * (1 + i // 6)) for i, k in enumerate(keys)],
                    runtime="onnxruntime",
                    device_state={"thermal_before": {"status": 1, "temperatures_c": {"cpu": 38.2}}},
                )
            )
        with srv.client("client") as client:
            job = client.create_job(
                JobCreate(device="galaxy-s22", runtime="onnxruntime", threads=1, keys=keys[:12], networks=networks())
            )
        with srv.client("agent") as agent:
            agent.claim_job(JobClaim(device="galaxy-s22", agent="lab-host-1", lease_s=600))
            agent.post_measurements(
                batch("galaxy-s22", [result(k, median=0.05) for k in keys[:5]], runtime="onnxruntime", job_id=job.id)
            )
            agent.put_device("pixel7-cpu1", DeviceInfo(manufacturer="Google", model="Pixel 7 (little cores)"))
            agent.post_measurements(
                batch(
                    "pixel7-cpu1",
                    [result(k, median=0.05 * (1 + i % 6) * (1 + i // 6) * (3 if i % 7 == 3 else 1)) for i, k in enumerate(keys)],
                    runtime="onnxruntime",
                )
            )
            agent.fail_key(job.id, JobFail(key=keys[5], error="onnxruntime benchmark exited 1: Load model failed: Invalid model"))
            agent.post_network_measurements(
                NetworkMeasurementBatch(
                    device="galaxy-s22",
                    runtime="onnxruntime",
                    threads=1,
                    agent="lab-host-1",
                    run_id=uuid.uuid4(),
                    job_id=job.id,
                    results=[
                        NetworkResult(
                            arch_id=networks()[0].arch_id,
                            median_ms=0.412,
                            min_ms=0.398,
                            iterations=40,
                            samples_ms=[0.398, 0.405, 0.41, 0.42],
                        )
                    ],
                )
            )
            agent.put_device("galaxy-a51-loopback", loopback_info(work / "phone"))
        from hwnas.schemas import Calibration, CalibrationPoint

        import random

        rng = random.Random(0)
        measured = [rng.uniform(0.3, 3.0) for _ in range(40)]
        with srv.client("agent") as client:  # pixel7's owner (the owner rule: not a client)
            client.put_calibration(
                "pixel7",
                Calibration(
                    runtime="onnxruntime",
                    threads=1,
                    scale=1.08,
                    offset_ms=0.02,
                    networks=20,
                    mape_before=11.2,
                    mape_after=4.1,
                    points=[
                        CalibrationPoint(
                            arch_id=f"{i:016x}", predicted_ms=(m - 0.02) / 1.08 * rng.uniform(0.9, 1.1), measured_ms=m
                        )
                        for i, m in enumerate(measured)
                    ],
                ),
            )
        with Browser(width=1280, height=800) as b:
            for name, url in [
                ("overview", "/ui/"),
                ("job", f"/ui/job.html?id={job.id}"),
                ("table", "/ui/table.html?device=pixel7&runtime=onnxruntime&threads=1"),
                (
                    "compare",
                    "/ui/compare.html?a=pixel7&runtime_a=onnxruntime&threads_a=1&b=pixel7-cpu1&runtime_b=onnxruntime&threads_b=1",
                ),
                ("validation", "/ui/validation.html?device=pixel7&runtime=onnxruntime&threads=1"),
            ]:
                b.open(srv.url + url)
                print(b.screenshot(out / f"dashboard-{name}.png"))
    finally:
        srv.stop()


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "docs/images"))
