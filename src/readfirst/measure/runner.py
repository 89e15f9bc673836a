"""Running the steps of one compare: build, checks, warm-up and benchmark rounds.

Every step is logged to disk and to the journal, and after every step the protected files of
every checkout (and of the user's own checkout) are re-hashed (tampering raises). Steps run in the
sandbox (one per side: only that side's worktree writable) with an allow-listed environment.
Rounds run base and candidate in a random order (RMIT), or, in duet mode, at the same time on
disjoint CPU sets.
"""

from __future__ import annotations

import math
import os
import random
from dataclasses import dataclass
from pathlib import Path

from readfirst.core import constants as C
from readfirst.core.config import Spec
from readfirst.measure.guards import tampered, tree_fingerprint
from readfirst.measure.metrics import MetricParseError, parse_metrics
from readfirst.measure.process import RunningStep, StepResult
from readfirst.measure.sandbox import Policy, policy_for, target_step_env
from readfirst.measure.timedlock import timed_runs
from readfirst.measure.yielding import quiet_here
from readfirst.store.journal import Journal


@dataclass
class Side:
    role: str  # base | cand
    rev: str  # as the user wrote it
    commit: str
    tree: str
    checkout: Path  # worktree root
    workdir: Path  # where commands run: the target's directory inside the checkout


@dataclass(frozen=True)
class Sample:
    value: float  # the primary metric
    metrics: dict[str, float]
    wall: float  # seconds, timed by readfirst
    cpu: float | None = None  # CPU seconds of the run's process tree (None: not measured)
    repeated: tuple[str, ...] = ()  # metric names printed more than once with different values


class StepFailed(Exception):
    """A build/checks/bench step failed; `role` says whose, `tail` the end of its output."""

    def __init__(self, role: str, step: str, reason: str, tail: str = "") -> None:
        super().__init__(f"{role} {step}: {reason}")
        self.role, self.step, self.reason, self.tail = role, step, reason, tail


class Tampering(Exception):
    def __init__(self, role: str, step: str, files: list[str]) -> None:
        super().__init__(f"protected files changed during {role} {step}: {', '.join(files)}")
        self.role, self.step, self.files = role, step, files


class BaseOutputsChanged(Exception):
    """The base's worktree (its build outputs) changed while a candidate step ran."""

    def __init__(self, step: str, files: list[str]) -> None:
        super().__init__(f"the base worktree changed during cand {step}: "
                         + ", ".join(files[:5]) + (" ..." if len(files) > 5 else ""))
        self.step, self.files = step, files


@dataclass(frozen=True)
class Isolation:
    """How steps are kept apart from readfirst and the user: the user's checkout (whose
    protected files are re-hashed too), the state directory hidden from steps, the sandbox."""

    repo: Path
    state_dir: Path
    sandbox: bool
    user_blobs: dict[str, str]  # protected files of the user's checkout as they were at start


