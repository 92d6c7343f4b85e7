"""A batch script's pid file on the phone, so that leaving a script early ends it there too.

Real adbd sends no SIGHUP to the child of a v1 ``shell:`` stream when the host closes the stream:
the script and its running benchmark call carry on, and die of SIGPIPE only when they next write
(after that call, and the call after it may already have started). So every batch script writes
its pid to ``run/<marker>.pid`` first and removes the file at its end; an agent that leaves a script
before its end (a stop, Ctrl-C, a dropped connection) runs ``kill`` on it through a fresh shell.

adbd starts each shell child in a session of its own (``daemon/shell_service.cpp``,
``Subprocess::ForkAndExec``: ``setsid()`` in the child), so the script's pid is also its process
group: ``kill -TERM -<pid>`` ends the script and the call it is running, without a race against
the call it is about to start. Where the script leads no group, the script alone is killed (it
then starts no further call).

A script that never reaches its end (killed with the agent's SIGKILL, or dead of SIGPIPE after
the agent or the phone went) leaves its pid file behind: ``clean_stale`` removes the files whose
process is gone, when a runner first stages files on the device (``BinaryRunner.prepare``), and the
loopback phone does the same for its sandbox when it starts (``clean_stale_files``).
"""

from __future__ import annotations

import logging
import shlex
from pathlib import Path

from device_agent.errors import DeviceCommandError, DeviceUnreachable
from device_agent.platforms.base import Device

log = logging.getLogger(__name__)

PID_DIR = "run"  # under the device's work folder
KILL_TIMEOUT_S = 15.0


def pid_file(marker: str) -> str:
    """The pid file of the script framed by ``marker``, relative to the work folder."""
    return f"{PID_DIR}/{marker.strip('@')}.pid"


def write_line(marker: str) -> str:
    """The script's first line after ``cd``: its own pid into its pid file."""
    return f"mkdir -p {PID_DIR} && echo $$ > {pid_file(marker)}"


def remove_line(marker: str) -> str:
    """The script's last line before its end marker: it ended by itself, nothing to kill."""
    return f"rm -f {pid_file(marker)}"


def kill_command(workdir: str, marker: str) -> str:
    """Shell command that kills the script's process group (else the script) if its pid file is still there."""
    f = pid_file(marker)
    return (
        f"cd {shlex.quote(workdir)} && if [ -f {f} ]; then p=$(cat {f}); "
        f"kill -TERM -$p 2>/dev/null || kill -TERM $p 2>/dev/null; rm -f {f}; fi; true"
    )


def clean_command(workdir: str) -> str:
    """Shell command that removes the pid files of scripts no longer running and prints their names."""
    # A script runs if /proc/<pid>/stat exists and is not a zombie's (state Z: dead, its parent has
    # not reaped it yet; kill -0 would call it alive). A batch script runs as the shell user, as this
    # command does, so /proc shows it even where /proc hides other users' processes; a reused pid
    # merely keeps a file, which kill_command never uses without its own marker.
    return (
        f'cd {shlex.quote(workdir)} 2>/dev/null && for f in {PID_DIR}/*.pid; do [ -f "$f" ] || continue; '
        f"p=$(cat \"$f\"); st=; case $p in ''|*[!0-9]*) ;; *) read -r st 2>/dev/null < /proc/$p/stat;; esac; "
        f"st=${{st##*) }}; st=${{st%% *}}; "
        f'if [ -z "$st" ] || [ "$st" = Z ]; then rm -f "$f"; echo "$f"; fi; done; true'
    )


def clean_stale(device: Device) -> list[str]:
    """Remove the device's pid files of scripts that are gone; the removed files (work-folder relative)."""
    try:
        out = device.run(clean_command(device.workdir), timeout_s=KILL_TIMEOUT_S, check=False).output
    except (DeviceUnreachable, DeviceCommandError) as exc:
        log.warning("could not look for stale pid files on %s (%s)", device.serial, exc)
        return []
    removed = [line.strip() for line in out.splitlines() if line.strip().endswith(".pid")]
    if removed:
        log.info("removed %d stale pid file(s) of benchmark scripts that died on %s", len(removed), device.serial)
    return removed


def clean_stale_files(root: Path) -> list[Path]:
    """Host-side ``clean_stale`` for every ``run`` folder under ``root`` (the loopback phone's sandbox)."""
    removed = []
    for f in sorted(Path(root).glob(f"**/{PID_DIR}/*.pid")):
        try:
            text = f.read_text().strip()
        except OSError:
            continue
        if text.isdigit() and _running(int(text)):
            continue
        f.unlink(missing_ok=True)
        removed.append(f)
    return removed


def _running(pid: int) -> bool:
    """Whether ``pid`` runs here; a zombie (dead, not yet reaped: an orphan under a non-reaping init) does not."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def kill_script(device: Device, marker: str) -> bool:
    """End a batch script the agent left before its end, through a fresh shell; False when the device is gone."""
    try:
        device.run(kill_command(device.workdir, marker), timeout_s=KILL_TIMEOUT_S, check=False)
    except (DeviceUnreachable, DeviceCommandError) as exc:
        log.warning("could not end the benchmark script on %s (%s): it may still be running there", device.serial, exc)
        return False
    return True
