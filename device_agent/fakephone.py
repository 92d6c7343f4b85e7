"""A configurable fake phone for the loopback device: build props, CPU clusters, thermal state.

``FakePhone.install(root)`` lays it out inside the sandbox the way Android shows it: files
under ``sys/devices/system/cpu`` and ``sys/class/thermal``, and small ``getprop``,
``dumpsys`` and ``taskset`` programs on the sandbox PATH. The thermal status lives in a
plain file (``.phone/thermal_status``) so a test can heat the phone up and cool it down.
"""

from __future__ import annotations

import json
import shlex
from dataclasses import asdict, dataclass, field
from pathlib import Path

from device_agent.errors import ConfigError

PHONE_DIR = ".phone"


@dataclass
class FakePhone:
    """What the loopback device pretends to be."""

    name: str
    manufacturer: str
    model: str
    board: str
    abi: str = "arm64-v8a"
    release: str = "14"
    sdk: int = 34
    serialno: str = "HWNASLOOP0001"
    cpu_max_freqs_khz: list[int] = field(default_factory=lambda: [1800000] * 4)
    governor: str = "schedutil"
    thermal_status: int = 0
    temperatures_c: dict[str, float] = field(default_factory=lambda: {"cpu0": 38.5, "battery": 31.0, "skin": 33.2})
    extra_props: dict[str, str] = field(default_factory=dict)

    def props(self) -> dict[str, str]:
        """The ``getprop`` table."""
        props = {
            "ro.product.manufacturer": self.manufacturer,
            "ro.product.model": self.model,
            "ro.product.name": self.name,
            "ro.product.device": self.name,
            "ro.product.board": self.board,
            "ro.board.platform": self.board,
            "ro.soc.model": self.board,
            "ro.product.cpu.abi": self.abi,
            "ro.product.cpu.abilist": self.abi,
            "ro.build.version.release": self.release,
            "ro.build.version.sdk": str(self.sdk),
            "ro.build.version.incremental": "hwnas.loopback",
            "ro.serialno": self.serialno,
            "ro.hwnas.loopback": "1",
        }
        props.update(self.extra_props)
        return props

    def banner(self) -> bytes:
        """The CNXN banner: no features, so both clients use the v1 shell and sync protocols."""
        return f"device::ro.product.name={self.name};ro.product.model={self.model};ro.product.device={self.name};features=".encode()

    def install(self, root: Path) -> None:
        """Write the phone's files and helper programs under the sandbox ``root``."""
        phone = root / PHONE_DIR
        (phone / "bin").mkdir(parents=True, exist_ok=True)
        (root / "data" / "local" / "tmp").mkdir(parents=True, exist_ok=True)
        (phone / "build.prop").write_text("".join(f"{k}={v}\n" for k, v in self.props().items()))
        (phone / "thermal_status").write_text(f"{self.thermal_status}\n")
        cpu = root / "sys" / "devices" / "system" / "cpu"
        n = len(self.cpu_max_freqs_khz)
        cpu.mkdir(parents=True, exist_ok=True)
        for name in ("possible", "present", "online"):
            (cpu / name).write_text(f"0-{n - 1}\n")
        for i, freq in enumerate(self.cpu_max_freqs_khz):
            d = cpu / f"cpu{i}" / "cpufreq"
            d.mkdir(parents=True, exist_ok=True)
            for fname, value in (("cpuinfo_max_freq", freq), ("cpuinfo_min_freq", min(300000, freq)),
                                 ("scaling_max_freq", freq), ("scaling_cur_freq", freq),
                                 ("scaling_governor", self.governor)):
                (d / fname).write_text(f"{value}\n")
        thermal = root / "sys" / "class" / "thermal"
        thermal.mkdir(parents=True, exist_ok=True)
        for i, (zone, temp) in enumerate(self.temperatures_c.items()):
            z = thermal / f"thermal_zone{i}"
            z.mkdir(exist_ok=True)
            (z / "type").write_text(f"{zone}\n")
            (z / "temp").write_text(f"{int(round(temp * 1000))}\n")
        proc = root / "proc"
        proc.mkdir(exist_ok=True)
        (proc / "cpuinfo").write_text("".join(f"processor\t: {i}\nBogoMIPS\t: 52.00\n\n" for i in range(n))
                                      + f"Hardware\t: {self.board}\n")
        for prog, text in _programs(root).items():
            path = phone / "bin" / prog
            path.write_text(text)
            path.chmod(0o755)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)


