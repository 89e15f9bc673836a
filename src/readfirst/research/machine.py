"""What this machine offers the diagnosis: the profiling tools, hardware counters, and the
memory bandwidth (a STREAM-triad probe, stream_probe.c, cached for a day per host).

Every tool failure degrades to a note; `step_failure` and `last_line` say in a note why a
tool's step failed.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import socket
import sys
import time
from importlib import resources
from pathlib import Path
from typing import Any

from readfirst.measure.metrics import MetricParseError, parse_metrics
from readfirst.measure.process import StepResult, run_step
from readfirst.measure.timedlock import timed_run
from readfirst.research import ResearchContext

TOOL_NAMES = ("perf", "py-spy", "cc")
DAY = 86_400.0
TOOL_TIMEOUT = 120.0


def resolve_tools(overrides: dict[str, str | None] | None = None) -> dict[str, str | None]:
    """Paths of perf, py-spy and cc: overrides first, then PATH, then this Python's bin/."""
    found = {name: shutil.which(name) for name in TOOL_NAMES}
    local = Path(sys.executable).parent / "py-spy"
    if found["py-spy"] is None and os.access(local, os.X_OK):
        found["py-spy"] = str(local)
    return {**found, **(overrides or {})}


def hardware_counters(perf: str | None, out_dir: Path, logs: Path, notes: list[str]) -> bool:
    """Whether `perf stat -e instructions` counts here (else a note: software sampling)."""
    if not perf:
        return False
    res = run_step(f"{shlex.quote(perf)} stat -e instructions true", out_dir,
                   logs / "perf-stat", TOOL_TIMEOUT)
    err = Path(res.stderr_path).read_text(errors="replace")
    ok = res.ok and "instructions" in err and "<not supported>" not in err
    if not ok:
        notes.append("no hardware counters here (perf stat -e instructions: not supported); "
                     "profiling uses software sampling (cpu-clock)")
    return ok


def bandwidth(ctx: ResearchContext, cc: str | None, out_dir: Path, logs: Path,
              notes: list[str]) -> dict[str, Any] | None:
    """The STREAM triad result: [research] bandwidth_gbs, a cached probe, or a new one."""
    given = ctx.research.get("bandwidth_gbs")
    if isinstance(given, int | float) and not isinstance(given, bool) and given > 0:
        return {"triad_gbs": float(given), "source": "[research] bandwidth_gbs"}
    cache, host = out_dir / "bandwidth.json", socket.gethostname()
    try:
        cached = json.loads(cache.read_text())
        if (cached.get("hostname") == host and time.time() - cached["timestamp"] < DAY
                and cached["triad_gbs"] > 0):
            return dict(cached)
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        pass
    binary = _probe_binary(cc, out_dir, logs, notes)
    if binary is None:
        return None
    mib = ctx.research.get("stream_mib", 0)  # MiB per array; 0: max(32 MiB, the L3)
    mib = mib if isinstance(mib, int) and mib > 0 else 0
    with timed_run(TOOL_TIMEOUT):
        res = run_step(f"{shlex.quote(str(binary))} {mib}", out_dir,
                       logs / "stream_probe", TOOL_TIMEOUT)
    try:
        metrics = parse_metrics("metric-lines", res.stdout()) if res.ok else {}
    except MetricParseError:
        metrics = {}
    if not metrics.get("triad_gbs"):
        notes.append(f"memory bandwidth probe failed ({step_failure(res)}): {last_line(res)}")
        return None
    result = {"hostname": host, "timestamp": time.time(), **metrics, "source": "stream_probe"}
    cache.write_text(json.dumps(result, indent=1))
    return result


def _probe_binary(cc: str | None, out_dir: Path, logs: Path, notes: list[str]) -> Path | None:
    """stream_probe compiled with `cc -O2` (reused while newer than its source)."""
    binary = out_dir / "stream_probe"
    tmp = out_dir / f"stream_probe.{os.getpid()}.tmp"
    source = resources.files("readfirst.research").joinpath("stream_probe.c")
    with resources.as_file(source) as src:
        if binary.is_file() and binary.stat().st_mtime >= src.stat().st_mtime:
            return binary
        if not cc:
            notes.append("no C compiler (cc): memory bandwidth not measured")
            return None
        res = run_step(f"{shlex.quote(cc)} -O2 -pthread -o {shlex.quote(str(tmp))} "
                       f"{shlex.quote(str(src))}", out_dir, logs / "stream_probe-build",
                       TOOL_TIMEOUT)
    if not res.ok or not tmp.is_file():
        notes.append(f"cannot compile the bandwidth probe ({step_failure(res)}): "
                     f"{last_line(res)}")
        return None
    return tmp.replace(binary)


def step_failure(res: StepResult) -> str:
    return f"timed out after {res.seconds:.0f} s" if res.timed_out else f"exit {res.exit_code}"


def last_line(res: StepResult) -> str:
    lines = [ln for ln in res.tail(20).splitlines() if ln.strip()]
    return lines[-1].strip()[:200] if lines else "no output"
