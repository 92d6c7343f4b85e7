"""`profiler-server`: serve the API, create tokens, upgrade the database schema, import published tables."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

app = typer.Typer(
    name="profiler-server",
    help="The hwnas profiler server: devices, measurements, profiling jobs and latency tables over REST.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
token_app = typer.Typer(help="Manage API tokens (stored hashed; each has one role).", no_args_is_help=True)
db_app = typer.Typer(help="Manage the database schema (alembic migrations).", no_args_is_help=True)
app.add_typer(token_app, name="token")
app.add_typer(db_app, name="db")

DatabaseUrl = Annotated[
    str | None,
    typer.Option("--database-url", help="SQLAlchemy URL; default $DATABASE_URL or sqlite:///./hwnas.db.", show_default=False),
]


def _fail(message: str) -> NoReturn:
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    raise typer.Exit(1)


def _database_url(option: str | None) -> str:
    from profiler_server.settings import Settings

    return option or Settings().database_url


@contextmanager
def _session(database_url: str | None, migrate: bool = False) -> Iterator["Session"]:
    """A session on the database that commits on success; database errors end the command in one line.

    ``migrate``: bring the schema up to date first (as ``serve`` does), so that the first command on a new
    database — ``token create``, ``import`` — works instead of failing on a missing table.
    """
    from sqlalchemy.exc import SQLAlchemyError

    from profiler_server.db import make_engine, session_factory
    from profiler_server.errors import ServiceError

    url = _database_url(database_url)
    if migrate:
        from profiler_server.migrate import upgrade as run_upgrade

        try:
            run_upgrade(url)
        except SQLAlchemyError as exc:
            _db_error(exc)
    engine = make_engine(url)
    try:
        with session_factory(engine)() as session:
            yield session
            session.commit()
    except ServiceError as exc:
        _fail(exc.detail)
    except SQLAlchemyError as exc:
        _db_error(exc)
    finally:
        engine.dispose()


def _db_error(exc: Exception) -> NoReturn:
    # One line, no traceback: the first line of the driver's message says what is wrong.
    orig = getattr(exc, "orig", None) or exc
    _fail(f"database error: {str(orig).strip().splitlines()[0] if str(orig).strip() else type(orig).__name__}")


def _port_free(host: str, port: int) -> None:
    """End the command before the database is touched or a banner printed when the address is taken."""
    import socket

    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError as exc:
        _fail(f"cannot listen on {host}:{port}: {exc.strerror or exc}")
    family, _, _, _, addr = infos[0]
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds: TIME_WAIT is no conflict
        try:
            probe.bind(addr)
        except OSError as exc:
            _fail(
                f"cannot listen on {host}:{port}: {exc.strerror or exc} — another server (perhaps an earlier "
                f"profiler-server) holds it; stop it or choose another --port"
            )


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Interface to listen on (default $HOST or 127.0.0.1).")] = None,
    port: Annotated[int | None, typer.Option(help="TCP port (default $PORT or 8000).")] = None,
    database_url: DatabaseUrl = None,
    workers: Annotated[int, typer.Option(min=1, help="Worker processes.")] = 1,
    upgrade: Annotated[bool, typer.Option("--upgrade/--no-upgrade", help="Run migrations before serving.")] = True,
    log_level: Annotated[str, typer.Option(help="uvicorn log level.")] = "info",
) -> None:
    """Run migrations, then serve the REST API (OpenAPI docs at /docs).

    Example: profiler-server serve --port 8000 --database-url postgresql://postgres@db/hwnas
    """
    import uvicorn
    from sqlalchemy.exc import SQLAlchemyError

    from profiler_server.settings import Settings

    overrides: dict[str, Any] = {
        k: v for k, v in {"host": host, "port": port, "database_url": database_url}.items() if v is not None
    }
    try:
        settings = Settings(**overrides)
    except ValueError as exc:  # pydantic's ValidationError or pydantic-settings' SettingsError: a bad environment variable
        _fail(f"bad setting: {exc}")
    _port_free(settings.host, settings.port)
    if upgrade:
        from profiler_server.migrate import upgrade as run_upgrade

        try:
            run_upgrade(settings.database_url)
        except SQLAlchemyError as exc:
            _db_error(exc)
    # Worker processes build their app from the environment: hand the settings over there.
    os.environ["DATABASE_URL"] = settings.database_url
    os.environ["UPGRADE_ON_START"] = "false"
    from profiler_server.gate import http_protocol

    # Header and body-idle timeouts (HEADER_TIMEOUT_S, BODY_IDLE_TIMEOUT_S) live in the protocol; KEEP_ALIVE_TIMEOUT_S
    # is uvicorn's own wait between two requests of one connection.
    timeouts = {"http": http_protocol(), "timeout_keep_alive": settings.keep_alive_timeout_s}
    typer.echo(
        f"profiler-server on http://{settings.host}:{settings.port} (API docs: http://{settings.host}:{settings.port}/docs)",
        err=True,
    )
    if workers == 1:
        from profiler_server.app import create_app

        uvicorn.run(create_app(settings), host=settings.host, port=settings.port, log_level=log_level, **timeouts)
    else:
        uvicorn.run(
            "profiler_server.app:app_from_env",
            factory=True,
            host=settings.host,
            port=settings.port,
            workers=workers,
            log_level=log_level,
            **timeouts,
        )


@token_app.command("create")
def token_create(
    name: Annotated[str, typer.Option(help="Who the token is for, e.g. pixel7-agent.")],
    role: Annotated[str, typer.Option(help="agent (uploads, claims jobs), client (creates jobs) or admin (everything).")],
    expires_days: Annotated[
        float | None, typer.Option("--expires", help="Days until the token stops working (default: never).", min=0.001)
    ] = None,
    device: Annotated[
        list[str] | None,
        typer.Option("--device", help="Agent tokens: act for this device only (repeat for several; default: any device)."),
    ] = None,
    database_url: DatabaseUrl = None,
) -> None:
    """Create a token and print it once (only its hash is stored). An agent token's name is the agent's identity:
    only it may renew or fail the jobs it claimed, and only it may change the devices it registered.

    Example: profiler-server token create --name pixel7-agent --role agent --device pixel7 --expires 90
    """
    from profiler_server.auth import create_token

    with _session(database_url, migrate=True) as session:
        token = create_token(session, name, role, expires_days=expires_days, devices=list(device) if device else None)
    typer.echo(token)
    typer.echo(f"token for {name!r} ({role}); it is shown only once", err=True)


@token_app.command("revoke")
def token_revoke(
    name: Annotated[str | None, typer.Option(help="Revoke every token with this name.")] = None,
    token_id: Annotated[int | None, typer.Option("--id", help="Revoke the one token with this id (see token list).")] = None,
    database_url: DatabaseUrl = None,
) -> None:
    """Revoke one token by id, or every token of a name.

    Example: profiler-server token revoke --id 3 · profiler-server token revoke --name pixel7-agent
    """
    from profiler_server.auth import revoke_tokens

    if (name is None) == (token_id is None):
        _fail("give exactly one of --name and --id")
    with _session(database_url) as session:
        n = revoke_tokens(session, name=name, token_id=token_id)
    what = f"named {name!r}" if name is not None else f"with id {token_id}"
    if n == 0:
        _fail(f"no active token {what}")
    typer.echo(f"revoked {n} token(s) {what}")


@token_app.command("list")
def token_list(database_url: DatabaseUrl = None) -> None:
    """List tokens: id, name, role, created, expires, revoked (never the tokens themselves).

    Example: profiler-server token list
    """
    from profiler_server.auth import list_tokens

    with _session(database_url) as session:
        rows = list_tokens(session)
    typer.echo(f"{'id':>4}  {'name':<24} {'role':<7} {'created (UTC)':<19}  {'expires (UTC)':<19}  {'state':<7}  devices")
    for r in rows:
        fmt = lambda t: t.strftime("%Y-%m-%d %H:%M:%S") if t else "never"  # noqa: E731
        typer.echo(
            f"{r.id:>4}  {r.name:<24} {r.role:<7} {fmt(r.created_at):<19}  {fmt(r.expires_at):<19}  "
            f"{'revoked' if r.revoked else 'expired' if r.expired else 'active':<7}  "
            f"{', '.join(r.devices) if r.devices else 'any'}"
        )


@app.command("import")
def import_table(
    file: Annotated[
        str | None,
        typer.Argument(
            help="The published file (YAML or JSON); with --all, the folder (default: the tables shipped with hwnas).",
            show_default=False,
        ),
    ] = None,
    preset: Annotated[str | None, typer.Option(help="A known published table (fills every option below); see --list.")] = None,
    all_in: Annotated[
        bool,
        typer.Option(
            "--all",
            help="Import every known table: those shipped with hwnas, or those found "
            "in the folder given as FILE (e.g. your copy of the ones not shipped).",
        ),
    ] = False,
    list_presets: Annotated[bool, typer.Option("--list", help="List the known tables and exit.")] = False,
    fmt: Annotated[str | None, typer.Option("--format", help="ofa-yaml, proxyless-yaml or hwnasbench-json.")] = None,
    device: Annotated[str | None, typer.Option(help="Device to import into (created when new).")] = None,
    runtime: Annotated[str | None, typer.Option(help="Runtime of the table, e.g. tflite.")] = None,
    runtime_version: Annotated[str | None, typer.Option(help="Runtime version, when published.")] = None,
    threads: Annotated[int | None, typer.Option(min=1, help="Thread count of the table (default 1).")] = None,
    column: Annotated[str | None, typer.Option(help="hwnasbench-json: pixel3, raspi4, eyeriss or fpga.")] = None,
    project: Annotated[str | None, typer.Option(help="Source project, e.g. mit-han-lab/once-for-all.")] = None,
    source_file: Annotated[str | None, typer.Option(help="Path of the file in the source repository.")] = None,
    commit: Annotated[str | None, typer.Option(help="Commit of the source repository.")] = None,
    source_device: Annotated[str | None, typer.Option(help="The device the authors measured.")] = None,
    source_runtime: Annotated[str | None, typer.Option(help="The runtime the authors used.")] = None,
    licence: Annotated[str | None, typer.Option(help="Licence terms of the table.")] = None,
    url: Annotated[str | None, typer.Option(help="Where the file is published.")] = None,
    replace: Annotated[bool, typer.Option(help="Replace a table imported before from other content.")] = False,
    database_url: DatabaseUrl = None,
) -> None:
    """Import a published latency table (read-only, with its provenance); unmappable entries are listed with the reason.
    Importing the same content again changes nothing ("unchanged").

    Examples: profiler-server import --all (the shipped tables: profiler_server/published) ·
    profiler-server import --all ~/tables (every known file in a folder of yours, e.g. proxylessnas_pixel1_lut/mobile_trim.yaml) ·
    profiler-server import --preset pixel1-proxylessnas ~/tables/proxylessnas_pixel1_lut/mobile_trim.yaml ·
    profiler-server import my.yaml --format ofa-yaml --device s23-ofa --runtime tflite --project me/lab --source-file my.yaml
    --source-device "Galaxy S23" --licence CC-BY-4.0
    """
    from pathlib import Path

    from pydantic import ValidationError

    from hwnas import schemas
    from profiler_server.errors import ServiceError
    from hwnas.published_presets import PRESETS, UnknownPreset, import_report, import_request, validation_message
    from profiler_server.published import FOLDER as SHIPPED_FOLDER, shipped
    from profiler_server.services.imports import import_table as do_import

    if list_presets:
        for name, p in PRESETS.items():
            where = "shipped" if shipped(p.path) else "not shipped: import your copy"
            typer.echo(f"{name:<22} {p.format:<16} {p.path}  ({p.source.project}, {p.source.source_device}; {where})")
        return
    if (not all_in and file is None) or (all_in and preset is not None):
        _fail("give a FILE (with --preset or the source options), or --all [FOLDER]")

    def read(path: Path) -> str:
        try:
            return path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            _fail(f"{path}: cannot read: {exc}")

    requests: list[tuple[Path, schemas.LutImport]] = []
    if all_in:
        folder = Path(file) if file is not None else SHIPPED_FOLDER
        found = [p for p in PRESETS.values() if (folder / p.path).is_file()]
        if not found:
            _fail(f"{folder}: none of the known files is there (see --list)")
        requests = [(folder / p.path, p.request(read(folder / p.path), replace)) for p in found]
    else:
        path = Path(file)  # type: ignore[arg-type]
        table = {
            "format": fmt,
            "device": device,
            "runtime": runtime,
            "runtime_version": runtime_version,
            "threads": threads,
            "column": column,
        }
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
            requests = [(path, import_request(read(path), preset, replace, table, source))]
        except (UnknownPreset, ValidationError) as exc:
            _fail(validation_message(exc))
    for path, request in requests:  # one transaction per table: a bad file leaves nothing half-imported
        with _session(database_url, migrate=True) as session:
            try:
                result = do_import(session, request, imported_by="profiler-server import")
            except ServiceError as exc:
                _fail(f"{path}: {exc.detail}")
        typer.echo("\n".join(import_report(result)))


@db_app.command("upgrade")
def db_upgrade(
    database_url: DatabaseUrl = None,
    revision: Annotated[str, typer.Option(help="Target revision.")] = "head",
) -> None:
    """Create or migrate the schema (SQLite file or PostgreSQL database).

    Example: profiler-server db upgrade --database-url sqlite:///./hwnas.db
    """
    from sqlalchemy.exc import SQLAlchemyError

    from profiler_server.migrate import current_revision, upgrade

    url = _database_url(database_url)
    try:
        upgrade(url, revision)
        rev = current_revision(url)
    except SQLAlchemyError as exc:
        _db_error(exc)
    typer.echo(f"database at revision {rev}")


@db_app.command("current")
def db_current(database_url: DatabaseUrl = None) -> None:
    """Print the schema revision of the database.

    Example: profiler-server db current --database-url sqlite:///./hwnas.db
    """
    from sqlalchemy.exc import SQLAlchemyError

    from profiler_server.migrate import current_revision

    try:
        typer.echo(current_revision(_database_url(database_url)) or "empty (no schema)")
    except SQLAlchemyError as exc:
        _db_error(exc)


def main() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":
    main()
