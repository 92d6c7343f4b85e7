"""Measure on a device by running the benchmark binary, one shell invocation per schedule.

The programs: ``onnxruntime_perf_test`` (runtime ``onnxruntime``), ``speed_benchmark_torch``
(``torchscript``) and ExecuTorch's ``executor_runner`` (``executorch``).

Files live under the device's work folder (``/data/local/tmp/hwnas``): ``bin/<tool>``,
``models/<key>.<ext>``. The program is pushed from the host (``--benchmark-binary``) or, without one, is the
phone's own ``bin/<tool>`` (installed there before, by an earlier run or by hand), with its version in
``bin/<tool>.version`` when that file is there. A schedule of bursts becomes one small sh script: each burst is one
binary call framed by marker lines, ``; echo <marker> e <i> $?`` giving its exit code (ADB v1
has none). The script's output is streamed, so progress shows and a stop takes effect after
the current burst.
"""

from __future__ import annotations

import logging
import re
import shlex
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from device_agent import faults, scriptpid
from device_agent.deviceinfo import PhoneFacts, thermal_zones_script
from device_agent.errors import ConfigError, DeviceCommandError, DeviceFault
from device_agent.models import file_name, md5_of
from device_agent.platforms.base import Device, new_marker
from device_agent.runtimes.base import RUNTIME_TOOL, RUNTIMES, Burst, BurstResult, Item, ProgressFn, Runner, check_phone_runtime
from device_agent.runtimes.batch_output import error_text, parse_batch_output, parse_batch_thermal

if TYPE_CHECKING:
    from hwnas.schemas import OperatorBreakdown

log = logging.getLogger(__name__)

INLINE_LIMIT = 3500  # longer scripts are pushed as a file (old adbd: 4 KiB OPEN payloads)
THERMAL_ROOT = "/sys/class/thermal"
# speed_benchmark_torch's thread count: C10 flag of pytorch caffe2/utils/threadpool/ThreadPool.cc,
# read by getDefaultNumThreads() when the pthreadpool is built (pthreadpool-cpp.cc).
TORCH_THREADS_FLAG = "--pthreadpool_size"
# executor_runner's pool: --cpu_threads N resets ExecuTorch's thread pool to N (1 also runs everything on the
# calling thread); its default, -1, is a guess at the performant cores, so the agent always passes it.
ET_THREADS_FLAG = "--cpu_threads"
# Per-run times reduced on the device to samples of k runs (means, ms) and a total: see _burst_line.
# ORT result file rows: model,seconds,peak,cpu,index; the first d rows are warm-up runs. Only rows count: with -s
# the real program appends an empty line and seven "<name> Latency: <s> s" lines (PerformanceResult::DumpToFile;
# older builds "<name> Latency is <s>sec"),
# which a line count turned into 0 ms runs, and a burst minimum of 0. The T line's third field counts runs of
# 0 ms (none on a real phone: a run never takes 0 s), so a parse gone wrong shows (profile_overhead's zero_runs).
AWK_ORT = (
    'BEGIN {FS=","; print m} NF==5 && $5 ~ /^[0-9]+$/ {r++; if (r<=d) next; x=$2*1000; if (x==0) z++; '
    't+=x; s+=x; n++; if (n%k==0) {printf "S %.9g\\n", s/k; s=0}} END {printf "T %d %.9g %d\\n", n, t, z}'
)
# speed_benchmark_torch: PyTorchObserver lines (whole µs) reduced, every other line passed on.
AWK_TORCH = (
    '/PyTorchObserver/ {v=$0; sub(/.*"value": *"/, "", v); sub(/".*/, "", v); x=v/1000; t+=x; s+=x; n++; '
    'if (n%k==0) {o=o sprintf("S %.9g\\n", s/k); s=0}; next} {print} '
    'END {print m; printf "%s", o; printf "T %d %.9g\\n", n, t}'
)


