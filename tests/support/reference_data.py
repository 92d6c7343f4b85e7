"""Where the tests find the published tables: the copies shipped in ``profiler_server/published`` first, then
``../shared/reference-data`` next to the checkout for the files that are not shipped (ProxylessNAS, HELP), read where
it is and never copied into the repository. ``HWNAS_REFERENCE_DATA`` points elsewhere; a folder that does not exist
(``HWNAS_REFERENCE_DATA=/nonexistent``) hides ../shared, so a run sees only what a user of the package has.

A test that needs a file found in neither place skips, naming the file, and the run's summary counts those skips
in one line (``tests/conftest.py``), so a run that could not check the published figures never looks like one that did.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from profiler_server.published import shipped

REFERENCE_DATA = Path(os.environ.get("HWNAS_REFERENCE_DATA")
                      or Path(__file__).resolve().parents[2].parent / "shared" / "reference-data")
SKIP_REASON = f"not shipped with hwnas and not found in {REFERENCE_DATA} (set HWNAS_REFERENCE_DATA)"


def find(path: str) -> Path | None:
    """The file ``path`` (relative, in the layout of ../shared/reference-data): its shipped copy, else the shared one."""
    found = shipped(path)
    if found is not None:
        return found
    other = REFERENCE_DATA / path
    return other if other.is_file() else None


def _missing(paths: tuple[str, ...]) -> list[str]:
    return [p for p in paths if find(p) is None]


def ref(path: str) -> Path:
    """The file ``path`` (shipped copy first); the calling test skips when it is found nowhere."""
    found = find(path)
    if found is None:
        pytest.skip(f"{path}: {SKIP_REASON}")
    return found


def needs(*paths: str) -> pytest.MarkDecorator:
    """Skip the test (or module, as ``pytestmark``) unless every file of ``paths`` is found."""
    missing = _missing(paths)
    return pytest.mark.skipif(bool(missing), reason=f"{', '.join(missing)}: {SKIP_REASON}")


# The files of a preset's table, by the names tests use.
PROXYLESS_LUT = "proxylessnas_pixel1_lut/mobile_trim.yaml"
PROXYLESS_NET = "proxylessnas_pixel1_lut/proxyless_mobile.net.config"
OFA_NET = "ofa_note10_lut/note10_lat-30ms_top1-78.4_finetune-75.net.config"
HELP_CSV = "help_fbnet_cifar100_latency.csv.gz"
HWNB_LUT = "hwnasbench_fbnet_cifar100_lut_reconstructed.json"
HWNB_SPEC = "hwnasbench_fbnet_space_spec.json"


def ofa_lut(resolution: int) -> str:
    return f"ofa_note10_lut/{resolution}_lookup_table.yaml"
