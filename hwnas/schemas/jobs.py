"""Profiling jobs: creation, state, claims."""

from __future__ import annotations

from datetime import datetime
from enum import Enum
from typing import Literal

from hwnas.schemas.base import ARCH_ID_PATTERN, MAX_KEYS, MAX_NETWORKS, NAME_PATTERN, KeyText, Strict, Text, Threads, check_key
from hwnas.schemas.networks import NetworkSpec
from pydantic import BaseModel, Field, field_validator, model_validator


# ---- jobs ---------------------------------------------------------------------------------
class JobState(str, Enum):
    queued = "queued"
    running = "running"
    done = "done"
    failed = "failed"
    cancelled = "cancelled"


class JobCreate(Strict):
    """A profiling job: operator keys and/or whole networks; ``force`` measures what the table has too."""

    device: str = Field(pattern=NAME_PATTERN)
    runtime: Text(64, 1)
    threads: Threads
    keys: list[KeyText] = Field(default_factory=list, max_length=MAX_KEYS)  # grammar: see checked_keys
    networks: list[NetworkSpec] = Field(default_factory=list, max_length=MAX_NETWORKS)
    force: bool = False

    @model_validator(mode="after")
    def _something(self) -> "JobCreate":
        if not self.keys and not self.networks:
            raise ValueError("a job needs at least one operator key or one network")
        seen: set[str] = set()
        for net in self.networks:
            if net.arch_id in seen:
                raise ValueError(f"network {net.arch_id!r} appears twice in networks")
            seen.add(net.arch_id)
        return self


class JobCreated(BaseModel):
    id: int
    state: JobState
    total: int
    already_present: int
    pending: int


PENDING_SHOWN = 1_000  # pending keys, networks and errors a job shows; counts are always complete


class JobNetworkItem(BaseModel):
    """One whole network of a job: where it stands, and its measurement once done."""

    arch_id: str
    state: Literal["pending", "done", "failed"]
    median_ms: float | None = None  # the run's measurement that completed it
    min_ms: float | None = None
    error: str | None = None


class JobNetworks(BaseModel):
    """The whole networks of a job (measured interleaved with its operator keys): counts, and the first ones."""

    total: int
    done: int
    failed: int
    pending: int
    items: list[JobNetworkItem]  # in the job's order, at most the job's pending limit


class Job(BaseModel):
    """A job's progress; ``pending_keys``, ``pending_networks`` and ``errors`` list at most PENDING_SHOWN each."""

    id: int
    device: str
    runtime: str
    threads: int
    state: JobState
    total: int
    done: int
    failed: int
    pending: int
    pending_keys: list[str]
    pending_networks: list[str] = Field(default_factory=list)  # arch ids
    agent: str | None = None
    lease_expires_at: datetime | None = None
    created_at: datetime
    errors: dict[str, str] = Field(default_factory=dict)
    reason: str | None = None  # why the whole job failed or was cancelled
    holder: str | None = None  # the agent token holding the lease
    networks: JobNetworks | None = None  # None: the job has no whole networks


class JobClaim(Strict):
    device: str = Field(pattern=NAME_PATTERN)
    agent: Text(128, 1)
    lease_s: float = Field(default=300.0, gt=0, le=86400)


class JobClaimed(BaseModel):
    id: int
    device: str
    runtime: str
    threads: int
    keys: list[str]
    networks: list[NetworkSpec] = Field(default_factory=list)
    lease_expires_at: datetime


class JobHeartbeat(Strict):
    agent: Text(128, 1)
    lease_s: float = Field(default=300.0, gt=0, le=86400)


class JobFail(Strict):
    """One item of a job could not be measured: an operator ``key`` or a network ``arch_id``."""

    key: KeyText | None = None
    arch_id: str | None = Field(default=None, pattern=ARCH_ID_PATTERN)
    error: Text(4000, 1)

    @field_validator("key")
    @classmethod
    def _key(cls, key: str | None) -> str | None:
        return None if key is None else check_key(key)

    @model_validator(mode="after")
    def _one(self) -> "JobFail":
        if (self.key is None) == (self.arch_id is None):
            raise ValueError("give exactly one of key and arch_id")
        return self


def checked_keys(keys: list[str], field: str) -> list[dict[str, str]]:
    """(field, reason) for every key of ``keys`` that breaks the operator-key grammar (DESIGN.md).

    Separate from the models' validation so that the server can run it in its thread pool: at
    MAX_KEYS keys it costs a few hundred milliseconds, which must not stall the event loop.
    """
    errors = []
    for i, k in enumerate(keys):
        try:
            check_key(k)
        except ValueError as exc:
            errors.append({"field": f"{field}[{i}]", "reason": f"{k!r}: {exc}"})
    return errors


class ErrorBody(BaseModel):
    """Every 4xx: ``detail`` is a message; ``errors`` lists (field, reason) for validation failures."""

    detail: str
    errors: list[dict[str, str]] = Field(default_factory=list)
