"""Quantization tests: one thread (the machine is shared), a fixed seed, tiny networks and subsets."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    torch.set_num_threads(1)
    torch.manual_seed(0)
