"""Where the tests find the published tables: the copies shipped in ``profiler_server/published``.

No test reads the files hwnas does not ship (ProxylessNAS's Pixel 1 table and network, HELP's CSV, mobile-vision: no
licence text found): the tests of the code that reads their layouts run on synthetic files in those layouts
(``tests/support/synthetic_tables.py``), and the checks of their published numbers are figures of
``benchmarks/published_tables.py``, which reads them in ../shared/reference-data (issue 27: a fresh clone with
nothing beside it skips no test for want of files).

``find`` looks in ``../shared/reference-data`` next to the checkout after the shipped folder (``HWNAS_REFERENCE_DATA``
points elsewhere; a folder that does not exist, ``HWNAS_REFERENCE_DATA=/nonexistent``, hides it, as on a user's
machine). A test that asked ``ref`` for a file found in neither place would skip naming it, and the run's summary
counts such skips in one line (``tests/conftest.py``), so a test that came to need an unshipped file shows.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from profiler_server.published import shipped

REFERENCE_DATA = Path(
    os.environ.get("HWNAS_REFERENCE_DATA") or Path(__file__).resolve().parents[2].parent / "shared" / "reference-data"
)
SKIP_REASON = f"not shipped with hwnas and not found in {REFERENCE_DATA} (set HWNAS_REFERENCE_DATA)"


def find(path: str) -> Path | None:
    """The file ``path`` (relative, in the layout of ../shared/reference-data): its shipped copy, else the shared one."""
    found = shipped(path)
    if found is not None:
        return found
    other = REFERENCE_DATA / path
    return other if other.is_file() else None


def ref(path: str) -> Path:
    """The file ``path`` (shipped copy first); the calling test skips when it is found nowhere."""
    found = find(path)
    if found is None:
        pytest.skip(f"{path}: {SKIP_REASON}")
    return found


# The files of a preset's table, by the names tests use; PROXYLESS_LUT is not shipped (no test reads it).
PROXYLESS_LUT = "proxylessnas_pixel1_lut/mobile_trim.yaml"
OFA_NET = "ofa_note10_lut/note10_lat-30ms_top1-78.4_finetune-75.net.config"
HWNB_LUT = "hwnasbench_fbnet_cifar100_lut_reconstructed.json"
HWNB_SPEC = "hwnasbench_fbnet_space_spec.json"


def ofa_lut(resolution: int) -> str:
    return f"ofa_note10_lut/{resolution}_lookup_table.yaml"
