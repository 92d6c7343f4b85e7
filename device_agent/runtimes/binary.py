"""Measure on a device by running the benchmark binary, one shell invocation per schedule.

Files live under the device's work folder (``/data/local/tmp/hwnas``): ``bin/<tool>``,
``models/<key>.<ext>``. A schedule of bursts becomes one small sh script: each burst is one
binary call framed by marker lines, ``; echo <marker> e <i> $?`` giving its exit code (ADB v1
has none). The script's output is streamed, so progress shows and a stop takes effect after
the current burst.
"""

from __future__ import annotations

import logging
import re
import shlex
import threading
from collections.abc import Iterable, Sequence
from pathlib import Path

from device_agent import parsers, scriptpid
from device_agent.deviceinfo import PhoneFacts
from device_agent.errors import ConfigError, DeviceCommandError
from device_agent.models import file_name, md5_of
from device_agent.platforms.base import Device, new_marker
from device_agent.runtimes.base import RUNTIMES, Burst, BurstResult, Item, ProgressFn, Runner, check_runtime
from device_agent.standins import RUNTIME_TOOL

log = logging.getLogger(__name__)

INLINE_LIMIT = 3500  # longer scripts are pushed as a file (old adbd: 4 KiB OPEN payloads)


def sync_files(device: Device, files: dict[str, Path], chunk: int = 48) -> list[str]:
    """Push ``{remote path relative to the work folder: host file}`` where the device lacks the same MD5.

    One ``md5sum`` command per ``chunk`` files decides; returns the pushed remote paths.
    """
    remote_md5: dict[str, str] = {}
    names = sorted(files)
    for i in range(0, len(names), chunk):
        part = names[i:i + chunk]
        out = device.shell(f"cd {shlex.quote(device.workdir)} 2>/dev/null && md5sum "
                           + " ".join(shlex.quote(n) for n in part) + " 2>/dev/null")
        for line in out.splitlines():
            m = re.match(r"^([0-9a-f]{32})\s+\*?(.+)$", line.strip())
            if m:
                remote_md5[m.group(2).strip()] = m.group(1)
    pushed = []
    for name in names:
        local = files[name]
        if remote_md5.get(name) != md5_of(local):
            device.push(local, f"{device.workdir}/{name}")
            pushed.append(name)
    return pushed


