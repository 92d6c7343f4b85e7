"""A configurable fake phone for the loopback device: build props, CPU clusters, thermal state.

``FakePhone.install(root)`` lays it out inside the sandbox the way Android shows it: files
under ``sys/devices/system/cpu`` and ``sys/class/thermal``, and the phone's programs in
``.phone/bin``, the only folder on the phone's PATH. Those are Android's own kinds: ``sh`` is
``mksh`` (Android's /system/bin/sh), every other tool a ``toybox`` applet, ``awk`` the BSD
one-true-awk (Android 9+; Android 8 has none: ``awk=False``), and small mksh ``getprop``,
``dumpsys`` and ``taskset`` programs. Its benchmark programs are installed where the agent keeps them on
any phone, ``/data/local/tmp/hwnas/bin/<tool>`` with ``<tool>.version`` beside each: the stand-ins
(``standins/``), so an agent given no ``--benchmark-binary`` runs them as it runs a phone's own. So a command that needs bash, dash, GNU options or gawk
fails here as it fails on a phone. The thermal status lives in a plain file
(``.phone/thermal_status``) so a test can heat the phone up and cool it down; the fault knobs
(``taskset_refused``, ``readonly_results``) can likewise be switched while the phone runs
(``set_faults``).
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
from dataclasses import asdict, dataclass, field
from pathlib import Path

from device_agent.errors import ConfigError

PHONE_DIR = ".phone"
# The agent's work folder (platforms/base.py Device.workdir) inside the sandbox, and its result folder: what
# ``readonly_results`` locks.
AGENT_DIR = "data/local/tmp/hwnas"
RESULTS_DIR = f"{AGENT_DIR}/res"
# The Python package behind each stand-in's runtime: its version is the installed program's (``<tool>.version``).
ENGINE_PACKAGE = {"onnxruntime": "onnxruntime", "torchscript": "torch", "executorch": "executorch"}
# Host programs the phone is made of (Debian packages mksh, toybox, original-awk).
HOST_TOOLS = {"mksh": "mksh", "toybox": "toybox", "awk": "original-awk"}
# Applets left off the phone: the loopback's processes are the host's, and as root these would
# act on the host itself (power, mounts, swap, block devices, kernel modules, network links, the clock).
UNSAFE_APPLETS = frozenset(
    {
        "blkdiscard",
        "blockdev",
        "chroot",
        "chvt",
        "deallocvt",
        "devmem",
        "eject",
        "freeramdisk",
        "fsfreeze",
        "gpioset",
        "halt",
        "hwclock",
        "i2cset",
        "ifconfig",
        "insmod",
        "killall5",
        "losetup",
        "mkswap",
        "modinfo",
        "mount",
        "nbd-client",
        "oneit",
        "openvt",
        "partprobe",
        "pivot_root",
        "poweroff",
        "reboot",
        "rfkill",
        "rmmod",
        "rtcwake",
        "swapoff",
        "swapon",
        "switch_root",
        "sysctl",
        "tunctl",
        "umount",
        "vconfig",
        "watchdog",
    }
)


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
    awk: bool = True  # /system/bin/awk (one-true-awk) came with Android 9; Android 8 phones have no awk
    # Fault knobs, off on a healthy phone; ``set_faults`` switches them on a running one.
    taskset_refused: bool = False  # sched_setaffinity fails (EINVAL: cores offline or outside the cpuset)
    readonly_results: bool = False  # the agent's result folder (RESULTS_DIR) refuses writes: EPERM, even as root

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
            "ro.build.version.incremental": "hwnas.loopback",  # what the dashboard's loopback badge reads
            "ro.serialno": self.serialno,
            "ro.hwnas.loopback": "1",
        }
        props.update(self.extra_props)
        return props

    def banner(self) -> bytes:
        """The CNXN banner: no features, so both clients use the v1 shell and sync protocols."""
        return (
            f"device::ro.product.name={self.name};ro.product.model={self.model};ro.product.device={self.name};features=".encode()
        )

    def install(self, root: Path) -> None:
        """Write the phone's files and helper programs under the sandbox ``root``."""
        phone = root / PHONE_DIR
        tools = host_tools()
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
            for fname, value in (
                ("cpuinfo_max_freq", freq),
                ("cpuinfo_min_freq", min(300000, freq)),
                ("scaling_max_freq", freq),
                ("scaling_cur_freq", freq),
                ("scaling_governor", self.governor),
            ):
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
        (proc / "cpuinfo").write_text(
            "".join(f"processor\t: {i}\nBogoMIPS\t: 52.00\n\n" for i in range(n)) + f"Hardware\t: {self.board}\n"
        )
        _install_bin(phone / "bin", tools, awk=self.awk)
        for prog, text in _programs(root, tools, len(self.cpu_max_freqs_khz)).items():
            path = phone / "bin" / prog
            path.unlink(missing_ok=True)  # a toybox link of that name (taskset) must not be written through
            path.write_text(text)
            path.chmod(0o755)
        install_benchmarks(root)
        set_faults(root, taskset_refused=self.taskset_refused, readonly_results=self.readonly_results)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)


