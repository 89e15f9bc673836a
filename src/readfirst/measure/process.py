"""Run one shell command in its own process group, timed, logged to disk, killed whole.

Every build, benchmark and checks step goes through here. Each gets its own session (process
group), so a timeout or Ctrl-C kills the command and everything it spawned, not just the shell.
Untrusted steps run inside the sandbox (`sandbox.Policy`): then they also get a PID namespace,
and nothing they start outlives them; without it a keeper process (`proctree.py`, a child
subreaper) ends everything the step started when it ends, never anything else. Output comes
through pipes, never a file the step can reach: each stream's log is capped (head + tail kept),
known secrets are scrubbed from it, and METRIC lines are parsed as they stream past.
"""

from __future__ import annotations

import contextlib
import os
import selectors
import signal
import subprocess
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import BinaryIO

from readfirst.core import constants as C
from readfirst.measure.metrics.metric_lines import parse as parse_metric_lines
from readfirst.measure.proctree import keeper_argv, kill_tree
from readfirst.measure.sandbox import Policy, known_secrets, scrub
from readfirst.measure.yielding import Yielder

# Process groups still running, so an interrupt handler can kill them all.
_LIVE_GROUPS: set[int] = set()


@dataclass(frozen=True)
class StepResult:
    cmd: str
    exit_code: int | None  # None when killed on timeout
    seconds: float
    timed_out: bool
    stdout_path: str
    stderr_path: str
    truncated: bool = False  # output beyond the cap: the log holds its head and tail
    # every METRIC name=value line of stdout, in order (also those beyond the cap)
    metric_lines: list[tuple[str, float]] = field(default_factory=list)
    sandboxed: bool = False
    # user + system CPU seconds of the step's whole process tree (what it waited for): a
    # second clock for the judge that a busy machine hardly moves
    cpu_seconds: float | None = None
    paused_seconds: float = 0.0  # stopped while other workers' timed runs ran (in `seconds`)

    @property
    def ok(self) -> bool:
        return self.exit_code == 0 and not self.timed_out

    def stdout(self) -> str:
        return Path(self.stdout_path).read_text(encoding="utf-8", errors="replace")

    def tail(self, lines: int) -> str:
        """The last `lines` lines of stdout and stderr together, for crash reports."""
        out = self.stdout().splitlines()
        err = Path(self.stderr_path).read_text(encoding="utf-8", errors="replace").splitlines()
        return "\n".join((out + err)[-lines:])

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


class _Sink:
    """One output stream to its log file: scrubbed line by line, the first bytes up to the
    cap written, the last OUTPUT_TAIL_BYTES always kept, METRIC lines parsed on the way."""

    def __init__(self, path: Path, secrets: list[bytes], metrics: list[tuple[str, float]] | None,
                 cap: int) -> None:
        self.file: BinaryIO = open(path, "wb")  # noqa: SIM115 - closed in close()
        self.secrets = secrets
        self.keep = max(len(s) for s in secrets) - 1 if secrets else 0
        self.metrics = metrics
        self.head_room = max(0, cap - C.OUTPUT_TAIL_BYTES)
        self.written = 0
        self.dropped = 0
        self.tail = bytearray()
        self.pending = b""
        self.error: OSError | None = None  # disk full / read-only: raised once the step ends

    def feed(self, data: bytes) -> None:
        buf = self.pending + data
        cut = buf.rfind(b"\n") + 1
        if cut == 0 and len(buf) > 65536:  # a very long line: flush it, minus a secret's length
            cut = len(buf) - self.keep
        self.pending = buf[cut:]
        if cut:
            self._emit(buf[:cut])

    def _emit(self, chunk: bytes) -> None:
        chunk = scrub(chunk, self.secrets)
        if self.metrics is not None and b"METRIC" in chunk:
            for line in chunk.splitlines():
                if b"METRIC" in line and len(self.metrics) < C.MAX_STREAMED_METRICS:
                    for name, value in parse_metric_lines(line.decode("utf-8", "replace")).items():
                        self.metrics.append((name, value))
        room = self.head_room - self.written
        if room > 0:
            self._write(chunk[:room])
            self.written += min(room, len(chunk))
            chunk = chunk[room:]
        if chunk:
            self.dropped += len(chunk)
            self.tail += chunk
            del self.tail[: max(0, len(self.tail) - C.OUTPUT_TAIL_BYTES)]

    def _write(self, data: bytes) -> None:
        """Write, or remember the first failure and keep draining the pipe (a step blocked on
        a full pipe would hang until its timeout)."""
        if self.error is None:
            try:
                self.file.write(data)
            except OSError as e:
                self.error = e
                with contextlib.suppress(OSError):  # give back the space (disk full)
                    self.file.truncate(0)

    def close(self) -> bool:
        """Write the kept tail; True when output was dropped. Raises a write failure."""
        if self.pending:
            self._emit(self.pending)
            self.pending = b""
        truncated = self.dropped > len(self.tail)
        if truncated:
            lost = self.dropped - len(self.tail)
            self._write(f"\n[readfirst: {lost} bytes of output dropped beyond the "
                        f"{C.OUTPUT_CAP_BYTES // 2**20} MiB cap; the tail follows]\n".encode())
        self._write(bytes(self.tail))
        try:
            self.file.close()
        except OSError as e:
            self.error = self.error or e
        if self.error is not None:
            if self.error.filename is None:
                self.error.filename = self.file.name
            raise self.error
        return truncated


