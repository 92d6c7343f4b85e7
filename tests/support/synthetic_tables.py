"""Synthetic stand-ins for the published files hwnas does not ship, in their upstream layouts (issue 27).

ProxylessNAS's Pixel 1 table (``mobile_trim.yaml``: ``key: {count, mean, var}``, ProxylessNAS's key grammar), a
network in ProxylessNAS's ``net.config`` layout, and HELP's whole-network CSV (``idx, arch, L0..L21``, then one
column per device, ms). The layouts are the upstream ones, so the importers, exporters and estimators run on these
as on the real files; every number is made here from a seed or computed from a file hwnas ships — none is copied
from the real files. The keys are written with this module's own formatting (never hwnas/published.py), so a
test that maps them checks the grammar against an independent writer of it. Checks of the published numbers
themselves (ProxylessNAS-Mobile's 63.7 ms, HELP's phones) are figures of benchmarks/published_tables.py, which
reads the real files where they are.
"""

from __future__ import annotations

import csv
import functools
import gzip
import json
import random
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from profiler_server.published import FOLDER, SHIPPED

IMAGE = 224
STEM = 32
HEAD = 1280
CLASSES = 1000
KERNELS = (3, 5, 7)
EXPANDS = (3, 6)
# (channels, stride, layers) of the stages after ProxylessNAS's fixed first block (32 -> 16, expand 1): the
# Pixel 1 table's layout has stage 2 at 24 channels, the released ProxylessNAS-Mobile at 32.
TABLE_STAGES = ((24, 2, 4), (40, 2, 4), (80, 2, 4), (96, 1, 4), (192, 2, 4), (320, 1, 1))
NETWORK_STAGES = ((32, 2, 4),) + TABLE_STAGES[1:]
HEADER = "# Synthetic, in the layout of ProxylessNAS's mobile_trim.yaml: made by tests/support/synthetic_tables.py"


@dataclass(frozen=True)
class Block:
    """One MBConv block as ProxylessNAS's table names it."""

    h: int
    cin: int
    cout: int
    stride: int
    kernel: int
    expand: int

    @property
    def out_h(self) -> int:
        return (self.h - 1) // self.stride + 1

    @property
    def idskip(self) -> int:
        return int(self.stride == 1 and self.cin == self.cout)

    @property
    def key(self) -> str:
        return (
            f"expanded_conv-input:{self.h}x{self.h}x{self.cin}-output:{self.out_h}x{self.out_h}x{self.cout}"
            f"-expand:{self.expand}-kernel:{self.kernel}-stride:{self.stride}-idskip:{self.idskip}"
        )


def _last_size() -> int:
    h = IMAGE // 2
    for _, stride, _ in TABLE_STAGES:
        h = (h - 1) // stride + 1
    return h


FIXED_KEYS = (
    f"Conv-input:{IMAGE}x{IMAGE}x3-output:{IMAGE // 2}x{IMAGE // 2}x{STEM}",
    f"Conv_1-input:{_last_size()}x{_last_size()}x{TABLE_STAGES[-1][0]}-output:{_last_size()}x{_last_size()}x{HEAD}",
    f"Logits-input:{_last_size()}x{_last_size()}x{HEAD}-output:{CLASSES}",
)


def _shapes(stages: tuple[tuple[int, int, int], ...]) -> list[tuple[int, int, int, int]]:
    """(input size, input channels, output channels, stride) of every layer after the first block."""
    out, h, cin = [], IMAGE // 2, 16
    for cout, stride, layers in stages:
        for i in range(layers):
            s = stride if i == 0 else 1
            out.append((h, cin, cout, s))
            h, cin = (h - 1) // s + 1, cout
    return out


