"""The command lines of published tables: `profiler-server import` on a database, `hwnas lut import/export` against a server."""

from __future__ import annotations

import subprocess
import sys
import uuid
from pathlib import Path

import httpx
import yaml

from tests.support.databases import sqlite_url
from tests.support.live_server import ROOT, LiveServer, cli_command
from tests.support.reference_data import REFERENCE_DATA as REF, needs_reference_data

pytestmark = needs_reference_data


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cli_command() + list(args), capture_output=True, text=True, timeout=300)


def hwnas(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "search", *args], capture_output=True, text=True, timeout=300, cwd=ROOT)


def test_import_all_reference_tables_then_again_unchanged(tmp_path: Path) -> None:
    url = sqlite_url(tmp_path)
    assert run("db", "upgrade", "--database-url", url).returncode == 0
    first = run("import", "--all", str(REF), "--database-url", url)
    assert first.returncode == 0, first.stderr
    lines = first.stdout.splitlines()
    assert "pixel1-proxylessnas tflite/1: created, 72 entries, 0 unmappable" in lines
    assert "note10-ofa tflite/1: created, 96 entries, 0 unmappable" in lines
    assert any(line.startswith("pixel3-hwnasbench hwnasbench/1: created, 112 entries, overhead 7.78897") for line in lines)
    assert len([line for line in lines if ": created," in line]) == 10  # 1 ProxylessNAS, 5 OFA resolutions, 4 HW-NAS-Bench
    second = run("import", "--all", str(REF), "--database-url", url)
    assert second.returncode == 0 and second.stdout.count(": unchanged,") == 10 and ": created," not in second.stdout


def test_a_wrong_file_is_one_line_naming_it_and_imports_nothing(tmp_path: Path) -> None:
    url = sqlite_url(tmp_path)
    assert run("db", "upgrade", "--database-url", url).returncode == 0
    wrong = REF / "proxylessnas_pixel1_lut" / "mobile_trim.yaml"  # a ProxylessNAS file given as the OFA table
    done = run("import", str(wrong), "--preset", "note10-ofa", "--database-url", url)
    assert done.returncode == 1 and str(wrong) in done.stderr and "unexpected field(s) var" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and "Traceback" not in done.stderr
    listed = run("import", "--list")
    assert listed.returncode == 0 and "note10-ofa-160" in listed.stdout and "raspi4-hwnasbench" in listed.stdout
    unknown = run("import", str(wrong), "--preset", "note10", "--database-url", url)
    assert unknown.returncode == 1 and "unknown preset 'note10'" in unknown.stderr
    assert "Examples: profiler-server import --all" in run("import", "--help").stdout


def test_hwnas_lut_import_and_export_through_the_server(server: LiveServer, tmp_path: Path) -> None:
    device = f"note10-{uuid.uuid4().hex[:6]}"
    table = REF / "ofa_note10_lut" / "192_lookup_table.yaml"
    args = ["lut", "import", str(table), "--preset", "note10-ofa-192", "--device", device, "--server", server.url]
    refused = hwnas(*args, "--token", server.client_token)
    assert refused.returncode == 1 and "HTTP 403" in refused.stderr and str(table) in refused.stderr
    done = hwnas(*args, "--token", server.admin_token)
    assert done.returncode == 0, done.stderr
    assert f"{device} tflite/1: created, 96 entries, 0 unmappable" in done.stdout
    out = tmp_path / "note10_192.yaml"
    exported = hwnas("lut", "export", "--server", server.url, "--device", device, "--format", "ofa-yaml", "-o", str(out))
    assert exported.returncode == 0, exported.stderr
    assert yaml.safe_load(out.read_text()) == yaml.safe_load(table.read_text())
    assert httpx.get(f"{server.url}/lut/{device}", timeout=30).json()["source"]["file"] == "han-cai/files:ofa/note10/192_lookup_table.yaml"
