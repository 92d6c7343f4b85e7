"""Latency lookup tables: pulled from the profiler server (ETag-cached on disk, usable offline) or read from a file.

A table file is the same JSON document ``GET /lut/<device>`` returns::

    {"device": "pixel7", "runtime": "onnxruntime", "threads": 1, "unit": "ms", "overhead_ms": 0.05,
     "entries": {"ir_k3_e6_g1_s2_o24@1x16x112x112": {"median_ms": 1.23, "n": 50, ...}, ...}}

(entries may also be plain numbers of milliseconds). An entry's value is its ``min_ms`` when the
document has one — the agent's burst-minimum estimator (median over shuffled rounds of each
burst's minimum), the estimator that predicts whole networks on drifting hosts
(``docs/validation.md``) — else its ``median_ms``. A ``calibration`` (``scale``, ``offset_ms``,
stored by ``hwnas validate --calibrate``) travels with the table and ``LatencyCost`` applies
it. Missing operators raise
``MissingEntriesError`` listing every one, and ``request_measurements`` + ``wait_for_job`` ask
the server's device agents to measure them.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from hwnas.errors import HwnasError
from hwnas.opkey import OVERHEAD_KEY, is_valid_key
from search.hooks import JobPoll

log = logging.getLogger(__name__)


class LutError(HwnasError, RuntimeError):
    """A latency table that cannot be had: unreadable file, server down with nothing cached, job timeout."""


class MissingEntriesError(HwnasError, LookupError):
    """Operators a prediction needs that the latency table lacks; ``keys`` lists all of them."""

    def __init__(self, keys: Iterable[str], table: str | None = None) -> None:
        self.keys = list(dict.fromkeys(keys))
        self.table = table
        where = f" of {table}" if table else ""
        super().__init__(f"{len(self.keys)} operator(s) missing from the latency table{where}: {', '.join(self.keys)}")


@dataclass(frozen=True)
class TableCalibration:
    """``measured ≈ scale · predicted + offset_ms`` for whole networks predicted from this table."""

    scale: float = 1.0
    offset_ms: float = 0.0
    networks: int = 0
    method: str = "linear"

    def apply(self, predicted_ms: float) -> float:
        return self.scale * predicted_ms + self.offset_ms

    def to_dict(self) -> dict[str, Any]:
        return {"scale": self.scale, "offset_ms": self.offset_ms, "networks": self.networks, "method": self.method}


def _calibration(doc: Any, where: str) -> TableCalibration | None:
    if doc is None:
        return None
    if not isinstance(doc, dict):
        raise LutError(f"{where}: calibration: expected an object with scale and offset_ms")
    scale, offset = doc.get("scale", 1.0), doc.get("offset_ms", 0.0)
    for name, v in (("scale", scale), ("offset_ms", offset)):
        if isinstance(v, bool) or not isinstance(v, (int, float)) or v != v:
            raise LutError(f"{where}: calibration.{name}: expected a number, got {v!r}")
    if scale <= 0:
        raise LutError(f"{where}: calibration.scale: must be positive, got {scale!r}")
    return TableCalibration(float(scale), float(offset), int(doc.get("networks") or 0), str(doc.get("method") or "linear"))


@dataclass
class LatencyTable:
    """Median latency in ms per operator key for one (device, runtime, threads), plus the per-model overhead."""

    device: str
    runtime: str
    threads: int
    entries: dict[str, float]
    overhead_ms: float | None = None
    runtime_version: str | None = None
    etag: str | None = None
    source: str | None = None  # server URL or file path
    stale: bool = False  # True when served from the cache because the server could not be reached
    fetched_at: str | None = None
    calibration: TableCalibration | None = None  # applied by LatencyCost (see hwnas validate --calibrate)
    imported_from: str | None = None  # an imported (published, read-only) table: who published it; no job can fill it

    @property
    def overhead(self) -> float:
        """The overhead to count once per network (0 when the table has none)."""
        return float(self.overhead_ms or 0.0)

    def missing(self, keys: Iterable[str]) -> list[str]:
        """The keys (deduplicated, in order) that have no entry."""
        return [k for k in dict.fromkeys(keys) if k not in self.entries]

    def describe(self) -> str:
        return f"device {self.device!r} (runtime {self.runtime}, threads {self.threads})"

    def to_dict(self) -> dict[str, Any]:
        """The table as a ``GET /lut`` document (entries carry only their median)."""
        doc = {
            "device": self.device,
            "runtime": self.runtime,
            "runtime_version": self.runtime_version,
            "threads": self.threads,
            "unit": "ms",
            "overhead_ms": self.overhead_ms,
            "entries": {k: {"median_ms": v} for k, v in self.entries.items()},
        }
        if self.calibration is not None:
            doc["calibration"] = self.calibration.to_dict()
        return doc

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_dict(), indent=1) + "\n", encoding="utf-8")
        return path

    @classmethod
    def from_document(cls, doc: Any, source: str | None = None, etag: str | None = None) -> "LatencyTable":
        """Read a ``GET /lut`` document (or a cache file wrapping one); ``LutError`` names the bad field."""
        where = source or "latency table"
        if isinstance(doc, dict) and isinstance(doc.get("lut"), dict):  # our cache file
            etag = etag or doc.get("etag")
            doc = doc["lut"]
        if not isinstance(doc, dict):
            raise LutError(f"{where}: expected a JSON object with 'entries'")
        for f in ("device", "runtime", "threads", "entries"):
            if f not in doc:
                raise LutError(f"{where}: missing field '{f}'")
        raw = doc["entries"]
        if not isinstance(raw, dict):
            raise LutError(f"{where}: entries: expected an object of key -> latency")
        if doc.get("unit", "ms") != "ms":
            raise LutError(f"{where}: unit: only 'ms' is supported, got {doc.get('unit')!r}")
        overhead = doc.get("overhead_ms")
        entries: dict[str, float] = {}
        for key, value in raw.items():
            ms = value.get("median_ms") if isinstance(value, dict) else value
            if isinstance(value, dict) and value.get("min_ms") is not None:
                ms = value["min_ms"]  # the burst-minimum estimator (see the module docstring)
            if isinstance(ms, bool) or not isinstance(ms, (int, float)) or ms < 0 or ms != ms:
                raise LutError(f"{where}: entries[{key!r}]: expected a non-negative number of ms, got {ms!r}")
            if key == OVERHEAD_KEY:
                overhead = overhead if overhead is not None else float(ms)
                continue
            if not is_valid_key(key):
                raise LutError(f"{where}: entries[{key!r}]: not a valid operator key")
            entries[key] = float(ms)
        if overhead is not None and (not isinstance(overhead, (int, float)) or overhead < 0):
            raise LutError(f"{where}: overhead_ms: expected a non-negative number, got {overhead!r}")
        threads = doc["threads"]
        if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
            raise LutError(f"{where}: threads: expected a positive integer, got {threads!r}")
        return cls(
            device=str(doc["device"]),
            runtime=str(doc["runtime"]),
            threads=threads,
            entries=entries,
            overhead_ms=float(overhead) if overhead is not None else None,
            runtime_version=doc.get("runtime_version"),
            etag=etag,
            source=source,
            calibration=_calibration(doc.get("calibration"), where),
            imported_from=_imported_from(doc.get("source")),
        )


def load_table(path: str | Path) -> LatencyTable:
    """Read a latency table JSON file (the ``GET /lut`` document, or a cache file of ``fetch_table``)."""
    path = Path(path)
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise LutError(f"latency table {path}: {exc.strerror or exc}") from None
    except json.JSONDecodeError as exc:
        raise LutError(f"latency table {path}: not valid JSON ({exc})") from None
    return LatencyTable.from_document(doc, source=str(path))


# ---- the on-disk cache ---------------------------------------------------------------------------
def default_cache_dir() -> Path:
    """``$HWNAS_CACHE_DIR``, else the user's cache directory (XDG, macOS Caches, Windows LOCALAPPDATA) + ``hwnas/lut``."""
    env = os.environ.get("HWNAS_CACHE_DIR")
    if env:
        return Path(env)
    if sys.platform == "win32":
        base = Path(os.environ.get("LOCALAPPDATA", Path.home() / "AppData" / "Local"))
    elif sys.platform == "darwin":
        base = Path.home() / "Library" / "Caches"
    else:
        base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "hwnas" / "lut"


