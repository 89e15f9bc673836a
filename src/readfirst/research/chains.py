"""Chains: runs of passes over one buffer that could be one pass.

A chain is a run of passes (passes.py classifies the statements) over one buffer with only
unrelated statements in between (declarations, calls that do not name it); it becomes a
hypothesis when a copy or elementwise write of the buffer is followed by an in-place update or
a reduction of it. A loop, control flow or any statement naming the buffer in between ends the
chain: precision before recall.
"""

from __future__ import annotations

from readfirst.research.pass_model import Other, Pass


def _core(p: Pass, q: Pass, b: str) -> bool:
    """A copy/elementwise write of b, then an in-place update or a reduction of b."""
    return b in p.writes and b in q.reads and (
        (b in q.writes and q.kind != "copy") or q.kind == "reduce")


def _pair_ok(p: Pass, q: Pass, b: str) -> bool:
    if (p.bound and q.bound and p.bound != q.bound) or (p.start and q.start and
                                                         p.start != q.start):
        return False
    if b in q.writes and b not in q.reads:
        return False  # q overwrites b: p's write is dead, not a fusion
    if b in p.writes:
        return b in q.reads  # in-place update, reduction, or producer -> consumer
    return b in p.reads and b in q.reads  # two reads of b, or a reduction then an update


def chains(items: list[Pass | Other]) -> list[list[Pass]]:
    """Runs of passes over one buffer holding at least one core pair; runs that share a pass
    merge (exp into tmp, sum of tmp, copy tmp to out, scale out: one chain)."""
    runs: list[list[Pass]] = []
    for b in sorted({b for it in items if isinstance(it, Pass) for b in it.writes}):
        run: list[Pass] = []
        derived: set[str] = set()  # scalars computed by the run so far (and names from them)
        core = False
        for it in [*items, Other(frozenset(), True)]:
            if isinstance(it, Pass) and b in it.writes | it.reads:
                if not run or _pair_ok(run[-1], it, b):
                    # a core pair, unless the update needs what the previous passes computed
                    core |= bool(run) and _core(run[-1], it, b) and not it.uses & derived
                    run.append(it)
                    derived |= it.accs
                    continue
            elif isinstance(it, Other) and not it.breaks and b not in it.words:
                if it.words & derived:
                    derived |= it.defines
                continue  # a gap: a declaration or call that does not name b
            if core:
                runs.append(run)
            involved = isinstance(it, Pass) and b in it.writes | it.reads
            run = [it] if involved else []  # type: ignore[list-item]
            derived = set(it.accs) if isinstance(it, Pass) and involved else set()
            core = False
    merged: list[list[Pass]] = []
    for run in sorted(runs, key=lambda r: r[0].line):
        for m in merged:
            if {p.line for p in m} & {p.line for p in run}:
                m.extend(p for p in run if p not in m)
                m.sort(key=lambda p: p.line)
                break
        else:
            merged.append(list(run))
    return merged


def buffers_of(chain: list[Pass]) -> list[str]:
    """The chained buffers: written by one pass and used by another, in order."""
    out: list[str] = []
    for p in chain:
        for b in sorted(p.writes):
            if b not in out and any(b in q.reads | q.writes for q in chain if q is not p):
                out.append(b)
    return out