class BinaryRunner(Runner):
    """``onnxruntime_perf_test`` or ``speed_benchmark_torch`` on the device, pinned with taskset."""

    where = "device"

    def __init__(self, device: Device, runtime: str, threads: int, binary: Path, facts: PhoneFacts | None = None,
                 runtime_version: str | None = None, pin: bool = True, read_timeout_s: float = 120.0,
                 libs: Sequence[Path] = ()) -> None:
        self.device = device
        self.runtime = check_runtime(runtime)
        self.threads = threads
        self.tool = RUNTIME_TOOL[runtime]
        self.binary = Path(binary)
        if not self.binary.is_file():
            raise ConfigError(f"benchmark binary {self.binary} not found")
        self.runtime_version = runtime_version
        self.libs = [Path(p) for p in libs]  # shared libraries the binary needs, pushed next to it
        for lib in self.libs:
            if not lib.is_file():
                raise ConfigError(f"benchmark library {lib} not found")
        self.mask = facts.taskset_mask(threads) if (facts is not None and pin) else None
        self.read_timeout_s = read_timeout_s
        self._ready: set[str] = set()
        self._has_taskset: bool | None = None

    @property
    def remote_binary(self) -> str:
        return f"bin/{self.tool}"

    @staticmethod
    def remote_model(item: Item) -> str:
        return f"models/{file_name(item.key, item.model.suffix)}" if item.model.suffix else f"models/{item.model.name}"

    def prepare(self, items: Sequence[Item]) -> None:
        """Push the binary and the models the device does not have yet (same MD5 → skipped)."""
        files = {self.remote_binary: self.binary}
        files.update({f"bin/{lib.name}": lib for lib in self.libs})
        files.update({self.remote_model(it): it.model for it in items})
        wanted = {k: v for k, v in files.items() if k not in self._ready}
        if not wanted:
            return
        pushed = sync_files(self.device, wanted)
        if self.remote_binary in pushed:
            self.device.run(f"chmod 755 {shlex.quote(self.device.workdir)}/{self.remote_binary}")
        if self._has_taskset is None and self.mask:
            self._has_taskset = self.device.run("command -v taskset >/dev/null 2>&1", check=False).rc == 0
            if not self._has_taskset:
                log.warning("%s has no taskset: running unpinned", self.device.serial)
        if pushed:
            log.info("pushed %d file(s) to %s:%s", len(pushed), self.device.serial, self.device.workdir)
        self._ready.update(wanted)

    def stage(self, items: Sequence[Item]) -> None:
        self.prepare(items)

    def forget_files(self) -> None:
        """After a reconnect: check the device's files again before trusting them."""
        self._ready.clear()

    # -- the script -------------------------------------------------------------------------
    def _command(self, burst: Burst, index: int) -> str:
        item = burst.item
        model = shlex.quote(self.remote_model(item))
        # An absolute library path: a relative one resolves against whatever folder the program changes to.
        prefix = f'LD_LIBRARY_PATH="$D/bin" OMP_NUM_THREADS={self.threads} '
        if self.mask and self._has_taskset:
            prefix += f"taskset {self.mask} "
        if self.runtime == "torchscript":
            dims = ",".join(str(d) for d in item.input_shape)
            return (f"{prefix}./{self.remote_binary} --model={model} --input_dims={dims} --input_type=float "
                    f"--warmup={burst.warmup} --iter={burst.iters} --report_pep=true --use_caching_allocator=true")
        # onnxruntime_perf_test always does exactly one warm-up run: ask for the rest as
        # extra runs and drop them from the per-run result file.
        extra = max(0, burst.warmup - 1)
        return (f"{prefix}./{self.remote_binary} -e cpu -m times -r {burst.iters + extra} -x {self.threads} -I -s "
                f"{model} res/{index}.csv")

    def script(self, bursts: Sequence[Burst], marker: str) -> str:
        # The work folder comes in as $D (set by the caller), so a pushed script file holds
        # no device paths: the loopback device rewrites paths in commands, not in files.
        lines = ['cd "$D" || exit 97', f"M='{marker}'", scriptpid.write_line(marker)]
        if self.runtime == "onnxruntime":
            lines.append("rm -rf res; mkdir -p res")
        for i, burst in enumerate(bursts):
            lines.append(f'echo "$M b {i}"; {self._command(burst, i)} 2>&1; echo "$M e {i} $?"')
        if self.runtime == "onnxruntime":
            lines.append('echo "$M csv"; grep -H . res/*.csv 2>/dev/null')
        lines.append(scriptpid.remove_line(marker))
        lines.append('echo "$M end"')
        return "\n".join(lines) + "\n"

    def run(self, bursts: Sequence[Burst], stop: threading.Event | None = None,
            progress: ProgressFn | None = None) -> list[BurstResult]:
        if not bursts:
            return []
        self.prepare([b.item for b in bursts])
        marker = new_marker("B")
        text = self.script(bursts, marker)
        workdir = shlex.quote(self.device.workdir)
        if len(text) > INLINE_LIMIT:
            # exec: the script itself is then adbd's session leader, whose group scriptpid.py kills on a stop.
            command = f"export D={workdir}; exec sh {self._pushed_script(text)}"
        else:
            command = f"D={workdir}\n{text}"
        output: list[str] = []
        done = 0
        stopped = False
        end_rx = re.compile(re.escape(marker) + r" e \d+ \d+")
        finished = False
        try:
            for chunk in self.device.stream(command, timeout_s=self.read_timeout_s):
                output.append(chunk)
                ends = len(end_rx.findall(chunk))
                if ends:
                    done += ends
                    if progress is not None:
                        progress(min(done, len(bursts)), len(bursts))
                    if stop is not None and stop.is_set():
                        stopped = True
                        break
            finished = not stopped
        finally:
            if not finished:
                # Left early (stop, Ctrl-C, dropped link): adbd does not end the script, so kill it (scriptpid.py).
                self.device.close()
                scriptpid.kill_script(self.device, marker)
        return parse_batch_output("".join(output), marker, bursts, self.runtime)

    def _pushed_script(self, text: str) -> str:
        import tempfile

        with tempfile.NamedTemporaryFile("w", suffix=".sh", delete=False) as fh:
            fh.write(text)
            local = Path(fh.name)
        try:
            self.device.push(local, f"{self.device.workdir}/batch.sh")
        finally:
            local.unlink(missing_ok=True)
        return f"{shlex.quote(self.device.workdir)}/batch.sh"

    def state(self) -> dict[str, object]:
        return {"runner": "binary", "binary": self.tool, "binary_md5": md5_of(self.binary),
                "taskset": self.mask if self._has_taskset else None, "threads": self.threads}


