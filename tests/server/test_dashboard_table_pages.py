"""Issue 25, D8: the table page fetches one page of entries at a time, sorted and filtered by the database.

``GET /lut/{device}/entries`` against what ``GET /lut`` serves (the whole table, the source of truth): every sort
column in both orders, paged, gives the table's entries in the expected order with no row twice or missing; the
type and key filters count and return the right rows. Then the page in headless Chromium: its first page, paging,
sorting by a heading and filtering by type — and it never asks for the whole table. On SQLite and PostgreSQL.
"""

from __future__ import annotations

import json
import random
import uuid
from collections import Counter
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from hwnas.opkey import OVERHEAD_KEY
from hwnas.schemas import DeviceInfo
from tests.support.browser import Browser
from tests.support.live_server import LiveServer
from tests.support.measurements import batch, key, result

IR, CONV = 200, 50
SORTS = ["key", "type", "median_ms", "min_ms", "p10_ms", "p90_ms", "std_ms", "n", "measured_at"]


def conv_key(i: int) -> str:
    return f"conv_k3_s1_o{16 + i}@1x3x56x56"


@pytest.fixture(scope="module")
def table(server: LiveServer) -> dict[str, Any]:
    """A 250-entry table (200 ir, 50 conv without std_ms) in two runs: the second re-measures 40 keys, so those
    entries come from it; medians repeat (ties are broken by key)."""
    rng = random.Random(7)
    name = f"pages-{uuid.uuid4().hex[:6]}"
    first = [result(key(i), median=rng.choice([0.5, 1.0, 1.5, 2.0]) + i % 7 * 0.25, iterations=10 + i % 5) for i in range(IR)]
    first += [result(conv_key(i), median=0.2 + i * 0.01, std_ms=None) for i in range(CONV)]
    first.append(result(OVERHEAD_KEY, median=0.3))
    again = [result(key(i), median=9.0 + i * 0.001, iterations=99) for i in range(0, IR, 5)]
    with server.client("agent") as agent:
        agent.put_device(name, DeviceInfo(model="Pixel 7"))
        agent.post_measurements(batch(name, first, runtime_version="1.16.0"))
        agent.post_measurements(batch(name, again, runtime_version="1.17.0"))
    lut = httpx.get(f"{server.url}/lut/{name}", params={"runtime": "ort", "threads": 1}).json()
    assert len(lut["entries"]) == IR + CONV
    return {"device": name, "lut": lut}


def expected_order(lut: dict[str, Any], sort: str, order: str, only: str | None = None) -> list[str]:
    """The table's keys in the order the page must show: by ``sort`` (empty values last in either order), ties by key."""
    rows = [
        {"key": k, "type": k.split("_")[0], **e} for k, e in lut["entries"].items() if only is None or k.startswith(only + "_")
    ]
    column = {"n": "n"}.get(sort, sort)
    present = [r for r in rows if r[column] is not None]
    empty = sorted((r for r in rows if r[column] is None), key=lambda r: r["key"])
    by_key = sorted(present, key=lambda r: r["key"])  # stable sorts: the tie order is the key order
    ordered = sorted(by_key, key=lambda r: r[column], reverse=order == "desc")
    return [r["key"] for r in ordered + empty]


def pages(server: LiveServer, device: str, limit: int, **params: Any) -> tuple[list[str], list[dict[str, Any]]]:
    """Every page of the table under ``params``: the keys in order, and the answers."""
    out: list[str] = []
    answers = []
    offset = 0
    while True:
        r = httpx.get(
            f"{server.url}/lut/{device}/entries",
            params={"runtime": "ort", "threads": 1, "offset": offset, "limit": limit, **params},
        )
        assert r.status_code == 200, r.text[:300]
        answers.append(r.json())
        out += [row["key"] for row in r.json()["rows"]]
        if not r.json()["rows"]:
            return out, answers
        offset += limit


@pytest.mark.parametrize("sort", SORTS)
def test_every_sort_column_pages_through_the_table_in_order(server: LiveServer, table: dict[str, Any], sort: str) -> None:
    lut = table["lut"]
    for order in ("asc", "desc"):
        keys, answers = pages(server, table["device"], 64, sort=sort, order=order)
        assert keys == expected_order(lut, sort, order), (sort, order)
        assert {(a["entries"], a["matched"], a["sort"], a["order"]) for a in answers} == {(IR + CONV, IR + CONV, sort, order)}


def test_a_page_carries_the_entries_and_header_get_lut_serves(server: LiveServer, table: dict[str, Any]) -> None:
    lut = table["lut"]
    page = httpx.get(f"{server.url}/lut/{table['device']}/entries", params={"sort": "key", "limit": 2000}).json()
    assert {r["key"]: {k: v for k, v in r.items() if k not in ("key", "type")} for r in page["rows"]} == lut["entries"]
    assert page["rows"][0]["type"] == "conv" and page["overhead_ms"] == lut["overhead_ms"] == pytest.approx(0.3)
    assert page["runtime_version"] == lut["runtime_version"] == "1.17.0"
    assert page["types"] == {"conv": CONV, "ir": IR} == dict(Counter(k.split("_")[0] for k in lut["entries"]))
    assert lut["entries"][key(5)]["median_ms"] == pytest.approx(9.005)  # re-measured: the page shows the latest run's
    assert next(r for r in page["rows"] if r["key"] == key(5))["n"] == 99
    with server.client(None) as client:  # the same page through ProfilerClient
        typed = client.get_lut_page(table["device"], "ort", 1, sort="p90_ms", order="desc", type="ir", offset=10, limit=5)
    assert [r.key for r in typed.rows] == expected_order(lut, "p90_ms", "desc", only="ir")[10:15]
    assert (typed.entries, typed.matched, typed.types) == (IR + CONV, IR, {"conv": CONV, "ir": IR})