# executor_runner: its "Iteration i of n: <ms> ms" log lines (stderr, one per execution) reduced like the
# PyTorchObserver lines; the first d are the warm-up runs (the program has none of its own). Other lines pass.
AWK_ET = (
    "/] Iteration [0-9]+ of [0-9]+: [0-9.]+ ms$/ {r++; if (r<=d) next; v=$0; sub(/.*] Iteration [0-9]+ of "
    '[0-9]+: /, "", v); sub(/ ms$/, "", v); x=v+0; if (x==0) z++; t+=x; s+=x; n++; '
    'if (n%k==0) {o=o sprintf("S %.9g\\n", s/k); s=0}; next} {print} '
    'END {print m; printf "%s", o; printf "T %d %.9g %d\\n", n, t, z}'
)
# An event-tracer build's last line (it traced every run: recorded with the batch, see state()).
ETDUMP_WRITTEN = "ETDump written to file"


def sync_files(device: Device, files: dict[str, Path], chunk: int = 48) -> list[str]:
    """Push ``{remote path relative to the work folder: host file}`` where the device lacks the same MD5.

    One ``md5sum`` command per ``chunk`` files decides; returns the pushed remote paths.
    """
    remote_md5: dict[str, str] = {}
    names = sorted(files)
    for i in range(0, len(names), chunk):
        part = names[i : i + chunk]
        out = device.shell(
            f"cd {shlex.quote(device.workdir)} 2>/dev/null && md5sum " + " ".join(shlex.quote(n) for n in part) + " 2>/dev/null"
        )
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

    def __init__(
        self,
        device: Device,
        runtime: str,
        threads: int,
        binary: Path | None,
        facts: PhoneFacts | None = None,
        runtime_version: str | None = None,
        pin: bool = True,
        read_timeout_s: float = 120.0,
        libs: Sequence[Path] = (),
    ) -> None:
        """``binary``: the host's program, pushed to the phone; None: the phone's own ``bin/<tool>``."""
        self.device = device
        self.runtime = check_phone_runtime(runtime)
        self.threads = threads
        self.tool = RUNTIME_TOOL[runtime]
        self.binary = Path(binary) if binary is not None else None
        if self.binary is not None and not self.binary.is_file():
            raise ConfigError(f"benchmark binary {self.binary} not found")
        self.runtime_version = runtime_version
        self.binary_md5 = md5_of(self.binary) if self.binary is not None else None
        self.abi = facts.props.get("ro.product.cpu.abi", "?") if facts is not None else "?"
        self.libs = [Path(p) for p in libs]  # shared libraries the binary needs, pushed next to it
        for lib in self.libs:
            if not lib.is_file():
                raise ConfigError(f"benchmark library {lib} not found")
        self.mask = facts.taskset_mask(threads) if (facts is not None and pin) else None
        self.read_timeout_s = read_timeout_s
        self._ready: set[str] = set()
        self._has_taskset: bool | None = None
        self.taskset_refused: str | None = None  # taskset's error once it refused the mask: unpinned from then on
        self.result_file_note: str | None = None  # set once the program could not open its result file
        self.zero_runs = 0  # runs of 0 ms read from result files (BurstResult.zero_runs), all calls together
        # executorch: what XNNPACK runs of each key's program (read from the .pte on the host), for the batch's keys,
        # and whether the phone's build traces its runs (it wrote an ETDump in the last batch).
        self._delegation: dict[str, dict[str, Any]] = {}
        self.event_tracer: bool | None = None

    @property
    def remote_binary(self) -> str:
        return f"bin/{self.tool}"

    @staticmethod
    def remote_model(item: Item) -> str:
        return f"models/{file_name(item.key, item.model.suffix)}" if item.model.suffix else f"models/{item.model.name}"

    def prepare(self, items: Sequence[Item]) -> None:
        """Push the binary and the models the device does not have yet (same MD5 → skipped)."""
        if self.runtime == "executorch":
            from search.export import pte_delegation

            for it in items:
                if it.key not in self._delegation and it.model.suffix == ".pte":
                    self._delegation[it.key] = pte_delegation(it.model)
        if self.binary is None and self.remote_binary not in self._ready:
            self._find_installed()
        files = {self.remote_binary: self.binary} if self.binary is not None else {}
        files.update({f"bin/{lib.name}": lib for lib in self.libs})
        files.update({self.remote_model(it): it.model for it in items})
        wanted = {k: v for k, v in files.items() if k not in self._ready}
        if not self._ready:
            # A script of an agent or phone killed before may have left its pid file (scriptpid.py).
            scriptpid.clean_stale(self.device)
        if not wanted:
            return
        try:
            pushed = sync_files(self.device, wanted)
        except DeviceCommandError as exc:
            if faults.classify(str(exc)) == faults.STORAGE:  # EPERM / EROFS: pushing again will not help
                raise DeviceFault(
                    f"{self.device.serial} refuses to write the benchmark files into {self.device.workdir}: {exc}"
                ) from None
            raise
        if self.remote_binary in pushed:
            self.device.run(f"chmod 755 {shlex.quote(self.device.workdir)}/{self.remote_binary}")
        if self._has_taskset is None and self.mask:
            self._has_taskset = self.device.run("command -v taskset >/dev/null 2>&1", check=False).rc == 0
            if not self._has_taskset:
                log.warning("%s has no taskset: running unpinned", self.device.serial)
        if pushed:
            log.info("pushed %d file(s) to %s:%s", len(pushed), self.device.serial, self.device.workdir)
        self._ready.update(wanted)

    def _find_installed(self) -> None:
        """The phone's own program (no ``--benchmark-binary``): it must be there; its MD5 and version are recorded."""
        marker = new_marker("BIN")
        remote = shlex.quote(self.remote_binary)
        out = self.device.shell(
            f"cd {shlex.quote(self.device.workdir)} 2>/dev/null && [ -x {remote} ] && "
            f"md5sum {remote} && echo {marker} && cat {remote}.version 2>/dev/null"
        )
        if marker not in out:
            raise ConfigError(
                f"no benchmark binary for {self.runtime} on {self.device.serial}: build {self.tool} for "
                f"{self.abi} and pass --benchmark-binary PATH, or install it on the phone as "
                f"{self.device.workdir}/{self.remote_binary} (docs/device-agent.md)"
            )
        head, _, version = out.partition(marker)
        md5 = re.match(r"\s*([0-9a-f]{32})\s", head)
        self.binary_md5 = md5.group(1) if md5 else None
        if self.runtime_version is None and version.strip():
            self.runtime_version = version.strip().splitlines()[0]
        self._ready.add(self.remote_binary)

    def stage(self, items: Sequence[Item]) -> None:
        self.prepare(items)

    def forget(self, items: Sequence[Item]) -> None:
        """After a batch: its keys leave the delegation recorded with the next one (the files stay pushed)."""
        for it in items:
            self._delegation.pop(it.key, None)

    def forget_files(self) -> None:
        """After a reconnect: check the device's files again before trusting them."""
        self._ready.clear()

    def unpin(self, reason: str) -> None:
        """``taskset`` refused the mask (cores offline or outside the program's cpuset): run unpinned from now on.

        ``reason`` (taskset's error) is kept for ``state()``, so every batch measured unpinned says so.
        """
        self.taskset_refused = reason

    @property
    def pinned(self) -> bool:
        return bool(self.mask and self._has_taskset and not self.taskset_refused)

    # -- the script -------------------------------------------------------------------------
    def _command(self, burst: Burst, index: int) -> str:
        item = burst.item
        model = shlex.quote(self.remote_model(item))
        # An absolute library path: a relative one resolves against whatever folder the program changes to.
        prefix = f'LD_LIBRARY_PATH="$D/bin" OMP_NUM_THREADS={self.threads} '
        if self.pinned:
            prefix += f"taskset {self.mask} "
        if self.runtime == "torchscript":
            dims = ",".join(str(d) for d in item.input_shape)
            # Mobile PyTorch sizes its pthreadpool from --pthreadpool_size (a C10 flag every
            # program linking caffe2/utils/threadpool/ThreadPool.cc parses), not OMP_NUM_THREADS.
            return (
                f"{prefix}./{self.remote_binary} --model={model} --input_dims={dims} --input_type=float "
                f"--warmup={burst.warmup} --iter={burst.iters} --report_pep=true --use_caching_allocator=true "
                f"{TORCH_THREADS_FLAG}={self.threads}"
            )
        if self.runtime == "executorch":
            # No warm-up flag: the warm-up runs are executions too, dropped from the per-run lines (_burst_line).
            # Inputs (ones) are prepared before every execution outside the program's clock.
            return (
                f"{prefix}./{self.remote_binary} --model_path={model} --num_executions={burst.warmup + burst.iters} "
                f"{ET_THREADS_FLAG}={self.threads} --print_output=none"
            )
        # onnxruntime_perf_test always does exactly one warm-up run: ask for the rest as
        # extra runs and drop them from the per-run result file.
        extra = max(0, burst.warmup - 1)
        return (
            f"{prefix}./{self.remote_binary} -e cpu -m times -r {burst.iters + extra} -x {self.threads} -I -s "
            f"{model} res/{index}.csv"
        )

    def _burst_line(self, burst: Burst, i: int) -> str:
        """One burst: the program's call framed by marker lines, its per-run times reduced on the device.

        A 30 µs operator's 100 ms burst is 3000 runs, one line each in the program's output
        (``PyTorchObserver``) or result file: sending every line over ADB cost more than the
        runs. With ``awk`` on the device (Android ships the BSD one) the script sends the means
        of each K runs (``S`` lines, ms) and the total (``T runs ms``) under ``$M s <i>``;
        without it, every run as before.
        """
        call = self._command(burst, i)
        k = max(1, burst.sample_runs)
        if self.runtime == "torchscript":
            return (
                f'echo "$M b {i}"; {call} > res/{i}.out 2>&1; r=$?; '
                f'if [ -n "$A" ]; then awk -v k={k} -v m="$M s {i}" \'{AWK_TORCH}\' res/{i}.out; '
                f'else cat res/{i}.out; fi; rm -f res/{i}.out; echo "$M e {i} $r"'
            )
        if self.runtime == "executorch":
            return (
                f'echo "$M b {i}"; {call} > res/{i}.out 2>&1; r=$?; '
                f'if [ -n "$A" ]; then awk -v k={k} -v d={burst.warmup} -v m="$M s {i}" \'{AWK_ET}\' res/{i}.out; '
                f'else cat res/{i}.out; fi; rm -f res/{i}.out; echo "$M e {i} $r"'
            )
        drop = max(0, burst.warmup - 1)
        return (
            f'echo "$M b {i}"; {call} 2>&1; r=$?; '
            f'[ -n "$A" ] && [ -f res/{i}.csv ] && awk -v k={k} -v d={drop} -v m="$M s {i}" \'{AWK_ORT}\' '
            f'res/{i}.csv && rm -f res/{i}.csv; echo "$M e {i} $r"'
        )

    def script(self, bursts: Sequence[Burst], marker: str) -> str:
        # The work folder comes in as $D (set by the caller), so a pushed script file holds
        # no device paths: the loopback device rewrites paths in commands, not in files.
        # Thermal zones from sysfs before and after the bursts ($T, set by the caller): the
        # agent needs no separate (dumpsys) round trip before the next batch.
        lines = ['cd "$D" || exit 97', f"M='{marker}'", scriptpid.write_line(marker), thermal_zones_script("t0")]
        lines.append("rm -rf res; mkdir -p res")
        lines.append("A=; command -v awk >/dev/null 2>&1 && A=1")
        for i, burst in enumerate(bursts):
            lines.append(self._burst_line(burst, i))
        lines.append(thermal_zones_script("t1"))
        if self.runtime == "onnxruntime":
            lines.append('echo "$M csv"; grep -H . res/*.csv 2>/dev/null')
        lines.append(scriptpid.remove_line(marker))
        lines.append('echo "$M end"')
        return "\n".join(lines) + "\n"

    def run(
        self, bursts: Sequence[Burst], stop: threading.Event | None = None, progress: ProgressFn | None = None
    ) -> list[BurstResult]:
        if not bursts:
            return []
        self.prepare([b.item for b in bursts])
        marker = new_marker("B")
        text = self.script(bursts, marker)
        workdir = shlex.quote(self.device.workdir)
        if len(text) > INLINE_LIMIT:
            # exec: the script itself is then adbd's session leader, whose group scriptpid.py kills on a stop.
            command = f"export D={workdir} T={THERMAL_ROOT}; exec sh {self._pushed_script(text)}"
        else:
            command = f"D={workdir}\nT={THERMAL_ROOT}\n{text}"
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
        text = "".join(output)
        thermal = parse_batch_thermal(text, marker)
        self.last_thermal = thermal.get("t1") or thermal.get("t0")
        results = parse_batch_output(text, marker, bursts, self.runtime)
        if self.runtime == "executorch" and results:
            self.event_tracer = ETDUMP_WRITTEN in text
        for r in results:
            self.zero_runs += r.zero_runs
            if r.note and self.result_file_note is None:
                self.result_file_note = r.note
                log.warning("%s on %s: %s", self.tool, self.device.serial, r.note)
        return results

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

    def operator_breakdown(self, item: Item) -> OperatorBreakdown | None:
        """ExecuTorch: one more call of ``executor_runner`` on a network with ``--etdump_path``, its ETDump pulled back
        and read on the host (runtimes/etdump.py). None for the other programs, and for a build without the event
        tracer (it refuses the flag; seen from its batches: no ETDump was written)."""
        if self.runtime != "executorch" or self.event_tracer is False:
            return None
        import tempfile

        from device_agent.runtimes.etdump import PROFILE_RUNS, breakdown_from_etdump

        self.prepare([item])
        remote = "res/network.etdump"
        prefix = f'LD_LIBRARY_PATH="$D/bin" OMP_NUM_THREADS={self.threads} ' + (f"taskset {self.mask} " if self.pinned else "")
        command = (
            f'D={shlex.quote(self.device.workdir)}; cd "$D" && mkdir -p res && rm -f {remote} && '
            f"{prefix}./{self.remote_binary} --model_path={shlex.quote(self.remote_model(item))} "
            f"--num_executions={PROFILE_RUNS} {ET_THREADS_FLAG}={self.threads} --print_output=none "
            f"--etdump_path={remote} > res/etdump.out 2>&1"
        )
        done = self.device.run(command, timeout_s=self.read_timeout_s, check=False)
        if done.rc != 0:
            out = self.device.shell(f"cat {shlex.quote(self.device.workdir)}/res/etdump.out 2>/dev/null")
            raise DeviceCommandError(
                f"{self.tool} with --etdump_path exited {done.rc}: {error_text(out)}", output=out, rc=done.rc
            )
        delegation = self._delegation.get(item.key)
        backends = delegation["backends"] if delegation else []
        with tempfile.TemporaryDirectory(prefix="hwnas-etdump-") as tmp:
            local = Path(tmp) / "network.etdump"
            self.device.pull(f"{self.device.workdir}/{remote}", local)
            self.device.run(f"rm -f {shlex.quote(self.device.workdir)}/{remote}", check=False)
            return breakdown_from_etdump(local, backends[0] if len(backends) == 1 else "delegate")

    def state(self) -> dict[str, object]:
        threads = {"torchscript": f"{TORCH_THREADS_FLAG}={self.threads}", "executorch": f"{ET_THREADS_FLAG}={self.threads}"}.get(
            self.runtime, f"-x {self.threads}"
        )
        state: dict[str, object] = {
            "runner": "binary",
            "binary": self.tool,
            "binary_md5": self.binary_md5,
            "taskset": self.mask if self.pinned else None,
            "threads": self.threads,
            "threads_flag": threads,
            "thermal": "sysfs thermal zones, read by each batch script",
        }
        if self.taskset_refused:
            # Measured unpinned: the scheduler may move the program between clusters, which spreads the samples.
            state["taskset_refused"] = {"mask": self.mask, "error": self.taskset_refused[:300]}
        if self.result_file_note:
            state["result_file"] = self.result_file_note
        if self.runtime == "executorch":
            # As the local runner records it (runtimes/local.py), from the .pte files; plus whether the phone's
            # build traced every run (an event-tracer build: its ETDump costs time inside each execution).
            state["executorch"] = {
                "backend": "xnnpack",
                "pool_threads": self.threads,
                "event_tracer": self.event_tracer,
                "delegated": {k: d["delegated"] for k, d in sorted(self._delegation.items())},
                "portable_ops": {k: d["portable_ops"] for k, d in sorted(self._delegation.items()) if d["portable_ops"]},
            }
        return state


__all__ = ["BinaryRunner", "sync_files", "RUNTIMES"]
