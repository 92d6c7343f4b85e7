"""What ``device-agent profile`` reads and prints: a file of operator keys, and the table of their results."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from hwnas.schemas import MeasurementResult

from device_agent.errors import ConfigError


def results_table(results: dict[str, MeasurementResult]) -> list[dict[str, Any]]:
    """Rows for printing or ``--out`` JSON."""
    return [
        {
            "key": k,
            "median_ms": r.median_ms,
            "min_ms": r.min_ms,
            "p10_ms": r.p10_ms,
            "p90_ms": r.p90_ms,
            "std_ms": r.std_ms,
            "n": r.iterations,
        }
        for k, r in sorted(results.items())
    ]


def read_keys_file(path: Path) -> list[str]:
    """Keys from a file: one per line (``#`` comments), or a JSON list / ``{"keys": [...]}``."""
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(f"cannot read keys file {path}: {exc.strerror}") from None
    stripped = text.strip()
    if stripped.startswith(("[", "{")):
        try:
            data = json.loads(stripped)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"{path}: not valid JSON: {exc}") from None
        keys = data.get("keys") if isinstance(data, dict) else data
        if not isinstance(keys, list) or not all(isinstance(k, str) for k in keys):
            raise ConfigError(f"{path}: expected a list of key strings")
    else:
        # '#' also marks a dtype inside keys (…@1x16x28x28#int8): only whole-line or
        # whitespace-led comments count.
        keys = [
            re.split(r"\s+#", line.strip(), maxsplit=1)[0].strip()
            for line in text.splitlines()
            if not line.strip().startswith("#")
        ]
        keys = [k for k in keys if k]
    from hwnas.schemas import check_key

    for i, key in enumerate(keys):
        try:
            check_key(key)
        except ValueError as exc:
            raise ConfigError(f"{path}: entry {i + 1}: {exc}") from None
    if not keys:
        raise ConfigError(f"{path}: no keys")
    return keys
