"""Published latency-table files: read OFA / ProxylessNAS YAML, HW-NAS-Bench JSON and our fitted tables, write the YAML layouts.

Pure functions on text (no database): ``read_published`` turns a file into ``PublishedTable``
(entries under our operator keys, the published statistics kept as published, and the keys that
could not be mapped with their reason); ``write_published`` renders rows in a YAML layout.
Key mapping is ``hwnas.published``'s.
"""

from __future__ import annotations

import json
import math
import re
import reprlib
from dataclasses import dataclass, field
from typing import Any

import yaml

from pydantic import ValidationError

from hwnas.opkey import OVERHEAD_KEY, OpSpec, is_valid_key
from hwnas.published import Grammar, hwnasbench_key, map_keys, to_published
from hwnas.schemas import TableFit

FORMAT_GRAMMAR: dict[str, Grammar] = {"ofa-yaml": "ofa", "proxyless-yaml": "proxyless", "hwnasbench-json": "hwnasbench"}
# The spread statistic each YAML layout publishes.
SPREAD = {"ofa-yaml": "std", "proxyless-yaml": "var"}

# HW-NAS-Bench's FBNet layout at CIFAR-100 resolution (hw_nas_bench_api.py @ 393bb8a0, as in
# ../shared/reference-data/hwnasbench_fbnet_space_spec.json; tests check the two agree):
# (output channels, layers, stride) per stage after a 3x3 stride-1 stem to 16 channels.
HWNB_CIFAR100_STAGES = ((16, 1, 1), (24, 4, 1), (32, 4, 2), (64, 4, 2), (112, 4, 1), (184, 4, 2), (352, 1, 1))
HWNB_OPS: dict[str, tuple[int, int, int] | None] = {  # name -> (kernel, expansion, groups); None: skip
    "k3_e1": (3, 1, 1),
    "k3_e1_g2": (3, 1, 2),
    "k3_e3": (3, 3, 1),
    "k3_e6": (3, 6, 1),
    "k5_e1": (5, 1, 1),
    "k5_e1_g2": (5, 1, 2),
    "k5_e3": (5, 3, 1),
    "k5_e6": (5, 6, 1),
    "skip": None,
}
HWNB_INPUT, HWNB_STEM, HWNB_HEAD, HWNB_CLASSES = 32, 16, 1504, 100
FIT_GAUGE = (
    "fitted from whole-network timings (hwnas lut fit, non-negative least squares): an entry is its key's fitted share "
    "of a network's latency plus overhead_ms, so overhead + sum(entry - overhead) predicts a network; keys present "
    "in every timed network (stem, head) cannot be told from the constant and are folded into overhead_ms."
)
HWNB_GAUGE = (
    "HW-NAS-Bench delta gauge: the reconstructed table fixes only differences to each layer's k3_e1 block; "
    "overhead_ms is the published all-k3_e1 network total (stem, head, pool and classifier included) and every "
    "entry is that total plus the block's published delta (0 for k3_e1 blocks and the fixed stem/head/pool/"
    "classifier keys), so overhead + sum(entry - overhead) is HW-NAS-Bench's network latency exactly; a single "
    "entry is not a per-block latency."
)


class PublishedFileError(ValueError):
    """A file that is not what its format says; the message names the place in the file."""


# A published table is a flat mapping of entries (YAML: depth 2; HW-NAS-Bench JSON: 4). The limits stop what only a
# hostile file has: aliases (a 393-byte alias bomb expands to gigabytes) and nesting that exhausts the recursion.
MAX_FILE_DEPTH = 8
# Integers the databases hold identically: ``count`` goes to an INTEGER column (32-bit on PostgreSQL; SQLite would
# store 2^40 where PostgreSQL refuses it).
MAX_COUNT = 2**31 - 1
_SHOW = reprlib.Repr()
_SHOW.maxstring = _SHOW.maxother = _SHOW.maxlong = 40
_SHOW.maxlevel, _SHOW.maxdict, _SHOW.maxlist = 1, 3, 3


def show(value: Any) -> str:
    """A short repr for an error message: a file's values are the caller's, and may be huge."""
    return _SHOW.repr(value)


