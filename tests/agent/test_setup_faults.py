"""Faults that are neither the operator's nor cured by pushing the files again, each reproduced on the loopback
phone with the agent, the server and the phone's own programs (device_agent/faults.py):

* a flag the program's build predates, a model format it refuses (SETUP): the agent stops before any claim
  (the preflight measures the empty model with the jobs' flags), or — met mid-job — gives the job back at once;
* the result folder refusing writes (EPERM, STORAGE): the files pushed again once, then the job given back;
* ``taskset`` refused (PINNING): the job measured unpinned, recorded in every batch's device state;
* a push error said as text, not as ``bytearray(b'...')``.

No key is failed on the server for any of them.
"""

from __future__ import annotations

import json
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from device_agent.deviceinfo import read_facts
from device_agent.loopback.fakephone import BUILTIN_PHONES, unlock
from device_agent.models import ModelCache
from device_agent.platforms.adb import AdbDevice
from device_agent.loopback.standins import KNOB_MINIMAL, KNOB_WITHOUT
from device_agent.loopback.standins.worker import write_launcher
from hwnas.schemas import JobCreate, JobState
from tests.agent.agent_support import FAST_PROTOCOL, FMNIST_KEYS, agent_cmd, env, kill, start_loopback
from tests.support.ports import free_port
from tests.support.live_server import LiveServer

KEYS = FMNIST_KEYS[:3]


def _phone(tmp_path: Path, **faults: bool) -> tuple[int, Path, subprocess.Popen[bytes]]:
    """A loopback phone subprocess (a Pixel 7 with the given FakePhone fault knobs)."""
    spec = json.loads(BUILTIN_PHONES["pixel-7"].to_json())
    spec.update(faults)
    (tmp_path / "phone.json").write_text(json.dumps(spec))
    port, root = free_port(), tmp_path / "phone"
    return port, root, start_loopback(port, root, tmp_path / "loopback.log", "--model", str(tmp_path / "phone.json"))


@pytest.fixture
def phone(tmp_path: Path) -> Iterator[tuple[int, Path]]:
    port, root, proc = _phone(tmp_path)
    try:
        yield port, root
    finally:
        kill(proc, signal.SIGTERM)


def _job(srv: LiveServer, port: int, cache: Path, runtime: str = "onnxruntime") -> tuple[str, int]:
    """The phone registered, the models built, a job queued: (device name, job id)."""
    models = ModelCache(cache)
    for key in KEYS:
        models.item(key, runtime)
    models.overhead(runtime)
    dev = AdbDevice(f"127.0.0.1:{port}")
    try:
        facts = read_facts(dev)
    finally:
        dev.close()
    with srv.client("agent") as c:
        c.put_device(facts.default_name(), facts.device_info())
    with srv.client() as c:
        return facts.default_name(), c.create_job(
            JobCreate(device=facts.default_name(), runtime=runtime, threads=1, keys=KEYS)
        ).id


def _run_agent(srv: LiveServer, port: int, cache: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        agent_cmd(
            "run",
            "--serial",
            f"127.0.0.1:{port}",
            "--server",
            srv.url,
            "--token",
            srv.agent_token,
            "--cache-dir",
            str(cache),
            "--once",
            *FAST_PROTOCOL,
            *extra,
        ),
        capture_output=True,
        text=True,
        env=env(),
        timeout=300,
    )


def _untouched(srv: LiveServer, job_id: int, claimed: bool = False) -> None:
    """Queued again with nothing failed or done; never claimed at all unless ``claimed`` (then given back)."""
    with srv.client() as c:
        job = c.get_job(job_id)
    assert (job.state, job.failed, job.done) == (JobState.queued, 0, 0)
    assert (job.agent is not None) == claimed


@pytest.mark.parametrize(
    "runtime, knobs, said",
    [
        ("onnxruntime", {KNOB_WITHOUT: "-I"}, "onnxruntime_perf_test rejects -I"),
        ("torchscript", {KNOB_WITHOUT: "--pthreadpool_size"}, "speed_benchmark_torch rejects --pthreadpool_size"),
        ("onnxruntime", {KNOB_MINIMAL: "1"}, "minimal ONNX Runtime build"),
    ],
    ids=["ort-without-I", "torch-without-pthreadpool_size", "ort-minimal"],
)
def test_a_build_that_refuses_the_jobs_flags_or_models_stops_the_agent_before_any_claim(
    server: LiveServer,
    phone: tuple[int, Path],
    model_cache_dir: Path,
    tmp_path: Path,
    runtime: str,
    knobs: dict[str, str],
    said: str,
) -> None:
    port, _ = phone
    name, job_id = _job(server, port, model_cache_dir, runtime)
    tool = "onnxruntime_perf_test" if runtime == "onnxruntime" else "speed_benchmark_torch"
    program = write_launcher(tool, tmp_path / "build", knobs)  # the stand-in playing that build
    r = _run_agent(server, port, model_cache_dir, "--runtime", runtime, "--benchmark-binary", str(program))
    assert r.returncode == 5, r.stderr[-3000:]
    assert said in r.stderr and "--benchmark-binary" in r.stderr, r.stderr[-3000:]
    assert "claimed job" not in r.stderr and "Traceback" not in r.stderr  # found by the preflight: no job touched
    _untouched(server, job_id)