def set_thermal(root: Path, status: int | None = None, temperatures_c: dict[str, float] | None = None) -> None:
    """Change the installed phone's thermal status and/or zone temperatures (for tests and demos)."""
    if status is not None:
        (root / PHONE_DIR / "thermal_status").write_text(f"{status}\n")
    for zone_dir in sorted((root / "sys" / "class" / "thermal").glob("thermal_zone*")):
        name = (zone_dir / "type").read_text().strip()
        if temperatures_c and name in temperatures_c:
            (zone_dir / "temp").write_text(f"{int(round(temperatures_c[name] * 1000))}\n")


def _programs(root: Path) -> dict[str, str]:
    r = shlex.quote(str(root))
    getprop = f"""#!/bin/sh
# getprop of the hwnas loopback phone: [key]: [value] lines, or one value.
f={r}/{PHONE_DIR}/build.prop
if [ $# -eq 0 ]; then
  while IFS='=' read -r k v; do [ -n "$k" ] && printf '[%s]: [%s]\\n' "$k" "$v"; done < "$f"
  exit 0
fi
while IFS='=' read -r k v; do
  if [ "$k" = "$1" ]; then printf '%s\\n' "$v"; exit 0; fi
done < "$f"
printf '%s\\n' "${{2:-}}"
"""
    dumpsys = f"""#!/bin/sh
# dumpsys of the hwnas loopback phone: only 'thermalservice', in Android's format.
temps() {{
  for z in {r}/sys/class/thermal/thermal_zone*; do
    read -r name < "$z/type"; read -r milli < "$z/temp"
    case "$name" in cpu*) t=0;; gpu*) t=1;; battery*) t=2;; skin*) t=3;; *) t=0;; esac
    printf '\\tTemperature{{mValue=%d.%d, mType=%d, mName=%s, mStatus=%d}}\\n' $((milli / 1000)) $((milli % 1000 / 100)) "$t" "$name" "$st"
  done
}}
case "$1" in
thermalservice)
  read -r st < {r}/{PHONE_DIR}/thermal_status
  echo "IsStatusOverride: false"
  echo "ThermalEventListeners:"
  printf '\\tcallbacks: 1\\n\\tkilled: false\\n\\tbroadcasts count: -1\\n'
  echo "ThermalStatusListeners:"
  printf '\\tcallbacks: 1\\n\\tkilled: false\\n\\tbroadcasts count: -1\\n'
  echo "Thermal Status: $st"
  echo "Cached temperatures:"
  temps
  echo "HAL Ready: true"
  echo "HAL connection:"
  printf '\\tThermalHAL 2.0 connected: yes\\n'
  echo "Current temperatures from HAL:"
  temps
  echo "Current cooling devices from HAL:"
  ;;
*)
  echo "Can't find service: $1"
  ;;
esac
"""
    taskset = """#!/bin/sh
# taskset of the hwnas loopback phone: the fake CPUs are not the host's, so the mask is
# checked and the command runs unpinned.
case "$1" in
  ''|-*|*[!0-9a-fA-Fx]*) echo "taskset: usage: taskset MASK COMMAND [ARG...]" >&2; exit 1;;
esac
shift
exec "$@"
"""
    return {"getprop": getprop, "dumpsys": dumpsys, "taskset": taskset}


BUILTIN_PHONES: dict[str, FakePhone] = {
    "pixel-7": FakePhone(
        name="panther", manufacturer="Google", model="Pixel 7", board="gs201", serialno="28031FDH2000HW",
        cpu_max_freqs_khz=[1803000] * 4 + [2348000] * 2 + [2850000] * 2,
        temperatures_c={"cpu0-little": 39.1, "cpu6-big": 41.4, "battery": 31.0, "skin": 33.2},
    ),
    "galaxy-a51": FakePhone(
        name="a51nsxx", manufacturer="samsung", model="SM-A515F", board="exynos9611", release="13", sdk=33,
        serialno="R58N12HWNAS", cpu_max_freqs_khz=[1742000] * 4 + [2314000] * 4,
        temperatures_c={"cpu0": 36.0, "battery": 30.5},
    ),
    "generic": FakePhone(name="loopback", manufacturer="hwnas", model="Loopback", board="host"),
}


def load_phone(name_or_path: str) -> FakePhone:
    """A built-in phone by name (``pixel-7``, ``galaxy-a51``, ``generic``) or a JSON file of FakePhone fields."""
    if name_or_path in BUILTIN_PHONES:
        src = BUILTIN_PHONES[name_or_path]
        return FakePhone(**json.loads(src.to_json()))
    path = Path(name_or_path)
    if not path.is_file():
        raise ConfigError(f"unknown phone {name_or_path!r}: use one of {', '.join(BUILTIN_PHONES)} or a JSON file")
    try:
        return FakePhone(**json.loads(path.read_text()))
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{path}: not a phone description: {exc}") from None