class _LimitedLoader(yaml.SafeLoader):
    """``yaml.safe_load`` that refuses aliases and nesting deeper than MAX_FILE_DEPTH, while composing (before any
    expansion or recursion can cost memory or stack)."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0

    def compose_node(self, parent: Any, index: Any) -> Any:  # PyYAML's hook
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise PublishedFileError(
                f"line {event.start_mark.line + 1}: YAML aliases (*{show(event.anchor)[1:-1]}) are not allowed in a latency table"
            )
        if self._depth >= MAX_FILE_DEPTH:
            mark = self.peek_event().start_mark
            raise PublishedFileError(f"line {mark.line + 1}: nested deeper than {MAX_FILE_DEPTH} levels")
        self._depth += 1
        try:
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


def load_yaml(text: str) -> Any:
    """Parse ``text`` as YAML within the limits above; every failure is a PublishedFileError with a short message."""
    loader: _LimitedLoader | None = None
    try:
        loader = _LimitedLoader(text)  # its reader already refuses non-printable characters (ReaderError)
        return loader.get_single_data()
    except yaml.YAMLError as exc:
        raise PublishedFileError(f"not YAML: {str(exc).splitlines()[0][:200]}") from None
    except (ValueError, RecursionError, OverflowError) as exc:  # e.g. an integer of more than 4,300 digits
        if isinstance(exc, PublishedFileError):
            raise
        raise PublishedFileError(f"not a readable YAML value: {str(exc)[:200]}") from None
    finally:
        if loader is not None:
            loader.dispose()


def load_json(text: str) -> Any:
    """``json.loads`` whose failures (nesting past the recursion limit, 4,300-digit integers) are PublishedFileErrors."""
    try:
        doc = json.loads(text)
    except RecursionError:
        raise PublishedFileError(f"not JSON: nested deeper than {MAX_FILE_DEPTH} levels") from None
    except ValueError as exc:
        raise PublishedFileError(f"not JSON: {str(exc)[:200]}") from None
    depth, level = 0, [doc]
    while level:  # breadth-first: no recursion, whatever the depth
        depth += 1
        if depth > MAX_FILE_DEPTH:
            raise PublishedFileError(f"not a latency table: JSON nested deeper than {MAX_FILE_DEPTH} levels")
        level = [
            v for item in level if isinstance(item, (dict, list)) for v in (item.values() if isinstance(item, dict) else item)
        ]
    return doc


@dataclass(frozen=True)
class PublishedEntry:
    """One entry under our key: the latency it contributes, its spread and count, and the published record."""

    key: str
    latency_ms: float
    std_ms: float | None
    count: int | None
    published: dict[str, Any]


@dataclass
class PublishedTable:
    """A published file read into our keys."""

    format: str
    entries: dict[str, PublishedEntry] = field(default_factory=dict)
    unmappable: dict[str, str] = field(default_factory=dict)
    overhead_ms: float | None = None
    gauge: str | None = None
    fit: dict[str, Any] | None = None  # hwnas-fit: the fit's quality (schemas.TableFit)


def _float(where: str, value: Any, what: str) -> float:
    """``value`` as a finite float; an integer too large for one (a 400-digit mean) is the file's error, not ours."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise PublishedFileError(f"{where}: {what} must be a finite number, got {show(value)}")
    try:
        f = float(value)
    except OverflowError:
        raise PublishedFileError(f"{where}: {what} is too large for a number ({show(value)})") from None
    if not math.isfinite(f):
        raise PublishedFileError(f"{where}: {what} must be a finite number, got {show(value)}")
    return f


def _number(where: str, value: Any, what: str, optional: bool = False) -> float | None:
    if value is None and optional:
        return None
    f = _float(where, value, what)
    if f < 0:
        raise PublishedFileError(f"{where}: {what} must be a finite non-negative number, got {show(value)}")
    return f


def _read_yaml(fmt: str, text: str) -> PublishedTable:
    doc = load_yaml(text)
    if not isinstance(doc, dict) or not doc:
        raise PublishedFileError("expected a YAML mapping of block key -> {count, mean, " + SPREAD[fmt] + "}")
    spread = SPREAD[fmt]
    stats: dict[str, tuple[float, float | None, int | None, dict[str, Any]]] = {}
    for key, value in doc.items():
        where = f"entry {show(key)}"
        if not isinstance(key, str):
            raise PublishedFileError(f"{where}: block keys are strings")
        if not isinstance(value, dict) or "mean" not in value:
            raise PublishedFileError(f"{where}: expected a mapping with 'mean' (and 'count', '{spread}')")
        extra = set(value) - {"count", "mean", spread}
        if extra:
            raise PublishedFileError(
                f"{where}: unexpected field(s) {', '.join(sorted(map(str, extra)))} for {fmt} (fields: count, mean, {spread})"
            )
        mean = _number(where, value["mean"], "mean")
        s = _number(where, value.get(spread), spread, optional=True)
        count = value.get("count")
        if count is not None and (isinstance(count, bool) or not isinstance(count, int) or not 0 <= count <= MAX_COUNT):
            raise PublishedFileError(f"{where}: count must be an integer from 0 to {MAX_COUNT}, got {show(count)}")
        std = s if spread == "std" or s is None else math.sqrt(s)
        stats[key] = (mean, std, count, {"published": key, **{k: value[k] for k in ("count", "mean", spread) if k in value}})  # type: ignore[assignment]
    mapping = map_keys(FORMAT_GRAMMAR[fmt], list(stats))
    table = PublishedTable(format=fmt, unmappable=dict(mapping.unmappable))
    for published, spec in mapping.mapped.items():
        mean, std, count, record = stats[published]
        table.entries[spec.key] = PublishedEntry(spec.key, mean, std, count, record)
    return table


