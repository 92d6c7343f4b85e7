"""Runtime ``executorch`` on phones: ExecuTorch's ``executor_runner`` — its output parsed, its stand-in on the
loopback phone, and a job measured over ADB against a live server.

The fixtures in tests/agent/data (``executor_runner_*.txt``) are in the program's own format (the posix PAL's
``ET_LOG`` lines, messages of executor_runner.cpp): no phone capture exists yet, so they are the stand-in's
output, which follows that source."""

from __future__ import annotations

import importlib.util
import subprocess
from pathlib import Path

import pytest

from device_agent import faults, parsers
from device_agent.models import ModelCache
from device_agent.runtimes.base import Burst, Item
from device_agent.runtimes.batch_output import parse_batch_output
from device_agent.runtimes.binary import AWK_ET
from hwnas.opkey import OVERHEAD_KEY
from hwnas.schemas import JobCreate, JobState
from tests.agent.agent_support import FAST_PROTOCOL, agent_cmd, env, executorch_run_states, register_phone
from tests.support.live_server import LiveServer

DATA = Path(__file__).parent / "data"
HAVE_EXECUTORCH = importlib.util.find_spec("executorch") is not None
needs_executorch = pytest.mark.skipif(
    not HAVE_EXECUTORCH, reason="ExecuTorch is not installed: pip install 'hwnas[executorch]' (executorch==1.5.1)"
)
KEYS = ["conv_k3_s1_o8@1x1x28x28", "ir_k3_e6_g1_s2_o16@1x8x28x28", "skip_s2_o24@1x16x14x14"]


def read(name: str) -> str:
    return (DATA / name).read_text()


# ---- the parser -----------------------------------------------------------------------------------
def test_executor_runner_output_gives_every_execution_the_sum_the_pool_and_the_etdump() -> None:
    out = parsers.parse_executor_runner(read("executor_runner_xnnpack.txt"))
    assert out.samples_ms == pytest.approx([0.282128, 0.018788, 0.012248, 0.011667, 0.010736, 0.010326])
    assert out.executions == 6 and out.total_ms == pytest.approx(0.345893)
    assert out.total_ms == pytest.approx(sum(out.samples_ms), abs=1e-5)  # the summary is the sum of the lines
    assert out.threads == 1 and out.etdump == "model.etdump" and out.errors == []


def test_executor_runner_abort_is_an_error_line_and_no_runs_a_parse_error() -> None:
    text = read("executor_runner_failures.txt")
    with pytest.raises(parsers.ParseError, match="no 'Iteration i of n'"):
        parsers.parse_executor_runner(text)
    # The same lines with one execution: the F line is kept among the errors.
    ok = text + "I 00:00:00.000500 executorch:executor_runner.cpp:862] Iteration 1 of 1: 0.500000 ms\n"
    out = parsers.parse_executor_runner(ok)
    assert out.samples_ms == [0.5] and out.threads == 4 and out.executions is None
    assert out.errors == ["In function main(), assert failed (file_loader.ok()): FileDataLoader::from() failed: 0x22"]
    with pytest.raises(parsers.ParseError):
        parsers.parse_executor_runner("Iteration 1 of 1: 0.5 ms\n")  # not an ET_LOG line


def _bursts(n: int, warmup: int = 2, iters: int = 4, k: int = 1) -> list[Burst]:
    item = Item(KEYS[0], Path("m.pte"), (1, 1, 28, 28))
    return [Burst(item, warmup, iters, sample_runs=k) for _ in range(n)]


def test_batch_output_without_awk_drops_the_warmup_executions() -> None:
    m = "@@Bz@@"
    text = (
        f"{m} b 0\n{read('executor_runner_xnnpack.txt')}{m} e 0 0\n{m} b 1\n{read('executor_runner_failures.txt')}{m} e 1 134\n"
    )
    results = parse_batch_output(text, m, _bursts(3), "executorch")
    assert len(results) == 2  # the third never ran
    assert results[0].samples_ms == pytest.approx([0.012248, 0.011667, 0.010736, 0.010326])
    assert results[1].error is not None and "executorch benchmark exited 134" in results[1].error
    assert "FileDataLoader::from() failed" in results[1].error


