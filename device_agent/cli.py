"""``device-agent``: profile operators on Android phones over ADB, or on this host.

Commands: ``run`` (serve profiling jobs), ``profile`` (measure a list of keys now), ``info``
(what the phone is), ``loopback-device`` (a fake phone speaking real ADB, for trying
everything without one). Errors a user can cause print one line, no traceback.
"""

from __future__ import annotations

import json
import logging
import signal
import sys
import threading
from pathlib import Path
from typing import Annotated, Optional

import typer

from device_agent.errors import AgentError, ConfigError

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Measure operator latencies on Android phones (ADB) or on this host, for hwnas latency tables.",
)
log = logging.getLogger("device_agent")

Serial = Annotated[Optional[str], typer.Option("--serial", "-s", help="host:port (adb tcpip / loopback) or a USB serial.")]
Local = Annotated[bool, typer.Option("--local", help="Measure on this host, in-process (ONNX Runtime / TorchScript).")]
Server = Annotated[Optional[str], typer.Option("--server", envvar="HWNAS_SERVER", help="Profiler server URL.")]
Token = Annotated[Optional[str], typer.Option("--token", envvar="HWNAS_TOKEN", help="Agent token of the server.")]
Name = Annotated[Optional[str], typer.Option("--name", help="Device name on the server (default: manufacturer-model-serial).")]
Binary = Annotated[
    Optional[list[Path]],
    typer.Option(
        "--benchmark-binary",
        help="Host path of onnxruntime_perf_test / speed_benchmark_torch / executor_runner built for "
        "the phone's ABI (repeatable). Without it, the phone's own program in /data/local/tmp/hwnas/bin/ runs (the loopback "
        "device has its stand-ins there).",
    ),
]
Libs = Annotated[
    Optional[list[Path]],
    typer.Option(
        "--benchmark-lib", help="A shared library the binary needs (e.g. libonnxruntime.so), pushed next to it; repeatable."
    ),
]
Verbose = Annotated[bool, typer.Option("--verbose", "-v", help="Debug logging.")]
Bytecode = Annotated[
    Optional[int],
    typer.Option(
        "--bytecode-version",
        help="Save TorchScript models at this lite-interpreter bytecode version, for a phone whose "
        "PyTorch is older than this torch (it says which it reads: 'model version must be between 3 and 7' -> 7). "
        "Default: the version the installed torch writes (8 for torch 2.x); the agent names the flag when a phone refuses.",
    ),
]
Usb = Annotated[
    bool,
    typer.Option(
        "--usb",
        help="The phone on USB (the only one attached; with --serial SERIAL, that one). Needs the usb extra: "
        "pip install 'hwnas\\[usb]'. A --serial that is not host:port is taken as a USB serial anyway.",
    ),
]
AuthTimeout = Annotated[
    float,
    typer.Option(
        "--auth-timeout-s",
        min=1.0,
        help='Seconds to wait for *Allow* on the phone\'s "Allow USB debugging?" prompt, '
        "shown the first time this computer's key (--adb-key) connects; the agent says when to tap it.",
    ),
]
ReconnectS = Annotated[
    float,
    typer.Option(
        "--reconnect-s",
        min=0.0,
        help="Seconds a dropped phone is reconnected (back-off 1 s doubling to 30 s) before its "
        "job is given back and the agent exits 3. The default outlasts a reboot or a Wi-Fi outage.",
    ),
]
Clock = Annotated[
    str,
    typer.Option(
        "--clock",
        help="--local timing: auto (thread CPU time with 1 thread, wall "
        "otherwise), wall, or cpu. CPU time ignores preemption on a shared host.",
    ),
]