def hwnasbench_layers() -> list[tuple[int, int, int, int]]:
    """(input size, input channels, output channels, stride) of HW-NAS-Bench's 22 FBNet layers at CIFAR-100."""
    out, h, cin = [], HWNB_INPUT, HWNB_STEM
    for cout, n, stride in HWNB_CIFAR100_STAGES:
        for i in range(n):
            s = stride if i == 0 else 1
            out.append((h, cin, cout, s))
            h, cin = math.ceil(h / s), cout
    return out


def hwnasbench_layer_keys() -> list[dict[str, str]]:
    """Per layer of hwnasbench_layers(): candidate name (HWNB_OPS) -> HW-NAS-Bench key."""
    return [{op: hwnasbench_key(h, cin, cout, s, d) for op, d in HWNB_OPS.items()} for h, cin, cout, s in hwnasbench_layers()]


def _read_hwnasbench(text: str, column: str | None) -> PublishedTable:
    doc = load_json(text)
    devices = doc.get("devices") if isinstance(doc, dict) else None
    if not isinstance(devices, dict):
        raise PublishedFileError("expected a JSON object with 'devices' (the reconstructed HW-NAS-Bench table)")
    if doc.get("dataset") != "cifar100":
        raise PublishedFileError(f"dataset {show(doc.get('dataset'))}: only the cifar100 layout is known")
    if column not in devices:
        raise PublishedFileError(f"column {show(column)}: choose one of {show(sorted(devices))}")
    dev = devices[column]
    where = f"devices.{column}"
    if not isinstance(dev, dict) or dev.get("unit", "ms") != "ms":
        raise PublishedFileError(f"{where}: expected an object in ms")
    total = _number(where, dev.get("all_op0_network_total"), "all_op0_network_total")
    assert total is not None
    deltas = dev.get("delta_vs_op0")
    layers = hwnasbench_layer_keys()
    if not isinstance(deltas, dict) or sorted(deltas) != sorted(f"L{i}" for i in range(len(layers))):
        raise PublishedFileError(f"{where}.delta_vs_op0: expected layers L0..L{len(layers) - 1}")
    by_key: dict[str, list[tuple[str, str, float]]] = {}
    for i, keys in enumerate(layers):
        row = deltas[f"L{i}"]
        if not isinstance(row, dict) or set(row) != set(HWNB_OPS):
            raise PublishedFileError(f"{where}.delta_vs_op0.L{i}: expected the 9 ops {', '.join(HWNB_OPS)}")
        for op in HWNB_OPS:
            d = _float(f"{where}.delta_vs_op0.L{i}.{op}", row[op], "the delta")
            by_key.setdefault(keys[op], []).append((f"L{i}", op, d))
    h_out = math.ceil(HWNB_INPUT / math.prod(s for _, n, s in HWNB_CIFAR100_STAGES))
    fixed = [
        f"ConvNorm_H{HWNB_INPUT}_W{HWNB_INPUT}_Cin3_Cout{HWNB_STEM}_kernel3_stride1_group1",
        f"ConvNorm_H{h_out}_W{h_out}_Cin{HWNB_CIFAR100_STAGES[-1][0]}_Cout{HWNB_HEAD}_kernel1_stride1_group1",
        f"AvgP_H{h_out}_W{h_out}_Cin{HWNB_HEAD}_Cout{HWNB_HEAD}_kernel{h_out}_stride1",
        f"FC_Cin{HWNB_HEAD}_Cout{HWNB_CLASSES}",
    ]
    mapping = map_keys("hwnasbench", list(by_key) + fixed)
    table = PublishedTable(format="hwnasbench-json", unmappable=dict(mapping.unmappable), overhead_ms=total, gauge=HWNB_GAUGE)
    for published, spec in mapping.mapped.items():
        uses = by_key.get(published, [])
        values = {d for _, _, d in uses}
        if len(values) > 1:  # layers of one shape must agree, or the key has no single value
            table.unmappable[published] = f"layers {', '.join(l for l, _, _ in uses)} give different deltas {sorted(values)}"
            continue
        delta = values.pop() if values else 0.0
        if total + delta < 0:
            table.unmappable[published] = f"total {total} + delta {delta} is negative"
            continue
        record: dict[str, Any] = {
            "published": published,
            "delta_vs_op0": delta,
            "layers": [f"{l}:{op}" for l, op, _ in uses] or ["fixed (in all_op0_network_total)"],
        }
        table.entries[spec.key] = PublishedEntry(spec.key, total + delta, None, None, record)
    return table


