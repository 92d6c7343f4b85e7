"""`hwnas lut`: the operator keys a space or architecture needs, pulling a table, requesting measurements."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from search.app.commands._errors import fail, user_errors

lut_app = typer.Typer(
    help="Latency tables: keys a space needs, pull a table, request measurements, fit one from whole networks, import / export published tables.",
    no_args_is_help=True,
)


def _keys(space: Optional[str], arch: Optional[str], input_size: Optional[int], classes: Optional[int]) -> list[str]:
    from search.arch import get_arch
    from search.space import get_space

    if (space is None) == (arch is None):
        raise fail("give exactly one of --space and --arch", 2)
    if arch is not None:
        return list(dict.fromkeys(get_arch(arch).op_keys()))
    return get_space(space).with_input(input_size, classes).op_keys()  # type: ignore[arg-type]


@lut_app.command("keys")
def keys(
    space: Optional[str] = typer.Option(None, "--space", "-s", help="Built-in space name or space file."),
    arch: Optional[str] = typer.Option(None, "--arch", "-a", help="An architecture document instead of a whole space."),
    input_size: Optional[int] = typer.Option(None, "--input-size", help="Override the space's input size (square)."),
    classes: Optional[int] = typer.Option(None, "--classes", help="Override the space's class count."),
    as_json: bool = typer.Option(False, "--json", help="Print a JSON list."),
) -> None:
    """Print every operator key a space (or an architecture) needs, deduplicated, stem and head included.

    Examples: `hwnas lut keys --space fbnet` · `hwnas lut keys --space fbnet-fmnist > keys.txt` · `hwnas lut keys --arch fbnet_a`
    """
    with user_errors():
        found = _keys(space, arch, input_size, classes)
        typer.echo(json.dumps(found) if as_json else "\n".join(found))


@lut_app.command("fetch")
def fetch(
    server: str = typer.Option(..., "--server", envvar="HWNAS_SERVER", help="Profiler server URL."),
    device: str = typer.Option(..., "--device", "-d", help="Device name."),
    runtime: Optional[str] = typer.Option(None, "--runtime"),
    threads: Optional[int] = typer.Option(None, "--threads", min=1),
    token: Optional[str] = typer.Option(None, "--token", envvar="HWNAS_TOKEN"),
    cache_dir: Optional[Path] = typer.Option(None, "--cache-dir", help="Cache directory (default: user cache dir)."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Also write the table to this JSON file (usable as --lut)."),
) -> None:
    """Pull a device's latency table (revalidated with its ETag, cached for offline use) and summarise it.

    Example: `hwnas lut fetch --server http://127.0.0.1:8000 --device pixel7 -o pixel7.json`
    """
    from search.lut import fetch_table

    with user_errors():
        table = fetch_table(server, device, runtime=runtime, threads=threads, token=token, cache_dir=cache_dir)
        overhead = f"{table.overhead_ms:.4f} ms" if table.overhead_ms is not None else "none"
        typer.echo(
            f"{table.describe()}: {len(table.entries)} entries, overhead {overhead}, etag {table.etag}"
            + (" [cached, server unreachable]" if table.stale else "")
        )
        if out is not None:
            typer.echo(f"wrote {table.save(out)}")


@lut_app.command("request")
def request(
    server: str = typer.Option(..., "--server", envvar="HWNAS_SERVER", help="Profiler server URL."),
    device: str = typer.Option(..., "--device", "-d", help="Device name."),
    space: Optional[str] = typer.Option(None, "--space", "-s", help="Request every key of this space."),
    arch: Optional[str] = typer.Option(None, "--arch", "-a", help="Request the keys of this architecture."),
    runtime: str = typer.Option("onnxruntime", "--runtime"),
    threads: int = typer.Option(1, "--threads", min=1),
    token: Optional[str] = typer.Option(None, "--token", envvar="HWNAS_TOKEN", help="A client (or admin) token."),
    wait: bool = typer.Option(False, "--wait/--no-wait", help="Wait for the job with a progress bar."),
    wait_timeout: float = typer.Option(3600.0, "--wait-timeout"),
) -> None:
    """Ask the device agents to measure the operators a space or architecture needs (keys already present are skipped).

    Example: `hwnas lut request --space fbnet-fmnist --server http://127.0.0.1:8000 --device host --wait`
    """
    import sys

    from hwnas.client import ProfilerClient
    from search.lut import request_measurements, wait_for_job
    from search.app.progress import JobBar

    with user_errors():
        found = _keys(space, arch, None, None)
        with ProfilerClient(server, token=token) as client:
            created = request_measurements(client, device, runtime, threads, found)
            typer.echo(
                f"job {created.id}: {created.total} keys, {created.already_present} already present, {created.pending} to measure"
            )
            if wait and created.pending:
                with JobBar(enabled=sys.stderr.isatty()) as bar:
                    job = wait_for_job(client, created.id, timeout_s=wait_timeout, on_poll=bar)
                typer.echo(f"job {job.id} {job.state.value}: {job.done} measured, {job.failed} failed")


@lut_app.command("fit")
def fit(
    space: str = typer.Option(..., "--space", "-s", help="The space the timed networks belong to (built-in name or file)."),
    networks: Path = typer.Option(
        ...,
        "--networks",
        "-n",
        help="Timed whole networks: CSV with columns 'choices' "
        "(candidate names per layer, space-separated) and 'ms', or a JSON list of "
        '{"choices": [...], "ms": x}.',
    ),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Write the fitted table here (usable as --lut)."),
    # Not read from HWNAS_SERVER, unlike the other commands: storing is a deliberate act, and a shell that exports
    # the variable would otherwise turn every local `-o` fit into an upload (or a refusal for lack of --device).
    server: Optional[str] = typer.Option(
        None,
        "--server",
        help="Also store the table on this profiler server as a "
        "read-only table of --device, with the fit quality (only when given here, "
        "never from HWNAS_SERVER).",
    ),
    token: Optional[str] = typer.Option(None, "--token", envvar="HWNAS_TOKEN", help="An admin token (with --server)."),
    replace: bool = typer.Option(False, "--replace", help="With --server: replace a table stored before from another fit."),
    device: Optional[str] = typer.Option(
        None,
        "--device",
        "-d",
        help="Device name written into the table (default 'fitted'); with --server, the device it is stored under (required).",
    ),
    runtime: str = typer.Option("fitted", "--runtime"),
    threads: int = typer.Option(1, "--threads", min=1),
    holdout: float = typer.Option(0.2, "--holdout", help="Share of the networks held out to report the fit's quality."),
    seed: int = typer.Option(0, "--seed", help="Seed of the hold-out split."),
) -> None:
    """Fit a latency table from whole-network timings alone (non-negative least squares), with a hold-out report;
    write it (-o) and/or store it on the server (--server, admin token) as a read-only table with its fit quality.

    For devices where operators cannot be timed one by one: time a few hundred random networks of the
    space whole, then fit. The constant (stem, head, per-network overhead) goes into overhead_ms.
    The same fit stored again is 'unchanged'; another fit into the same table needs --replace.

    Example: `hwnas lut fit --space fbnet-fmnist --networks timed.csv --device my-npu -o my-npu.json --server http://127.0.0.1:8000 --token $ADMIN`
    """
    import csv
    import hashlib

    from pydantic import ValidationError

    from search.lut_fit import fit_space_table, fitted_text
    from search.space import get_space

    if out is None and server is None:
        raise fail("give --out FILE, --server URL (with an admin --token), or both: where the fitted table goes", 2)
    if server is not None and device is None:
        raise fail("--server stores the table under --device: give the device name", 2)
    with user_errors():
        try:
            raw = networks.read_bytes()
            text = raw.decode("utf-8")
        except OSError as exc:
            raise fail(f"cannot read {networks}: {exc.strerror}", 2) from None
        except UnicodeDecodeError as exc:
            raise fail(f"cannot read {networks}: not UTF-8 ({exc.reason} at byte {exc.start})", 2) from None
        try:
            if text.lstrip().startswith("["):
                rows = [(list(r["choices"]), float(r["ms"])) for r in json.loads(text)]
            else:
                rows = [(r["choices"].split(), float(r["ms"])) for r in csv.DictReader(text.splitlines())]
        except (KeyError, TypeError, ValueError) as exc:
            raise fail(f"{networks}: every row needs 'choices' and 'ms' ({type(exc).__name__}: {exc})", 2) from None
        the_space = get_space(space)
        table, report = fit_space_table(
            the_space,
            [c for c, _ in rows],
            [m for _, m in rows],
            device=device or "fitted",
            runtime=runtime,
            threads=threads,
            holdout=holdout,
            seed=seed,
        )
        try:
            document = fitted_text(
                table,
                report,
                space=the_space.name,
                networks_file=networks.name,
                networks_sha256=hashlib.sha256(raw).hexdigest(),
                holdout=holdout,
                seed=seed,
            )
        except ValidationError as exc:
            raise fail(f"the fit cannot be recorded: {exc.errors()[0]['loc']}: {exc.errors()[0]['msg']}", 2) from None
        if out is not None:
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(document, encoding="utf-8")
        held = (
            f"hold-out MAPE {report.mape_pct:.1f}%, Kendall τ {report.kendall_tau:.2f} on {report.test_networks} networks"
            if report.mape_pct is not None
            else "no hold-out"
        )
        typer.echo(
            f"fitted {len(table.entries)} entries from {report.train_networks} networks ({held}); "
            f"constant {report.constant_ms:.4f} ms" + (f"; wrote {out}" if out is not None else "")
        )
        if server is not None:
            assert device is not None
            _store_fit(server, token, document, device, runtime, threads, networks.name, replace, out)


def _store_fit(
    server: str,
    token: Optional[str],
    document: str,
    device: str,
    runtime: str,
    threads: int,
    networks_file: str,
    replace: bool,
    out: Optional[Path],
) -> None:
    """POST the fitted table as an import of format hwnas-fit (admin token) and print what the server did."""
    from pydantic import ValidationError

    from hwnas import schemas
    from hwnas.client import ProfilerClient, ProfilerError
    from hwnas.published_presets import import_report, validation_message

    try:
        body = schemas.LutImport(
            format="hwnas-fit",
            content=document,
            device=device,
            runtime=runtime,
            threads=threads,
            replace=replace,
            source=schemas.ImportSource(
                project="hwnas lut fit",
                file=networks_file,
                source_device=device,
                source_runtime=runtime,
                licence="own timings, fitted by hwnas lut fit",
            ),
        )
    except ValidationError as exc:
        raise fail(validation_message(exc), 2) from None
    kept = f" (the table is in {out})" if out is not None else ""
    with ProfilerClient(server, token=token) as client:
        try:
            result = client.import_lut(body)
        except ProfilerError as exc:  # refused or unreachable: say so, and where the fit still is
            raise fail(f"storing the fitted table on {server}: {exc}{kept}") from None
    typer.echo("\n".join(import_report(result)))


@lut_app.command("import")
def import_(
    file: Path = typer.Argument(..., help="The published table file (OFA / ProxylessNAS YAML, HW-NAS-Bench JSON)."),
    server: str = typer.Option(..., "--server", envvar="HWNAS_SERVER", help="Profiler server URL."),
    token: Optional[str] = typer.Option(None, "--token", envvar="HWNAS_TOKEN", help="An admin token."),
    preset: Optional[str] = typer.Option(
        None, "--preset", help="A known table (see `profiler-server import --list`): fills device, runtime and provenance."
    ),
    fmt: Optional[str] = typer.Option(
        None, "--format", help="ofa-yaml, proxyless-yaml, hwnasbench-json or hwnas-fit (a table written by hwnas lut fit -o)."
    ),
    device: Optional[str] = typer.Option(None, "--device", "-d", help="Device to import into (created when new)."),
    runtime: Optional[str] = typer.Option(None, "--runtime", help="e.g. tflite."),
    threads: Optional[int] = typer.Option(None, "--threads", min=1),
    column: Optional[str] = typer.Option(None, "--column", help="hwnasbench-json: pixel3, raspi4, eyeriss or fpga."),
    project: Optional[str] = typer.Option(None, "--project", help="Source project, e.g. mit-han-lab/once-for-all."),
    source_file: Optional[str] = typer.Option(None, "--source-file", help="The file's path in the source repository."),
    commit: Optional[str] = typer.Option(None, "--commit"),
    source_device: Optional[str] = typer.Option(None, "--source-device", help="The device the authors measured."),
    source_runtime: Optional[str] = typer.Option(None, "--source-runtime"),
    licence: Optional[str] = typer.Option(None, "--licence"),
    url: Optional[str] = typer.Option(None, "--url"),
    replace: bool = typer.Option(False, "--replace", help="Replace a table imported before from other content."),
) -> None:
    """Import a published latency table into the server (admin token): read-only, with its provenance;
    entries that have no exact operator key are listed with the reason. The same file again is 'unchanged'.

    Example: `hwnas lut import ofa_note10_lut/224_lookup_table.yaml --preset note10-ofa --server http://127.0.0.1:8000`
    (copies of the tables we may ship are in profiler_server/published: `profiler-server import --all` imports them)
    """
    from pydantic import ValidationError

    from hwnas.client import ApiError, ProfilerClient
    from hwnas.published_presets import UnknownPreset, import_report, import_request, validation_message

    with user_errors():
        try:
            content = file.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise fail(f"cannot read {file}: {exc}", 2) from None
        table = {"format": fmt, "device": device, "runtime": runtime, "threads": threads, "column": column}
        source = {
            "project": project,
            "file": source_file,
            "commit": commit,
            "source_device": source_device,
            "source_runtime": source_runtime,
            "licence": licence,
            "url": url,
        }
        try:
            request = import_request(content, preset, replace, table, source)
        except (UnknownPreset, ValidationError) as exc:
            raise fail(validation_message(exc), 2) from None
        with ProfilerClient(server, token=token) as client:
            try:
                result = client.import_lut(request)
            except ApiError as exc:  # name the file: the server's message names the place in it
                raise fail(f"{file}: {exc}") from None
        typer.echo("\n".join(import_report(result)))


@lut_app.command("export")
def export(
    server: str = typer.Option(..., "--server", envvar="HWNAS_SERVER", help="Profiler server URL."),
    device: str = typer.Option(..., "--device", "-d", help="Device name."),
    fmt: str = typer.Option(..., "--format", help="ofa-yaml (Once-for-All layout, std) or proxyless-yaml (ProxylessNAS, var)."),
    runtime: Optional[str] = typer.Option(None, "--runtime"),
    threads: Optional[int] = typer.Option(None, "--threads", min=1),
    token: Optional[str] = typer.Option(None, "--token", envvar="HWNAS_TOKEN"),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Write here instead of stdout."),
) -> None:
    """Write a device's latency table in the Once-for-All or ProxylessNAS YAML layout, for their latency estimators
    (keys that layout cannot express are listed in the comment header).

    Example: `hwnas lut export --server http://127.0.0.1:8000 --device pixel7 --format ofa-yaml -o pixel7_lookup_table.yaml`
    """
    from hwnas.client import ProfilerClient

    if fmt not in ("ofa-yaml", "proxyless-yaml"):
        raise fail(f"--format must be ofa-yaml or proxyless-yaml, got {fmt!r}", 2)
    with user_errors():
        with ProfilerClient(server, token=token) as client:
            text = client.export_lut(device, fmt, runtime=runtime, threads=threads)
        if out is None:
            typer.echo(text, nl=False)
        else:
            out.write_text(text, encoding="utf-8")
            typer.echo(f"wrote {out}")


def register(app: typer.Typer) -> None:
    app.add_typer(lut_app, name="lut")
