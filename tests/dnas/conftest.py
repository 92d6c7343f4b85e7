"""DNAS search tests: one thread (the machine is shared), a tiny search space, small Fashion-MNIST subsets."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

# 3 searchable layers × 3 candidates at 14×14 and 7×7: a whole search epoch on 2000 images takes ~1 s.
TINY_SPACE = """\
name: tiny-fmnist
input_shape: [1, 28, 28]
classes: 10
candidates: [ir_k3_e1, ir_k3_e3, skip]
stem: {op: conv_k3, channels: 8, stride: 2}
stages:
  - {channels: 8, repeats: 1, stride: 1}
  - {channels: 16, repeats: 2, stride: 2}
head: {op: conv_k1, channels: 32}
"""


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    torch.set_num_threads(1)
    torch.manual_seed(0)


@pytest.fixture
def tiny_space(tmp_path: Path) -> Path:
    """A user space file (the search takes any space document)."""
    path = tmp_path / "tiny.yaml"
    path.write_text(TINY_SPACE)
    return path
