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
"""

from __future__ import annotations

import logging
import shlex

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
    return (f"cd {shlex.quote(workdir)} && if [ -f {f} ]; then p=$(cat {f}); "
            f"kill -TERM -$p 2>/dev/null || kill -TERM $p 2>/dev/null; rm -f {f}; fi; true")


def kill_script(device: Device, marker: str) -> bool:
    """End a batch script the agent left before its end, through a fresh shell; False when the device is gone."""
    try:
        device.run(kill_command(device.workdir, marker), timeout_s=KILL_TIMEOUT_S, check=False)
    except (DeviceUnreachable, DeviceCommandError) as exc:
        log.warning("could not end the benchmark script on %s (%s): it may still be running there",
                    device.serial, exc)
        return False
    return True
