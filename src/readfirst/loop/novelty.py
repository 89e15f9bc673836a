"""Novelty: a change already measured (in this run, or on this baseline in an earlier run of
the target) is not measured again; it is recorded as skipped with where it was measured."""

from __future__ import annotations

import json

from readfirst.core.candidate import Candidate, normalized_diff_hash
from readfirst.store.loop_journal import LoopLog


class Novelty:
    def __init__(self, log: LoopLog, run_id: str) -> None:
        self.log = log
        self.run_id = run_id
        self.this_run: dict[str, tuple[str, str]] = {}  # diff hash -> (candidate id, where)
        self.other_runs: dict[str, dict[str, str]] = {}  # baseline -> diff hash -> where
        self.admitted: dict[str, str] = {}  # diff hash -> the candidate id that carries it
        for row in log.experiments(run_id):
            if row["status"] not in ("cancelled", "skipped"):
                self.remember(Candidate.from_dict(json.loads(row["candidate_json"])),
                              row["seq"], run_id, self.this_run)

    def remember(self, cand: Candidate, seq: int, run: str | None = None,
                 into: dict[str, tuple[str, str]] | None = None) -> None:
        """Note that `cand` is measured as experiment #seq of `run` (this run by default)."""
        if cand.diff:
            target = self.this_run if into is None else into
            target.setdefault(normalized_diff_hash(cand.diff),
                              (cand.id, f"experiment #{seq} of run {run or self.run_id}"))

    def duplicate_of(self, cand: Candidate, baseline: str) -> str | None:
        """Where the same edit was measured before, or None."""
        digest = normalized_diff_hash(cand.diff)
        earlier = self.admitted.get(digest)
        if earlier and earlier != cand.id:
            return f"same change as candidate {earlier}"
        if digest in self.this_run and self.this_run[digest][0] != cand.id:
            return f"same change as {self.this_run[digest][1]}"
        if digest in self._measured_on(baseline):
            return f"same change as {self._measured_on(baseline)[digest]}"
        return None

    def admit(self, fresh: list[Candidate], baseline: str) -> tuple[list[Candidate],
                                                                     list[tuple[str, str, str]]]:
        """(the candidates worth measuring, the rest as (id, title, "not novel: ...") skips)."""
        out, skipped = [], []
        for cand in fresh:
            dup = self.duplicate_of(cand, baseline)
            self.admitted.setdefault(normalized_diff_hash(cand.diff), cand.id)
            if dup:
                skipped.append((cand.id, cand.title, f"not novel: {dup}"))
            else:
                out.append(cand)
        return out, skipped

    def _measured_on(self, baseline: str) -> dict[str, str]:
        """Edits earlier runs of this target measured on `baseline` (read once per baseline)."""
        if baseline not in self.other_runs:
            found: dict[str, tuple[str, str]] = {}
            for row in self.log.db.execute(
                "SELECT loop_id, seq, candidate_json FROM experiments WHERE baseline = ?"
                " AND loop_id != ? AND status NOT IN ('cancelled', 'skipped')",
                (baseline, self.run_id),
            ).fetchall():
                self.remember(Candidate.from_dict(json.loads(row["candidate_json"])),
                              row["seq"], row["loop_id"], found)
            self.other_runs[baseline] = {h: where for h, (_id, where) in found.items()}
        return self.other_runs[baseline]
