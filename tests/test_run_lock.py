"""One run per target for every command that builds or runs the benchmark (issue 9, item 5):
`readfirst compare`, `bench`, `finalize` and the MCP server's experiment tools take the same
lock as `readfirst run`. A second one gets one line (and exit 2 from the CLI)."""

from __future__ import annotations

import asyncio
import fcntl
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import BASE_WORK, TOML, make_target, params, run_cli, write

pytest.importorskip("mcp")
from test_mcp import Client, drive  # noqa: E402

REFUSED = "another readfirst run"


def _held(target: Path) -> bool:
    """Whether someone holds the target's run lock (tried without taking it for long)."""
    lock = target / ".readfirst" / "run.lock"
    if not lock.is_file():
        return False
    with open(lock) as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(fh, fcntl.LOCK_UN)
        return False


def _refused_compare(target: Path) -> None:
    code, _, proc = run_cli("compare", "HEAD", "HEAD", cwd=target, check_json=False)
    lines = proc.stderr.strip().splitlines()
    assert code == 2 and len(lines) == 1 and REFUSED in lines[0], proc.stderr


def test_a_running_bench_refuses_a_compare_and_the_mcp_experiment_tools(tmp_path: Path) -> None:
    target = make_target(tmp_path / "t", TOML.replace(
        'bench = "./autoresearch.sh"', 'bench = "sleep 600"').replace(
        "bench_timeout = 20", "bench_timeout = 900"))
    first = subprocess.Popen([sys.executable, "-m", "readfirst", "bench", "--rounds", "2"],
                             cwd=target, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        while not _held(target):
            assert first.poll() is None, "the first run ended early"
            time.sleep(0.05)
        _refused_compare(target)

        async def body(c: Client) -> None:
            write(target, "src/params.h", params(BASE_WORK // 2))
            assert REFUSED in await c.error("run_experiment", title="Halve the work")
            assert REFUSED in await c.error("profile")
            assert REFUSED in await c.error("research", profile=True)
            write(target, "src/params.h", params())

        drive(target, body)
        assert first.poll() is None  # the first run was not disturbed
    finally:
        first.send_signal(signal.SIGINT)
        first.wait(timeout=120)


def test_an_mcp_experiment_holds_the_lock_against_a_compare(tmp_path: Path) -> None:
    # each benchmark run sleeps a second, so the experiment is still going when compare comes
    target = make_target(tmp_path / "t", TOML.replace(
        'bench = "./autoresearch.sh"', 'bench = "sleep 1; ./autoresearch.sh"'))

    async def body(c: Client) -> None:
        write(target, "src/params.h", params(BASE_WORK // 2))
        call = asyncio.create_task(c.call("run_experiment", title="Halve the work"))
        while not _held(target):
            assert not call.done(), "the experiment ended before it was seen holding the lock"
            await asyncio.sleep(0.05)
        await asyncio.to_thread(_refused_compare, target)
        result = await call
        assert result["verdict"] == "improved", result

    drive(target, body)
    assert not _held(target)  # given back when the tool call ended
