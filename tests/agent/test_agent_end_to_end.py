"""End to end: a job made through the client, ``device-agent run --serial ... --once`` against a
loopback device subprocess and a live server (SQLite, and PostgreSQL when TEST_DATABASE_URL is set)."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path

import sqlalchemy as sa

from device_agent.deviceinfo import read_facts
from device_agent.models import ModelCache
from hwnas.schemas import JobClaim, JobCreate, JobCreated, JobState
from tests.agent.agent_support import (
    FAST_PROTOCOL,
    FMNIST_KEYS,
    PERF_TEST_USAGE,
    SLOW_KEYS,
    agent_cmd,
    env,
    fake_program,
    register_phone,
    kill,
    measurement_counts,
    process_running,
    start_loopback,
)
from tests.support.live_server import LiveServer


# Two keys a batch, slow bursts: a job that lasts long enough to be interrupted.
SLOW_RUN = ("--batch-size", "2", "--warmup", "2", "--iterations", "30", "--rounds", "2")


def _agent(srv: LiveServer, port: int, cache: Path, *extra: str) -> list[str]:
    return agent_cmd(
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
        *extra,
    )


def _wait_for_text(path: Path, text: str, timeout_s: float = 60.0) -> None:
    """Poll ``path`` until it contains ``text`` (a deadline, not a guess at how long it takes)."""
    deadline = time.monotonic() + timeout_s
    while text not in (path.read_text() if path.exists() else ""):
        assert time.monotonic() < deadline, (
            f"{path} never said {text!r}:\n{path.read_text()[-2000:] if path.exists() else '(no such file)'}"
        )
        time.sleep(0.05)


def _wait_done(srv: LiveServer, job_id: int, at_least: int, timeout_s: float = 90.0) -> None:
    deadline = time.monotonic() + timeout_s
    with srv.client() as c:
        while time.monotonic() < deadline:
            if c.get_job(job_id).done >= at_least:
                return
            time.sleep(0.05)
    raise TimeoutError(f"job {job_id} did not reach {at_least} done keys")


def _check_table(srv: LiveServer, name: str, keys: list[str], job_id: int) -> None:
    with srv.client() as c:
        job = c.get_job(job_id)
        assert job.state == JobState.done and job.done == len(keys) and job.pending_keys == []
        lut = c.get_lut(name, runtime="onnxruntime", threads=1).lut
    assert lut is not None and set(lut.entries) == set(keys)
    assert lut.overhead_ms is not None and lut.overhead_ms > 0
    assert all(0 < e.median_ms < 1000 and e.min_ms is not None and e.min_ms <= e.median_ms for e in lut.entries.values())
    counts = measurement_counts(srv.database_url, name)
    assert {k: counts.get(k) for k in keys} == {k: 1 for k in keys}  # every key once: no duplicates


def _phone_job(srv: LiveServer, port: int, cache_dir: Path, keys: list[str]) -> tuple[str, JobCreated]:
    """The loopback phone registered, the models of ``keys`` built, and a job queued for them."""
    _prebuild(cache_dir, keys)
    name = register_phone(srv, f"127.0.0.1:{port}")
    with srv.client() as c:
        return name, c.create_job(JobCreate(device=name, runtime="onnxruntime", threads=1, keys=keys))


def _prebuild(cache_dir: Path, keys: list[str]) -> None:
    cache = ModelCache(cache_dir)
    for k in keys:
        cache.item(k, "onnxruntime")
    cache.overhead("onnxruntime")


def test_run_once_fills_the_table(
    server: LiveServer, phone: tuple[int, Path, subprocess.Popen[bytes]], model_cache_dir: Path
) -> None:
    port, root, _ = phone
    name, job = _phone_job(server, port, model_cache_dir, FMNIST_KEYS)
    r = subprocess.run(
        _agent(server, port, model_cache_dir, "--batch-size", "3", *FAST_PROTOCOL),
        capture_output=True,
        text=True,
        env=env(),
        timeout=180,
    )
    assert r.returncode == 0, r.stderr
    assert f"claimed job {job.id}" in r.stderr and "uploaded" in r.stderr
    _check_table(server, name, FMNIST_KEYS, job.id)
    # the models and the stand-in were pushed into the phone's /data/local/tmp/hwnas
    assert len(list((root / "data/local/tmp/hwnas/models").glob("*.onnx"))) == len(FMNIST_KEYS) + 1
    with server.client() as c:
        device = c.get_device(name)
    assert device.model == "Pixel 7" and device.cpu_max_freqs_khz[-1] == 2850000


def test_loopback_device_restarted_mid_job(
    server: LiveServer, phone: tuple[int, Path, subprocess.Popen[bytes]], model_cache_dir: Path, tmp_path: Path
) -> None:
    port, root, proc = phone
    keys = SLOW_KEYS[:8]
    name, job = _phone_job(server, port, model_cache_dir, keys)
    log = open(tmp_path / "agent.log", "w")
    agent = subprocess.Popen(_agent(server, port, model_cache_dir, *SLOW_RUN), stdout=log, stderr=subprocess.STDOUT, env=env())
    try:
        _wait_done(server, job.id, 2)
        kill(proc)  # the phone goes away mid-job...
        _wait_for_text(tmp_path / "agent.log", "unreachable")  # (the agent noticed)
        restarted = start_loopback(port, root, tmp_path / "loopback.log")  # ...and comes back
        try:
            assert agent.wait(timeout=120) == 0, (tmp_path / "agent.log").read_text()
        finally:
            kill(restarted, signal.SIGTERM)
    finally:
        kill(agent)
        log.close()
    text = (tmp_path / "agent.log").read_text()
    assert "unreachable" in text and "reconnected" in text
    _check_table(server, name, keys, job.id)


def test_benchmark_program_deleted_mid_job_is_pushed_again_and_the_job_completes(
    server: LiveServer, phone: tuple[int, Path, subprocess.Popen[bytes]], model_cache_dir: Path, tmp_path: Path
) -> None:
    from device_agent.loopback.standins.worker import write_launcher

    port, root, _ = phone
    keys = SLOW_KEYS[:8]
    name, job = _phone_job(server, port, model_cache_dir, keys)
    # A program the agent pushes (a phone's own, with no --benchmark-binary, cannot be pushed again).
    pushed = write_launcher("onnxruntime_perf_test", tmp_path / "build")
    log = open(tmp_path / "agent.log", "w")
    agent = subprocess.Popen(
        _agent(server, port, model_cache_dir, "--benchmark-binary", str(pushed), *SLOW_RUN),
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env(),
    )
    try:
        _wait_done(server, job.id, 2)
        program = root / "data/local/tmp/hwnas/bin/onnxruntime_perf_test"
        assert program.is_file()
        program.unlink()  # someone cleaned /data/local/tmp: the next bursts exit 127 "not found"
        assert agent.wait(timeout=180) == 0, (tmp_path / "agent.log").read_text()
    finally:
        kill(agent)
        log.close()
    text = (tmp_path / "agent.log").read_text()
    assert "pushing its files again" in text, text[-3000:]  # the fault happened, and was taken for the device's
    assert program.is_file()
    _check_table(server, name, keys, job.id)  # no key failed for it: every key measured once
    with server.client() as c:
        assert c.get_job(job.id).failed == 0


def test_a_program_that_cannot_run_is_refused_before_any_claim_with_the_fix(
    server: LiveServer, phone: tuple[int, Path, subprocess.Popen[bytes]], model_cache_dir: Path, tmp_path: Path
) -> None:
    port, _, _ = phone
    keys = SLOW_KEYS[:4]
    name, job = _phone_job(server, port, model_cache_dir, keys)
    # What a phone's linker prints for a binary built without its C++ runtime next to it.
    broken = fake_program(
        tmp_path / "onnxruntime_perf_test",
        'echo \'CANNOT LINK EXECUTABLE "./bin/onnxruntime_perf_test": library "libc++_shared.so" not found\'\nexit 1\n',
    )
    r = subprocess.run(
        _agent(server, port, model_cache_dir, "--benchmark-binary", str(broken), "--batch-size", "2", *FAST_PROTOCOL),
        capture_output=True,
        text=True,
        env=env(),
        timeout=180,
    )
    assert r.returncode == 5, r.stderr[-3000:]
    assert "cannot run on" in r.stderr and "libc++_shared.so" in r.stderr and "--benchmark-lib" in r.stderr
    assert "claimed job" not in r.stderr  # refused at start: no job was touched
    with server.client() as c:
        after = c.get_job(job.id)
    assert after.failed == 0 and after.done == 0 and after.state == JobState.queued and after.agent is None


def test_server_down_mid_job_loses_nothing_and_the_agent_serves_on(
    server: LiveServer, phone: tuple[int, Path, subprocess.Popen[bytes]], tmp_path: Path
) -> None:
    port, _, _ = phone
    keys = SLOW_KEYS[:6]
    cache = tmp_path / "cache" / "models"  # its own cache: the spool lives next to it
    name, job = _phone_job(server, port, cache, keys)
    log = open(tmp_path / "agent.log", "w")
    # No --once: the agent serves until stopped. Uploads give up after 1 s, polls start at 0.2 s.
    cmd = agent_cmd(
        "run",
        "--serial",
        f"127.0.0.1:{port}",
        "--server",
        server.url,
        "--token",
        server.agent_token,
        "--cache-dir",
        str(cache),
        *SLOW_RUN,
        "--upload-deadline-s",
        "1",
        "--poll-s",
        "0.2",
    )
    agent = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env(), start_new_session=True)
    try:
        _wait_done(server, job.id, 2)
        server.stop()  # the server goes away mid-job...
        _wait_for_text(tmp_path / "agent.log", "sent when the server is back")  # (a batch went to the spool)
        assert agent.poll() is None, (tmp_path / "agent.log").read_text()  # ...and the agent is still serving
        server.start()  # ...and comes back
        _wait_done(server, job.id, len(keys), timeout_s=120)
        assert agent.poll() is None
    finally:
        kill(agent, signal.SIGTERM)
        agent.wait(timeout=30)
        log.close()
    text = (tmp_path / "agent.log").read_text()
    assert "uploaded" in text and "spooled batch(es)" in text, text[-3000:]
    assert not list((tmp_path / "cache" / "spool").glob("*.json"))  # the spool went up
    _check_table(server, name, keys, job.id)  # every key once, none failed


def test_a_program_that_stops_running_mid_job_gives_the_job_back_and_fails_no_key(
    server: LiveServer, phone: tuple[int, Path, subprocess.Popen[bytes]], model_cache_dir: Path, tmp_path: Path
) -> None:
    port, _, _ = phone
    keys = SLOW_KEYS[:4]
    name, job = _phone_job(server, port, model_cache_dir, keys)
    # Starts bare (the preflight passes), but cannot link once it is given a model: a fault that pushing the
    # files again does not cure.
    flaky = fake_program(
        tmp_path / "onnxruntime_perf_test",
        PERF_TEST_USAGE + "echo 'CANNOT LINK EXECUTABLE "
        '"./bin/onnxruntime_perf_test": library "libc++_shared.so" not found\'\nexit 1\n',
    )
    r = subprocess.run(
        _agent(server, port, model_cache_dir, "--benchmark-binary", str(flaky), "--batch-size", "2", *FAST_PROTOCOL),
        capture_output=True,
        text=True,
        env=env(),
        timeout=180,
    )
    assert r.returncode == 5, r.stderr[-3000:]
    assert "still cannot run after pushing its files again 2 time(s)" in r.stderr and f"claimed job {job.id}" in r.stderr
    with server.client() as c:
        after = c.get_job(job.id)
    assert after.failed == 0 and after.done == 0 and after.state == JobState.queued  # given back, nothing lost


def test_agent_killed_lease_expires_second_agent_finishes(
    server: LiveServer, phone: tuple[int, Path, subprocess.Popen[bytes]], model_cache_dir: Path, tmp_path: Path
) -> None:
    port, _, _ = phone
    keys = SLOW_KEYS[:8]
    name, job = _phone_job(server, port, model_cache_dir, keys)
    # A lease far longer than the test: nothing here may depend on how fast this machine runs.
    first = subprocess.Popen(
        _agent(server, port, model_cache_dir, *SLOW_RUN, "--lease-s", "600"),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env(),
        start_new_session=True,
    )
    try:
        _wait_done(server, job.id, 2)
    finally:
        kill(first)  # no chance to give the job back
    with server.client() as c:
        held = c.get_job(job.id)
        assert held.pending > 0 and held.state == JobState.running and held.lease_expires_at is not None
    # nobody can claim the job while the dead agent's lease runs...
    with server.client(role="agent") as c:
        assert c.claim_job(JobClaim(device=name, agent="probe", lease_s=60)) is None
    server.end_lease(job.id)  # ...until it runs out (moved into the past rather than waited for)
    r = subprocess.run(_agent(server, port, model_cache_dir, *SLOW_RUN), capture_output=True, text=True, env=env(), timeout=180)
    assert r.returncode == 0, r.stderr
    assert f"claimed job {job.id}: {held.pending} key(s)" in r.stderr
    _check_table(server, name, keys, job.id)


def test_ctrl_c_uploads_and_gives_the_job_back(
    server: LiveServer, phone: tuple[int, Path, subprocess.Popen[bytes]], model_cache_dir: Path, tmp_path: Path
) -> None:
    port, _, _ = phone
    keys = SLOW_KEYS
    name, job = _phone_job(server, port, model_cache_dir, keys)
    log = tmp_path / "agent.log"
    with open(log, "w") as fh:
        agent = subprocess.Popen(
            _agent(server, port, model_cache_dir, *SLOW_RUN, "--lease-s", "60"), stdout=fh, stderr=subprocess.STDOUT, env=env()
        )
        try:
            _wait_done(server, job.id, 2)
            agent.send_signal(signal.SIGINT)
            assert agent.wait(timeout=60) == 130
        finally:
            kill(agent)
    text = log.read_text()
    assert "stopping: finishing the current measurement" in text and f"giving job {job.id} back" in text
    assert "Traceback" not in text
    with server.client() as c:
        after = c.get_job(job.id)
    # what was measured is stored, the rest waits for the next agent, the lease is free at once
    assert 2 <= after.done < len(keys) and after.state == JobState.queued
    counts = measurement_counts(server.database_url, name)
    assert sum(counts.get(k, 0) for k in keys) == after.done


def test_run_local_measures_on_this_host(server: LiveServer, model_cache_dir: Path) -> None:
    from device_agent.platforms.local import LocalDevice

    _prebuild(model_cache_dir, FMNIST_KEYS[:4])
    facts = read_facts(LocalDevice())
    name = facts.default_name()
    with server.client("agent") as c:
        c.put_device(name, facts.device_info())
    with server.client() as c:
        job = c.create_job(JobCreate(device=name, runtime="onnxruntime", threads=1, keys=FMNIST_KEYS[:4]))
    r = subprocess.run(
        agent_cmd(
            "run",
            "--local",
            "--server",
            server.url,
            "--token",
            server.agent_token,
            "--cache-dir",
            str(model_cache_dir),
            "--once",
            *FAST_PROTOCOL,
        ),
        capture_output=True,
        text=True,
        env=env(),
        timeout=180,
    )
    assert r.returncode == 0, r.stderr
    _check_table(server, name, FMNIST_KEYS[:4], job.id)
    with server.client() as c:
        lut = c.get_lut(name).lut
    assert lut is not None and lut.runtime_version and "loopback" not in lut.runtime_version


def test_stopping_the_agent_leaves_no_burst_running_on_the_phone(
    server: LiveServer, phone: tuple[int, Path, subprocess.Popen[bytes]], model_cache_dir: Path, tmp_path: Path
) -> None:
    port, root, _ = phone  # a loopback phone like a real one: adbd does not end a closed stream's command
    name, job = _phone_job(server, port, model_cache_dir, SLOW_KEYS[:4])
    # The program records "<script pid> <own pid>" per call. The first call waits until the agent was told to
    # stop, then fails; every later call would run for 5 minutes unless the agent ends its script.
    program = fake_program(
        tmp_path / "onnxruntime_perf_test",
        PERF_TEST_USAGE + 'echo "$PPID $$" >> calls.pids\n'
        'if [ "$(wc -l < calls.pids)" -eq 1 ]; then while [ ! -e go ]; do sleep 0.02; done; '
        'echo "Run failed: stand-in"; exit 1; fi\nexec sleep 300\n',
    )
    work = root / "data/local/tmp/hwnas"
    log = tmp_path / "agent.log"
    with open(log, "w") as fh:
        agent = subprocess.Popen(
            _agent(server, port, model_cache_dir, "--benchmark-binary", str(program), *SLOW_RUN),
            stdout=fh,
            stderr=subprocess.STDOUT,
            env=env(),
        )
        try:
            _wait_for_text(work / "calls.pids", " ")  # the first call runs on the phone
            agent.send_signal(signal.SIGINT)
            _wait_for_text(log, "stopping: finishing the current measurement")
            (work / "go").touch()  # ...the call ends, the agent leaves the script and exits
            assert agent.wait(timeout=90) == 130, log.read_text()[-3000:]
        finally:
            kill(agent)
    pids = {int(p) for p in (work / "calls.pids").read_text().split()}
    deadline = time.monotonic() + 20
    while any(process_running(p) for p in pids):
        assert time.monotonic() < deadline, f"left running on the phone: {[p for p in pids if process_running(p)]}"
        time.sleep(0.05)
    assert not list((work / "run").glob("*.pid"))


# A speed_benchmark_torch built from a PyTorch that reads bytecode 3..7 (the message its loader prints for
# a newer .ptl, torch/csrc/jit/mobile), otherwise printing what the real program prints. The model's
# version is the first integer of its bytecode.pkl.
OLD_TORCH_PROGRAM = """
exec "$HWNAS_STANDIN_PYTHON" - "$@" <<'PY'
import pickletools, sys, zipfile
args = dict(a[2:].split("=", 1) for a in sys.argv[1:] if a.startswith("--") and "=" in a)
if "model" not in args:
    print("Run speed benchmark for pytorch model."); sys.exit(1)