def install_benchmarks(root: Path) -> None:
    """The stand-ins as the phone's benchmark programs, where the agent runs a phone's own (``bin/<tool>`` of its
    work folder), each with the version of the runtime it runs the models with (``+loopback``: not a phone build).

    Written again at every start (a program the agent pushed over one is replaced, and pushed again by the agent
    after it reconnects, as it checks every file then); a runtime whose package is not installed gets no version.
    """
    from importlib.metadata import PackageNotFoundError, version

    from device_agent.loopback.standins.worker import write_launcher
    from device_agent.runtimes.base import RUNTIME_TOOL

    bin_dir = root / AGENT_DIR / "bin"
    for runtime, tool in RUNTIME_TOOL.items():
        write_launcher(tool, bin_dir)
        stamp = bin_dir / f"{tool}.version"
        try:
            stamp.write_text(f"{version(ENGINE_PACKAGE[runtime])}+loopback\n")
        except PackageNotFoundError:
            stamp.unlink(missing_ok=True)


def set_thermal(root: Path, status: int | None = None, temperatures_c: dict[str, float] | None = None) -> None:
    """Change the installed phone's thermal status and/or zone temperatures (for tests and demos)."""
    if status is not None:
        (root / PHONE_DIR / "thermal_status").write_text(f"{status}\n")
    for zone_dir in sorted((root / "sys" / "class" / "thermal").glob("thermal_zone*")):
        name = (zone_dir / "type").read_text().strip()
        if temperatures_c and name in temperatures_c:
            (zone_dir / "temp").write_text(f"{int(round(temperatures_c[name] * 1000))}\n")


def host_tools() -> dict[str, str]:
    """Absolute host paths of mksh, toybox and one-true-awk; a ConfigError naming the packages if one is missing."""
    found: dict[str, str] = {}
    for role, name in HOST_TOOLS.items():
        path = next((str(d / name) for d in (Path("/usr/bin"), Path("/bin")) if os.access(d / name, os.X_OK)), None)
        path = path or shutil.which(name)
        if path is None:
            raise ConfigError("the loopback phone runs Android's shell and tools: apt-get install mksh toybox original-awk")
        found[role] = path
    return found


def toybox_applets(toybox: str) -> list[str]:
    """The applets of this toybox build (``toybox`` with no arguments lists them)."""
    out = subprocess.run([toybox], capture_output=True, text=True, check=True, timeout=30).stdout
    return [a for a in out.split() if a and "/" not in a]


def _install_bin(bin_dir: Path, tools: dict[str, str], awk: bool) -> None:
    """One link per toybox applet (toybox dispatches on argv[0]), ``sh`` → mksh, ``awk`` → one-true-awk."""
    for old in bin_dir.iterdir():  # a phone re-installed with another profile keeps nothing of the last one
        old.unlink()
    links = {a: tools["toybox"] for a in toybox_applets(tools["toybox"]) if a not in UNSAFE_APPLETS}
    links["sh"] = tools["mksh"]
    if awk:
        links["awk"] = tools["awk"]
    for name, target in links.items():
        os.symlink(target, bin_dir / name)


def set_faults(root: Path, taskset_refused: bool | None = None, readonly_results: bool | None = None) -> None:
    """Switch the installed phone's fault knobs (None: leave as is); see ``FakePhone``."""
    if taskset_refused is not None:
        flag = root / PHONE_DIR / "taskset_refused"
        if taskset_refused:
            flag.touch()
        else:
            flag.unlink(missing_ok=True)
    if readonly_results is not None:
        _set_immutable(root / RESULTS_DIR, readonly_results)