class Runner:
    def __init__(
        self,
        spec: Spec,
        journal: Journal,
        run_id: int,
        run_dir: Path,
        sides: list[Side],
        expected_blobs: dict[str, str],
        isolation: Isolation | None = None,
    ) -> None:
        self.spec = spec
        self.journal = journal
        self.run_id = run_id
        self.run_dir = run_dir
        self.sides = {s.role: s for s in sides}
        self.expected = expected_blobs
        self.isolation = isolation
        self.metric_name = spec.metric.name  # fixed by the first base run when None
        self.rng = random.Random(int.from_bytes(os.urandom(8), "little"))
        self.env = target_step_env(spec.target.env)
        self.policies: dict[str, Policy] = {}
        if isolation is not None and isolation.sandbox:
            t = spec.target
            commands = [c for c in (t.build, t.bench, t.checks) if c]
            self.policies = {s.role: policy_for(s.checkout, isolation.repo, isolation.state_dir,
                                                t.network, commands) for s in sides}

    def _step(self, side: Side, cmd: str, prefix: Path, cpus: set[int] | None = None,
              timed: bool = True) -> RunningStep:
        """An untimed step (build, checks) pauses during other workers' timed runs when this
        local worker was told to (`[executor] quiet_timed_runs`)."""
        return RunningStep(cmd, side.workdir, prefix, cpus=cpus,
                           sandbox=self.policies.get(side.role), clean_env=self.env,
                           yield_to_timed=not timed and quiet_here())

    def _watch_base(self, side: Side) -> dict[str, tuple[int, int, int]] | None:
        """Before a candidate step: the base worktree's fingerprint (without the sandbox the
        candidate could rebuild the base's binary to make it slower)."""
        base = self.sides.get("base")
        if side.role != "cand" or base is None or self.policies:
            return None
        return tree_fingerprint(base.checkout)

    def _check_base(self, before: dict[str, tuple[int, int, int]] | None, step: str) -> None:
        if before is None:
            return
        after = tree_fingerprint(self.sides["base"].checkout)
        changed = sorted(p for p in before.keys() | after.keys() if before.get(p) != after.get(p))
        if changed:
            raise BaseOutputsChanged(step, changed)

    # --- single steps --------------------------------------------------------------------

    def _log_prefix(self, side: Side, step: str, rnd: int | None) -> Path:
        return self.run_dir / (f"{side.role}-{step}" + (f"-{rnd:03d}" if rnd is not None else ""))

    def _finish(self, side: Side, step: str, rnd: int | None, res: StepResult) -> int:
        step_id = self.journal.add_step(self.run_id, side.role, step, rnd, res)
        self.verify(side.role, step)
        return step_id

    def verify(self, role: str, step: str) -> None:
        """Raise Tampering when any checkout's protected files changed, the user's own
        checkout included."""
        for s in self.sides.values():
            bad = tampered(s.checkout, self.expected)
            if bad:
                raise Tampering(role if s.role == role else f"{role} (in {s.role})", step, bad)
        if self.isolation is not None:
            bad = tampered(self.isolation.repo, self.isolation.user_blobs)
            if bad:
                raise Tampering(f"{role} (in the user's checkout)", step, bad)

    def run(self, side: Side, step: str, cmd: str, timeout: float) -> StepResult:
        before = self._watch_base(side)
        res = self._step(side, cmd, self._log_prefix(side, step, None), timed=False).wait(timeout)
        self._finish(side, step, None, res)
        self._check_base(before, step)
        return res

    def build(self, side: Side) -> StepResult | None:
        if not self.spec.target.build:
            return None
        res = self.run(side, "build", self.spec.target.build, self.spec.target.build_timeout)
        if not res.ok:
            raise StepFailed(side.role, "build", _failure(res), res.tail(C.CRASH_TAIL_LINES))
        return res

    def checks(self, side: Side) -> StepResult | None:
        if not self.spec.target.checks:
            return None
        return self.run(side, "checks", self.spec.target.checks, self.spec.target.checks_timeout)

    # --- benchmark runs ------------------------------------------------------------------

    def _start_bench(self, side: Side, step: str, rnd: int | None, cpus: set[int] | None):
        if self.spec.metric.output_file:
            (side.workdir / self.spec.metric.output_file).unlink(missing_ok=True)
        prefix = self._log_prefix(side, step, rnd)
        return self._step(side, self.spec.target.bench, prefix, cpus)

    def _collect(self, side: Side, step: str, rnd: int | None, res: StepResult,
                 base_before: dict[str, tuple[int, int, int]] | None = None) -> Sample:
        step_id = self._finish(side, step, rnd, res)
        self._check_base(base_before, step)
        sample = self._parse(side, res)
        if rnd is not None:
            self.journal.add_sample(
                self.run_id, rnd, side.role, self._position, sample.value, sample.metrics,
                res.seconds, step_id,
            )
        return sample

    def _parse(self, side: Side, res: StepResult) -> Sample:
        tail = res.tail(C.CRASH_TAIL_LINES)
        if not res.ok:
            raise StepFailed(side.role, "bench", _failure(res), tail)
        streamed = self.spec.metric.format == "metric-lines" and not self.spec.metric.output_file
        if self.spec.metric.output_file:
            text = _read_output_file(side, self.spec.metric.output_file, tail)
        elif streamed and res.truncated:  # beyond the cap: the METRIC lines seen streaming
            text = "\n".join(f"METRIC {n}={v!r}" for n, v in res.metric_lines)
        else:
            text = res.stdout()
        try:
            metrics = parse_metrics(self.spec.metric.format, text)
        except MetricParseError as e:
            raise StepFailed(side.role, "bench", f"unreadable output: {e}", tail) from None
        repeated = _repeated(res.metric_lines) if streamed else ()
        if self.metric_name is None:
            if not metrics:
                raise StepFailed(side.role, "bench", "no METRIC line in the output", tail)
            self.metric_name = next(iter(metrics))
            self.journal.set_metric(self.run_id, self.metric_name)
        value = metrics.get(self.metric_name)
        if value is None or not math.isfinite(value):
            raise StepFailed(side.role, "bench", f"metric {self.metric_name!r} missing", tail)
        if value <= 0:
            raise StepFailed(
                side.role, "bench", f"metric {self.metric_name!r} = {value} (must be > 0)", tail
            )
        return Sample(value, metrics, res.seconds, cpu=res.cpu_seconds, repeated=repeated)

    def bench_once(self, side: Side, step: str, rnd: int | None = None) -> Sample:
        self._position = 0
        before = self._watch_base(side)
        with timed_runs(StepFailed, self.spec.target.bench_timeout):
            res = self._start_bench(side, step, rnd, None).wait(self.spec.target.bench_timeout)
        return self._collect(side, step, rnd, res, before)

    def warmup(self, order: list[Side]) -> None:
        for i in range(self.spec.compare.warmup):
            for side in order:
                self.bench_once(side, f"warmup{i}")

    def interleaved_round(self, rnd: int, base: Side, cand: Side) -> tuple[Sample, Sample]:
        """One RMIT round: both sides, in a fresh random order."""
        order = [base, cand]
        self.rng.shuffle(order)
        got: dict[str, Sample] = {}
        with timed_runs(StepFailed, self.spec.target.bench_timeout):  # one at a time
            for pos, side in enumerate(order):
                self._position = pos
                before = self._watch_base(side)
                res = self._start_bench(side, "bench", rnd, None).wait(
                    self.spec.target.bench_timeout)
                got[side.role] = self._collect(side, "bench", rnd, res, before)
        return got["base"], got["cand"]

    def duet_round(
        self, rnd: int, base: Side, cand: Side, cpu_sets: tuple[set[int], set[int]]
    ) -> tuple[Sample, Sample]:
        """One duet round: both sides at once on disjoint pinned CPUs, sets swapped at random."""
        sets = list(cpu_sets)
        self.rng.shuffle(sets)
        with timed_runs(StepFailed, self.spec.target.bench_timeout):
            started = {
                side.role: (side, self._start_bench(side, "bench", rnd, cpus))
                for side, cpus in ((base, sets[0]), (cand, sets[1]))
            }
            results = {role: (s, r.wait(self.spec.target.bench_timeout))
                       for role, (s, r) in started.items()}
        self._position = 0
        got = {role: self._collect(s, "bench", rnd, res) for role, (s, res) in results.items()}
        return got["base"], got["cand"]


