"""`hwnas validate`: measure random whole networks on a device and check the latency table's predictions."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Optional

import typer

from search.app.commands._errors import fail, user_errors

# How to get the token `hwnas validate` needs (URL: the server's --database-url).
CLIENT_TOKEN_COMMAND = "profiler-server token create --name NAME --role client --database-url URL"


def register(app: typer.Typer) -> None:
    @app.command("validate")
    def validate(
        server: str = typer.Option(..., "--server", envvar="HWNAS_SERVER", help="Profiler server URL."),
        device: str = typer.Option(..., "--device", "-d", help="Device name on the server (a device agent must serve it)."),
        space: str = typer.Option(..., "--space", "-s", help="Built-in space name or space file."),
        runtime: str = typer.Option(
            "onnxruntime",
            "--runtime",
            help="onnxruntime, torchscript or executorch (the agent serves it: device-agent run "
            "--runtime executorch; its networks also get ExecuTorch's per-operator breakdown).",
        ),
        threads: int = typer.Option(1, "--threads", min=1, help="Threads of the table."),
        n: int = typer.Option(50, "--n", "-n", min=2, help="How many random architectures to measure."),
        seed: int = typer.Option(0, "--seed", help="Seed of the sampling (and of the calibration split)."),
        input_size: Optional[int] = typer.Option(None, "--input-size", min=1, help="Override the space's input size (square)."),
        calibrate: bool = typer.Option(
            False,
            "--calibrate",
            help="Fit measured ≈ a·predicted + b on half the networks, "
            "report on the other half, and store it with the table (the search applies it).",
        ),
        out: Optional[Path] = typer.Option(None, "--out", "-o", help="Write validation.json, report.md and scatter.png here."),
        token: Optional[str] = typer.Option(None, "--token", envvar="HWNAS_TOKEN", help="A client (or admin) token."),
        calibration_token: Optional[str] = typer.Option(
            None,
            "--calibration-token",
            envvar="HWNAS_CALIBRATION_TOKEN",
            help="With --calibrate: the token that stores the fit with the table — the device owner's agent token or an "
            "admin's (the server refuses a client's: every search applies it). Default: --token.",
        ),
        cache_dir: Optional[Path] = typer.Option(None, "--cache-dir", help="Where pulled tables are cached."),
        timeout: float = typer.Option(1800.0, "--timeout", help="Seconds to wait for the measurement job."),
        as_json: bool = typer.Option(False, "--json", help="Print the figures as one JSON object."),
    ) -> None:
        """Sample N uniform random architectures, have the device measure them whole together with every table
        entry they use (one job, interleaved rounds), and report how well the table predicts them: MAPE, share
        within ±5%/±10%, RMSE, Kendall τ, the measurement's own noise floor, and a scatter plot.

        Example: `hwnas validate --server http://127.0.0.1:8000 --device host-cpu --space fbnet-fmnist --n 50 --calibrate --token $CLIENT_TOKEN --calibration-token $OWNER_TOKEN -o val/`
        """
        from hwnas.client import AuthError
        from search.app.progress import JobBar
        from search.validate import ValidateConfig, ValidateError, check_runtime, run_validation

        try:
            check_runtime(runtime)
        except ValidateError as exc:
            raise fail(str(exc), 2) from None

        if not token:
            raise fail(
                f"hwnas validate creates a measurement job, which needs a client (or admin) token: --token TOKEN "
                f"or HWNAS_TOKEN; create one with `{CLIENT_TOKEN_COMMAND}`",
                2,
            )
        cfg = ValidateConfig(
            server=server,
            device=device,
            space=space,
            runtime=runtime,
            threads=threads,
            n=n,
            seed=seed,
            calibrate=calibrate,
            input_size=input_size,
            out=out,
            token=token,
            calibration_token=calibration_token,
            cache_dir=cache_dir,
            timeout_s=timeout,
        )
        with user_errors():
            try:
                with JobBar(enabled=sys.stderr.isatty()) as bar:
                    report = run_validation(cfg, log=lambda line: typer.echo(line, err=True), on_poll=bar)
            except ValidateError as exc:
                raise fail(str(exc)) from None
            except AuthError as exc:
                if exc.status != 401:
                    raise
                raise fail(
                    f"{exc}: the token is not one the server knows (revoked, expired, or from another database); "
                    f"create a client token with `{CLIENT_TOKEN_COMMAND}`"
                ) from None
        if as_json:
            typer.echo(json.dumps(report.figures()))
            return
        for line in report.summary_lines():
            typer.echo(line)
        for path in report.files.values():
            typer.echo(f"wrote {path}")