def parse_batch_output(text: str, marker: str, bursts: Sequence[Burst], runtime: str) -> list[BurstResult]:
    """Turn a batch script's output into one ``BurstResult`` per finished burst (pure)."""
    begin = re.compile(re.escape(marker) + r" b (\d+)$")
    end = re.compile(re.escape(marker) + r" e (\d+) (\d+)$")
    bodies: dict[int, list[str]] = {}
    codes: dict[int, int] = {}
    csv_lines: list[str] = []
    current: int | None = None
    in_csv = False
    for line in text.splitlines():
        s = line.rstrip("\r")
        if s.startswith(marker):
            if (m := begin.match(s)) is not None:
                current, in_csv = int(m.group(1)), False
                bodies[current] = []
            elif (m := end.match(s)) is not None:
                codes[int(m.group(1))] = int(m.group(2))
                current = None
            elif s == f"{marker} csv":
                in_csv, current = True, None
            else:
                in_csv, current = False, None
            continue
        if in_csv:
            csv_lines.append(s)
        elif current is not None:
            bodies[current].append(s)
    per_burst_csv: dict[int, list[str]] = {}
    for line in csv_lines:
        m = re.match(r"^(?:.*/)?res/(\d+)\.csv:(.*)$", line)
        if m:
            per_burst_csv.setdefault(int(m.group(1)), []).append(m.group(2))
    results: list[BurstResult] = []
    for i, burst in enumerate(bursts):
        if i not in codes:
            break  # the run ended here (stopped, or the device went away)
        body = "\n".join(bodies.get(i, []))
        if codes[i] != 0:
            results.append(BurstResult(burst, error=f"{runtime} benchmark exited {codes[i]}: {_tail(body)}"))
            continue
        try:
            samples = _samples(runtime, body, per_burst_csv.get(i, []), burst)
        except parsers.ParseError as exc:
            results.append(BurstResult(burst, error=str(exc)))
            continue
        results.append(BurstResult(burst, samples))
    return results


def _samples(runtime: str, body: str, csv_rows: Iterable[str], burst: Burst) -> list[float]:
    if runtime == "torchscript":
        out = parsers.parse_speed_benchmark_torch(body)
        if out.samples_ms:
            return out.samples_ms[-burst.iters:]
        return [out.mean_ms] if out.mean_ms is not None else []
    summary = parsers.parse_onnxruntime_perf_test(body)
    runs = parsers.parse_ort_result_csv("\n".join(csv_rows))
    if runs and runs[-1]:
        per_run = runs[-1]
        return per_run[len(per_run) - burst.iters:] if len(per_run) > burst.iters else per_run
    # No per-run file (an old binary): the burst mean is all we know.
    return [summary.mean_ms]


def _tail(text: str, n: int = 300) -> str:
    text = " | ".join(line for line in text.strip().splitlines()[-4:])
    return text[-n:] if text else "no output"


__all__ = ["BinaryRunner", "parse_batch_output", "sync_files", "RUNTIMES"]
