"""TorchScript lite-interpreter bytecode versions: what this torch writes, and saving models older.

A phone's ``speed_benchmark_torch`` reads only the bytecode versions of the PyTorch it was built
from; a newer model is refused at load (``Lite Interpreter version number does not match. The model
version must be between A and B but the model version is C``). torch writes its own newest version
(8 for torch 2.x) and ``torch.jit.mobile._backport_for_mobile`` rewrites a saved model down to older
ones (to 4 in torch 2.13); ``torch.jit.mobile._get_model_bytecode_version`` reads a file's back.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path

from device_agent.errors import ConfigError


@functools.lru_cache(maxsize=1)
def supported_versions() -> tuple[int, int]:
    """(oldest, newest) bytecode version this torch can save a model at: newest = what it writes."""
    import torch

    module = torch.jit.trace(torch.nn.Identity(), torch.ones(1))
    buffer = module._save_to_buffer_for_lite_interpreter()
    newest = int(torch._C._get_model_bytecode_version_from_buffer(buffer))
    oldest = newest
    # Found by trying, not hard-coded: the backport's reach changes with the torch release.
    while oldest > 0 and torch._C._backport_for_mobile_from_buffer_to_buffer(buffer, oldest - 1):
        oldest -= 1
    return oldest, newest


def check_version(version: int | None) -> int | None:
    """``version`` when this torch can save models at it (None: as torch writes them), else a ``ConfigError``."""
    if version is None:
        return None
    oldest, newest = supported_versions()
    if not oldest <= version <= newest:
        import torch

        raise ConfigError(
            f"--bytecode-version {version}: torch {torch.__version__} saves TorchScript lite models at "
            f"bytecode versions {oldest} to {newest} only"
        )
    return version


def saved_version(path: Path) -> int:
    """The bytecode version of a saved ``.ptl`` model."""
    from torch.jit.mobile import _get_model_bytecode_version

    return int(_get_model_bytecode_version(str(path)))


def backport(path: Path, version: int) -> None:
    """Rewrite the ``.ptl`` model at ``path`` in place at bytecode ``version`` (no-op when it is already)."""
    from torch.jit.mobile import _backport_for_mobile

    if saved_version(path) == version:
        return
    older = path.with_name(f".{path.name}.bc{version}")
    try:
        if not _backport_for_mobile(str(path), str(older), version):
            raise ValueError(f"torch could not backport the model to bytecode version {version}")
        os.replace(older, path)
    finally:
        older.unlink(missing_ok=True)
