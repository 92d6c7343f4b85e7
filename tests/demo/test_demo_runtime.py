"""`hwnas demo --runtime`: the runtime reaches the agent's command line and the jobs the demo asks for; a runtime that
is not installed stops the demo in one line before anything starts.

The demo's own objects build the agent's command line and create its jobs here (a real server in this process, the
device agent's real parser); a whole demo with ExecuTorch spends minutes exporting, which the CI budget does not have.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import typer.main
from typer.testing import CliRunner

from device_agent.cli import app as agent_app
from hwnas.schemas import DeviceInfo, JobClaim
from search.app.cli import app
from search.app.demo import _Run
from search.app.demo_model import DEVICE, RUNTIMES, SPACE, THREADS, Console, DemoConfig, Timings
from search.app.demo_services import Services
from search.space import get_space
from search.validate import sample_archs
from tests.support.app_server import app_server_on

runner = CliRunner()


def _run(tmp_path: Path, runtime: str, url: str = "http://127.0.0.1:9") -> _Run:
    config = DemoConfig.preset(True, out=tmp_path / "out", runtime=runtime, agent_args=["--max-temp", "80"])
    services = Services(tmp_path)
    services.url = url
    run = _Run(config, tmp_path, Console(enabled=False), Timings(tmp_path / "timings.json", config.to_dict()), services)
    run.tokens = {"agent": "agent-token", "client": "client-token"}
    return run


def _agent_options(cmd: list[str]) -> dict:
    """What ``device-agent run`` makes of the command line (its own parser; nothing runs)."""
    command = typer.main.get_command(agent_app).commands["run"]  # type: ignore[attr-defined]  # a group's
    return command.make_context("run", cmd[cmd.index("run") + 1 :]).params


@pytest.mark.parametrize("runtime", list(RUNTIMES))
def test_the_runtime_reaches_the_agents_command_line(tmp_path: Path, runtime: str) -> None:
    run = _run(tmp_path, runtime)
    cmd = run.services.agent_command(run.tokens["agent"], *run.agent_arguments())
    params = _agent_options(cmd)
    assert params["runtime"] == [runtime]
    assert params["local"] is True and params["name"] == DEVICE and params["threads"] == THREADS
    assert params["server"] == "http://127.0.0.1:9" and params["token"] == "agent-token"
    assert params["poll_s"] == 1 and params["max_temp"] == 80  # the demo's own option, then the config's extras


def test_the_table_and_network_jobs_ask_for_the_runtime(tmp_path: Path) -> None:
    run = _run(tmp_path, "executorch")
    keys = get_space(SPACE).op_keys()
    archs = sample_archs(get_space(SPACE), 2, seed=1)
    with app_server_on("sqlite", tmp_path) as srv, srv.client("agent") as agent, srv.client("client") as client:
        agent.put_device(DEVICE, DeviceInfo(manufacturer="host", model="cpu", abi="x86_64", cpu_cores=2))
        table_job = run.request_table(client, keys)
        network_job = run.request_networks(client, archs)
        # what the demo's agent is handed when it claims them, in order
        first = agent.claim_job(JobClaim(device=DEVICE, agent="demo-agent"))
        second = agent.claim_job(JobClaim(device=DEVICE, agent="demo-agent"))
    assert first is not None and second is not None
    assert (first.id, first.runtime, first.threads) == (table_job.id, "executorch", THREADS)
    assert set(keys) <= set(first.keys)
    assert (second.id, second.runtime) == (network_job.id, "executorch")
    assert sorted(n.arch_id for n in second.networks) == sorted(a.id for a in archs)


def test_a_runtime_that_is_not_installed_stops_the_demo_before_anything_starts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "executorch", None)  # as where the package is absent: find_spec finds nothing
    done = runner.invoke(app, ["demo", "--quick", "--runtime", "executorch", "--out", str(tmp_path / "o")])
    assert done.exit_code == 2, done.output
    errors = [line for line in done.output.splitlines() if line.strip()]
    assert errors == [
        "error: runtime executorch needs the ExecuTorch package, which is not installed here: pip install 'hwnas[executorch]'"
    ]
    assert not (tmp_path / "o").exists()  # no output folder, so no services.json: no server or agent was started


def test_an_unknown_runtime_is_refused(tmp_path: Path) -> None:
    done = runner.invoke(app, ["demo", "--quick", "--runtime", "tflite", "--out", str(tmp_path / "o")])
    assert done.exit_code == 2
    assert "--runtime must be one of onnxruntime, torchscript, executorch, not 'tflite'" in done.output
    assert not (tmp_path / "o").exists()


def test_help_warns_of_the_first_executorch_export() -> None:
    done = runner.invoke(app, ["demo", "--help"])
    assert done.exit_code == 0 and "--runtime" in done.output and "hwnas[executorc" in done.output  # not eaten as markup
    demo = typer.main.get_command(app).commands["demo"]  # type: ignore[attr-defined]  # a group's
    (option,) = [p for p in demo.params if p.name == "runtime"]
    assert option.default == "onnxruntime"
    assert "spends minutes exporting" in option.help and "cached afterwards by key and ExecuTorch version" in option.help
