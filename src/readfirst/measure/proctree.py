"""Clean-up by ownership: end exactly the processes a step (or a worker) started.

An unsandboxed step runs under this file as a tiny keeper process (`python -I -S proctree.py
PARENT_PID -- /bin/sh -c CMD`): the keeper is a child subreaper, so everything the step starts,
even a `setsid` daemon that double-forks and leaves the step's process group, stays in the
keeper's process tree (an orphan is re-parented to the nearest subreaper, never beyond it). When
the step's shell exits, or the keeper is told to stop (SIGTERM: a timeout, a cancel, or readfirst
itself dying, through PR_SET_PDEATHSIG), the keeper freezes its whole tree and kills it. Nothing
is ever found by working directory or name, so another readfirst's benchmark in a same-named
directory is never touched. (Sandboxed steps get the same from bwrap's PID namespace.)

`kill_tree(pid)` is the same clean-up for a worker process: its descendants, frozen then killed.

This file runs as a script with no imports beyond a few of the standard library's (it starts
per step, so its start-up is kept short).
"""

from __future__ import annotations

# the C module: `signal` itself imports enum, a tenth of the keeper's start-up
import _signal as signal
import ctypes
import os
import sys
import time

PR_SET_PDEATHSIG = 1
PR_SET_CHILD_SUBREAPER = 36
STOP_WAIT_SECONDS = 2.0  # how long one process may take to show it is stopped