def test_the_phone_awk_reduces_the_iteration_lines_and_passes_the_others(tmp_path: Path) -> None:
    """AWK_ET through the one-true-awk Android ships (the loopback phone's awk), then parsed as the agent does."""
    import shutil

    awk = shutil.which("original-awk")
    if awk is None:
        pytest.skip("original-awk (one-true-awk, Android's awk) is not installed here")
    src = tmp_path / "0.out"
    src.write_text(read("executor_runner_xnnpack.txt"))
    m = "@@Ba@@"
    reduced = subprocess.run(
        [awk, "-v", "k=2", "-v", "d=2", "-v", f"m={m} s 0", AWK_ET, str(src)], capture_output=True, text=True, check=True
    ).stdout
    assert "Iteration" not in reduced and "ETDump written to file 'model.etdump'." in reduced
    results = parse_batch_output(f"{m} b 0\n{reduced}{m} e 0 0\n", m, _bursts(1, 2, 4, 2), "executorch")
    assert results[0].error is None
    assert results[0].samples_ms == pytest.approx([(0.012248 + 0.011667) / 2, (0.010736 + 0.010326) / 2])
    assert results[0].wall_ms == pytest.approx(0.012248 + 0.011667 + 0.010736 + 0.010326)


def test_a_build_without_logging_or_with_older_flags_is_a_setup_fault_naming_the_fix() -> None:
    m = "@@Bq@@"
    silent = parse_batch_output(f"{m} b 0\n{m} e 0 0\n", m, _bursts(1), "executorch")[0].error
    assert silent is not None and faults.classify(silent) == faults.SETUP
    assert "-DEXECUTORCH_ENABLE_LOGGING=ON" in faults.setup_fix(silent)
    old = "executorch benchmark exited 1: ERROR: unknown command line flag 'print_output'"
    assert faults.classify(old) == faults.SETUP
    assert faults.setup_fix(old).startswith("executor_runner rejects --print_output: its build predates")


# ---- the stand-in ---------------------------------------------------------------------------------
@needs_executorch
def test_standin_prints_the_programs_lines_and_fails_like_it(model_cache_dir: Path, tmp_path: Path) -> None:
    from device_agent.loopback.standins import KNOB_WITHOUT
    from device_agent.loopback.standins.executor_runner import main

    item = ModelCache(model_cache_dir).item(KEYS[0], "executorch")
    lines: list[str] = []

    def run(*argv: str) -> tuple[int, str]:
        import io

        out = io.StringIO()
        rc = main(list(argv), out=out, cwd=str(tmp_path))
        lines.append(out.getvalue())
        return rc, out.getvalue()

    rc, text = run(f"--model_path={item.model}", "--num_executions", "5", "--cpu_threads=1", "--print_output=none")
    assert rc == 0, text
    out = parsers.parse_executor_runner(text)
    assert len(out.samples_ms) == 5 and out.executions == 5 and out.threads == 1
    assert out.total_ms == pytest.approx(sum(out.samples_ms), abs=1e-5) and min(out.samples_ms) > 0
    assert out.etdump == "model.etdump" and (tmp_path / "model.etdump").stat().st_size > 0  # an event-tracer build
    assert all(parsers._ET_LINE.match(line) for line in text.splitlines())  # nothing but ET_LOG lines
    rc, text = run(f"--model_path={item.model}", "--num_executions=1", "--cpu_threads=1", "--print_output=all")
    assert rc == 0 and "Output[0][0]: (float) " in text
    rc, text = run("--model_path=missing.pte")
    assert rc == 134 and "assert failed (file_loader.ok()): FileDataLoader::from() failed: 0x22" in text
    (tmp_path / "junk.pte").write_bytes(b"not a program at all, not at all")
    rc, text = run("--model_path=junk.pte")
    assert rc == 1 and text.rstrip().endswith("] Failed to parse model file junk.pte")
    assert run("--bogus=1") == (1, "ERROR: unknown command line flag 'bogus'\n")
    assert run("--num_executions=-3")[0] == 1
    rc, text = run(f"--model_path={item.model}", "stray")
    assert rc == 1 and "Extra commandline args: stray" in text
    import os

    os.environ[KNOB_WITHOUT] = "--etdump_path"  # a build without the event tracer: no such flag, no ETDump
    try:
        assert run("--etdump_path=x.etdump") == (1, "ERROR: unknown command line flag 'etdump_path'\n")
        rc, text = run(f"--model_path={item.model}", "--num_executions=2", "--cpu_threads=1", "--print_output=none")
        assert rc == 0 and parsers.parse_executor_runner(text).etdump is None
    finally:
        os.environ.pop(KNOB_WITHOUT, None)


