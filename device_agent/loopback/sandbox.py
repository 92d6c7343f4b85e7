"""The loopback device's view of a phone filesystem inside a host folder.

Sync paths map the whole device tree into ``root`` (``/data/local/tmp/x`` →
``root/data/local/tmp/x``). Shell commands run with the phone's ``mksh`` and only the phone's
programs on PATH (``fakephone.py``: toybox applets, one-true-awk); their device paths
(``/data``, ``/sdcard``, ``/sys``, ``/proc/cpuinfo``) are rewritten to the same places, so
shell and sync agree about where files are: a shell command run on the host sees the host's
filesystem, and only sync paths would be mapped otherwise, so a file pushed to
``/data/local/tmp`` would not be where the shell looks for it. Rewriting the paths needs no
mount namespace (the other way to map them), which keeps the device usable without privileges.
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

from device_agent.errors import ConfigError
from device_agent.loopback.fakephone import PHONE_DIR

# Device roots that live inside the sandbox. A path is rewritten only where a word starts
# (not inside another path), so '/x/data/' or '$HOME/sys' stay as they are.
_ROOTS = ("/data", "/sdcard", "/storage", "/sys", "/proc/cpuinfo")
_REWRITE = re.compile(r"(?<![\w./~$-])(" + "|".join(re.escape(p) for p in _ROOTS) + r")(?=[/\s'\";|&)<>*]|$)")
_SAFE_ROOT = re.compile(r"[A-Za-z0-9_./+@%:,-]+")


class Sandbox:
    """Maps device paths and commands into ``root``."""

    def __init__(self, root: Path) -> None:
        root = Path(root).resolve()
        if not _SAFE_ROOT.fullmatch(str(root)):
            raise ConfigError(f"loopback root {str(root)!r} must not contain spaces or shell characters")
        self.root = root

    def host_path(self, device_path: str) -> Path:
        """The host file behind a device path; never outside ``root``."""
        rel = os.path.normpath("/" + device_path.lstrip("/")).lstrip("/")
        path = self.root / rel if rel not in ("", ".") else self.root
        return path

    def device_path(self, host_path: Path) -> str:
        """Inverse of ``host_path`` for paths inside the sandbox."""
        return "/" + str(Path(host_path).relative_to(self.root))

    def rewrite(self, command: str) -> str:
        """The command with its device paths pointing into the sandbox."""
        return _REWRITE.sub(lambda m: f"{self.root}{m.group(1)}", command)

    def env(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        """Environment of a device shell: only the phone's programs on PATH, temp inside the sandbox."""
        tmp = self.root / "data" / "local" / "tmp"
        env = {
            # No host folder: a GNU option, gawk or python that a phone lacks must fail here too.
            "PATH": str(self.root / PHONE_DIR / "bin"),
            "HOME": str(self.root),
            "TMPDIR": str(tmp),
            "LANG": "C",
            "ANDROID_DATA": str(self.root / "data"),
            "EXTERNAL_STORAGE": str(self.root / "sdcard"),
            # The stand-in benchmark programs are Python modules of this package, started by this
            # absolute interpreter path (the phone's PATH has no python).
            "HWNAS_STANDIN_PYTHON": sys.executable,
            "PYTHONPATH": str(Path(__file__).resolve().parents[2]),
        }
        env.update(extra or {})
        return env
