"""The host as a device: commands with the host's ``sh``, files in a work folder."""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

from device_agent.errors import DeviceCommandError
from device_agent.platforms.base import Device, RemoteStat


def default_workdir() -> Path:
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "hwnas" / "local-device"


class LocalDevice(Device):
    """This computer. ``getprop`` is answered from what the host says about itself."""

    kind = "local"

    def __init__(self, workdir: Path | None = None) -> None:
        super().__init__(f"local:{platform.node() or 'host'}")
        self.workdir = str(workdir or default_workdir())

    def connect(self) -> None:
        Path(self.workdir).mkdir(parents=True, exist_ok=True)

    def close(self) -> None:
        pass

    def shell(self, command: str, timeout_s: float | None = None) -> str:
        try:
            proc = subprocess.run(
                ["/bin/sh", "-c", command],
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                timeout=timeout_s,
                cwd=self.workdir if Path(self.workdir).is_dir() else None,
            )
        except subprocess.TimeoutExpired as exc:
            raise DeviceCommandError(f"command timed out after {timeout_s} s on the host: {command[:200]}") from exc
        return proc.stdout.decode("utf-8", "replace")

    def stream(self, command: str, timeout_s: float | None = None) -> Iterator[str]:
        proc = subprocess.Popen(
            ["/bin/sh", "-c", command], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
        )
        assert proc.stdout is not None
        try:
            while True:
                data = os.read(proc.stdout.fileno(), 65536)
                if not data:
                    break
                yield data.decode("utf-8", "replace")
        finally:
            if proc.poll() is None:
                proc.kill()
            proc.stdout.close()
            proc.wait()

    def push(self, local: Path, remote: str) -> None:
        dest = Path(remote)
        dest.parent.mkdir(parents=True, exist_ok=True)
        if Path(local).resolve() != dest.resolve():
            shutil.copy2(local, dest)

    def pull(self, remote: str, local: Path) -> None:
        shutil.copy2(remote, local)

    def stat(self, remote: str) -> RemoteStat | None:
        try:
            st = os.stat(remote)
        except OSError:
            return None
        return RemoteStat(st.st_mode, st.st_size, int(st.st_mtime))

    def getprop(self) -> dict[str, str]:
        vendor, model = _cpu_names()
        return {
            "ro.product.manufacturer": vendor or platform.system(),
            "ro.product.model": model or platform.processor() or platform.machine(),
            "ro.product.board": platform.machine(),
            "ro.product.cpu.abi": platform.machine(),
            "ro.build.version.release": f"{platform.system()} {platform.release()}",
            "ro.serialno": platform.node(),
        }


def _cpu_names() -> tuple[str, str]:
    vendor = model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            key, value = key.strip(), value.strip()
            if key == "vendor_id" and not vendor:
                vendor = value
            elif key in ("model name", "Model", "Hardware") and not model:
                model = value
    except OSError:
        pass
    return vendor, model
