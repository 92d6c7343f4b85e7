"""The README's "Everyday commands", run as written and in order after a demo (issue 27).

The block is read from README.md (a changed README changes what runs here) and run by one bash, as a user would
paste it, in a temporary folder that holds what `make demo` leaves: ``demo-output/`` from a real `hwnas demo` (the
tests' tiny preset: the same server database, device host-cpu, its measured and calibrated table, summary.json),
and ``search/`` (the repository's, for the shipped ground-truth table). What is substituted:

* the port: 8000 becomes a free one (another server may hold 8000 on a shared machine);
* the sizes of the slow commands (``SMALLER``), to keep this test within minutes on 2 shared cores: the
  commands, their order and every other option run as written. ``HWNAS_README_AS_WRITTEN=1`` runs the sizes of
  the README too (how the times in its comments were measured).

Each command must exit 0, print what its comment promises and leave the files it promises; the background server
and agent must be gone after the block's ``kill``. Per-command wall and CPU seconds go to ``readme-times.json``.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.demo.procs import TINY, env as demo_env, hwnas_command
from tests.support.ports import free_port

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
HEADING = "## Everyday commands"
AS_WRITTEN = os.environ.get("HWNAS_README_AS_WRITTEN") == "1"

# What each command of the block promises: (pattern of the command, text its output holds, files it leaves).
# Every command of the block must match exactly one pattern, so a new README command needs its promise here.
PROMISES: list[tuple[str, list[str], list[str]]] = [
    (r"^export OMP_NUM_THREADS=1$", [], []),
    (r"^profiler-server serve --database-url sqlite:///demo-output/hwnas\.db .*&$", [], []),
    (r"^hwnas spaces$", ["fbnet-fmnist"], []),
    (r"^hwnas lut keys --space fbnet-fmnist$", ["gap_fc_o10@"], []),
    (r"^hwnas predict fbnet_b$", ["MACs     295.5"], []),
    (r"^hwnas baseline ", ["most macs in", "predicted"], []),
    (
        r"^hwnas search .*--cost flops",
        ["search done", "argmax architecture"],
        ["runs/flops/argmax.json", "runs/flops/checkpoint.pt"],
    ),
    (r"^hwnas sample runs/flops ", ["[argmax]"], ["runs/flops/samples/index.json"]),
    (r"^hwnas train runs/flops/argmax\.json", ["test accuracy"], ["runs/flops/argmax.pt"]),
    (r"^hwnas export runs/flops/argmax\.json", ["onnxruntime matches PyTorch"], ["best.onnx"]),
    (r"^T=\$\(python -c .*demo-output/summary\.json.*target_ms", [], []),
    (r"^hwnas search --target-ms \"\$T\" --server ", ["search done"], ["runs/at-target/found.json"]),
    (r"^hwnas predict runs/at-target/found\.json --server ", ["latency", "on device 'host-cpu'"], []),
    (r"^hwnas sample runs/at-target --at-target ", ["picked"], ["runs/at-target/picked.json"]),
    (r"^hwnas specialise runs/at-target ", ["wrote"], ["runs/at-target/specialised/specialised.json"]),
    (r"^TOKEN=\$\(profiler-server token create .*--role client .*\)$", [], []),
    (r"^AGENT_TOKEN=\$\(profiler-server token create .*--role agent --device host-cpu .*\)$", [], []),
    (r"^device-agent run --local .*--token \"\$AGENT_TOKEN\" .*&$", [], []),
    (r"^hwnas validate .*--token \"\$TOKEN\"", ["MAPE"], ["runs/validate/validation.json"]),
    (r"^kill %1 %2$", [], []),
]

# The test's sizes for the slow commands (option -> value); the README's are larger (see the module docstring).
SMALLER: list[tuple[str, dict[str, str]]] = [
    (r"^hwnas search ", {"--subset": "300", "--val-subset": "200"}),
    (r"^hwnas sample runs/flops ", {"-k": "2", "--val-subset": "200"}),
    (r"^hwnas train ", {"--epochs": "1", "--subset": "500", "--val-subset": "200"}),
    (r"^hwnas sample runs/at-target ", {"-k": "1", "--train-epochs": "1", "--train-subset": "600", "--holdout": "200"}),
    (r"^hwnas specialise ", {"--population": "4", "--generations": "1"}),
    (r"^hwnas validate ", {"--n": "4"}),
]


def everyday_commands(text: str | None = None) -> list[str]:
    """The commands of the first bash block under the "Everyday commands" heading: continuation lines joined,
    comments dropped."""
    text = text if text is not None else (ROOT / "README.md").read_text()
    section = text.split(HEADING, 1)[1]
    block = re.search(r"```bash\n(.*?)```", section, flags=re.S)
    assert block, f"no bash block under {HEADING!r} in README.md"
    joined = re.sub(r"\\\n\s*", " ", block.group(1))
    return [c for c in (line.split(" #", 1)[0].strip() for line in joined.splitlines()) if c]


def promise(command: str) -> tuple[list[str], list[str]]:
    found = [(texts, files) for pattern, texts, files in PROMISES if re.search(pattern, command)]
    assert len(found) == 1, f"README command {command!r} matches {len(found)} promises of this test (want 1)"
    return found[0]


def smaller(command: str) -> str:
    """``command`` with the test's sizes of ``SMALLER`` (nothing else changes)."""
    if AS_WRITTEN:
        return command
    for pattern, sizes in SMALLER:
        if re.search(pattern, command):
            for option, value in sizes.items():
                command, n = re.subn(rf"(^|\s){re.escape(option)} \S+", rf"\g<1>{option} {value}", command)
                assert n == 1, f"{option} not in README command {command!r}: update SMALLER"
    return command


