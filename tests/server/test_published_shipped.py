"""The published tables shipped in profiler_server/published: each beside its licence and provenance, installed as
package data, and what the tests read first (issue 27)."""

from __future__ import annotations

import hashlib
import re
import tomllib
from pathlib import Path

from hwnas.published_presets import PRESETS
from profiler_server.published import FOLDER, SHIPPED, shipped
from tests.support import reference_data
from tests.support.live_server import ROOT

# The licence texts, verbatim from upstream (read in the repositories' LICENSE at the commits PROVENANCE.md names).
LICENCE_SHA256 = {
    "LICENSES/once-for-all.txt": "e73005d6dd38a89599e4f7b611af8a46c1061670f8393a59cf862cfce3987334",
    "LICENSES/HW-NAS-Bench.txt": "58548003e9b475f8fb17ec6ac769906a2bd7905bc33faa793684ef14d195f46f",
}


def data_files() -> set[str]:
    """The files in the folder that are data (not its code, provenance or licences)."""
    skip = {"__init__.py", "PROVENANCE.md"}
    return {
        p.relative_to(FOLDER).as_posix()
        for p in FOLDER.rglob("*")
        if p.is_file() and p.name not in skip and "__pycache__" not in p.parts and p.parts[len(FOLDER.parts)] != "LICENSES"
    }


def test_every_shipped_file_is_listed_with_a_licence_that_carries_its_copyright_notice() -> None:
    assert data_files() == set(SHIPPED)
    for licence in set(SHIPPED.values()):
        text = (FOLDER / licence).read_text()
        assert text.startswith("MIT License\n") and re.search(r"^Copyright \(c\) \d{4} \S", text, re.M), licence
        assert "The above copyright notice and this permission notice shall be included" in text


def test_the_licence_texts_are_the_upstream_ones_unchanged() -> None:
    assert {f: hashlib.sha256((FOLDER / f).read_bytes()).hexdigest() for f in LICENCE_SHA256} == LICENCE_SHA256
    assert {p.relative_to(FOLDER).as_posix() for p in (FOLDER / "LICENSES").iterdir()} == set(LICENCE_SHA256)


def test_the_provenance_names_every_shipped_file_its_licence_and_what_is_not_shipped() -> None:
    text = (FOLDER / "PROVENANCE.md").read_text()
    shipped_part, not_shipped = text.split("## Not shipped", 1)
    for path in SHIPPED:
        name = Path(path).name
        resolution = re.fullmatch(r"(\d+)_lookup_table\.yaml", name)
        assert (name in shipped_part) or (
            resolution and re.search(r"`\{[\d,]*\b" + resolution[1] + r"\b[\d,]*\}_lookup_table\.yaml`", shipped_part)
        ), path
    for licence in set(SHIPPED.values()):
        assert f"`{licence}`" in shipped_part
    for preset in PRESETS.values():  # a preset is either shipped, or listed with its upstream location
        if shipped(preset.path) is None:
            assert f"`{preset.path}`" in not_shipped, preset.device
        assert f"`{preset.path}`" not in not_shipped or shipped(preset.path) is None


def test_a_shipped_presets_licence_is_its_projects() -> None:
    found = [p for p in PRESETS.values() if shipped(p.path)]
    assert {p.device for p in found} == {
        "note10-ofa",
        "note10-ofa-208",
        "note10-ofa-192",
        "note10-ofa-176",
        "note10-ofa-160",
        "pixel3-hwnasbench",
        "raspi4-hwnasbench",
        "eyeriss-hwnasbench",
        "fpga-hwnasbench",
    }
    for p in found:
        project = Path(SHIPPED[p.path]).stem
        assert p.source.project.lower().endswith("/" + project.lower()), (p.device, project)


def test_package_data_installs_every_shipped_file() -> None:
    """The package-data globs (which setuptools applies to editable and wheel installs alike) cover the whole folder."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    patterns = config["tool"]["setuptools"]["package-data"]["profiler_server.published"]
    covered = {p.relative_to(FOLDER).as_posix() for pattern in patterns for p in FOLDER.glob(pattern) if p.is_file()}
    assert covered >= set(SHIPPED) | set(SHIPPED.values()) | {"PROVENANCE.md"}


def test_the_shipped_files_are_about_the_size_the_issue_allows() -> None:
    size = sum((FOLDER / f).stat().st_size for f in SHIPPED)
    assert 100_000 < size <= 1_800_000


def test_the_tests_read_the_shipped_copy_first(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr(reference_data, "REFERENCE_DATA", Path("/nonexistent"))
    assert reference_data.find("ofa_note10_lut/224_lookup_table.yaml") == FOLDER / "ofa_note10_lut" / "224_lookup_table.yaml"
    assert reference_data.find(reference_data.PROXYLESS_LUT) is None  # not shipped, and ../shared hidden
