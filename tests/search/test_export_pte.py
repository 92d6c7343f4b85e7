"""``hwnas export --format pte``: a found network (with its trained weights) as an ExecuTorch program with the
XNNPACK delegate, run in ExecuTorch's runtime and compared with eager PyTorch. Skips, with the install line,
only where the optional package is absent; the refusal without it is tested everywhere."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from search.arch import Architecture, build
from search.app.cli import app

HAVE_EXECUTORCH = importlib.util.find_spec("executorch") is not None
needs_executorch = pytest.mark.skipif(
    not HAVE_EXECUTORCH, reason="ExecuTorch is not installed: pip install 'hwnas[executorch]' (executorch==1.5.1)"
)
ROOT = Path(__file__).resolve().parents[2]


def _found(tmp_path: Path) -> tuple[Path, Path, torch.nn.Module]:
    """A found network of the Fashion-MNIST space as a search writes it: its document and trained weights
    (BN statistics moved off their defaults, so weights that were not loaded would show)."""
    arch = Architecture(
        space="fbnet-fmnist",
        name="found",
        choices=["ir_k3_e1_g2", "skip", "ir_k5_e6", "maxpool_k3", "ir_k3_e3", "avgpool_k3", "ir_k5_e1_g2", "skip", "ir_k3_e6"],
    )
    net = build(arch)
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 1.5)
    torch.save(net.state_dict(), tmp_path / "found.pt")
    return arch.save(tmp_path / "found.json"), tmp_path / "found.pt", net.eval()


@needs_executorch
def test_cli_exports_a_found_network_to_pte_that_matches_eager(tmp_path: Path) -> None:
    from search.export import pte_delegation, run_pte

    doc, weights, net = _found(tmp_path)
    out = tmp_path / "found.pte"
    r = CliRunner().invoke(app, ["export", str(doc), "--weights", str(weights), "--format", "pte", "-o", str(out)])
    assert r.exit_code == 0, r.output
    assert "checked: ExecuTorch matches PyTorch" in r.output
    assert "delegated to XNNPACK: all" in r.output
    assert pte_delegation(out)["portable_ops"] == []
    # Independently of the CLI's own check: another input, through ExecuTorch's runtime, against the eager net.
    x = torch.randn(1, 1, 28, 28, generator=torch.Generator().manual_seed(7))
    with torch.no_grad():
        want = net(x)
    got = run_pte(out, x)
    assert got.shape == want.shape == (1, 10)
    assert float((got - want).abs().max()) < 1e-4
    # The weights are in the program: the untrained network gives something else.
    with torch.no_grad():
        untrained = build(Architecture.load(doc)).eval()(x)
    assert float((got - untrained).abs().max()) > 1e-3


@needs_executorch
def test_an_operator_key_exports_to_pte(tmp_path: Path) -> None:
    out = tmp_path / "op.pte"
    r = CliRunner().invoke(app, ["export", "ir_k3_e6_g1_s2_o24@1x16x28x28", "-f", "pte", "-o", str(out)])
    assert r.exit_code == 0, r.output
    assert "checked: ExecuTorch matches PyTorch" in r.output and out.stat().st_size > 1000


def test_without_executorch_pte_is_refused_with_the_install_line(tmp_path: Path) -> None:
    code = (
        "import sys\nsys.modules['executorch'] = None\n"  # as on a machine without the extra
        "from search.app.cli import main\n"
        f"sys.argv = ['hwnas', 'export', 'ir_k3_e6_g1_s2_o24@1x16x28x28', '-f', 'pte', '-o', {str(tmp_path / 'op.pte')!r}]\n"
        "main()\n"
    )
    r = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=180,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert r.returncode == 1, r.stdout + r.stderr
    assert "pip install 'hwnas[executorch]'" in r.stdout + r.stderr
    assert not (tmp_path / "op.pte").exists()