def unlock(root: Path) -> None:
    """Undo ``readonly_results`` so the sandbox can be removed (an immutable folder blocks even root)."""
    if (root / RESULTS_DIR).is_dir():
        _set_immutable(root / RESULTS_DIR, False)


def _set_immutable(folder: Path, on: bool) -> None:
    # chmod does not stop root, who runs the loopback in CI; the immutable attribute does, and the
    # kernel then answers every create, unlink or rename in the folder with EPERM ("Operation not
    # permitted"), the error a phone gave for its unwritable result folder (issue 24). A read-only
    # mount (EROFS, "Read-only file system") would need a mount namespace: privileges a test cannot count on.
    if not on and not folder.is_dir():
        return
    folder.mkdir(parents=True, exist_ok=True)
    r = subprocess.run(
        [host_tools()["toybox"], "chattr", "+i" if on else "-i", str(folder)], capture_output=True, text=True, timeout=30
    )
    if r.returncode != 0 and on:
        raise ConfigError(
            f"readonly_results needs the immutable attribute (root, on ext4/xfs/btrfs/tmpfs): "
            f"{r.stderr.strip() or r.stdout.strip()}"
        )


def _programs(root: Path, tools: dict[str, str], cpus: int) -> dict[str, str]:
    r = shlex.quote(str(root))
    mksh = tools["mksh"]
    phone_cpus = (1 << min(cpus, 30)) - 1
    getprop = f"""#!{mksh}
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
    dumpsys = f"""#!{mksh}
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
    # toybox's taskset (toys/other/taskset.c) with its messages; the fake CPUs are not the host's,
    # so a mask naming some of them is accepted and the command runs unpinned. -p/-a act on host
    # pids and go to toybox itself.
    taskset = f"""#!{mksh}
case "$1" in -*) exec {tools["toybox"]} taskset "$@";; esac
if [ $# -lt 2 ]; then echo "taskset: Needs 2 args" >&2; exit 1; fi
case "$1" in *[!0-9a-fA-F]*) echo "taskset: bad mask '$1'" >&2; exit 1;; esac
refused=
[ -e {r}/{PHONE_DIR}/taskset_refused ] && refused=1
# sched_setaffinity answers EINVAL for a mask with none of the phone's CPUs (mksh arithmetic: 32 bits)
if [ ${{#1}} -le 7 ] && [ $(( 16#${{1:-0}} & {phone_cpus} )) -eq 0 ]; then refused=1; fi
if [ -n "$refused" ]; then
  echo "taskset: failed to set pid $$'s affinity: Invalid argument" >&2
  exit 1
fi
shift
exec "$@"
"""
    return {"getprop": getprop, "dumpsys": dumpsys, "taskset": taskset}


BUILTIN_PHONES: dict[str, FakePhone] = {
    "pixel-7": FakePhone(
        name="panther",
        manufacturer="Google",
        model="Pixel 7",
        board="gs201",
        serialno="28031FDH2000HW",
        cpu_max_freqs_khz=[1803000] * 4 + [2348000] * 2 + [2850000] * 2,
        temperatures_c={"cpu0-little": 39.1, "cpu6-big": 41.4, "battery": 31.0, "skin": 33.2},
    ),
    "galaxy-a51": FakePhone(
        name="a51nsxx",
        manufacturer="samsung",
        model="SM-A515F",
        board="exynos9611",
        release="13",
        sdk=33,
        serialno="R58N12HWNAS",
        cpu_max_freqs_khz=[1742000] * 4 + [2314000] * 4,
        temperatures_c={"cpu0": 36.0, "battery": 30.5},
    ),
    "generic": FakePhone(name="loopback", manufacturer="hwnas", model="Loopback", board="host"),
    # Android 8.1: toybox and mksh as on any phone, but no awk (it came to /system/bin with Android 9).
    "android-8": FakePhone(
        name="B2N_sprout",
        manufacturer="HMD Global",
        model="Nokia 7 plus",
        board="sdm660",
        release="8.1.0",
        sdk=27,
        serialno="B2NGAA8831HWNAS",
        cpu_max_freqs_khz=[1843200] * 4 + [2208000] * 4,
        temperatures_c={"cpu0": 37.0, "battery": 30.0},
        awk=False,
    ),
}


def load_phone(name_or_path: str) -> FakePhone:
    """A built-in phone by name (``pixel-7``, ``galaxy-a51``, ``generic``, ``android-8``) or a JSON file of FakePhone fields."""
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
