"""The options of every command that reads a latency table (search, predict, baseline, quant search): one wording,
one default, one place to add a runtime to."""

from __future__ import annotations

import typer

SERVER = typer.Option(None, "--server", envvar="HWNAS_SERVER", help="Profiler server URL (latency cost).")
DEVICE = typer.Option(None, "--device", "-d", help="Device name on the server.")
RUNTIME = typer.Option(None, "--runtime", help="Runtime of the table (onnxruntime, torchscript, executorch).")
THREADS = typer.Option(None, "--threads", min=1, help="Threads of the table.")
TOKEN = typer.Option(None, "--token", envvar="HWNAS_TOKEN", help="API token (needed to create jobs).")
LUT = typer.Option(None, "--lut", help="A latency table JSON file instead of the server.")
CACHE_DIR = typer.Option(None, "--cache-dir", help="Where pulled tables are cached (default: user cache dir).")
CREATE_JOB = typer.Option(
    None,
    "--create-job/--no-create-job",
    help="On missing table entries: have a device agent measure them and wait (default: ask when a person is at the terminal).",
)
WAIT_TIMEOUT = typer.Option(600.0, "--wait-timeout", help="Seconds to wait for the profiling job.")
