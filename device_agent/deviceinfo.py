"""What the phone is: properties, CPU clusters and frequencies, governor, thermal state.

Everything is read in one shell round trip (sections split by a marker line), so asking
costs one ADB command whatever the device.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from hwnas.schemas import DeviceInfo

from device_agent import parsers
from device_agent.platforms.base import Device, new_marker


@dataclass(frozen=True)
class Cluster:
    """CPUs sharing a maximum frequency (a big.LITTLE cluster)."""

    cpus: tuple[int, ...]
    max_freq_khz: int


@dataclass
class PhoneFacts:
    """One reading of a device."""

    serial: str
    kind: str
    props: dict[str, str]
    cpus: dict[int, dict[str, str]]
    cpu_count: int | None
    thermal: parsers.ThermalState
    extra: dict[str, Any] = field(default_factory=dict)

    # -- derived ----------------------------------------------------------------------------
    @property
    def max_freqs_khz(self) -> list[int]:
        out = []
        for i in sorted(self.cpus):
            try:
                out.append(int(self.cpus[i].get("cpuinfo_max_freq", "")))
            except ValueError:
                continue
        return out

    @property
    def clusters(self) -> list[Cluster]:
        """Clusters, fastest first."""
        by_freq: dict[int, list[int]] = {}
        for i, files in self.cpus.items():
            try:
                by_freq.setdefault(int(files.get("cpuinfo_max_freq", "")), []).append(i)
            except ValueError:
                continue
        return [Cluster(tuple(sorted(cpus)), f) for f, cpus in sorted(by_freq.items(), reverse=True)]

    @property
    def governors(self) -> list[str]:
        return sorted({f["scaling_governor"] for f in self.cpus.values() if f.get("scaling_governor")})

    def taskset_mask(self, threads: int) -> str | None:
        """Hex CPU mask of the fastest cluster, widened to slower clusters when ``threads`` needs more cores."""
        chosen: list[int] = []
        for cluster in self.clusters:
            chosen.extend(cluster.cpus)
            if len(chosen) >= threads:
                break
        if not chosen or (self.cpu_count and len(chosen) >= self.cpu_count and len(self.clusters) <= 1):
            return None  # one cluster covering all CPUs: pinning changes nothing
        return format(sum(1 << c for c in chosen), "x")

    def device_info(self) -> DeviceInfo:
        """The body of ``PUT /devices/{name}``."""
        p = self.props
        release, sdk = p.get("ro.build.version.release"), p.get("ro.build.version.sdk")
        os_version = f"Android {release} (SDK {sdk})" if release and sdk else release
        keep = {k: v for k, v in p.items() if k.startswith(("ro.build.", "ro.product.", "ro.soc.", "ro.board.", "ro.hardware"))}
        return DeviceInfo(
            serial=p.get("ro.serialno") or self.serial,
            manufacturer=p.get("ro.product.manufacturer"),
            model=p.get("ro.product.model"),
            soc=p.get("ro.soc.model") or p.get("ro.board.platform") or p.get("ro.hardware") or p.get("ro.product.board"),
            abi=p.get("ro.product.cpu.abi"),
            os_version=os_version,
            cpu_cores=self.cpu_count or (len(self.cpus) or None),
            cpu_max_freqs_khz=self.max_freqs_khz,
            props={
                "connection": {"kind": self.kind, "serial": self.serial},
                "clusters": [{"cpus": list(c.cpus), "max_freq_khz": c.max_freq_khz} for c in self.clusters],
                "governors": self.governors,
                "thermal_status": self.thermal.status,
                "temperatures_c": self.thermal.temperatures_c,
                "android": keep,
                **self.extra,
            },
        )

    def default_name(self) -> str:
        """``<manufacturer>-<model>-<serial suffix>`` as a device name the server accepts."""
        p = self.props
        if self.kind == "local":
            return f"host-{slug(self.serial.split(':', 1)[-1]) or 'local'}"
        base = slug(f"{p.get('ro.product.manufacturer', '')}-{p.get('ro.product.model', '')}") or "device"
        serial_id = re.sub(r"[^a-z0-9]", "", (p.get("ro.serialno") or self.serial).lower())
        return f"{base}-{serial_id[-4:]}" if serial_id else base

    def state(self) -> dict[str, Any]:
        """The part that changes while measuring, stored with every uploaded batch."""
        return {"thermal_status": self.thermal.status, "temperatures_c": self.thermal.temperatures_c, "governors": self.governors}


def slug(text: str) -> str:
    """Lowercase, alphanumerics and single dashes, at most 100 characters."""
    return re.sub(r"-{2,}", "-", re.sub(r"[^a-z0-9]+", "-", text.lower())).strip("-")[:100]


_CPU_GLOB = "/sys/devices/system/cpu/cpu[0-9]*/cpufreq"
_ZONE_GLOB = "/sys/class/thermal/thermal_zone*"


def _thermal_script(marker: str) -> str:
    return (
        f"echo '{marker} thermal'; dumpsys thermalservice 2>/dev/null\n"
        f"echo '{marker} zones'; grep -H . {_ZONE_GLOB}/type {_ZONE_GLOB}/temp 2>/dev/null\n"
    )


def _thermal_from(sections: dict[str, str]) -> parsers.ThermalState:
    state = parsers.parse_thermalservice(sections.get("thermal", ""))
    if not state.temperatures_c:
        # No thermal service (old Android, or the host): thermal zones only.
        zones = parsers.parse_thermal_zones(sections.get("zones", ""))
        state = parsers.ThermalState(state.status, zones)
    return state


def read_facts(device: Device) -> PhoneFacts:
    """Properties, CPUs and thermal state of ``device`` in one command."""
    marker = new_marker("INFO")
    script = (
        f"echo '{marker} props'; getprop 2>/dev/null\n"
        f"echo '{marker} cpus'; grep -H . {_CPU_GLOB}/cpuinfo_max_freq {_CPU_GLOB}/scaling_governor "
        f"{_CPU_GLOB}/scaling_cur_freq 2>/dev/null\n"
        f"echo '{marker} possible'; cat /sys/devices/system/cpu/possible 2>/dev/null\n" + _thermal_script(marker)
    )
    sections = parsers.split_sections(device.shell(script), marker)
    props = parsers.parse_getprop(sections.get("props", ""))
    if device.kind == "local" or not props:
        props = {**device.getprop(), **props} if device.kind == "local" else props
    cpus = parsers.parse_cpu_files(sections.get("cpus", ""))
    return PhoneFacts(
        serial=device.serial,
        kind=device.kind,
        props=props,
        cpus=cpus,
        cpu_count=_count_cpus(sections.get("possible", "")) or (len(cpus) or None),
        thermal=_thermal_from(sections),
    )


def read_thermal(device: Device) -> parsers.ThermalState:
    """Thermal status and temperatures now (one command)."""
    marker = new_marker("THERM")
    return _thermal_from(parsers.split_sections(device.shell(_thermal_script(marker)), marker))


def thermal_zones_script(section: str, root: str = '"$T"') -> str:
    """A shell line that prints the sysfs thermal zones under a ``$M <section>`` marker line.

    Cheap (a few sysfs reads, no ``dumpsys``): a batch script runs it itself. ``root`` is the
    thermal class folder, by default ``$T`` set on the command line (``T=/sys/class/thermal``),
    so a pushed script holds no device path.
    """
    return f'echo "$M {section}"; grep -H . {root}/thermal_zone*/type {root}/thermal_zone*/temp 2>/dev/null'


def read_thermal_zones(root: str = "/sys/class/thermal") -> dict[str, float]:
    """This host's thermal zones (zone type → °C), read in-process from sysfs; {} when there are none."""
    from pathlib import Path

    lines = []
    for zone in sorted(Path(root).glob("thermal_zone*")):
        for name in ("type", "temp"):
            try:
                lines.append(f"{zone / name}:{(zone / name).read_text().strip()}")
            except OSError:
                continue
    return parsers.parse_thermal_zones("\n".join(lines))


def _count_cpus(text: str) -> int | None:
    """``0-7`` or ``0-3,4-7`` → 8."""
    total = 0
    for part in text.strip().split(","):
        if not part:
            continue
        lo, _, hi = part.partition("-")
        try:
            total += int(hi or lo) - int(lo) + 1
        except ValueError:
            return None
    return total or None