def test_the_type_and_key_filters_are_counted_and_applied_by_the_database(server: LiveServer, table: dict[str, Any]) -> None:
    device, lut = table["device"], table["lut"]
    keys, answers = pages(server, device, 20, type="conv", sort="median_ms", order="desc")
    assert keys == expected_order(lut, "median_ms", "desc", only="conv") and answers[0]["matched"] == CONV
    assert answers[0]["entries"] == IR + CONV  # the whole table is still counted
    keys, answers = pages(server, device, 100, key="o2", sort="key")
    assert keys == sorted(k for k in lut["entries"] if "o2" in k) and answers[0]["matched"] == len(keys) > 0
    keys, answers = pages(server, device, 100, key="@1x3x", type="ir")
    assert keys == [] and answers[0]["matched"] == 0
    # The key filter is text, not a LIKE pattern: "_" is every key's underscore, "%" is in none.
    assert pages(server, device, 2000, key="_")[1][0]["matched"] == IR + CONV
    assert pages(server, device, 2000, key="%")[1][0]["matched"] == 0


def test_bad_page_parameters_are_422s_naming_the_parameter(server: LiveServer, table: dict[str, Any]) -> None:
    url = f"{server.url}/lut/{table['device']}/entries"
    for params, field in (
        ({"sort": "bogus"}, "sort"),
        ({"order": "up"}, "order"),
        ({"limit": 2001}, "limit"),
        ({"limit": 0}, "limit"),
        ({"offset": -1}, "offset"),
        ({"key": "a\x00b"}, "key"),
        ({"threads": 0}, "threads"),
    ):
        r = httpx.get(url, params=params)
        assert r.status_code == 422 and r.json()["errors"][0]["field"] == field, (params, r.text[:300])
    assert httpx.get(f"{server.url}/lut/no-such-device/entries").status_code == 404
    assert httpx.get(url, params={"runtime": "tflite"}).status_code == 404


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with Browser() as b:
        yield b


def shown_keys(browser: Browser) -> list[str]:
    return json.loads(browser.eval("JSON.stringify([...document.querySelectorAll('#entries tbody tr')].map(r => r.dataset.key))"))


def wait_view(browser: Browser, view: str) -> None:
    """Until the page has drawn ``view`` ("sort order offset type key", as the table's data-view says)."""
    browser.wait_for(f"document.getElementById('entries').dataset.view === {json.dumps(view)}", timeout_s=20)


def test_the_page_shows_the_first_page_pages_sorts_and_filters(
    server: LiveServer, table: dict[str, Any], browser: Browser
) -> None:
    device, lut = table["device"], table["lut"]
    browser.open(f"{server.url}/ui/table.html?device={device}&runtime=ort&threads=1")
    assert browser.errors == [], browser.errors
    by_median = expected_order(lut, "median_ms", "asc")
    assert shown_keys(browser) == by_median[:100]
    assert browser.eval("document.getElementById('entries').dataset.entries") == str(IR + CONV)
    assert browser.eval("document.getElementById('shown').textContent") == "rows 1–100 of 250 entries"
    assert browser.eval("document.querySelectorAll('#heatmap rect').length") == IR + CONV  # 250 <= HEATMAP_MAX: all drawn
    browser.eval("document.getElementById('page-next').click()")
    wait_view(browser, "median_ms asc 100  ")
    assert shown_keys(browser) == by_median[100:200]
    browser.eval("document.getElementById('page-last').click()")
    wait_view(browser, "median_ms asc 200  ")
    assert shown_keys(browser) == by_median[200:] and browser.eval("document.getElementById('page-next').disabled")
    browser.eval("document.querySelector('#entries th[data-column=\"median_ms\"]').click()")  # the sorted column again: desc
    wait_view(browser, "median_ms desc 0  ")
    assert shown_keys(browser) == expected_order(lut, "median_ms", "desc")[:100]
    browser.eval("document.querySelector('#entries th[data-column=\"std_ms\"]').click()")
    wait_view(browser, "std_ms asc 0  ")
    assert shown_keys(browser) == expected_order(lut, "std_ms", "asc")[:100]
    browser.eval(
        "(() => { const s = document.getElementById('type-filter'); s.value = 'conv'; s.dispatchEvent(new Event('change')); })()"
    )
    wait_view(browser, "std_ms asc 0 conv ")
    assert shown_keys(browser) == expected_order(lut, "std_ms", "asc", only="conv")  # no std_ms: in key order
    assert browser.eval("document.getElementById('shown').textContent") == "rows 1–50 of 50 matching (250 entries)"
    browser.wait_for(f"document.querySelectorAll('#heatmap rect').length === {CONV}")
    # Only pages were fetched: never the whole table (GET /lut/{device}).
    fetched = browser.eval("JSON.stringify(performance.getEntriesByType('resource').map(e => e.name))")
    lut_paths = [u for u in json.loads(fetched) if "/lut/" in u]
    assert lut_paths and all(f"/lut/{device}/entries?" in u for u in lut_paths), lut_paths
    assert all("limit=100" in u or "limit=2000" in u for u in lut_paths), lut_paths
    assert browser.errors == [], browser.errors
