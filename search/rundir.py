"""The output folder of a search: where each file lives, and the one place that writes them.

Every write goes through ``RunDir``; under ``torch.distributed`` only rank 0 writes, so the
training loop never has to ask which process it is.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import torch


def is_main_process() -> bool:
    """True on rank 0 of a distributed job, and always when not distributed."""
    import torch.distributed as dist

    return not (dist.is_available() and dist.is_initialized()) or dist.get_rank() == 0


def _atomic_write_bytes(path: Path, write) -> None:
    # Write next to the target and rename: a crash mid-write never leaves a half file behind.
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            write(fh)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class RunDir:
    """Paths and writers of a search folder ``DIR``."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)
        self.main = is_main_process()

    # paths
    @property
    def config(self) -> Path:
        return self.root / "config.json"

    @property
    def checkpoint(self) -> Path:
        return self.root / "checkpoint.pt"

    @property
    def theta(self) -> Path:
        return self.root / "theta.json"

    @property
    def costs(self) -> Path:
        return self.root / "costs.json"

    @property
    def argmax(self) -> Path:
        return self.root / "argmax.json"

    @property
    def found(self) -> Path:
        """The network the search ships (at the target with the target loss; else the argmax)."""
        return self.root / "found.json"

    @property
    def result(self) -> Path:
        return self.root / "result.json"

    @property
    def samples(self) -> Path:
        return self.root / "samples"

    @property
    def plots(self) -> Path:
        return self.root / "plots"

    # writers (rank 0 only)
    def write_json(self, path: Path, obj: Any) -> None:
        """Write ``obj`` as indented JSON, atomically."""
        if not self.main:
            return
        data = (json.dumps(obj, indent=2) + "\n").encode()
        _atomic_write_bytes(path, lambda fh: fh.write(data))

    def save_checkpoint(self, state: dict[str, Any]) -> None:
        """Save the training state atomically (the previous checkpoint survives a crash mid-save)."""
        if not self.main:
            return
        _atomic_write_bytes(self.checkpoint, lambda fh: torch.save(state, fh))

    def load_checkpoint(self, map_location: str | torch.device = "cpu") -> dict[str, Any]:
        """The saved training state (read on every rank)."""
        return torch.load(self.checkpoint, map_location=map_location, weights_only=False)

    def mkdir(self, path: Path | None = None) -> None:
        if self.main:
            (path or self.root).mkdir(parents=True, exist_ok=True)

    def read_json(self, path: Path) -> Any:
        return json.loads(path.read_text())
