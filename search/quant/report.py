"""Measured latency of exported models (ONNX Runtime on the host) and the fp32 / uniform / mixed table."""

from __future__ import annotations

import json
import statistics
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from search.quant.bits import Bits


def measure_latency(
    path: str | Path, input_shape: tuple[int, ...], threads: int = 1, warmup: int = 20, runs: int = 200
) -> dict[str, float]:
    """Batch-1 latency of an ONNX model in ONNX Runtime (all graph optimisations: QDQ → int8 kernels), in ms."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    x = np.random.default_rng(0).standard_normal(input_shape).astype(np.float32)
    for _ in range(warmup):
        sess.run(None, {name: x})
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        sess.run(None, {name: x})
        times.append((time.perf_counter() - t) * 1000)
    times.sort()
    return {
        "median_ms": statistics.median(times),
        "p10_ms": times[len(times) // 10],
        "p90_ms": times[(9 * len(times)) // 10],
        "threads": threads,
        "runs": runs,
    }


def int8_share(bits: dict[str, str]) -> tuple[int, int]:
    """(layers an int8 kernel runs, all layers) of a configuration."""
    parsed = [Bits.parse(b) for b in bits.values()]
    return sum(b.is_int8_runnable for b in parsed), len(parsed)


def bits_summary(bits: dict[str, str]) -> str:
    """``w2:12 w4:6 w8:2 | a8:18 a32:2`` — how many layers at each width."""
    parsed = [Bits.parse(b) for b in bits.values()]
    ws = sorted({b.w for b in parsed})
    as_ = sorted({b.a for b in parsed})
    w = " ".join(f"w{x}:{sum(b.w == x for b in parsed)}" for x in ws)
    a = " ".join(f"a{x}:{sum(b.a == x for b in parsed)}" for x in as_)
    return f"{w} | {a}"


@dataclass
class Row:
    """One line of the comparison table."""

    name: str
    accuracy: float
    size_kb: float
    bops_g: float
    latency_ms: float | None = None
    latency_kind: str = ""
    onnx_accuracy: float | None = None
    bits: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def row_from_report(path: str | Path, name: str | None = None, latency: dict[str, float] | None = None) -> Row:
    """A table row from a ``quant-train`` report (``<stem>.train.json``)."""
    doc = json.loads(Path(path).read_text())
    bits = doc["bits"]["bits"]
    n8, n = int8_share(bits)
    kind = "fp32" if n8 == 0 else ("int8" if n8 == n else f"int8 {n8}/{n} layers")
    return Row(
        name=name or Path(path).name.removesuffix(".train.json"),
        accuracy=doc["accuracy"],
        size_kb=doc["size_kb"],
        bops_g=doc["bops_g"],
        latency_ms=latency["median_ms"] if latency else None,
        latency_kind=kind,
        onnx_accuracy=doc.get("onnx_accuracy"),
        bits=bits_summary(bits),
    )


def format_table(rows: list[Row], reference: str | None = None) -> str:
    """A plain-text table; ratios against the row named ``reference`` (default: the first)."""
    if not rows:
        return "(no rows)"
    ref = next((r for r in rows if r.name == reference), rows[0])
    header = [
        "model",
        "top-1 %",
        "ORT top-1 %",
        "size KB",
        "×smaller",
        "GBOPs",
        "×fewer",
        "latency ms",
        "kernels",
        "bits (layers)",
    ]
    lines = []
    for r in rows:
        lines.append(
            [
                r.name,
                f"{100 * r.accuracy:.2f}",
                "-" if r.onnx_accuracy is None else f"{100 * r.onnx_accuracy:.2f}",
                f"{r.size_kb:.1f}",
                f"{ref.size_kb / r.size_kb:.1f}",
                f"{r.bops_g:.3f}",
                f"{ref.bops_g / r.bops_g:.1f}",
                "-" if r.latency_ms is None else f"{r.latency_ms:.3f}",
                r.latency_kind,
                r.bits,
            ]
        )
    widths = [max(len(h), *(len(line[i]) for line in lines)) for i, h in enumerate(header)]
    out = [" | ".join(h.ljust(w) for h, w in zip(header, widths)), "-+-".join("-" * w for w in widths)]
    out += [" | ".join(c.ljust(w) for c, w in zip(line, widths)) for line in lines]
    return "\n".join(out)