def _children() -> dict[int, list[int]]:
    """parent pid -> its children's pids, from /proc (Linux)."""
    tree: dict[int, list[int]] = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as fh:
                ppid = int(fh.read().rsplit(b")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        tree.setdefault(ppid, []).append(int(name))
    return tree


def _children_of(pid: int) -> list[int] | None:
    """`pid`'s children from /proc/PID/task/*/children (a few small reads, where a scan of
    /proc reads every process); None when the kernel does not offer that file."""
    kids: list[int] = []
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return kids  # gone
    for tid in tasks:
        try:
            with open(f"/proc/{pid}/task/{tid}/children", "rb") as fh:
                kids.extend(int(k) for k in fh.read().split())
        except FileNotFoundError:
            if not os.path.exists(f"/proc/{pid}/task/{tid}"):
                continue  # the thread ended
            return None  # no CONFIG_PROC_CHILDREN
        except OSError:
            continue
    return kids


def descendants(root: int) -> list[int]:
    """Every process below `root` (children, their children, ...)."""
    found: list[int] = []
    todo = [root]
    while todo:
        kids = _children_of(todo.pop())
        if kids is None:
            return _scanned_descendants(root)
        found.extend(kids)
        todo.extend(kids)
    return found


def _scanned_descendants(root: int) -> list[int]:
    tree, found, todo = _children(), [], [root]
    while todo:
        for child in tree.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def _state(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            return fh.read().rsplit(b")", 1)[1].split()[0].decode()
    except (OSError, IndexError):
        return "gone"


def frozen(pid: int) -> bool:
    """Whether `pid` can no longer run: stopped, a zombie, gone, or blocked in vfork on a
    stopped child (a shell's vfork parent sleeps uninterruptibly until the child execs, so
    its own SIGSTOP only lands after the child is continued)."""
    state = _state(pid)
    if state in ("T", "t", "Z", "X", "gone"):
        return True
    return state == "D" and any(_state(c) in ("T", "t") for c in _children_of(pid) or [])


def _wait_stopped(pids: list[int]) -> None:
    """Until each is frozen (it can no longer fork)."""
    deadline = time.monotonic() + STOP_WAIT_SECONDS
    for pid in pids:
        while not frozen(pid) and time.monotonic() < deadline:
            time.sleep(0.001)


def _signal(pid: int, sig: int) -> bool:
    try:
        os.kill(pid, sig)
    except (ProcessLookupError, PermissionError):
        return False
    return True


def stop_tree(root: int) -> list[int]:
    """Freeze every descendant of `root` (SIGSTOP, repeated until a scan finds no new one, so
    none can fork past us). Returns the pids stopped."""
    stopped: list[int] = []
    seen: set[int] = set()
    for _ in range(1000):  # a fork bomb still ends: each round freezes all it finds
        new = [p for p in descendants(root) if p not in seen]
        if not new:
            break
        for pid in new:
            seen.add(pid)
            if _signal(pid, signal.SIGSTOP):
                stopped.append(pid)
        _wait_stopped(new)
    return stopped


def continue_pids(pids: list[int]) -> None:
    for pid in pids:
        _signal(pid, signal.SIGCONT)


def kill_tree(root: int, *, include_root: bool = False) -> list[int]:
    """Freeze every descendant of `root` (`stop_tree`), then SIGKILL them all. Returns the
    pids killed."""
    if include_root:
        _signal(root, signal.SIGSTOP)
        _wait_stopped([root])
    stopped = stop_tree(root)
    for pid in stopped + ([root] if include_root else []):
        _signal(pid, signal.SIGKILL)
    return stopped


def start_time(pid: int) -> int | None:
    """When `pid` started (clock ticks since boot), so a recorded pid is never confused with a
    later process that got the same number."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            return int(fh.read().rsplit(b")", 1)[1].split()[19])
    except (OSError, IndexError, ValueError):
        return None


def record_owner(path: str, pid: int) -> None:
    """Note that `pid` (a worker) owns a directory's processes, for a later sweep."""
    with open(path, "w") as fh:
        fh.write(f"{pid} {start_time(pid)}\n")


def kill_recorded_owner(path: str) -> list[int]:
    """End the recorded worker and all below it, if it is still that same process."""
    try:
        with open(path) as fh:
            pid_text, started = fh.read().split()
        pid = int(pid_text)
    except (OSError, ValueError):
        return []
    if str(start_time(pid)) != started or pid == os.getpid():
        return []
    return [*kill_tree(pid, include_root=True), pid]


class _Stop(Exception):
    pass


def _on_term(_signo: int, _frame: object) -> None:
    raise _Stop


def _children_left() -> bool:
    """Reap what has exited; True while a child is still there."""
    try:
        while os.waitpid(-1, os.WNOHANG)[0] != 0:
            pass
    except ChildProcessError:
        return False
    return True


def keep(parent: int, argv: list[str]) -> int:
    """Run `argv` as our child; when it ends (or we are told to stop), end all it started."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    signal.signal(signal.SIGTERM, _on_term)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    if os.getppid() != parent:  # readfirst died before the death signal was armed
        return 128 + signal.SIGTERM
    child = os.fork()
    if child == 0:
        for sig in (signal.SIGTERM, signal.SIGPIPE, signal.SIGINT):
            signal.signal(sig, signal.SIG_DFL)
        try:
            os.execv(argv[0], argv)
        finally:
            os._exit(127)
    status = None
    try:
        while status is None:
            pid, st = os.waitpid(-1, 0)  # also reaps orphans re-parented to us
            if pid == child:
                status = st
    except _Stop:
        pass
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    if _children_left():  # we are a subreaper: no child left means nothing below us at all
        kill_tree(os.getpid())
        try:
            while True:
                os.waitpid(-1, 0)
        except ChildProcessError:
            pass
    if status is None:
        return 128 + signal.SIGTERM
    if os.WIFSIGNALED(status):  # die the way the step died, so readfirst sees the same
        sig = os.WTERMSIG(status)
        signal.signal(sig, signal.SIG_DFL)
        os.kill(os.getpid(), sig)
    return os.waitstatus_to_exitcode(status)


def keeper_argv(argv: list[str]) -> list[str]:
    """`argv` run under a keeper whose parent is this process."""
    return [sys.executable, "-I", "-S", os.path.abspath(__file__), str(os.getpid()), "--",
            *argv]


if __name__ == "__main__":
    sys.exit(keep(int(sys.argv[1]), sys.argv[3:]))
