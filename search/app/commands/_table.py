"""Shared by `hwnas predict` and `hwnas lut`: get a latency table, and offer a profiling job for missing keys."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from search.app.commands._errors import fail
from search.lut import LatencyTable, LutError, fetch_table, load_table, request_measurements, wait_for_job
from search.app.progress import JobBar

if TYPE_CHECKING:
    from search.search_config import CostSource

DEFAULT_RUNTIME = "onnxruntime"


def obtain_table(
    server: str | None,
    device: str | None,
    runtime: str | None,
    threads: int | None,
    token: str | None,
    lut: Path | None,
    cache_dir: Path | None,
    empty_if_unknown: bool = False,
    offers_job: bool = False,
) -> LatencyTable:
    """The table from ``--lut FILE`` or from the server (ETag-cached); optionally empty when the server has none yet.

    ``offers_job``: the command has ``--create-job``, so a 404 says how to have the table measured with it."""
    if lut is not None:
        return load_table(lut)
    if not server or not device:
        raise fail("a latency table needs --lut FILE, or --server URL and --device NAME (or HWNAS_SERVER)", 2)
    from hwnas.client import NotFoundError

    try:
        table = fetch_table(server, device, runtime=runtime, threads=threads, token=token, cache_dir=cache_dir)
    except NotFoundError as exc:
        if not empty_if_unknown:
            if offers_job:
                raise LutError(f"{exc}: {not_found_hint(exc, server, device, token)}") from None
            raise
        # No table for this device yet: everything is missing, which a job can fix.
        typer.echo(f"note: {exc}; treating the table as empty", err=True)
        return LatencyTable(device, runtime or DEFAULT_RUNTIME, threads or 1, {}, source=server)
    if table.stale:
        typer.echo(f"warning: server {server} unreachable; using the cached table of {table.describe()}", err=True)
    return table


def token_hint(token: str | None) -> str:
    """What a profiling job needs besides --create-job: a client token, when none was given."""
    if token:
        return ""
    return (
        " and a client token (--token TOKEN or HWNAS_TOKEN; create one with "
        "`profiler-server token create --name NAME --role client --database-url URL`)"
    )


def not_found_hint(exc: Exception, server: str, device: str, token: str | None) -> str:
    """After a 404 for a device's table: how a profiling job (--create-job) can fill it."""
    if getattr(exc, "detail", "").startswith("unknown device"):
        return (
            f"no device agent has registered {device!r} on {server}: start one for it (`device-agent run --server "
            f"{server} --name {device} ...`, docs/device-agent.md), then rerun with --create-job{token_hint(token)}"
        )
    return f"rerun with --create-job{token_hint(token)} to have the device's agent measure the operators"


def job_intent(create_job: bool | None, from_server: bool, imported: bool) -> bool | None:
    """Whether a profiling job will be run for missing keys: True, False, or None (the user will be asked)."""
    if not from_server or imported or create_job is False:
        return False
    if create_job:
        return True
    return None if sys.stdin.isatty() and sys.stdout.isatty() else False


def missing_header(n: int, what: str, intent: bool | None) -> str:
    """The line above the list of missing keys: an error only when no job will fill them."""
    line = f"{n} operator(s) {what}"
    if intent:
        return f"{line}: measuring them first (--create-job)"
    return f"{line}:" if intent is None else f"error: {line}:"


def decide_job(create_job: bool | None, n_missing: int) -> bool:
    """--create-job / --no-create-job, else ask when a person is at the terminal."""
    if create_job is not None:
        return create_job
    if sys.stdin.isatty() and sys.stdout.isatty():
        return typer.confirm(f"Create a profiling job for the {n_missing} missing operator(s) and wait for it?", default=True)
    return False


def run_job(
    server: str,
    token: str | None,
    table: LatencyTable,
    keys: list[str],
    runtime: str | None,
    threads: int | None,
    timeout_s: float,
    poll_s: float = 1.0,
) -> None:
    """POST /jobs for ``keys`` on the table's device and wait for it with a progress bar."""
    from hwnas.client import AuthError, NotFoundError, ProfilerClient

    if not token:
        raise LutError(
            "a profiling job needs a client token: --token TOKEN or HWNAS_TOKEN (create one with "
            "`profiler-server token create --name NAME --role client --database-url URL`)"
        )
    with ProfilerClient(server, token=token) as client:
        try:
            created = request_measurements(client, table.device, runtime or table.runtime, threads or table.threads, keys)
        except AuthError as exc:
            if exc.status != 401:
                raise
            raise LutError(
                f"{exc}: a profiling job needs a valid client token (create one with "
                "`profiler-server token create --name NAME --role client --database-url URL`)"
            ) from None
        except NotFoundError as exc:
            raise LutError(f"{exc}: {not_found_hint(exc, server, table.device, token)}") from None
        typer.echo(
            f"created profiling job {created.id}: {created.pending} to measure, {created.already_present} already present",
            err=True,
        )
        with JobBar(enabled=sys.stderr.isatty()) as bar:
            job = wait_for_job(client, created.id, timeout_s=timeout_s, poll_s=poll_s, on_poll=bar)
    if job.state.value == "failed" or job.failed:
        errors = "; ".join(f"{k}: {v}" for k, v in list(job.errors.items())[:5])
        raise LutError(f"job {job.id} finished with {job.failed} failed operator(s): {errors}")
    typer.echo(f"job {job.id} done: {job.done}/{job.total} measured", err=True)


def source_table(source: "CostSource", empty_if_unknown: bool = False, offers_job: bool = False) -> LatencyTable:
    """``obtain_table`` for a search's cost source."""
    return obtain_table(
        source.server,
        source.device,
        source.runtime,
        source.threads,
        source.token,
        Path(source.lut) if source.lut else None,
        Path(source.cache_dir) if source.cache_dir else None,
        empty_if_unknown=empty_if_unknown,
        offers_job=offers_job,
    )


def missing_hint(table: LatencyTable, token: str | None = "given") -> str:
    """What to do about operators a table lacks: a job for a measured table; nothing a job can do for an imported one."""
    if table.imported_from:
        return (
            f"the table of {table.describe()} is imported from {table.imported_from} and read-only, so no device "
            "agent can fill it: choose a space it covers (hwnas spaces), or measure these operators on your own "
            "device (a table of its own)"
        )
    return f"rerun with --create-job{token_hint(token)} to have a device agent measure them"


def offer_job(source: "CostSource", table: LatencyTable, keys: list[str], create_job: bool | None, timeout_s: float) -> bool:
    """For a search whose table lacks ``keys``: run a profiling job for them if the source is a server and the
    user agrees (``decide_job``); False, with the hint printed, when no job is run."""
    if not source.from_server or table.imported_from or not decide_job(create_job, len(keys)):
        if source.from_server:
            typer.echo(missing_hint(table, source.token), err=True)
        return False
    assert source.server is not None  # from_server
    run_job(source.server, source.token, table, keys, source.runtime, source.threads, timeout_s)
    return True