def table_blocks() -> list[Block]:
    """Every block the Pixel 1 table's layout holds: the first block at k3/5/7, each distinct layer shape at k × e."""
    first = [Block(IMAGE // 2, STEM, 16, 1, k, 1) for k in KERNELS]
    shapes = list(dict.fromkeys(_shapes(TABLE_STAGES)))
    return first + [Block(h, cin, cout, s, k, e) for h, cin, cout, s in shapes for k in KERNELS for e in EXPANDS]


@functools.cache
def proxyless_entries(seed: int = 0) -> dict[str, dict[str, Any]]:
    """The synthetic table: published key -> {count, mean, var}, sorted by key as the upstream file is."""
    rng = random.Random(seed)
    keys = sorted([*FIXED_KEYS, *(b.key for b in table_blocks())])
    return {k: {"count": rng.randrange(100, 1000), "mean": rng.uniform(0.2, 6.0), "var": rng.uniform(0.001, 0.3)} for k in keys}


def proxyless_yaml(seed: int = 0) -> str:
    """The synthetic table as the text of a ``mobile_trim.yaml``."""
    lines = [HEADER]
    for key, e in proxyless_entries(seed).items():
        lines += [f"{key}:", f"  count: {e['count']}", f"  mean: {e['mean']!r}", f"  var: {e['var']!r}"]
    return "\n".join(lines) + "\n"


@functools.cache
def network_blocks(seed: int = 1) -> tuple[Block | None, ...]:
    """A ProxylessNAS-Mobile-shaped network of our own choices (None: a dropped layer), stage 2 at 32 as released."""
    rng = random.Random(seed)
    blocks: list[Block | None] = [Block(IMAGE // 2, STEM, 16, 1, 3, 1)]
    for h, cin, cout, s in _shapes(NETWORK_STAGES):
        droppable = s == 1 and cin == cout
        blocks.append(
            None if droppable and rng.random() < 0.25 else Block(h, cin, cout, s, rng.choice(KERNELS), rng.choice(EXPANDS))
        )
    return tuple(blocks)


def network_keys(seed: int = 1) -> list[str]:
    """The table keys ProxylessNAS's estimator sums for network_blocks(seed): stem, the blocks not dropped, head."""
    return [FIXED_KEYS[0], *(b.key for b in network_blocks(seed) if b is not None), *FIXED_KEYS[1:]]


def net_config(seed: int = 1) -> dict[str, Any]:
    """network_blocks(seed) as a ProxylessNAS ``net.config``."""

    def conv(cin: int, cout: int, k: int, s: int) -> dict[str, Any]:
        return {
            "name": "ConvLayer",
            "kernel_size": k,
            "stride": s,
            "dilation": 1,
            "groups": 1,
            "bias": False,
            "has_shuffle": False,
            "in_channels": cin,
            "out_channels": cout,
            "use_bn": True,
            "act_func": "relu6",
            "dropout_rate": 0,
            "ops_order": "weight_bn_act",
        }

    blocks: list[dict[str, Any]] = []
    c = STEM
    for b in network_blocks(seed):
        identity: dict[str, Any] = {
            "name": "IdentityLayer",
            "in_channels": c,
            "out_channels": c,
            "use_bn": False,
            "act_func": None,
            "dropout_rate": 0,
            "ops_order": "weight_bn_act",
        }
        if b is None:
            blocks.append(
                {
                    "name": "MobileInvertedResidualBlock",
                    "mobile_inverted_conv": {"name": "ZeroLayer", "stride": 1},
                    "shortcut": identity,
                }
            )
            continue
        mb = {
            "name": "MBInvertedConvLayer",
            "in_channels": b.cin,
            "out_channels": b.cout,
            "kernel_size": b.kernel,
            "stride": b.stride,
            "expand_ratio": b.expand,
        }
        blocks.append(
            {"name": "MobileInvertedResidualBlock", "mobile_inverted_conv": mb, "shortcut": identity if b.idskip else None}
        )
        c = b.cout
    return {
        "name": "ProxylessNASNets",
        "bn": {"momentum": 0.1, "eps": 0.001},
        "first_conv": conv(3, STEM, 3, 2),
        "feature_mix_layer": conv(TABLE_STAGES[-1][0], HEAD, 1, 1),
        "classifier": {
            "name": "LinearLayer",
            "in_features": HEAD,
            "out_features": CLASSES,
            "bias": True,
            "use_bn": False,
            "act_func": None,
            "dropout_rate": 0,
            "ops_order": "weight_bn_act",
        },
        "blocks": blocks,
    }


# ---- HELP's whole-network CSV ---------------------------------------------------------------------------------------
HELP_LAYERS = 22
HELP_OPS = 9
PHONE_NOISE = 0.03  # the synthetic phone's timings: its additive truth times a factor uniform in 1 ± this


@functools.cache
def phone_truth(seed: int = 2) -> tuple[float, tuple[tuple[float, ...], ...]]:
    """The synthetic phone's additive truth: a constant and a cost per (layer, op index)."""
    rng = random.Random(seed)
    return rng.uniform(5.0, 10.0), tuple(tuple(rng.uniform(0.1, 3.0) for _ in range(HELP_OPS)) for _ in range(HELP_LAYERS))


@functools.cache
def _hwnasbench() -> dict[str, Any]:
    return json.loads((FOLDER / "hwnasbench_fbnet_cifar100_lut_reconstructed.json").read_text())


def hwnasbench_sum(ops: list[int], column: str = "pixel3") -> float:
    """HW-NAS-Bench's network latency of ``ops`` from the shipped table's own terms: the all-op-0 total plus deltas."""
    doc = _hwnasbench()
    dev, order = doc["devices"][column], doc["op_order"]
    return float(dev["all_op0_network_total"]) + sum(dev["delta_vs_op0"][f"L{i}"][order[op]] for i, op in enumerate(ops))


@functools.cache
def help_rows(n: int, seed: int = 3) -> tuple[dict[str, str], ...]:
    """``n`` rows in HELP's layout: a random architecture each, timed by the synthetic phone (``pixel2``) and summed
    on HW-NAS-Bench's shipped Pixel 3 table (``pixel3``, which is what HELP's own column holds)."""
    rng = random.Random(seed)
    constant, costs = phone_truth()
    rows = []
    for idx in range(n):
        ops = [rng.randrange(HELP_OPS) for _ in range(HELP_LAYERS)]
        truth = constant + sum(costs[i][op] for i, op in enumerate(ops))
        row = {
            "idx": str(idx),
            "arch": "".join(map(str, ops)),
            **{f"L{i}": str(op) for i, op in enumerate(ops)},
            "pixel2": repr(truth * rng.uniform(1 - PHONE_NOISE, 1 + PHONE_NOISE)),
            "pixel3": repr(hwnasbench_sum(ops)),
        }
        rows.append(row)
    return tuple(rows)


def write_help_csv(path: Path, n: int) -> Path:
    """help_rows(n) as a gzipped CSV, as HELP's data is kept."""
    rows = help_rows(n)
    with gzip.open(path, "wt", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


# ---- a reference folder ---------------------------------------------------------------------------------------------
PROXYLESS_LUT = "proxylessnas_pixel1_lut/mobile_trim.yaml"
PROXYLESS_NET = "proxylessnas_pixel1_lut/proxyless_mobile.net.config"
HELP_CSV = "help_fbnet_cifar100_latency.csv.gz"


def write_reference_folder(folder: Path) -> Path:
    """A folder in ../shared/reference-data's layout: the shipped files copied, the others synthetic."""
    for path in SHIPPED:
        (folder / path).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(FOLDER / path, folder / path)
    (folder / PROXYLESS_LUT).parent.mkdir(parents=True, exist_ok=True)
    (folder / PROXYLESS_LUT).write_text(proxyless_yaml())
    (folder / PROXYLESS_NET).write_text(json.dumps(net_config(), indent=4))
    write_help_csv(folder / HELP_CSV, 50)
    return folder
