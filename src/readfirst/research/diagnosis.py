"""The bottleneck diagnosis: profile the baseline's benchmark, measure this machine's memory
bandwidth, and place the workload on a roofline.

`BottleneckSource.run(ctx)` builds a checkout of the baseline (worktree slot "research"), runs
the benchmark under `perf record -e cpu-clock` (software sampling; py-spy for Python targets),
runs a STREAM-triad probe (machine.py) and, when `[research] bytes_per_unit` says how many
bytes one unit of the metric moves, compares the achieved bandwidth with the measured one.
Every tool failure degrades to a note.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import signal
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from readfirst.core.errors import ConfigError
from readfirst.measure import sandbox
from readfirst.measure.metrics import MetricParseError, parse_metrics
from readfirst.measure.process import RunningStep, StepResult, run_step, signal_group
from readfirst.measure.timedlock import LockTimeout, timed_run
from readfirst.research import Finding, Hypothesis, Reference, ResearchContext, Site
from readfirst.research import profile as P
from readfirst.research.machine import (
    TOOL_TIMEOUT,
    bandwidth,
    hardware_counters,
    last_line,
    resolve_tools,
    step_failure,
)
from readfirst.research.roofline import (
    HYPOTHESES,
    hotspot_names,
    parse_bytes,
    parse_perf_report,
    parse_pyspy_raw,
    roofline,
)
from readfirst.vcs import gitcli
from readfirst.vcs.workspace import Workspace

SLOT = "research"
TOP_N, REF_N = 15, 5  # functions kept in the diagnosis; cited and searched for sites
PROFILE_TIMEOUT_FACTOR = 1.5  # profiling slows the benchmark a little
C_GLOBS = ("*.c", "*.h", "*.cc", "*.cpp", "*.cxx", "*.hpp", "*.cu", "*.m", "*.mm")
NATIVE_GLOBS = (*C_GLOBS, "*.rs", "*.go", "*.f90", "*.zig")
# py-spy is started on this Python parent, which runs the benchmark and records its exit code:
# with `sh` as the root, py-spy races the Python child's start and may give up.
_PY_WRAPPER = ("import subprocess, sys; r = subprocess.call(['/bin/sh', '-c', sys.argv[1]]); "
               "open(sys.argv[2], 'w').write(str(r)); sys.exit(r)")


@dataclass(frozen=True)
class _StepIsolation:
    """How the diagnosis runs the target's own steps: in the sandbox when the config asks for
    it and bwrap works, with the allow-listed environment; `out_dir` (the profiler's output,
    made empty first) is writable inside it."""

    out_dir: Path
    kwargs: dict[str, Any]

    @classmethod
    def of(cls, ctx: ResearchContext, checkout: Path, out_dir: Path,
           tools: dict[str, str | None]) -> _StepIsolation:
        shutil.rmtree(out_dir, ignore_errors=True)
        out_dir.mkdir(parents=True)
        t = ctx.spec.target
        if not t.sandbox or sandbox.probe() is not None:
            return cls(out_dir, {})
        # the profilers by their paths, visible (read-only) wherever they are
        commands = [c for c in (t.build, t.bench, *tools.values()) if c]
        policy = sandbox.policy_for(checkout, ctx.repo, ctx.state_dir, t.network, commands)
        policy = replace(policy, extra_writable=(out_dir.resolve(),))
        clean = sandbox.target_step_env(t.env)
        return cls(out_dir, {"sandbox": policy, "clean_env": clean})


class BottleneckSource:
    """Profile + memory-bandwidth probe + roofline conclusion, as a research source."""

    name = "diagnosis"
    needs_network = False

    def __init__(self, commit: str | None = None,
                 tools: dict[str, str | None] | None = None) -> None:
        self.commit = commit  # default: ctx.baseline if set, else HEAD
        self._scope: list[str] = []
        self.tools = resolve_tools(tools)

    def run(self, ctx: ResearchContext) -> Finding:
        started = time.perf_counter()
        self._scope = list(ctx.spec.target.scope)  # the static call graph is read there
        finding = Finding(self.name)
        notes = finding.notes
        out_dir = ctx.state_dir / "research"
        logs = out_dir / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        metric = ctx.spec.metric
        diag: dict[str, Any] = {
            "profiler": None, "hardware_counters": hardware_counters(
                self.tools.get("perf"), out_dir, logs, notes),
            "top_functions": [], "hotspots": [], "samples": None,
            "metric": {"name": metric.name, "value": None, "unit": metric.unit},
            "bandwidth_gbs": None, "bandwidth_1t_gbs": None, "achieved_gbs": None,
            "share": None, "conclusion": "", "commit": None, "notes": notes,
        }
        finding.diagnosis = diag
        probe = bandwidth(ctx, self.tools.get("cc"), out_dir, logs, notes)
        if probe:
            diag.update(bandwidth_gbs=probe["triad_gbs"], bandwidth_1t_gbs=probe.get(
                "triad_1t_gbs"))
        ws = Workspace(ctx.home or ctx.root)
        try:
            rev = self.commit or getattr(ctx, "baseline", None) or "HEAD"
            diag["commit"] = commit = gitcli.resolve_commit(ctx.repo, rev)
            ws.ensure()
            with ws.lock_slot(SLOT):
                checkout = ws.checkout(SLOT, commit)
                workdir = checkout / ctx.rel if ctx.rel else checkout
                steps = _StepIsolation.of(ctx, checkout, out_dir / "profile", self.tools)
                text = self._build_and_profile(ctx, workdir, steps, logs, diag)
                if text is not None:
                    self._metric(ctx, text, diag)
                    sites = self._sites(workdir, diag["hotspots"][:REF_N], diag["profiler"])
                    self._conclude(ctx, diag, probe, sites, finding)
        except (ConfigError, gitcli.GitError, OSError) as e:
            notes.append(f"no checkout of the baseline: {e}")
            diag["conclusion"] = "not diagnosed: no checkout of the baseline"
        except LockTimeout as e:
            notes.append(str(e))
            diag["conclusion"] = "not diagnosed: no turn to run the benchmark alone"
        finding.seconds = time.perf_counter() - started
        return finding

    def _build_and_profile(self, ctx: ResearchContext, workdir: Path, steps: _StepIsolation,
                           logs: Path, diag: dict[str, Any]) -> str | None:
        """Build, run the benchmark under a profiler (else plainly); its output (stdout or
        [metric] output_file), None on failure. The baseline may hold kept candidates' code:
        these steps run in the sandbox like the loop's, the profiler's output directory the
        only writable place besides the worktree."""
        target, notes, out_dir = ctx.spec.target, diag["notes"], steps.out_dir
        if target.build:
            res = run_step(target.build, workdir, logs / "build", target.build_timeout,
                           **steps.kwargs)
            if not res.ok:
                _not_diagnosed(diag, "build", f"({step_failure(res)}); log {res.stderr_path}")
                return None
        out_file = workdir / ctx.spec.metric.output_file if ctx.spec.metric.output_file else None
        rc_file = out_dir / "bench.rc"  # the benchmark's exit code (py-spy always exits 0)
        picked = self._profiler(target.bench, workdir, out_dir, rc_file, notes)
        if picked:
            tool, data, cmd = picked
            for path in (data, rc_file, out_file):
                if path:
                    path.unlink(missing_ok=True)
            # not while a worker times its rounds (the loop's refresh)
            with timed_run(target.bench_timeout * PROFILE_TIMEOUT_FACTOR):
                step = RunningStep(cmd, workdir, logs / f"bench-{tool}", **steps.kwargs)
                res = step.wait(target.bench_timeout * PROFILE_TIMEOUT_FACTOR)
            rc = rc_file.read_text().strip() if rc_file.is_file() else None
            if rc is None:  # the profiler gave up: end the benchmark it may have left running
                signal_group(step.proc.pid, signal.SIGKILL)
            if res.timed_out or rc not in (None, "0"):
                _not_diagnosed(diag, "benchmark", f"under {tool} ("
                               f"{step_failure(res) if res.timed_out else f'exit {rc}'}); "
                               f"log {res.stderr_path}")
                return None
            if rc == "0" and data.is_file():
                diag["profiler"] = tool
                if not res.ok:
                    notes.append(f"{tool} exited {res.exit_code}: {last_line(res)}")
                self._read_profile(tool, data, out_dir, logs, diag, workdir)
                return _output(res, out_file)
            notes.append(f"{tool} run failed ({step_failure(res)}): {last_line(res)}; "
                         "running the benchmark without a profiler")
        if out_file:
            out_file.unlink(missing_ok=True)
        with timed_run(target.bench_timeout):
            res = run_step(target.bench, workdir, logs / "bench", target.bench_timeout,
                           **steps.kwargs)
        if not res.ok:
            _not_diagnosed(diag, "benchmark", f"({step_failure(res)}); log {res.stderr_path}")
            return None
        return _output(res, out_file)

    def _profiler(self, bench: str, workdir: Path, out_dir: Path, rc_file: Path,
                  notes: list[str]) -> tuple[str, Path, str] | None:
        """(tool, its output file, the profiled command writing rc_file), or None with a note."""
        python = _is_python_target(bench, workdir)
        perf, pyspy = self.tools.get("perf"), self.tools.get("py-spy")
        rc, q = shlex.quote(str(rc_file)), shlex.quote
        if python and pyspy:
            data = out_dir / "py-spy.txt"
            return "py-spy", data, (
                f"{q(pyspy)} record --format raw --subprocesses --rate 250 -o {q(str(data))} "
                f"-- {q(sys.executable)} -c {q(_PY_WRAPPER)} {q(bench)} {rc}")
        if perf:
            if python:
                notes.append("py-spy not found: perf sees the interpreter, not Python functions")
            data = out_dir / "perf.data"
            return "perf", data, (f"{q(perf)} record -e cpu-clock -F 999 -g -o {q(str(data))} "
                                  f"-- sh -c {q(f'( {bench}{chr(10)}); echo $? > {rc}')}")
        notes.append("no profiler available (install linux-perf or py-spy)")
        return None

    def _read_profile(self, tool: str, data: Path, out_dir: Path, logs: Path,
                      diag: dict[str, Any], workdir: Path) -> None:
        notes = diag["notes"]
        stacks: tuple[dict[str, float], float] = ({}, 0.0)
        if tool == "py-spy":
            raw = data.read_text(errors="replace")
            top = parse_pyspy_raw(raw, skip_parent=True)
            stacks = P.from_stacks(P.pyspy_stacks(raw))
        else:
            stacks = self._perf_stacks(data, out_dir, logs)
            perf, tab = shlex.quote(str(self.tools["perf"])), shlex.quote("\t")
            res = run_step(f"{perf} report --stdio --no-children --sort dso,symbol -g none "
                           f"-t {tab} -i {shlex.quote(str(data))}", out_dir,
                           logs / "perf-report", TOOL_TIMEOUT)
            text = res.stdout()
            if not res.ok:
                notes.append(f"perf report failed ({step_failure(res)}): {last_line(res)}")
            m = re.search(r"^# Samples: (\d+)([KM]?)", text, re.M)
            if m:
                diag["samples"] = int(m[1]) * {"": 1, "K": 1000, "M": 1_000_000}[m[2]]
            top = parse_perf_report(text)
        if not top:
            notes.append(f"{tool} recorded no samples (a benchmark too short to profile?)")
        elif diag["samples"] is not None and diag["samples"] < 100:
            notes.append(f"only {diag['samples']} samples: the profile is rough")
        diag["top_functions"] = top[:TOP_N]
        diag["hotspots"] = hotspot_names(top[:TOP_N])
        if top:
            try:
                P.inclusive_rows(diag, workdir, top, *stacks, scope=self._scope)
            except (gitcli.GitError, OSError, ValueError) as e:
                notes.append(f"no inclusive shares: {e}")

    def _perf_stacks(self, data: Path, out_dir: Path, logs: Path) -> tuple[dict[str, float],
                                                                           float]:
        """Inclusive shares from the recorded call stacks, and how many samples had callers."""
        perf = shlex.quote(str(self.tools["perf"]))
        res = run_step(f"{perf} script -F ip,sym,dso -i {shlex.quote(str(data))}", out_dir,
                       logs / "perf-script", TOOL_TIMEOUT)
        if not res.ok:
            return {}, 0.0
        with open(res.stdout_path, errors="replace") as fh:
            return P.from_stacks((s, 1) for s in P.perf_stacks(fh))

    def _metric(self, ctx: ResearchContext, text: str, diag: dict[str, Any]) -> None:
        try:
            metrics = parse_metrics(ctx.spec.metric.format, text)
        except MetricParseError as e:
            diag["notes"].append(f"the profiled run's output is unreadable: {e}")
            return
        name = ctx.spec.metric.name or next(iter(metrics), None)
        if name is None or name not in metrics:
            diag["notes"].append(f"metric {name!r} missing from the profiled run's output")
        else:
            diag["metric"].update(name=name, value=metrics[name])

    def _sites(self, workdir: Path, names: list[str], profiler: str | None) -> list[Site]:
        """Definitions of the hot functions (`git grep`, first match each); may be empty."""
        sites: list[Site] = []
        for name in names:
            parts = name.split("::")
            if not all(re.fullmatch(r"~?[A-Za-z_]\w*", p) for p in parts):
                continue
            short = "::".join(parts[-2:])
            if profiler == "py-spy":
                pattern, globs = rf"^[ \t]*(async[ \t]+)?def[ \t]+{short}[ \t]*\(", ("*.py",)
            else:
                pattern = rf"^([A-Za-z_][A-Za-z0-9_ \t*&:<>,()]*[ \t*&])?{short}[ \t]*\("
                globs = C_GLOBS
            out = gitcli.git(workdir, "grep", "-n", "-E", "-e", pattern, "--", *globs,
                             check=False)
            for line in out.splitlines():
                path, lineno, text = (line.split(":", 2) + ["", ""])[:3]
                if lineno.isdigit() and not text.rstrip().endswith(";"):
                    sites.append(Site(path, int(lineno), name))
                    break
        return sites

    def _conclude(self, ctx: ResearchContext, diag: dict[str, Any], probe: dict[str, Any] | None,
                  sites: list[Site], finding: Finding) -> None:
        metric, given = diag["metric"], ctx.research.get("bytes_per_unit")
        bpu = parse_bytes(given)
        if given is not None and bpu is None:
            finding.notes.append(f"[research] bytes_per_unit = {given!r}: expected a byte "
                                 "count such as 635437056 or \"606MiB\"")
        achieved, share, conclusion = roofline(metric["value"], ctx.spec.metric.unit,
                                               ctx.spec.metric.direction, bpu,
                                               diag["bandwidth_gbs"])
        diag.update(achieved_gbs=achieved, share=share, conclusion=conclusion)
        if share is not None and share > 1.2:
            finding.notes.append(f"achieved {achieved:.1f} GB/s exceeds the measured bandwidth: "
                                 "the data may fit in cache, or bytes_per_unit is too high")
        top = diag["top_functions"][:REF_N]
        refs = [Reference(f"profile:{t['function']}", "profile", t["function"],
                          detail=f"{t['share']:.1f}% of samples") for t in top]
        finding.references.extend(refs)
        if share is None or conclusion not in HYPOTHESES:
            return
        title, kind, why, effect, score = HYPOTHESES[conclusion]
        hot = ", ".join(f"{t['function']} {t['share']:.1f}%" for t in top) or "no profile"
        threads = f", {probe['threads']:.0f} threads" if probe and probe.get("threads") else ""
        rationale = (f"{metric['name']} = {metric['value']:.4g} {ctx.spec.metric.unit} at "
                     f"{bpu:.4g} bytes per unit: {achieved:.2f} GB/s achieved, {share:.1%} of "
                     f"the {diag['bandwidth_gbs']:.2f} GB/s STREAM triad on this machine"
                     f"{threads}. Hottest: {hot}. {why}")
        data = {"achieved_gbs": achieved, "bandwidth_gbs": diag["bandwidth_gbs"], "share": share}
        finding.hypotheses.append(Hypothesis(title, kind, rationale, sites, [r.id for r in refs],
                                             effect, score, data))


def _is_python_target(bench: str, workdir: Path) -> bool:
    """A Python benchmark: the command runs python/pytest, or the target is a Python project
    without native sources."""
    try:
        words = [os.path.basename(w) for w in shlex.split(bench) if not re.match(r"^\w+=", w)]
    except ValueError:
        words = []
    runners = ("uv", "poetry", "pipenv", "hatch", "pdm")
    if words and (words[0].startswith(("python", "pytest", "py.test")) or words[0] in runners
                  and any(w.startswith(("python", "pytest")) for w in words[1:3])):
        return True
    if not any((workdir / f).is_file() for f in ("pyproject.toml", "setup.py")):
        return False
    return not gitcli.git(workdir, "ls-files", "--", *NATIVE_GLOBS, check=False).strip()


def _not_diagnosed(diag: dict[str, Any], step: str, how: str) -> None:
    """A baseline `step` (build, benchmark) failed `how`: noted, and the conclusion says so."""
    diag["notes"].append(f"baseline {step} failed {how}")
    diag["conclusion"] = f"not diagnosed: the baseline {step} failed"


def _output(res: StepResult, out_file: Path | None) -> str:
    if out_file is None:
        return res.stdout()
    return out_file.read_text(errors="replace") if out_file.is_file() else ""

