"""Models per operator key, built once on the host through the operator library and cached by key.

``ModelCache(root).item(key, runtime)`` gives an ``Item`` (model file + input shape); the
file is exported by ``search.export.export_op`` the first time and reused afterwards, by
every agent on this host (writes are atomic renames). The empty model behind
``__overhead__`` is an Identity on a 1x1x1x1 tensor: the fixed cost of one call. TorchScript
models are saved at the bytecode version asked for (``ModelCache(root, bytecode_version=7)``,
``device-agent run --bytecode-version``; default: what the installed torch writes), each version
in a folder of its own (``torchscript-bc7``). ExecuTorch programs (``.pte``, XNNPACK delegate) are
cached per ExecuTorch version (``pte-et1.5.1``): another release lowers and serialises them
differently, and its runtime may not read an older file.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import os
import threading
from collections.abc import Sequence
from pathlib import Path

from hwnas.opkey import OVERHEAD_KEY, OpKeyError, OpSpec

from device_agent import bytecode
from device_agent.errors import ModelBuildError
from device_agent.runtimes.base import Item, runtime_format

log = logging.getLogger(__name__)

OVERHEAD_SHAPE = (1, 1, 1, 1)
_CACHE_VERSION = "v1"  # bump when the export changes in a way that changes latency


def default_cache_dir() -> Path:
    env = os.environ.get("HWNAS_CACHE_DIR")
    if env:
        return Path(env) / "models"
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "hwnas" / "models"


def file_name(key: str, suffix: str) -> str:
    """A file name for a key, readable and safe in a device shell ('#' is not allowed in keys' blocks)."""
    return key.replace("#", "+") + suffix


_md5_cache: dict[tuple[str, int, int], str] = {}


def md5_of(path: Path) -> str:
    """MD5 of a file (cached by path, size and mtime): what ``md5sum`` on the device prints."""
    st = path.stat()
    sig = (str(path), st.st_size, st.st_mtime_ns)
    if sig not in _md5_cache:
        h = hashlib.md5()
        with open(path, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
        _md5_cache[sig] = h.hexdigest()
    return _md5_cache[sig]


class ModelCache:
    """Exported operator models on disk, one per (runtime format, key)."""

    def __init__(self, root: Path | None = None, bytecode_version: int | None = None) -> None:
        self.root = Path(root) if root else default_cache_dir()
        self.bytecode_version = bytecode.check_version(bytecode_version)  # None: as the installed torch writes
        self._lock = threading.Lock()

    def path(self, key: str, runtime: str) -> Path:
        fmt, suffix = runtime_format(runtime)
        if fmt == "torchscript" and self.bytecode_version is not None:
            fmt = f"{fmt}-bc{self.bytecode_version}"
        elif fmt == "pte":
            fmt = f"pte-et{_executorch_version()}"
        return self.root / _CACHE_VERSION / fmt / file_name(key, suffix)

    def torchscript_bytecode(self) -> int:
        """The bytecode version this cache's TorchScript models are saved at (recorded with every upload)."""
        return self.bytecode_version if self.bytecode_version is not None else bytecode.supported_versions()[1]

    def item(self, key: str, runtime: str) -> Item:
        """The model of ``key`` for ``runtime``, exported now if not cached."""
        if key == OVERHEAD_KEY:
            return self.overhead(runtime)
        try:
            spec = OpSpec.parse(key)
        except OpKeyError as exc:
            raise ModelBuildError(key, str(exc)) from None
        path = self.path(key, runtime)
        if not path.exists():
            self._build(path, lambda tmp: _export_op(spec, runtime_format(runtime)[0], tmp), key)
        return Item(key, path, spec.shape)

    def network(self, arch_id: str, document: dict, input_shape: Sequence[int], runtime: str) -> Item:
        """The whole network of an architecture document for ``runtime`` (exported now if not cached).

        Cached by architecture id: the id is a hash of what decides the network. Exported
        with the same exporter as the operators (``search.export``), seed-0 random weights.
        """
        path = self.path(f"net-{arch_id}", runtime)
        if not path.exists():
            self._build(
                path, lambda tmp: _export_network(document, input_shape, runtime_format(runtime)[0], tmp), f"net-{arch_id}"
            )
        return Item(f"net-{arch_id}", path, tuple(int(d) for d in input_shape), network=True)

    def overhead(self, runtime: str) -> Item:
        """The empty model (Identity on 1x1x1x1) measured as ``__overhead__``."""
        path = self.path("overhead@1x1x1x1", runtime)
        if not path.exists():
            self._build(path, lambda tmp: _export_identity(runtime_format(runtime)[0], tmp), OVERHEAD_KEY)
        return Item(OVERHEAD_KEY, path, OVERHEAD_SHAPE)

    def _build(self, path: Path, export, key: str) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.stem}.{os.getpid()}.{threading.get_ident()}{path.suffix}")
        try:
            with self._lock:
                export(tmp)
                if path.suffix == ".ptl" and self.bytecode_version is not None:
                    bytecode.backport(tmp, self.bytecode_version)
            os.replace(tmp, path)
        except ModelBuildError:
            raise
        except Exception as exc:  # noqa: BLE001 - any export failure is this key's failure
            first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise ModelBuildError(key, f"cannot build the model: {first}") from None
        finally:
            tmp.unlink(missing_ok=True)
        log.debug("built %s", path)


@functools.lru_cache(maxsize=1)  # asked once per model path: reading package metadata costs ~1 ms
def _executorch_version() -> str:
    """The installed ExecuTorch's version, from its package metadata: no import (it takes seconds), so a cached
    program is found without loading ExecuTorch. ``__version__`` carries the build's local tag (``1.5.1+cpu``)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("executorch")
    except PackageNotFoundError:
        from device_agent.runtimes.executorch_engine import version as engine_version

        return engine_version()  # the ConfigError that says how to install it


def _export_op(spec: OpSpec, fmt: str, path: Path) -> None:
    from search.export import export_op

    export_op(spec, fmt, path)


def _export_network(document: dict, input_shape: Sequence[int], fmt: str, path: Path) -> None:
    from search.arch import Architecture
    from search.export import export_arch

    arch = Architecture.from_dict(document, source="job network")
    space = arch.resolve_space()
    if tuple(input_shape) != (1, *space.input_shape):
        raise ValueError(f"input_shape {list(input_shape)} does not match the architecture's {[1, *space.input_shape]}")
    export_arch(arch, fmt, path)


def _export_identity(fmt: str, path: Path) -> None:
    import torch

    from search.export import export_module

    export_module(torch.nn.Identity(), torch.ones(OVERHEAD_SHAPE), fmt, path)