# ---- a job over the loopback phone ----------------------------------------------------------------
@needs_executorch
def test_a_job_measured_over_the_loopback_phone_with_executor_runner(
    server: LiveServer, phone: tuple[int, Path, subprocess.Popen[bytes]], model_cache_dir: Path
) -> None:

    port, root, _ = phone
    cache = ModelCache(model_cache_dir)
    for k in KEYS:  # exported here (seconds each), so the agent's run is about measuring
        cache.item(k, "executorch")
    cache.overhead("executorch")
    name = register_phone(server, f"127.0.0.1:{port}")
    with server.client() as c:
        job = c.create_job(JobCreate(device=name, runtime="executorch", threads=1, keys=KEYS))
    r = subprocess.run(
        agent_cmd(
            "run",
            "--serial",
            f"127.0.0.1:{port}",
            "--server",
            server.url,
            "--token",
            server.agent_token,
            "--cache-dir",
            str(model_cache_dir),
            "--once",
            "--runtime",
            "executorch",
            "--batch-size",
            "2",
            *FAST_PROTOCOL,
        ),
        capture_output=True,
        text=True,
        env=env(),
        timeout=600,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    with server.client() as c:
        done = c.get_job(job.id)
        assert done.state == JobState.done and done.done == len(KEYS), r.stderr[-3000:]
        lut = c.get_lut(name, runtime="executorch", threads=1).lut
    assert lut is not None and set(lut.entries) == set(KEYS)
    assert (
        lut.runtime_version is not None and lut.runtime_version.startswith("1.5.1") and lut.runtime_version.endswith("+loopback")
    )
    assert all(0 < e.median_ms < 1000 and e.min_ms is not None and 0 < e.min_ms <= e.median_ms for e in lut.entries.values())
    assert lut.overhead_ms is not None and lut.overhead_ms > 0
    # The .pte files and the stand-in went to the phone's work folder, as a real program and models would.
    pushed = {p.name for p in (root / "data/local/tmp/hwnas/models").glob("*.pte")}
    assert len(pushed) == len(KEYS) + 1
    assert (root / "data/local/tmp/hwnas/bin/executor_runner").is_file()
    states = executorch_run_states(server.database_url, name)
    assert states, "no executorch run stored"
    recorded = states[0]
    assert recorded["runner"] == "binary" and recorded["binary"] == "executor_runner"
    assert recorded["threads_flag"] == "--cpu_threads=1"
    et = recorded["executorch"]
    assert et["backend"] == "xnnpack" and et["pool_threads"] == 1 and et["event_tracer"] is True
    # Every batch's keys (two batches, one run: the server merges their states), all delegated; the empty model empty.
    assert len(states) == 1
    assert {k: et["delegated"][k] for k in KEYS} == {k: "all" for k in KEYS}
    assert et["delegated"][OVERHEAD_KEY] == "empty" and et["portable_ops"] == {}
