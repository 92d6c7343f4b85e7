"""Where the tests find the published tables: ``../shared/reference-data`` next to the checkout, read where
it is and never copied into the repository (``HWNAS_REFERENCE_DATA`` points elsewhere).

Without it those tests skip, and the run's summary says so in one line (``tests/conftest.py``), so a
run that could not check the published figures never looks like one that did.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REFERENCE_DATA = Path(os.environ.get("HWNAS_REFERENCE_DATA")
                      or Path(__file__).resolve().parents[2].parent / "shared" / "reference-data")
SKIP_REASON = f"reference data not found at {REFERENCE_DATA} (set HWNAS_REFERENCE_DATA)"

needs_reference_data = pytest.mark.skipif(not REFERENCE_DATA.is_dir(), reason=SKIP_REASON)
