"""Device and program faults are told apart from operator faults (device_agent/faults.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from device_agent.faults import fix_for, is_device_fault, split_failures


@pytest.mark.parametrize(
    "reason",
    [
        "onnxruntime benchmark exited 127: sh: ./bin/onnxruntime_perf_test: not found",
        "onnxruntime benchmark exited 126: sh: ./bin/onnxruntime_perf_test: can't execute: Permission denied",
        'torchscript benchmark exited 1: CANNOT LINK EXECUTABLE "./bin/speed_benchmark_torch": library "libc++_shared.so" not found',
        "onnxruntime benchmark exited 2: /system/bin/sh: ./bin/onnxruntime_perf_test: Exec format error",
        "torchscript benchmark exited 1: taskset: failed to set pid 4242's affinity: Invalid argument",
        "onnxruntime benchmark exited 2: /bin/sh: 0: cannot open ./bin/onnxruntime_perf_test: No such file",
    ],
)
def test_the_program_not_running_is_a_device_fault(reason: str) -> None:
    assert is_device_fault(reason)


@pytest.mark.parametrize(
    "reason",
    [
        "onnxruntime benchmark exited 1: [E:onnxruntime:, inference_session.cc] Load model failed: Invalid model",
        "torchscript benchmark exited 134: terminate called after throwing an instance of 'c10::Error' | shape mismatch",
        "no 'Average inference timings' line in onnxruntime_perf_test output",
        "cannot export ir_k3_e6_g1_s1_o16@1x16x28x28: unsupported",
    ],
)
def test_the_operator_failing_is_not(reason: str) -> None:
    assert not is_device_fault(reason)


def test_split_failures_keeps_every_key_once() -> None:
    failures = {"a": "onnxruntime benchmark exited 127: not found", "b": "onnxruntime benchmark exited 1: Invalid model"}
    ops, device = split_failures(failures)
    assert ops == {"b": failures["b"]} and device == {"a": failures["a"]}


def test_a_bytecode_the_phone_does_not_read_is_a_device_fault_with_the_flag_that_fixes_it() -> None:
    reason = (
        "torchscript benchmark exited 134: libc++abi: terminating with uncaught exception of type c10::Error: "
        "Lite Interpreter version number does not match. The model version must be between 3 and 7 but the "
        "model version is 8 ()"
    )
    assert is_device_fault(reason)
    fix = fix_for(reason)
    assert "versions 3 to 7" in fix and "saved at version 8" in fix and "--bytecode-version 7" in fix


def test_faults_that_pushing_again_may_cure_have_no_fix() -> None:
    assert fix_for("onnxruntime benchmark exited 127: sh: ./bin/onnxruntime_perf_test: not found") == ""


def test_a_bytecode_refused_mid_job_stops_at_once_with_the_fix(tmp_path: Path) -> None:
    from device_agent.config import AgentConfig
    from device_agent.errors import DeviceFault
    from device_agent.jobloop import Agent
    from device_agent.platforms.local import LocalDevice

    agent = Agent(LocalDevice(), AgentConfig(cache_dir=tmp_path))
    reason = (
        "torchscript benchmark exited 134: libc++abi: terminating with uncaught exception of type c10::Error: "
        "Lite Interpreter version number does not match. The model version must be between 3 and 6 but the "
        "model version is 8 ()"
    )
    with pytest.raises(DeviceFault, match="--bytecode-version 6"):
        agent.handle_device_faults({"k": reason}, runner=None, faults=0)  # type: ignore[arg-type]  # no re-staging first


@pytest.mark.parametrize(
    "reason, kind, fix",
    [
        (
            "onnxruntime benchmark exited 255: ./bin/onnxruntime_perf_test: unknown option -- I | perf_test [options...] "
            "model_path [result_file] | \t-h: help",
            "setup",
            "onnxruntime_perf_test rejects -I",
        ),
        ("onnxruntime benchmark exited 1: ERROR: Unknown command line flag 'I'", "setup", "onnxruntime_perf_test rejects -I"),
        (
            "torchscript benchmark exited 1: Parsing commandline arguments for c10. | C10 flag: unrecognized commandline "
            "argument: --pthreadpool_size=4 | Failed to parse command line flags!",
            "setup",
            "speed_benchmark_torch rejects --pthreadpool_size",
        ),
        (
            "torchscript benchmark exited 1: ERROR: unknown command line flag 'use_caching_allocator'",
            "setup",
            "speed_benchmark_torch rejects --use_caching_allocator",
        ),
        ("onnxruntime benchmark exited 255: models/x.onnx is not supported", "setup", "minimal ONNX Runtime build"),
        ("torchscript benchmark exited 1: batch.sh[8]: res/1.out: create: Operation not permitted", "storage", ""),
        ("onnxruntime benchmark exited 2: sh: can't create res/0.csv: Read-only file system", "storage", ""),
        ("onnxruntime benchmark exited 1: taskset: failed to set pid 42's affinity: Invalid argument", "pinning", ""),
        ("onnxruntime benchmark exited 127: sh: ./bin/onnxruntime_perf_test: not found", "device", ""),
        ("onnxruntime benchmark exited 1: [E:onnxruntime:, inference_session.cc] Load model failed", "operator", ""),
    ],
)
def test_each_fault_class_and_the_fix_a_setup_fault_names(reason: str, kind: str, fix: str) -> None:
    from device_agent.faults import classify, setup_fix

    assert classify(reason) == kind
    if fix:
        assert fix in setup_fix(reason) and "--benchmark-binary" in setup_fix(reason)