def _pump(proc: subprocess.Popen[bytes], sinks: dict[int, _Sink], exited: threading.Event
          ) -> None:
    """Read both pipes until EOF, or until shortly after the step exited (an unsandboxed
    daemon may hold a pipe open forever)."""
    sel = selectors.DefaultSelector()
    for fd in sinks:
        os.set_blocking(fd, False)
        sel.register(fd, selectors.EVENT_READ)
    deadline = None
    while sel.get_map():
        if exited.is_set() and deadline is None:
            deadline = time.monotonic() + C.OUTPUT_DRAIN_SECONDS
        if deadline is not None and time.monotonic() > deadline:
            break
        for key, _ in sel.select(timeout=0.1):
            fd = int(key.fd)
            try:
                data = os.read(fd, 1 << 16)
            except BlockingIOError:
                continue
            if data:
                sinks[fd].feed(data)
            else:
                sel.unregister(fd)
    sel.close()


class RunningStep:
    """A started command; `wait` collects it (or kills its group on timeout)."""

    def __init__(
        self,
        cmd: str,
        cwd: Path,
        log_prefix: Path,
        *,
        env: dict[str, str] | None = None,
        cpus: set[int] | None = None,
        sandbox: Policy | None = None,
        clean_env: dict[str, str] | None = None,
        yield_to_timed: bool = False,
    ) -> None:
        """`env` adds to readfirst's environment; `clean_env` replaces it (untrusted steps);
        `yield_to_timed`: stopped while another process's timed run holds the lock."""
        log_prefix.parent.mkdir(parents=True, exist_ok=True)
        self.cmd = cmd
        self.sandboxed = sandbox is not None
        self.stdout_path = log_prefix.with_name(log_prefix.name + ".out")
        self.stderr_path = log_prefix.with_name(log_prefix.name + ".err")
        secrets = known_secrets()
        self.metric_lines: list[tuple[str, float]] = []
        out = _Sink(self.stdout_path, secrets, self.metric_lines, C.OUTPUT_CAP_BYTES)
        err = _Sink(self.stderr_path, secrets, None, C.OUTPUT_CAP_BYTES)

        def setup() -> None:  # runs in the child before exec
            if cpus:
                os.sched_setaffinity(0, cpus)

        # what the step starts stays in its PID namespace, or below its keeper: ended with it
        shell = ["/bin/sh", "-c", cmd]
        argv = sandbox.bwrap_args(cwd) + shell if sandbox is not None else keeper_argv(shell)
        self.started = time.perf_counter()
        try:
            self.proc = subprocess.Popen(
                argv, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                stdin=subprocess.DEVNULL,
                env=clean_env if clean_env is not None else {**os.environ, **(env or {})},
                start_new_session=True, preexec_fn=setup if cpus else None,
            )
        except BaseException:
            out.close()
            err.close()
            raise
        _LIVE_GROUPS.add(self.proc.pid)
        assert self.proc.stdout is not None and self.proc.stderr is not None
        self._sinks = {self.proc.stdout.fileno(): out, self.proc.stderr.fileno(): err}
        self._exited = threading.Event()
        self._reader = threading.Thread(target=_pump, args=(self.proc, self._sinks,
                                                            self._exited), daemon=True)
        self._reader.start()
        # one thread reaps the step with wait4: the exit is timed to the moment it happens (no
        # polling) and the rusage of its tree is kept
        self._reaped = threading.Event()
        self._ended = self.started
        self._cpu: float | None = None
        threading.Thread(target=self._reap, daemon=True).start()
        self._yielder = Yielder(self.proc.pid, self._reaped) if yield_to_timed else None

    def _reap(self) -> None:
        try:
            _pid, status, usage = os.wait4(self.proc.pid, 0)
        except ChildProcessError:  # reaped elsewhere (never expected): no CPU figure
            self.proc.wait()
        else:
            self._ended = time.perf_counter()
            self._cpu = usage.ru_utime + usage.ru_stime
            self.proc.returncode = os.waitstatus_to_exitcode(status)
        self._reaped.set()

    def wait(self, timeout: float) -> StepResult:
        timed_out = False
        try:
            while not self._reaped.wait(max(0.0, self._deadline(timeout) - time.perf_counter())):
                if time.perf_counter() >= self._deadline(timeout):
                    timed_out = True
                    self.kill()
                    break
        except BaseException:  # Ctrl-C or any error: never leave the group running
            self.kill()
            raise
        finally:
            self._reaped.wait(None)
            seconds = self._ended - self.started
            _LIVE_GROUPS.discard(self.proc.pid)
            truncated = self._finish_output()
        return StepResult(
            cmd=self.cmd,
            exit_code=None if timed_out else self.proc.returncode,
            seconds=seconds,
            timed_out=timed_out,
            stdout_path=str(self.stdout_path),
            stderr_path=str(self.stderr_path),
            truncated=truncated,
            metric_lines=list(self.metric_lines),
            sandboxed=self.sandboxed,
            cpu_seconds=None if timed_out else self._cpu,
            paused_seconds=self._yielder.paused_seconds() if self._yielder else 0.0,
        )

    def _deadline(self, timeout: float) -> float:
        """When the step times out: time spent paused for others' timed runs does not count."""
        return self.started + timeout + (self._yielder.paused_seconds() if self._yielder else 0)

    def _finish_output(self) -> bool:
        self._exited.set()
        signal_group(self.proc.pid, signal.SIGKILL)  # the keeper (or bwrap) ended the rest
        self._reader.join()
        for pipe in (self.proc.stdout, self.proc.stderr):
            if pipe is not None:
                pipe.close()
        return any([sink.close() for sink in self._sinks.values()])

    def kill(self) -> None:
        """SIGTERM the whole group, give it a grace period, then SIGKILL what is left (children
        that ignored SIGTERM included). In the sandbox, bwrap's death ends its namespace."""
        if self._yielder is not None:  # a stopped process would not see the SIGTERM
            self._yielder.stop()
        signal_group(self.proc.pid, signal.SIGTERM)
        self._reaped.wait(C.KILL_GRACE_SECONDS)
        signal_group(self.proc.pid, signal.SIGKILL)
        self._reaped.wait(None)