with zipfile.ZipFile(args["model"]) as z:
    pkl = z.read(next(n for n in z.namelist() if n.endswith("/bytecode.pkl")))
version = next(arg for op, arg, _ in pickletools.genops(pkl) if op.name.startswith(("BININT", "INT", "LONG")))
if version > 7:
    print("libc++abi: terminating with uncaught exception of type c10::Error: Lite Interpreter version number does "
          f"not match. The model version must be between 3 and 7 but the model version is {version} ()")
    sys.exit(134)
print("Starting benchmark.\\nRunning warmup runs.\\nMain runs.")
for _ in range(int(args.get("iter", 10))):
    print('PyTorchObserver {"type": "NET", "unit": "us", "metric": "latency", "value": "5"}')
print("Main run finished. Microseconds per iter: 5.5. Iters per second: 181818")
PY
"""


def _old_torch_program(tmp_path: Path) -> Path:
    return fake_program(tmp_path / "speed_benchmark_torch", OLD_TORCH_PROGRAM)


def test_a_phone_with_an_older_pytorch_gets_models_at_the_bytecode_it_reads(
    server: LiveServer, phone: tuple[int, Path, subprocess.Popen[bytes]], tmp_path: Path
) -> None:
    from torch.jit.mobile import _get_model_bytecode_version

    port, root, _ = phone
    keys = FMNIST_KEYS[:2]
    name = register_phone(server, f"127.0.0.1:{port}")
    with server.client() as c:
        job = c.create_job(JobCreate(device=name, runtime="torchscript", threads=1, keys=keys))
    r = subprocess.run(
        _agent(
            server,
            port,
            tmp_path / "cache",
            "--benchmark-binary",
            str(_old_torch_program(tmp_path)),
            "--runtime",
            "torchscript",
            *FAST_PROTOCOL,
        ),
        capture_output=True,
        text=True,
        env=env(),
        timeout=300,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    assert "reads TorchScript bytecode versions 3 to 7: saving the models at 7" in r.stderr
    with server.client() as c:
        assert c.get_job(job.id).done == len(keys)  # every operator measured by the old runtime
    pushed = list((root / "data/local/tmp/hwnas/models").glob("*.ptl"))
    assert len(pushed) == len(keys) + 1 and {_get_model_bytecode_version(str(p)) for p in pushed} == {7}
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
    assert states and all((s if isinstance(s, dict) else json.loads(s))["bytecode_version"] == 7 for s in states)


def test_a_bytecode_version_the_phone_refuses_stops_the_agent_with_the_flag_that_works(
    server: LiveServer, phone: tuple[int, Path, subprocess.Popen[bytes]], tmp_path: Path
) -> None:
    port, _, _ = phone
    r = subprocess.run(
        _agent(
            server,
            port,
            tmp_path / "cache",
            "--benchmark-binary",
            str(_old_torch_program(tmp_path)),
            "--runtime",
            "torchscript",
            "--bytecode-version",
            "8",
        ),
        capture_output=True,
        text=True,
        env=env(),
        timeout=300,
    )
    assert r.returncode == 5, r.stderr[-3000:]
    assert "model version is 8" in r.stderr and "run the agent with --bytecode-version 7" in r.stderr
    assert "claimed job" not in r.stderr and "Traceback" not in r.stderr
