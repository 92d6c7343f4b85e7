"""The dashboard shows where an imported table comes from (headless Chromium, live server, real reference files)."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator

import pytest

from hwnas.published_presets import PRESETS
from tests.support.browser import Browser
from tests.support.live_server import LiveServer
from tests.support.reference_data import ref


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with Browser() as b:
        yield b


def test_an_imported_tables_page_and_the_overview_name_its_source(server: LiveServer, browser: Browser) -> None:
    device = f"pixel3-{uuid.uuid4().hex[:6]}"
    preset = PRESETS["pixel3-hwnasbench"]
    with server.client("admin") as admin:
        admin.import_lut(preset.request(ref(preset.path).read_text()).model_copy(update={"device": device}))
    browser.open(f"{server.url}/ui/table.html?device={device}")
    assert browser.errors == [], browser.errors
    notes = json.loads(browser.eval("JSON.stringify([...document.querySelectorAll('#source p')].map(p => p.textContent))"))
    assert (
        notes[0].startswith("Imported, read-only: GATECH-EIC/HW-NAS-Bench") and "Google Pixel 3" in notes[0] and "MIT" in notes[0]
    )
    assert "delta gauge" in notes[1]
    assert browser.eval("document.getElementById('entries').dataset.entries") == "112"
    assert browser.eval("document.querySelectorAll('#entries tbody tr').length") == 100  # the first page of 100 rows
    browser.open(f"{server.url}/ui/")
    assert browser.errors == [], browser.errors
    cell = browser.eval(f"document.querySelector('tr[data-device=\"{device}\"] td.tables').textContent")
    assert cell == "hwnasbench × 1: 112 entries (imported from GATECH-EIC/HW-NAS-Bench)"
