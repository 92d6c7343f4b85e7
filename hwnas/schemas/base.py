"""Limits, field types and validators every REST body shares; roles; health."""

from __future__ import annotations

import math
from enum import Enum
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints

from hwnas.opkey import OVERHEAD_KEY, OpKeyError, OpSpec

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$"
ARCH_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"

# ---- limits: what the columns and both databases can hold (docs/server.md, "Limits") ------------------
INT32_MAX = 2**31 - 1  # INTEGER columns and job ids, on SQLite and PostgreSQL alike
MAX_KEYS = 20_000  # operator keys in one request (job, query, results of one upload)
MAX_NETWORKS = 1_000  # networks in one job or one upload
MAX_SAMPLES = 100_000  # samples_ms of one result
MAX_THREADS = 1_024
MAX_KEY_LENGTH = 256  # operators.key
MAX_JSON_DEPTH = 8  # props, device_state, architecture documents
MAX_JSON_BYTES = 64 * 1024  # one free-form JSON value, serialised
MAX_ARCH_BYTES = 256 * 1024  # one architecture document, serialised
NO_NUL = r"^[^\x00]*$"  # PostgreSQL text cannot hold NUL


def Text(max_length: int, min_length: int = 0) -> Any:  # a type factory, used like a type
    """A string that fits a VARCHAR(max_length) column on both databases (no NUL)."""
    return Annotated[str, StringConstraints(min_length=min_length, max_length=max_length, pattern=NO_NUL)]


Int32 = Annotated[int, Field(ge=0, le=INT32_MAX)]
Threads = Annotated[int, Field(ge=1, le=MAX_THREADS)]
JobId = Annotated[int, Field(ge=1, le=INT32_MAX)]


def check_json(value: Any, max_depth: int = MAX_JSON_DEPTH, max_bytes: int = MAX_JSON_BYTES) -> Any:
    """A free-form JSON value both databases store and every reader can serve back.

    Bounded depth (a deeply nested value is stored, then breaks serialisation for every reader)
    and size, no NUL in keys or strings, finite numbers, integers within 64 bits.
    """
    import json

    def walk(v: Any, depth: int) -> None:
        if depth > max_depth:
            raise ValueError(f"nested deeper than {max_depth} levels")
        if isinstance(v, dict):
            for k, item in v.items():
                if "\x00" in k:
                    raise ValueError("keys must not contain NUL")
                walk(item, depth + 1)
        elif isinstance(v, list):
            for item in v:
                walk(item, depth + 1)
        elif isinstance(v, str):
            if "\x00" in v:
                raise ValueError("strings must not contain NUL")
        elif isinstance(v, bool) or v is None:
            pass
        elif isinstance(v, int):
            if not -(2**63) <= v < 2**63:
                raise ValueError(f"integer {str(v)[:20]}… does not fit 64 bits")
        elif isinstance(v, float):
            if not math.isfinite(v):
                raise ValueError(f"numbers must be finite, got {v}")

    walk(value, 1)
    size = len(json.dumps(value, separators=(",", ":")))
    if size > max_bytes:
        raise ValueError(f"{size} bytes serialised; at most {max_bytes}")
    return value


FreeJson = Annotated[dict[str, Any], AfterValidator(check_json)]
ArchDocument = Annotated[dict[str, Any], AfterValidator(lambda v: check_json(v, MAX_JSON_DEPTH, MAX_ARCH_BYTES))]
KeyText = Text(MAX_KEY_LENGTH, 1)


def check_key(key: str) -> str:
    """Validate an operator key (or the overhead key), raising ValueError that names the bad part."""
    if key == OVERHEAD_KEY:
        return key
    if len(key) > MAX_KEY_LENGTH:
        raise ValueError(f"longer than {MAX_KEY_LENGTH} characters")
    try:
        OpSpec.parse(key)
    except OpKeyError as exc:
        raise ValueError(str(exc)) from None
    return key


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Role(str, Enum):
    agent = "agent"
    client = "client"
    admin = "admin"


# ---- health -----------------------------------------------------------------------------
class Health(BaseModel):
    status: Literal["ok", "degraded"]
    database: bool
    version: str