def cache_path(cache_dir: str | Path, server_url: str, device: str, runtime: str | None, threads: int | None) -> Path:
    """Where the table of (server, device, runtime, threads) is cached."""
    server = hashlib.sha256(server_url.rstrip("/").encode()).hexdigest()[:8]
    safe = lambda s: re.sub(r"[^A-Za-z0-9._-]", "_", str(s))  # noqa: E731
    return Path(cache_dir) / f"{safe(device)}__{safe(runtime or 'any')}__{safe(threads or 'any')}__{server}.json"


def _read_cache(path: Path) -> LatencyTable | None:
    try:
        return LatencyTable.from_document(json.loads(path.read_text(encoding="utf-8")), source=str(path))
    except (OSError, ValueError, LutError):
        return None


def _write_cache(path: Path, server_url: str, lut_doc: dict[str, Any], etag: str | None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    doc = {"server": server_url, "etag": etag, "fetched_at": datetime.now(timezone.utc).isoformat(), "lut": lut_doc}
    tmp.write_text(json.dumps(doc) + "\n", encoding="utf-8")
    tmp.replace(path)  # atomic: a crash never leaves half a table behind


def fetch_table(
    server_url: str,
    device: str,
    runtime: str | None = None,
    threads: int | None = None,
    token: str | None = None,
    cache_dir: str | Path | None = None,
    client: Any = None,
    timeout: float = 30.0,
) -> LatencyTable:
    """``GET /lut/<device>`` with the cached ETag; 304 → the cached table; server down → the cached table (``stale``)."""
    from hwnas.client import ApiError, ProfilerClient, ServerUnreachable

    path = cache_path(cache_dir or default_cache_dir(), server_url, device, runtime, threads)
    cached = _read_cache(path) if path.exists() else None
    own = client is None
    client = client or ProfilerClient(server_url, token=token, timeout=timeout)
    try:
        fetched = client.get_lut(device, runtime=runtime, threads=threads, etag=cached.etag if cached else None)
    except (ServerUnreachable, ApiError) as exc:
        status = getattr(exc, "status", None)
        if isinstance(exc, ApiError) and (status is None or status < 500):
            raise  # 404 unknown device, 409 several tables: the user must act, a cache would hide it
        if cached is None:
            raise LutError(
                f"profiler server {server_url} unreachable and no cached table for {device!r} in {path.parent}"
            ) from None
        log.warning("profiler server %s unreachable (%s); using the cached table from %s", server_url, exc, path)
        cached.stale = True
        cached.source = server_url
        return cached
    finally:
        if own:
            client.close()
    if fetched.not_modified and cached is not None:
        cached.source = server_url
        return cached
    if fetched.lut is None:  # pragma: no cover - 304 without a cache cannot happen: no If-None-Match was sent
        raise LutError(f"profiler server {server_url} sent no table for {device!r}")
    lut_doc = fetched.lut.model_dump(mode="json")
    _write_cache(path, server_url, lut_doc, fetched.etag)
    return LatencyTable.from_document(lut_doc, source=server_url, etag=fetched.etag)


def _imported_from(source: Any) -> str | None:
    """'project (file)' for a read-only imported table's ``source``, else None."""
    if not isinstance(source, dict) or source.get("kind") != "imported" or not source.get("read_only", True):
        return None
    return str(source.get("project") or source.get("preset") or "a published table")


# ---- filling gaps: profiling jobs ------------------------------------------------------------------
def request_measurements(client: Any, device: str, runtime: str, threads: int, keys: Iterable[str]) -> Any:
    """``POST /jobs`` for the given keys (overhead included, so the table has one); returns ``JobCreated``."""
    from hwnas.schemas import JobCreate

    return client.create_job(JobCreate(device=device, runtime=runtime, threads=threads, keys=list(dict.fromkeys(keys))))


def wait_for_job(
    client: Any,
    job_id: int,
    timeout_s: float = 600.0,
    poll_s: float = 1.0,
    alive: Callable[[], None] | None = None,
    hint: str = "is a device agent running for this device? (device-agent run ...)",
    on_poll: JobPoll | None = None,
) -> Any:
    """Poll ``GET /jobs/<id>`` until done (or failed); ``LutError`` (ending with ``hint``) on timeout.

    ``on_poll(job)`` sees every polled state (the app's progress bar). ``alive`` is called between polls and after
    the job ends: it raises to stop waiting at once (the demo's check that its server and agent still run).
    """
    deadline = time.monotonic() + timeout_s
    job = client.get_job(job_id)
    while True:
        if on_poll is not None:
            on_poll(job)
        if job.state.value in ("done", "failed"):
            if alive is not None:
                alive()
            return job
        if alive is not None:
            alive()
        if time.monotonic() >= deadline:
            raise LutError(f"job {job_id} not finished after {timeout_s:.0f} s ({job.done}/{job.total} measured); {hint}")
        time.sleep(poll_s)
        job = client.get_job(job_id)