def signal_group(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def end_process(proc: subprocess.Popen[bytes], grace: float) -> None:
    """End a worker process: SIGTERM its group (it unwinds and ends its own steps, whose
    keepers or sandboxes end all they started), then, if it is still there after `grace`,
    freeze and kill it with everything below it. By ownership, never by directory."""
    signal_group(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        kill_tree(proc.pid, include_root=True)
        signal_group(proc.pid, signal.SIGKILL)
        proc.wait()


def kill_all_live() -> None:
    """Used by signal handlers: end every command readfirst started."""
    for pgid in list(_LIVE_GROUPS):
        signal_group(pgid, signal.SIGTERM)
    if _LIVE_GROUPS:
        time.sleep(min(C.KILL_GRACE_SECONDS, 0.5))
    for pgid in list(_LIVE_GROUPS):
        signal_group(pgid, signal.SIGKILL)


def run_step(
    cmd: str,
    cwd: Path,
    log_prefix: Path,
    timeout: float,
    *,
    env: dict[str, str] | None = None,
    cpus: set[int] | None = None,
    sandbox: Policy | None = None,
    clean_env: dict[str, str] | None = None,
) -> StepResult:
    return RunningStep(cmd, cwd, log_prefix, env=env, cpus=cpus, sandbox=sandbox,
                       clean_env=clean_env).wait(timeout)