def _setup_logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        stream=sys.stderr,
        format="%(asctime)s device-agent %(levelname)s %(message)s",
        datefmt="%H:%M:%S",
    )
    for noisy in ("httpx", "httpcore", "adb_shell"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def _protocol(warmup: int, iterations: int, rounds: int, cv_threshold: float):
    from device_agent.protocol import ProtocolConfig

    try:
        return ProtocolConfig(warmup=warmup, iterations=iterations, rounds=rounds, cv_threshold=cv_threshold)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None


def _binaries(paths: list[Path] | None, runtime: str | None) -> dict[str, Path]:
    from device_agent.config import binary_runtime

    out: dict[str, Path] = {}
    for path in paths or []:
        if not path.is_file():
            raise ConfigError(f"benchmark binary {path} not found")
        out[binary_runtime(path, runtime)] = path
    return out


def _open(serial: str | None, local: bool, key: Path | None, usb: bool = False, auth_timeout_s: float | None = None):
    from device_agent.platforms import open_device

    if (serial or usb) and local:
        raise ConfigError("give either --serial/--usb or --local, not both")
    return open_device(serial, local=local, key_path=str(key) if key else None, usb=usb, auth_timeout_s=auth_timeout_s)


def _stop_on_signals() -> threading.Event:
    """First Ctrl-C / SIGTERM: finish the current burst, upload, give the job back. Second Ctrl-C: quit now."""
    stop = threading.Event()

    def handler(signum: int, _frame: object) -> None:
        if stop.is_set() and signum == signal.SIGINT:
            raise KeyboardInterrupt
        stop.set()
        log.warning("stopping: finishing the current measurement, uploading, giving the job back (Ctrl-C again to quit at once)")

    signal.signal(signal.SIGINT, handler)
    signal.signal(signal.SIGTERM, handler)
    return stop


@app.command()
def run(
    serial: Serial = None,
    local: Local = False,
    server: Server = None,
    token: Token = None,
    name: Name = None,
    runtime: Annotated[
        Optional[list[str]],
        typer.Option(
            "--runtime",
            help="Serve only jobs of this runtime "
            "(onnxruntime | torchscript | executorch; repeatable). Default: the first two; "
            "executorch only when named.",
        ),
    ] = None,
    threads: Annotated[Optional[int], typer.Option("--threads", min=1, help="Serve only jobs with this thread count.")] = None,
    once: Annotated[bool, typer.Option("--once", help="Work off the queue for this device, then exit.")] = False,
    benchmark_binary: Binary = None,
    benchmark_lib: Libs = None,
    runtime_version: Annotated[Optional[str], typer.Option(help="Version of the phone runtime, stored with the table.")] = None,
    lease_s: Annotated[float, typer.Option(min=1.0, help="Job lease in seconds (heartbeated every third).")] = 120.0,
    poll_s: Annotated[float, typer.Option(min=0.1, help="Seconds between claims while no job is waiting.")] = 5.0,
    upload_deadline_s: Annotated[
        float,
        typer.Option(
            min=0.1,
            help="Seconds an upload is retried while the server is "
            "down or failing; then the batch waits in the spool and goes up "
            "when the server answers again.",
        ),
    ] = 120.0,
    batch_size: Annotated[int, typer.Option(min=1, help="Operators per batch (one upload, one device command).")] = 16,
    warmup: Annotated[int, typer.Option(min=0, help="Warm-up runs per operator.")] = 10,
    iterations: Annotated[int, typer.Option(min=1, help="Timed runs per operator.")] = 50,
    rounds: Annotated[int, typer.Option(min=1, help="Bursts per operator, in shuffled interleaved rounds.")] = 5,
    cv_threshold: Annotated[float, typer.Option(min=0.0, help="Re-measure when the burst-minimum CV is above this.")] = 0.05,
    max_temp: Annotated[float, typer.Option(help="Cool down before a batch when a sensor is above this (°C).")] = 55.0,
    no_pin: Annotated[bool, typer.Option("--no-pin", help="Do not pin to the fastest cluster with taskset.")] = False,
    cache_dir: Annotated[Optional[Path], typer.Option(help="Model cache (default ~/.cache/hwnas/models).")] = None,
    key: Annotated[
        Optional[Path], typer.Option("--adb-key", help="ADB private key (default ~/.android/adbkey, else generated).")
    ] = None,
    usb: Usb = False,
    auth_timeout_s: AuthTimeout = 60.0,
    reconnect_s: ReconnectS = 600.0,
    clock: Clock = "auto",
    bytecode_version: Bytecode = None,
    verbose: Verbose = False,
) -> None:
    """Register the device, claim its profiling jobs, measure, upload after every batch, repeat.

    Example: device-agent run --serial 192.168.1.20:5555 --server http://lab:8000 --token $T
    --benchmark-binary build/Android/Release/onnxruntime_perf_test --once
    """
    from device_agent.bytecode import check_version
    from device_agent.config import AgentConfig
    from device_agent.jobloop import Agent
    from device_agent.protocol import CoolDown
    from device_agent.runtimes.base import RUNTIMES, check_runtime

    _setup_logging(verbose)
    check_version(bytecode_version)  # before anything is touched
    if not server:
        raise ConfigError("no server: give --server URL or set HWNAS_SERVER")
    runtimes = tuple(check_runtime(r) for r in runtime) if runtime else tuple(RUNTIMES)
    cfg = AgentConfig(
        name=name,
        runtimes=runtimes,
        threads=threads,
        binaries=_binaries(benchmark_binary, runtimes[0] if len(runtimes) == 1 else None),
        libs=list(benchmark_lib or []),
        runtime_version=runtime_version,
        lease_s=lease_s,
        poll_s=poll_s,
        upload_deadline_s=upload_deadline_s,
        batch_size=batch_size,
        once=once,
        pin=not no_pin,
        protocol=_protocol(warmup, iterations, rounds, cv_threshold),
        cooldown=CoolDown(max_temp_c=max_temp),
        cache_dir=cache_dir,
        clock=clock,
        bytecode_version=bytecode_version,
        reconnect_s=reconnect_s,
    )
    from hwnas.client import ProfilerClient

    stop = _stop_on_signals()
    device = _open(serial, local, key, usb, auth_timeout_s)
    with ProfilerClient(server, token=token) as client:
        agent = Agent(device, cfg, client=client, make_client=lambda: ProfilerClient(server, token=token), local=local, stop=stop)
        try:
            agent.connect()
            agent.preflight()
            agent.register()
            done = agent.serve()
        finally:
            agent.close()
    log.info("done: %d job(s) worked off", done)
    if stop.is_set():
        raise typer.Exit(130)


@app.command()
def info(
    serial: Serial = None,
    local: Local = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the DeviceInfo JSON the server stores.")] = False,
    key: Annotated[Optional[Path], typer.Option("--adb-key", help="ADB private key.")] = None,
    usb: Usb = False,
    auth_timeout_s: AuthTimeout = 60.0,
) -> None:
    """Print what the phone (or host) is: model, SoC, ABI, Android version, CPU clusters, governor, thermal state.

    Example: device-agent info --serial 127.0.0.1:5601
    """
    from device_agent.deviceinfo import read_facts

    _setup_logging(False)  # the "tap Allow" message and key notes, in the agent's format
    device = _open(serial, local, key, usb, auth_timeout_s)
    try:
        device.connect()
        facts = read_facts(device)
    finally:
        device.close()
    di = facts.device_info()
    if as_json:
        typer.echo(json.dumps({"name": facts.default_name(), **di.model_dump()}, indent=2))
        return
    clusters = (
        ", ".join(
            f"{len(c.cpus)}x {c.max_freq_khz / 1e6:.2f} GHz (cpu{'-'.join(str(x) for x in (c.cpus[0], c.cpus[-1]))})"
            for c in facts.clusters
        )
        or "unknown"
    )
    thermal = facts.thermal
    temps = ", ".join(f"{k} {v:.1f} °C" for k, v in thermal.temperatures_c.items()) or "unknown"
    rows = [
        ("name", facts.default_name()),
        ("serial", f"{di.serial} (via {device.serial})"),
        ("device", f"{di.manufacturer or '?'} {di.model or '?'}"),
        ("soc", di.soc or "?"),
        ("abi", di.abi or "?"),
        ("os", di.os_version or "?"),
        ("cpus", f"{di.cpu_cores or '?'} cores; clusters: {clusters}"),
        ("governor", ", ".join(facts.governors) or "unknown"),
        ("pin (1 thread)", f"taskset {facts.taskset_mask(1)}" if facts.taskset_mask(1) else "none"),
        ("thermal", f"status {thermal.status if thermal.status is not None else 'unknown'}; {temps}"),
        # The build says what runs the phone: a loopback phone's is ``hwnas.loopback`` (the dashboard's badge reads it).
        ("build", facts.props.get("ro.build.version.incremental") or "?"),
    ]
    width = max(len(k) for k, _ in rows)
    for k, v in rows:
        typer.echo(f"{k:<{width}}  {v}")


@app.command()
def profile(
    keys: Annotated[Path, typer.Option("--keys", help="File of operator keys: one per line, or a JSON list.")],
    serial: Serial = None,
    local: Local = False,
    runtime: Annotated[str, typer.Option(help="onnxruntime | torchscript | executorch")] = "onnxruntime",
    threads: Annotated[int, typer.Option(min=1, help="Threads of the runtime.")] = 1,
    server: Server = None,
    token: Token = None,
    name: Name = None,
    out: Annotated[Optional[Path], typer.Option("--out", help="Also write the results as JSON here.")] = None,
    benchmark_binary: Binary = None,
    benchmark_lib: Libs = None,
    runtime_version: Annotated[Optional[str], typer.Option(help="Version of the phone runtime.")] = None,
    batch_size: Annotated[int, typer.Option(min=1)] = 16,
    warmup: Annotated[int, typer.Option(min=0)] = 10,
    iterations: Annotated[int, typer.Option(min=1)] = 50,
    rounds: Annotated[int, typer.Option(min=1)] = 5,
    cv_threshold: Annotated[float, typer.Option(min=0.0)] = 0.05,
    cache_dir: Annotated[Optional[Path], typer.Option(help="Model cache.")] = None,
    key: Annotated[Optional[Path], typer.Option("--adb-key", help="ADB private key.")] = None,
    usb: Usb = False,
    auth_timeout_s: AuthTimeout = 60.0,
    reconnect_s: ReconnectS = 600.0,
    bytecode_version: Bytecode = None,
    verbose: Verbose = False,
) -> None:
    """Measure a list of operator keys now and upload them (when --server is given); print the table.

    Example: device-agent profile --local --keys keys.txt --server http://localhost:8000 --token $T
    """
    from device_agent.config import AgentConfig
    from device_agent.jobloop import Agent
    from device_agent.keysfile import read_keys_file, results_table
    from device_agent.runtimes.base import check_runtime

    _setup_logging(verbose)
    wanted = read_keys_file(keys)
    check_runtime(runtime)
    cfg = AgentConfig(
        name=name,
        binaries=_binaries(benchmark_binary, runtime),
        libs=list(benchmark_lib or []),
        runtime_version=runtime_version,
        batch_size=batch_size,
        protocol=_protocol(warmup, iterations, rounds, cv_threshold),
        cache_dir=cache_dir,
        bytecode_version=bytecode_version,
        reconnect_s=reconnect_s,
    )
    stop = _stop_on_signals()
    client = None
    if server:
        from hwnas.client import ProfilerClient

        client = ProfilerClient(server, token=token)
    agent = Agent(_open(serial, local, key, usb, auth_timeout_s), cfg, client=client, local=local, stop=stop)
    try:
        agent.connect()
        if client is not None:
            agent.register()
            if agent.flush_spool():  # batches an earlier run could not upload
                log.info("uploaded spooled batches of an earlier run")
        results = agent.measure_keys(wanted, runtime, threads, upload=client is not None)
    finally:
        agent.close()
        if client is not None:
            client.close()
    rows = results_table(results)
    if out:
        out.write_text(json.dumps({"device": agent.name, "runtime": runtime, "threads": threads, "results": rows}, indent=2))
    width = max([len(r["key"]) for r in rows] + [3])
    typer.echo(f"{'key':<{width}}  {'median ms':>10}  {'min ms':>10}  {'p90 ms':>10}")
    for r in rows:
        typer.echo(f"{r['key']:<{width}}  {r['median_ms']:>10.4f}  {r['min_ms']:>10.4f}  {r['p90_ms']:>10.4f}")
    missing = [k for k in wanted if k not in results]
    if missing:
        raise ConfigError(f"{len(missing)} key(s) not measured: {', '.join(missing[:5])}{' ...' if len(missing) > 5 else ''}")


@app.command("loopback-device")
def loopback_device(
    port: Annotated[int, typer.Option(min=0, max=65535, help="TCP port on 127.0.0.1 (0: pick a free one).")],
    root: Annotated[Path, typer.Option(help="Sandbox folder: /data/local/tmp and the fake /sys live here.")],
    model: Annotated[
        str,
        typer.Option(
            "--model", help="Fake phone: pixel-7, galaxy-a51, android-8 (no awk), generic, or a JSON file of FakePhone fields."
        ),
    ] = "pixel-7",
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    auth: Annotated[
        bool, typer.Option("--auth/--no-auth", help="Require ADB RSA authentication (new keys are accepted).")
    ] = False,
    worker: Annotated[
        bool,
        typer.Option(
            "--worker/--no-worker",
            help="Keep a stand-in zygote (runtimes imported once, a fresh process per call, as on a phone).",
        ),
    ] = True,
    kill_on_close: Annotated[
        bool,
        typer.Option(
            "--kill-on-close",
            help="Kill a shell command when its stream closes. Off by default, as on a phone: adbd leaves it running.",
        ),
    ] = False,
    verbose: Verbose = False,
) -> None:
    """Run a loopback ADB device: a small adbd speaking the real ADB protocol, with a fake phone inside --root.

    Example: device-agent loopback-device --port 5601 --root /tmp/phone  (then: adb connect 127.0.0.1:5601)
    """
    from device_agent.loopback.adbd import LoopbackAdbd
    from device_agent.loopback.fakephone import load_phone

    _setup_logging(verbose)
    root.mkdir(parents=True, exist_ok=True)
    try:
        daemon = LoopbackAdbd(
            root, load_phone(model), port=port, host=host, auth_required=auth, worker=worker, kill_on_close=kill_on_close
        )
    except OSError as exc:
        raise ConfigError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    done = threading.Event()

    def stop(_signum: int, _frame: object) -> None:
        done.set()
        daemon.stopping.set()

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    typer.echo(
        f"loopback ADB device {daemon.phone.manufacturer} {daemon.phone.model} on {daemon.serial} "
        f"(root {daemon.sandbox.root}); try: adb connect {daemon.serial}",
        err=True,
    )
    sys.stderr.flush()
    try:
        daemon.serve_forever()
    finally:
        daemon.stop()


def main() -> None:
    """Console entry point: typed errors become one line and an exit code."""
    from hwnas.client import ProfilerError

    try:
        app()
    except AgentError as exc:
        typer.echo(f"device-agent: error: {exc}", err=True)
        sys.exit(exc.exit_code)
    except ProfilerError as exc:
        typer.echo(f"device-agent: server error: {exc}", err=True)
        sys.exit(4)
    except KeyboardInterrupt:
        typer.echo("device-agent: interrupted", err=True)
        sys.exit(130)


if __name__ == "__main__":
    main()