def test_a_rejected_flag_met_mid_job_gives_the_job_back_at_once_and_fails_no_key(
    server: LiveServer, model_cache_dir: Path, tmp_path: Path
) -> None:
    """Past the preflight (the loopback's own stand-in, which the agent does not preflight, plays an ORT without
    -I for every call): the first batch's bursts print the usage, the agent stops with the fix."""
    from device_agent.loopback.adbd import LoopbackAdbd
    from device_agent.loopback.fakephone import load_phone

    daemon = LoopbackAdbd(tmp_path / "phone", load_phone("pixel-7"), worker=True, shell_env={KNOB_WITHOUT: "-I"}).start()
    try:
        name, job_id = _job(server, daemon.port, model_cache_dir)
        r = _run_agent(server, daemon.port, model_cache_dir, "--runtime", "onnxruntime")
    finally:
        daemon.stop()
    assert r.returncode == 5, r.stderr[-3000:]
    assert f"claimed job {job_id}" in r.stderr and f"giving job {job_id} back" in r.stderr
    assert "onnxruntime_perf_test rejects -I" in r.stderr and "cannot measure" not in r.stderr
    _untouched(server, job_id, claimed=True)


def test_a_result_folder_that_refuses_writes_is_pushed_again_once_then_the_job_goes_back(
    server: LiveServer, model_cache_dir: Path, tmp_path: Path
) -> None:
    """EPERM on the phone's result folder: speed_benchmark_torch's output redirection fails for every burst."""
    port, root, proc = _phone(tmp_path, readonly_results=True)
    try:
        name, job_id = _job(server, port, model_cache_dir, "torchscript")
        r = _run_agent(server, port, model_cache_dir, "--runtime", "torchscript")
    finally:
        kill(proc, signal.SIGTERM)
        unlock(root)
    assert r.returncode == 5, r.stderr[-3000:]
    assert (
        "pushing its files again" in r.stderr
        and "refuses writes in /data/local/tmp/hwnas even after pushing" in r.stderr
        and "Operation not permitted" in r.stderr
    ), r.stderr[-3000:]
    assert r.stderr.count("pushing its files again") == 1  # once: a second push would not cure it either
    _untouched(server, job_id, claimed=True)


def test_a_refused_taskset_measures_unpinned_and_says_so_in_every_batch(
    server: LiveServer, model_cache_dir: Path, tmp_path: Path
) -> None:
    port, root, proc = _phone(tmp_path, taskset_refused=True)
    try:
        name, job_id = _job(server, port, model_cache_dir)
        r = _run_agent(server, port, model_cache_dir, "--runtime", "onnxruntime")
    finally:
        kill(proc, signal.SIGTERM)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "taskset was refused" in r.stderr and "pushing its files again" not in r.stderr
    with server.client() as c:
        job = c.get_job(job_id)
    assert (job.state, job.done, job.failed) == (JobState.done, len(KEYS), 0)
    engine = sa.create_engine(server.database_url)
    try:
        with engine.connect() as conn:
            states = (
                conn.execute(
                    sa.text(
                        "SELECT r.device_state FROM measurement_runs r JOIN devices d ON d.id = r.device_id WHERE d.name = :n"
                    ),
                    {"n": name},
                )
                .scalars()
                .all()
            )
    finally:
        engine.dispose()
    states = [s if isinstance(s, dict) else json.loads(s) for s in states]
    assert states and all(
        s["taskset"] is None and "Invalid argument" in s["taskset_refused"]["error"] and s["taskset_refused"]["mask"] == "c0"
        for s in states
    )


def test_a_push_error_is_said_as_text(tmp_path: Path) -> None:
    from device_agent.loopback.adbd import LoopbackAdbd
    from device_agent.errors import DeviceCommandError
    from device_agent.loopback.fakephone import load_phone

    phone = load_phone("generic")
    phone.readonly_results = True
    local = tmp_path / "x.bin"
    local.write_bytes(b"x")
    try:
        with LoopbackAdbd(tmp_path / "phone", phone) as daemon:
            dev = AdbDevice(daemon.serial)
            try:
                with pytest.raises(DeviceCommandError) as failed:
                    dev.push(local, "/data/local/tmp/hwnas/res/x.bin")
            finally:
                dev.close()
    finally:
        unlock(tmp_path / "phone")
    assert "Operation not permitted" in str(failed.value) and "bytearray" not in str(failed.value), str(failed.value)
