"""Run one shell command in its own process group, timed, logged to disk, killed whole.

Every build, benchmark and checks step goes through here. Each gets its own session (process
group), so a timeout or Ctrl-C kills the command and everything it spawned, not just the shell.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from readfirst.constants import KILL_GRACE_SECONDS

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
    ) -> None:
        log_prefix.parent.mkdir(parents=True, exist_ok=True)
        self.cmd = cmd
        self.stdout_path = log_prefix.with_name(log_prefix.name + ".out")
        self.stderr_path = log_prefix.with_name(log_prefix.name + ".err")
        out = open(self.stdout_path, "wb")  # noqa: SIM115 - closed in wait()
        err = open(self.stderr_path, "wb")  # noqa: SIM115
        self._files = (out, err)

        def pin() -> None:  # runs in the child before exec
            if cpus:
                os.sched_setaffinity(0, cpus)

        self.started = time.perf_counter()
        self.proc = subprocess.Popen(
            ["/bin/sh", "-c", cmd],
            cwd=cwd,
            stdout=out,
            stderr=err,
            stdin=subprocess.DEVNULL,
            env={**os.environ, **(env or {})},
            start_new_session=True,
            preexec_fn=pin if cpus else None,
        )
        _LIVE_GROUPS.add(self.proc.pid)

    def wait(self, timeout: float) -> StepResult:
        timed_out = False
        try:
            remaining = max(0.0, timeout - (time.perf_counter() - self.started))
            self.proc.wait(timeout=remaining)
        except subprocess.TimeoutExpired:
            timed_out = True
            self.kill()
        except BaseException:  # Ctrl-C or any error: never leave the group running
            self.kill()
            raise
        finally:
            seconds = time.perf_counter() - self.started
            for f in self._files:
                f.close()
            _LIVE_GROUPS.discard(self.proc.pid)
        return StepResult(
            cmd=self.cmd,
            exit_code=None if timed_out else self.proc.returncode,
            seconds=seconds,
            timed_out=timed_out,
            stdout_path=str(self.stdout_path),
            stderr_path=str(self.stderr_path),
        )

    def kill(self) -> None:
        """SIGTERM the whole group, give it a grace period, then SIGKILL what is left (children
        that ignored SIGTERM included)."""
        signal_group(self.proc.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=KILL_GRACE_SECONDS)
        signal_group(self.proc.pid, signal.SIGKILL)
        self.proc.wait()


def signal_group(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def kill_all_live() -> None:
    """Used by signal handlers: end every command readfirst started."""
    for pgid in list(_LIVE_GROUPS):
        signal_group(pgid, signal.SIGTERM)
    if _LIVE_GROUPS:
        time.sleep(min(KILL_GRACE_SECONDS, 0.5))
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
) -> StepResult:
    return RunningStep(cmd, cwd, log_prefix, env=env, cpus=cpus).wait(timeout)


def kill_processes_under(roots: list[Path]) -> list[int]:
    """SIGKILL every process whose working directory is under one of `roots`: what a killed
    worker left behind. Linux /proc; elsewhere nothing is found."""
    resolved = [r.resolve() for r in roots]
    killed = []
    for proc_dir in Path("/proc").glob("[0-9]*"):
        try:
            cwd = (proc_dir / "cwd").readlink()
        except OSError:
            continue
        pid = int(proc_dir.name)
        if pid != os.getpid() and any(cwd.is_relative_to(r) for r in resolved):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)
    return killed
