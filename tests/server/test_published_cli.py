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
from tests.support import synthetic_tables as synthetic
from tests.support.reference_data import ofa_lut, ref


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cli_command() + list(args), capture_output=True, text=True, timeout=300)


def hwnas(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "search", *args], capture_output=True, text=True, timeout=300, cwd=ROOT)


def test_import_all_shipped_tables_needs_no_folder_then_again_unchanged(tmp_path: Path) -> None:
    url = sqlite_url(tmp_path)
    assert run("db", "upgrade", "--database-url", url).returncode == 0
    first = run("import", "--all", "--database-url", url)
    assert first.returncode == 0, first.stderr
    lines = first.stdout.splitlines()
    assert "note10-ofa tflite/1: created, 96 entries, 0 unmappable" in lines
    assert any(line.startswith("pixel3-hwnasbench hwnasbench/1: created, 112 entries, overhead 7.78897") for line in lines)
    assert len([line for line in lines if ": created," in line]) == 9  # 5 OFA resolutions, 4 HW-NAS-Bench
    assert "pixel1-proxylessnas" not in first.stdout  # not shipped (no licence text): imported from a copy of one's own
    second = run("import", "--all", "--database-url", url)
    assert second.returncode == 0 and second.stdout.count(": unchanged,") == 9 and ": created," not in second.stdout


def test_import_all_from_a_folder_imports_the_known_files_there(tmp_path: Path) -> None:
    url = sqlite_url(tmp_path)
    assert run("db", "upgrade", "--database-url", url).returncode == 0
    folder = tmp_path / "mine"
    (folder / "ofa_note10_lut").mkdir(parents=True)
    (folder / ofa_lut(192)).write_bytes(ref(ofa_lut(192)).read_bytes())
    done = run("import", "--all", str(folder), "--database-url", url)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["note10-ofa-192 tflite/1: created, 96 entries, 0 unmappable"]
    empty = run("import", "--all", str(tmp_path / "nothing"), "--database-url", url)
    assert empty.returncode == 1 and "none of the known files is there" in empty.stderr


def test_import_all_of_a_reference_folder_adds_the_tables_not_shipped(tmp_path: Path) -> None:
    # A folder in ../shared/reference-data's layout: the shipped files and a (synthetic) ProxylessNAS table.
    url = sqlite_url(tmp_path)
    assert run("db", "upgrade", "--database-url", url).returncode == 0
    done = run("import", "--all", str(synthetic.write_reference_folder(tmp_path / "reference-data")), "--database-url", url)
    assert done.returncode == 0, done.stderr
    assert "pixel1-proxylessnas tflite/1: created, 72 entries, 0 unmappable" in done.stdout.splitlines()
    assert done.stdout.count(": created,") == 10  # 1 ProxylessNAS, 5 OFA resolutions, 4 HW-NAS-Bench


def test_a_wrong_file_is_one_line_naming_it_and_imports_nothing(tmp_path: Path) -> None:
    url = sqlite_url(tmp_path)
    assert run("db", "upgrade", "--database-url", url).returncode == 0
    wrong = tmp_path / "mobile_trim.yaml"  # a ProxylessNAS-layout entry ({count, mean, var}) given as the OFA table
    wrong.write_text(
        "expanded_conv-input:56x56x24-output:28x28x40-expand:6-kernel:5-stride:2-idskip:0:\n"
        "  count: 142\n  mean: 2.5\n  var: 0.01\n"
    )
    done = run("import", str(wrong), "--preset", "note10-ofa", "--database-url", url)
    assert done.returncode == 1 and str(wrong) in done.stderr and "unexpected field(s) var" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and "Traceback" not in done.stderr
    listed = run("import", "--list")
    assert listed.returncode == 0 and "note10-ofa-160" in listed.stdout and "raspi4-hwnasbench" in listed.stdout
    where = {line.split()[0]: line.rsplit("; ", 1)[1] for line in listed.stdout.splitlines()}
    assert where["note10-ofa"] == "shipped)" and where["pixel1-proxylessnas"] == "not shipped: import your copy)"
    unknown = run("import", str(wrong), "--preset", "note10", "--database-url", url)
    assert unknown.returncode == 1 and "unknown preset 'note10'" in unknown.stderr
    assert "Examples: profiler-server import --all" in run("import", "--help").stdout


def test_hwnas_lut_import_and_export_through_the_server(server: LiveServer, tmp_path: Path) -> None:
    device = f"note10-{uuid.uuid4().hex[:6]}"
    table = ref(ofa_lut(192))
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
    assert (
        httpx.get(f"{server.url}/lut/{device}", timeout=30).json()["source"]["file"]
        == "han-cai/files:ofa/note10/192_lookup_table.yaml"
    )