def duet_cpu_sets() -> tuple[set[int], set[int]] | None:
    """Two disjoint halves of the CPUs this process may use; None with fewer than two."""
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        return None
    half = len(cpus) // 2
    return set(cpus[:half]), set(cpus[half : 2 * half])


def _read_output_file(side: Side, name: str, tail: str) -> str:
    """The benchmark's output file, which must be a regular file inside the side's checkout
    (a candidate's symlink to a file elsewhere is not followed), read up to the cap."""
    path = side.workdir / name
    try:
        real = path.resolve(strict=True)
    except (OSError, RuntimeError):
        raise StepFailed(side.role, "bench", f"no output file {name}", tail) from None
    if not real.is_relative_to(side.checkout.resolve()) or not real.is_file():
        raise StepFailed(side.role, "bench", f"output file {name} is not a file in the "
                         "worktree (a link to elsewhere?)", tail)
    with open(real, "rb") as fh:
        return fh.read(C.OUTPUT_CAP_BYTES).decode("utf-8", errors="replace")


def _repeated(lines: list[tuple[str, float]]) -> tuple[str, ...]:
    """Metric names printed more than once with different values in one run."""
    seen: dict[str, float] = {}
    out: set[str] = set()
    for name, value in lines:
        if name in seen and seen[name] != value:
            out.add(name)
        seen.setdefault(name, value)
    return tuple(sorted(out))


def _failure(res: StepResult) -> str:
    if res.timed_out:
        return f"timed out after {res.seconds:.0f}s (process group killed)"
    return f"exit code {res.exit_code}"