def script(commands: list[str], port: int) -> str:
    """One bash script: each command as written (port substituted), framed by markers with its status and times."""
    lines = ['TIMEFORMAT="@@@ time %R %U %S"']
    for i, command in enumerate(commands):
        command = re.sub(r"(?<=[:\s])8000\b", str(port), smaller(command))
        lines.append(f'echo "@@@ {i} start"')
        if command.endswith("&"):
            lines.append(command)
            lines.append(f'echo "@@@ {i} rc=0"')
        else:
            lines.append(f"time {{ {command} ; }}")
            lines.append(f'echo "@@@ {i} rc=$?"')
    return "\n".join(lines) + "\n"


def split_output(text: str, n: int) -> list[dict]:
    """Per command: its output, exit status and times, from the markers."""
    parts = []
    for i in range(n):
        m = re.search(rf"^@@@ {i} start\n(.*?)^@@@ {i} rc=(\d+)$", text, flags=re.S | re.M)
        if m is None:
            parts.append({"output": "", "rc": None, "wall_s": None, "cpu_s": None})
            continue
        body = m.group(1)
        t = re.search(r"^@@@ time ([\d.]+) ([\d.]+) ([\d.]+)$", body, flags=re.M)
        parts.append(
            {
                "output": re.sub(r"^@@@ time .*$", "", body, flags=re.M),
                "rc": int(m.group(2)),
                "wall_s": float(t.group(1)) if t else None,
                "cpu_s": round(float(t.group(2)) + float(t.group(3)), 2) if t else None,
            }
        )
    return parts


def port_closed(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) != 0


def test_the_block_parses_and_every_command_has_a_promise() -> None:
    commands = everyday_commands()
    assert len(commands) >= 10
    for command in commands:
        promise(command)
        smaller(command)  # every size the test shrinks is in the README command
    # The server is started on the demo's database before anything talks to it, and stopped at the end.
    first_server_use = next(i for i, c in enumerate(commands) if "127.0.0.1:8000" in c and not c.startswith("profiler-server"))
    assert commands.index(next(c for c in commands if c.startswith("profiler-server serve"))) < first_server_use
    assert commands[-1].startswith("kill ")


def test_readme_everyday_commands_run_as_written_after_a_demo(tmp_path: Path) -> None:
    demo = subprocess.run(
        hwnas_command() + ["demo", "--out", str(tmp_path / "demo-output"), *TINY],
        capture_output=True,
        text=True,
        env=demo_env(),
        cwd=tmp_path,
        timeout=900,
    )
    assert demo.returncode == 0, demo.stderr[-3000:]
    # The demo's last line says how to serve its database again: the block's first server command.
    serve = f"profiler-server serve --database-url sqlite:///{tmp_path / 'demo-output' / 'hwnas.db'} --port 8000"
    assert serve in demo.stdout.splitlines()[-1], demo.stdout[-1000:]
    (tmp_path / "search").symlink_to(ROOT / "search")  # what a clone has beside demo-output/

    commands = everyday_commands()
    port = free_port()
    (tmp_path / "block.sh").write_text(script(commands, port))
    env = {
        **demo_env(),
        "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        "COLUMNS": "200",
        "NO_COLOR": "1",
        "TERM": "dumb",
    }
    env.pop("OMP_NUM_THREADS", None)  # the README sets it
    started = time.monotonic()
    with open(tmp_path / "block.log", "w") as log:
        proc = subprocess.Popen(
            ["bash", str(tmp_path / "block.sh")],
            cwd=tmp_path,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
        try:
            proc.wait(timeout=1500)
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
    wall = time.monotonic() - started
    text = (tmp_path / "block.log").read_text()
    parts = split_output(text, len(commands))
    times = [{"command": c, "rc": p["rc"], "wall_s": p["wall_s"], "cpu_s": p["cpu_s"]} for c, p in zip(commands, parts)]
    (tmp_path / "readme-times.json").write_text(
        json.dumps({"as_written": AS_WRITTEN, "block_wall_s": round(wall, 1), "commands": times}, indent=1) + "\n"
    )
    print(json.dumps(times, indent=1), f"block {wall:.0f} s", sep="\n")

    # The block's `kill %1 %2` stops the server (and the agent): its port closes (polled, with a deadline).
    deadline = time.monotonic() + 30
    while not port_closed(port) and time.monotonic() < deadline:
        time.sleep(0.2)
    try:
        os.killpg(proc.pid, signal.SIGKILL)  # whatever the block left behind, should a command have failed
    except ProcessLookupError:
        pass

    for command, part in zip(commands, parts):
        texts, files = promise(command)
        out = part["output"]
        assert part["rc"] == 0, f"README command failed (exit {part['rc']}): {command}\n{out[-3000:] or text[-3000:]}"
        for want in texts:
            assert want in out, f"{command}: {want!r} not in its output:\n{out[-3000:]}"
        for name in files:
            assert (tmp_path / name).is_file(), f"{command}: {name} not written"
        assert "Traceback" not in out, f"{command}:\n{out[-3000:]}"
        assert not re.search(r"^error:", out, flags=re.M), f"{command} printed an error line:\n{out[-3000:]}"
    assert port_closed(port), "the server still listens after the README's kill"