def _read_fit(text: str) -> PublishedTable:
    """Our own fitted table (``hwnas lut fit``): a GET /lut-like document with a ``fit`` object; every key must be ours."""
    doc = load_json(text)
    if not isinstance(doc, dict) or not isinstance(doc.get("entries"), dict) or not doc["entries"]:
        raise PublishedFileError(
            "expected a JSON object with 'entries' (operator key -> {median_ms}) and 'fit', as hwnas lut fit writes"
        )
    if doc.get("unit", "ms") != "ms":
        raise PublishedFileError(f"unit: only 'ms', got {show(doc.get('unit'))}")
    try:
        fit = TableFit.model_validate(doc.get("fit"))
    except ValidationError as exc:
        places = (".".join(["fit", *(str(p) for p in e["loc"])]) + f": {e['msg']}" for e in exc.errors())
        raise PublishedFileError("; ".join(places)) from None
    overhead = _number("overhead_ms", doc.get("overhead_ms"), "overhead_ms", optional=True)
    table = PublishedTable(format="hwnas-fit", overhead_ms=overhead, gauge=FIT_GAUGE, fit=fit.model_dump(mode="json"))
    for key, value in doc["entries"].items():
        where = f"entries[{show(key)}]"
        if key == OVERHEAD_KEY or not is_valid_key(key):  # ours: a bad key is a broken file, not an unmappable entry
            raise PublishedFileError(f"{where}: not an operator key")
        ms = _number(where, value.get("median_ms") if isinstance(value, dict) else None, "median_ms")
        assert ms is not None
        table.entries[key] = PublishedEntry(key, ms, None, None, {"fitted_ms": ms})
    return table


def read_published(fmt: str, text: str, column: str | None = None) -> PublishedTable:
    """Read a published table file of format ``fmt``; ``PublishedFileError`` names what is wrong."""
    if fmt in SPREAD:
        return _read_yaml(fmt, text)
    if fmt == "hwnasbench-json":
        return _read_hwnasbench(text, column)
    if fmt == "hwnas-fit":
        return _read_fit(text)
    raise PublishedFileError(f"unknown format {show(fmt)}; one of {', '.join([*FORMAT_GRAMMAR, 'hwnas-fit'])}")


@dataclass(frozen=True)
class ExportRow:
    """One entry of a table to export: our key, the latency to write as ``mean``, spread and count."""

    key: str
    latency_ms: float
    std_ms: float | None
    count: int | None
    var: float | None = None  # the published variance, when the table was imported with one


# Characters that end a line for YAML or for Python's splitlines (\n \r \v \f \x1c-\x1e NEL LS PS), and the other
# control characters: a header line holds caller-supplied text (an agent's runtime_version, an importer's licence),
# and one of these would end the comment and start a YAML entry of the caller's choosing.
_BREAKS = re.compile("[\x00-\x1f\x7f\x85\u2028\u2029]")


def comment_line(text: str) -> str:
    """``text`` as one ``#`` comment line: line breaks and control characters escaped (``\\n``, ``\\u2028``)."""
    escaped = _BREAKS.sub(lambda m: repr(m.group())[1:-1] if ord(m.group()) < 0x80 else f"\\u{ord(m.group()):04x}", text)
    return f"# {escaped}"


def write_published(fmt: str, rows: list[ExportRow], header: list[str]) -> tuple[str, list[str]]:
    """The YAML text of ``rows`` in layout ``fmt`` and the keys that layout cannot express."""
    grammar = FORMAT_GRAMMAR[fmt]
    spread = SPREAD[fmt]
    out: dict[str, dict[str, Any]] = {}
    left_out: list[str] = []
    for row in rows:
        published = to_published(grammar, OpSpec.parse(row.key))
        if published is None:
            left_out.append(row.key)
            continue
        if spread == "std":
            s = row.std_ms
        else:
            s = row.var if row.var is not None else (row.std_ms**2 if row.std_ms is not None else None)
        out[published] = {"count": row.count, "mean": row.latency_ms, spread: s}
    lines = [comment_line(line) for line in header]
    if left_out:
        lines.append(f"# {len(left_out)} entries this layout cannot express (left out):")
        lines += [f"#   {k}" for k in sorted(left_out)]
    body = yaml.safe_dump(out, sort_keys=True, default_flow_style=False) if out else "{}\n"
    return "\n".join(lines) + ("\n" if lines else "") + body, left_out
