"""Fixtures of the torch test folders (dnas, distributed, quant, search), imported by their conftest.py.

Pytest picks up a fixture imported into a conftest as if it were defined there (autouse included).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

# 3 searchable layers × 3 candidates at 14×14 and 7×7: a search epoch on 2,000 images takes about a second.
TINY_SPACE = """\
name: {name}
input_shape: [1, 28, 28]
classes: 10
candidates: [ir_k3_e1, ir_k3_e3, skip]
stem: {{op: conv_k3, channels: 8, stride: 2}}
stages:
  - {{channels: 8, repeats: 1, stride: 1}}
  - {{channels: 16, repeats: 2, stride: 2}}
head: {{op: conv_k1, channels: 32}}
"""


def write_tiny_space(folder: Path, name: str = "tiny") -> Path:
    """The tiny space as a user space file (the search takes any space document) in ``folder``."""
    path = folder / "tiny.yaml"
    path.write_text(TINY_SPACE.format(name=name))
    return path


@pytest.fixture(autouse=True)
def one_thread_seeded() -> None:
    """One torch thread (the machine is shared) and a fixed seed."""
    torch.set_num_threads(1)
    torch.manual_seed(0)


@pytest.fixture(scope="module")
def tiny_space(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny space file, written once per test module."""
    return write_tiny_space(tmp_path_factory.mktemp("space"))
