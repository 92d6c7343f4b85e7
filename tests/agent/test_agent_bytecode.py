"""TorchScript models saved at the bytecode version a phone's runtime reads (--bytecode-version)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import torch
from torch.jit.mobile import _get_model_bytecode_version, _load_for_lite_interpreter

from device_agent import bytecode
from device_agent.errors import ConfigError
from device_agent.config import AgentConfig
from device_agent.jobloop import Agent
from device_agent.models import ModelCache
from device_agent.platforms.local import LocalDevice
from device_agent.protocol import ProtocolConfig
from tests.agent.agent_support import agent_cmd, env

KEY = "ir_k3_e1_g1_s1_o8@1x8x28x28"


def test_this_torch_writes_a_range_that_reaches_back(tmp_path: Path) -> None:
    oldest, newest = bytecode.supported_versions()
    assert oldest < newest  # torch 2.13: 4 .. 8
    saved = tmp_path / "identity.ptl"
    torch.jit.trace(torch.nn.Identity(), torch.ones(1))._save_for_lite_interpreter(str(saved))
    assert _get_model_bytecode_version(str(saved)) == newest


@pytest.mark.parametrize("which", ["oldest", "middle", "newest"])
def test_models_are_saved_at_the_bytecode_version_asked_for(tmp_path: Path, which: str) -> None:
    oldest, newest = bytecode.supported_versions()
    version = {"oldest": oldest, "middle": (oldest + newest) // 2, "newest": newest}[which]
    cache = ModelCache(tmp_path, bytecode_version=version)
    item = cache.item(KEY, "torchscript")
    overhead = cache.overhead("torchscript")
    assert _get_model_bytecode_version(str(item.model)) == version  # read back with torch's own API
    assert _get_model_bytecode_version(str(overhead.model)) == version
    assert f"torchscript-bc{version}" in item.model.parts  # each version cached apart
    assert cache.torchscript_bytecode() == version
    # still the same operator: loads and computes what the model saved as torch writes it does
    x = torch.ones(item.input_shape)
    as_written = ModelCache(tmp_path / "default").item(KEY, "torchscript")
    assert torch.allclose(_load_for_lite_interpreter(str(item.model))(x), _load_for_lite_interpreter(str(as_written.model))(x))


def test_without_a_version_models_are_saved_as_torch_writes_them(tmp_path: Path) -> None:
    cache = ModelCache(tmp_path)
    item = cache.item(KEY, "torchscript")
    assert _get_model_bytecode_version(str(item.model)) == bytecode.supported_versions()[1] == cache.torchscript_bytecode()
    assert ModelCache(tmp_path, bytecode_version=5).item(KEY, "onnxruntime").model.suffix == ".onnx"  # ONNX untouched


@pytest.mark.parametrize("version", [0, 3, 99])
def test_an_unsupported_version_is_a_clear_error(tmp_path: Path, version: int) -> None:
    oldest, newest = bytecode.supported_versions()
    if oldest <= version <= newest:
        pytest.skip(f"this torch writes {version}")
    with pytest.raises(ConfigError, match=f"--bytecode-version {version}: torch .* bytecode versions {oldest} to {newest}"):
        ModelCache(tmp_path, bytecode_version=version)


def test_the_cli_refuses_an_unsupported_version_before_touching_anything(tmp_path: Path) -> None:
    r = subprocess.run(
        agent_cmd(
            "run",
            "--serial",
            "127.0.0.1:9",
            "--server",
            "http://127.0.0.1:9",
            "--token",
            "t",
            "--cache-dir",
            str(tmp_path),
            "--bytecode-version",
            "99",
        ),
        capture_output=True,
        text=True,
        env=env(),
        timeout=120,
    )
    assert r.returncode == 2, r.stderr
    assert "--bytecode-version 99" in r.stderr and "Traceback" not in r.stderr
    assert "cannot connect" not in r.stderr  # refused before the phone was tried


def test_the_version_is_recorded_with_the_measurements(tmp_path: Path) -> None:
    version = bytecode.supported_versions()[0]
    agent = Agent(
        LocalDevice(),
        AgentConfig(
            cache_dir=tmp_path,
            bytecode_version=version,
            measure_overhead=False,
            protocol=ProtocolConfig(warmup=1, iterations=3, rounds=1),
        ),
        local=True,
    )
    agent.connect()
    items, failures = agent.build_items([KEY], "torchscript")
    assert not failures
    outcome, state = agent.measure(items, agent.runner("torchscript", 1), canary=None)
    assert [r.key for r in outcome.results] == [KEY]
    assert state["bytecode_version"] == version  # in the run's device_state: the table's runtime details
