"""The published latency tables shipped with hwnas: data files of other projects, each beside its licence.

Only the files whose licence text travels with them are here (``LICENSES/<project>.txt``, verbatim from the upstream
repository; PROVENANCE.md gives each file's source repository, commit, path and whether it is copied or derived).
``profiler-server import --all`` with no folder imports the presets found here; a preset whose file is not shipped
(ProxylessNAS, HELP, mobile-vision: no licence text we could ship) is imported from your own copy, with
``profiler-server import --all FOLDER`` or ``--preset NAME FILE`` (docs/tables-you-can-use.md says where each lies).
"""

from __future__ import annotations

from pathlib import Path

FOLDER = Path(__file__).resolve().parent

# Shipped file (relative to FOLDER, the same layout as ../shared/reference-data) -> its licence file (relative to FOLDER).
SHIPPED: dict[str, str] = {
    **{f"ofa_note10_lut/{r}_lookup_table.yaml": "LICENSES/once-for-all.txt" for r in (160, 176, 192, 208, 224)},
    "ofa_note10_lut/note10_lat-30ms_top1-78.4_finetune-75.net.config": "LICENSES/once-for-all.txt",
    "ofa_note10_lut/note10_lat-30ms_top1-78.4_finetune-75.run.config": "LICENSES/once-for-all.txt",
    "hwnasbench_fbnet_cifar100_lut_reconstructed.json": "LICENSES/HW-NAS-Bench.txt",
    "hwnasbench_fbnet_space_spec.json": "LICENSES/HW-NAS-Bench.txt",
}


def shipped(path: str) -> Path | None:
    """The shipped copy of ``path`` (relative, as in ../shared/reference-data), or None when it is not shipped."""
    return FOLDER / path if path in SHIPPED and (FOLDER / path).is_file() else None
