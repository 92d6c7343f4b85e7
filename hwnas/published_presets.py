"""The published tables we know: file, format, provenance and the device/table they import into.

``profiler-server import --preset NAME FILE`` (or ``--all`` for the tables shipped in profiler_server/published,
``--all DIR`` for a folder of the same layout) fills the provenance from here, so a table is imported with the same names and sources everywhere
(docs/tables-you-can-use.md lists them). Device naming: ``<phone>-<project>``; the OFA Note10
tables exist per input resolution, and since a table is (device, runtime, threads) each
resolution is its own device: ``note10-ofa`` is 224 (the resolution of OFA's published Note10
networks), ``note10-ofa-160`` … ``note10-ofa-208`` the others.

In ``hwnas`` (torch-free, shared) because both sides build import requests from it: the server's
``profiler-server import`` and the client's ``hwnas lut import`` / ``hwnas lut fit --server``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from hwnas import schemas
from hwnas.errors import HwnasError

HAN_CAI_FILES = "a7c9bcd525e17404968bc55aa43772bf7e51909e"
HWNB_COMMIT = "393bb8a0"
HELP_COMMIT = "45f70eb92d0d735970a33b608d1544ad3c52f285"
_HAN_CAI_LICENCE = (
    "han-cai/files carries no licence file, so the table's own redistribution terms are not stated; "
    "{code} (the code that downloads it) is {code_licence}"
)


@dataclass(frozen=True)
class Preset:
    """One published table: where its file lies in the reference data, and how it is imported."""

    device: str
    format: schemas.ImportFormat
    path: str  # relative to profiler_server/published (the shipped ones) or a folder of the same layout
    runtime: str
    source: schemas.ImportSource
    column: str | None = None
    threads: int = 1  # not published by any of them; 1 is our placeholder

    def request(self, content: str, replace: bool = False) -> schemas.LutImport:
        """The import request for this preset's file ``content``."""
        return schemas.LutImport(
            format=self.format,
            content=content,
            device=self.device,
            runtime=self.runtime,
            threads=self.threads,
            column=self.column,
            source=self.source,
            replace=replace,
        )


def _ofa(resolution: int) -> Preset:
    path = f"ofa/note10/{resolution}_lookup_table.yaml"
    return Preset(
        device="note10-ofa" if resolution == 224 else f"note10-ofa-{resolution}",
        format="ofa-yaml",
        path=f"ofa_note10_lut/{resolution}_lookup_table.yaml",
        runtime="tflite",
        source=schemas.ImportSource(
            project="mit-han-lab/once-for-all",
            file=f"han-cai/files:{path}",
            commit=HAN_CAI_FILES,
            source_device="Samsung Galaxy Note10",
            source_runtime="TF-Lite",
            licence=_HAN_CAI_LICENCE.format(code="once-for-all", code_licence="MIT"),
            url=f"https://github.com/han-cai/files/blob/{HAN_CAI_FILES}/{path}",
        ),
    )


def _hwnb(column: str, device: str, name: str) -> Preset:
    return Preset(
        device=f"{name}-hwnasbench",
        format="hwnasbench-json",
        path="hwnasbench_fbnet_cifar100_lut_reconstructed.json",
        runtime="hwnasbench",
        column=column,
        source=schemas.ImportSource(
            project="GATECH-EIC/HW-NAS-Bench",
            commit=HWNB_COMMIT,
            source_device=device,
            file=f"FBNet CIFAR-100 table, {column} (reconstructed exactly from HayeonLee/HELP@{HELP_COMMIT[:7]} data/fbnet/latency, "
            "which are HW-NAS-Bench v1.0 table sums; the pickle itself is not available)",
            licence="MIT (HW-NAS-Bench and HELP)",
            url="https://github.com/GATECH-EIC/HW-NAS-Bench",
        ),
    )


PRESETS: dict[str, Preset] = {
    p.device: p
    for p in [
        Preset(
            device="pixel1-proxylessnas",
            format="proxyless-yaml",
            path="proxylessnas_pixel1_lut/mobile_trim.yaml",
            runtime="tflite",
            source=schemas.ImportSource(
                project="mit-han-lab/proxylessnas",
                file="han-cai/files:proxylessnas/mobile_trim.yaml",
                commit=HAN_CAI_FILES,
                source_device="Google Pixel 1",
                source_runtime="TF-Lite",
                licence=(
                    "han-cai/files carries no licence file, so the table's own redistribution terms are not stated; "
                    "the licence of mit-han-lab/proxylessnas (which downloads it) was not checked here"
                ),
                url=f"https://github.com/han-cai/files/blob/{HAN_CAI_FILES}/proxylessnas/mobile_trim.yaml",
            ),
        ),
        *(_ofa(r) for r in (224, 208, 192, 176, 160)),
        _hwnb("pixel3", "Google Pixel 3", "pixel3"),
        _hwnb("raspi4", "Raspberry Pi 4", "raspi4"),
        _hwnb("eyeriss", "Eyeriss", "eyeriss"),
        _hwnb("fpga", "FPGA", "fpga"),
    ]
}


class UnknownPreset(HwnasError, KeyError):
    """A preset name that is not in PRESETS."""

    def __str__(self) -> str:
        return f"unknown preset {self.args[0]!r}; one of {', '.join(PRESETS)}"


def import_request(
    content: str, preset: str | None, replace: bool, table: dict[str, Any], source: dict[str, Any]
) -> schemas.LutImport:
    """The import request for ``content``: a preset's names and provenance (if any), with the options given over them.

    ``table``: format, device, runtime, runtime_version, threads, column; ``source``: the ImportSource fields;
    None values are not given. Raises UnknownPreset or pydantic's ValidationError.
    """
    if preset is not None and preset not in PRESETS:
        raise UnknownPreset(preset)
    body: dict[str, Any] = (
        PRESETS[preset].request(content, replace).model_dump()
        if preset
        else {"source": {}, "content": content, "replace": replace}
    )
    body.update({k: v for k, v in table.items() if v is not None})
    body["source"].update({k: v for k, v in source.items() if v is not None})
    return schemas.LutImport.model_validate(body)


def import_report(result: schemas.LutImportResult) -> list[str]:
    """What an import did, as the command lines print it: one line, then one per unmappable entry."""
    head = (
        f"{result.device} {result.runtime}/{result.threads}: {result.status}, {result.entries} entries"
        + (f", overhead {result.overhead_ms!r} ms" if result.overhead_ms is not None else "")
        + f", {len(result.unmappable)} unmappable"
    )
    return [head] + [f"  unmappable {u.key}: {u.reason}" for u in result.unmappable]


def validation_message(exc: Exception) -> str:
    """One line from a pydantic ValidationError: each field and what is wrong with it."""
    errors = getattr(exc, "errors", None)
    if errors is None:
        return str(exc)
    return "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in errors())
