"""The forks proposer on a fork 2 000 commits ahead of a real-sized tree.

A generated project (about 3 000 files, 300 000 lines: a small C kernel library in scope,
plus models, backends, tools, tests, docs and CI outside it) and a fork of it 2 000 commits
ahead, made with `git fast-import`:
- 2 % of the commits touch scope (src/kernels): one real win (matvec does less work), one
  regression (softmax does more), dependent pairs (a helper added, then changed), commits for
  another architecture (arch/arm, which the build does not compile, and `#if __ARM_NEON`
  blocks), commits that also change docs (ported without them) or tools (skipped), neutral
  edits;
- the rest touch only files outside scope.
The benchmark's metric is set by the program (each kernel's cost constant, plus 0.2 % noise),
so verdicts are deterministic; the kernels also burn CPU in proportion, so the research
profile is real.

Prints: proposal time, experiments spent before the win is tried, experiments spent on
out-of-scope commits, skip records, and the verdicts of the first experiments.

Usage: .venv/bin/python benchmarks/fork_triage.py [--commits 2000] [--max-experiments 8]
"""

from __future__ import annotations

import argparse
import random
import subprocess
import tempfile
import time
from pathlib import Path

from readfirst.core.config import load_spec
from readfirst.loop.loop import LoopOptions, run_loop
from readfirst.proposers.base import ProposerContext
from readfirst.proposers.forks import ForksProposer
from readfirst.research.orchestrate import research_target
from readfirst.vcs import gitcli
from readfirst.vcs.workspace import target_at

TOML = """\
[target]
build = "make -j2"
bench = "./bench.sh"
build_timeout = 120
bench_timeout = 60
protected = ["bench.sh"]
scope = ["src/kernels/**"]

[metric]
name = "us"
direction = "lower"
unit = "us"

[compare]
rounds = 5
max_rounds = 10
noise_threshold = 0.01

[research]
competitors = [{ name = "fork", path = "../fork", branch = "fork" }]
"""

MAKEFILE = """\
SRC := $(wildcard src/kernels/*.c) src/kernels/arch/x86/simd.c
OBJ := $(patsubst src/kernels/%.c,build/%.o,$(SRC))
build/bench: $(OBJ)
\t$(CC) -o $@ $(OBJ)
build/%.o: src/kernels/%.c src/kernels/kernels.h
\t@mkdir -p $(dir $@)
\t$(CC) -O1 -c -o $@ $<
"""

KERNEL = """\
#include "kernels.h"
#define {up}_COST {cost:.1f}
/* {name}: burns CPU in proportion to its cost, returns the cost (the benchmark's metric). */
double {name}(void) {{
    volatile double s = 0;
    for (long i = 0; i < (long)({up}_COST * 100000); i++) s += i * 0.5;
    return {up}_COST;
}}
#if defined(__ARM_NEON)
static double {name}_neon(void) {{
    return {up}_COST * 0.9;
}}
#endif
"""

BENCH_C = """\
#include <stdio.h>
#include <stdlib.h>
#include "kernels.h"
int main(void) {
    unsigned r = 0;
    FILE *f = fopen("/dev/urandom", "rb");
    if (f) { if (fread(&r, sizeof r, 1, f) != 1) r = 0; fclose(f); }
    double noise = 1.0 + 0.002 * ((r % 2001) / 1000.0 - 1.0);
    double t = matvec() + softmax() + rmsnorm() + simd_extra();
    printf("METRIC us=%.4f\\n", t * noise);
    return 0;
}
"""


class Tree:
    """The files of the project, and fast-import commits that change them."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.files: dict[str, str] = {}
        self.stream: list[bytes] = []
        self.mark = 0

    def commit(self, branch: str, message: str, changes: dict[str, str], when: int) -> int:
        self.mark += 1
        self.files.update(changes)
        out = [f"commit refs/heads/{branch}\nmark :{self.mark}\n"
               f"committer Dev <dev@example.org> {when} +0000\n"]
        msg = message.encode()
        out.append(f"data {len(msg)}\n")
        head = "".join(out).encode() + msg + b"\n"
        if self.mark > 1:
            head += f"from :{self.mark - 1}\n".encode()
        for path, text in changes.items():
            data = text.encode()
            mode = "100755" if path.endswith(".sh") else "100644"
            head += f"M {mode} inline {path}\ndata {len(data)}\n".encode() + data + b"\n"
        self.stream.append(head)
        return self.mark

    def edit(self, path: str, old: str, new: str) -> dict[str, str]:
        text = self.files[path]
        assert old in text, (path, old)
        return {path: text.replace(old, new, 1)}

    def append(self, path: str, line: str) -> dict[str, str]:
        return {path: self.files[path] + line + "\n"}


def filler(rng: random.Random, lines: int, comment: str) -> str:
    return "".join(f"{comment} line {i}: {rng.getrandbits(64):016x}\n" for i in range(lines))


def base_tree(t: Tree) -> dict[str, str]:
    rng = t.rng
    files = {"Makefile": MAKEFILE, "readfirst.toml": TOML, ".gitignore": "build/\n",
             "bench.sh": "#!/bin/sh\nexec ./build/bench\n",
             "src/kernels/kernels.h": "double matvec(void);\ndouble softmax(void);\n"
                                      "double rmsnorm(void);\ndouble simd_extra(void);\n",
             "src/kernels/bench.c": BENCH_C,
             "src/kernels/arch/x86/simd.c": '#include "../../kernels.h"\n'
                                            "double simd_extra(void) { return 1.0; }\n",
             "src/kernels/arch/arm/simd.c": '#include "../../kernels.h"\n'
                                            "double simd_extra(void) { return 1.0; }\n"}
    for name, cost in (("matvec", 100.0), ("softmax", 50.0), ("rmsnorm", 30.0)):
        files[f"src/kernels/{name}.c"] = KERNEL.format(name=name, up=name.upper(), cost=cost)
    for i in range(20):
        files[f"src/kernels/util_{i:02d}.c"] = (
            f'#include "kernels.h"\nint util_{i:02d}(int x) {{\n    return x + {i};\n}}\n')
    for d, ext, n, comment in (("models", "cpp", 1500, "//"), ("backends/cuda", "cu", 250, "//"),
                               ("backends/metal", "m", 100, "//"), ("tools", "py", 300, "#"),
                               ("tests", "c", 300, "//"), ("docs", "md", 450, "<!-- -->"),
                               (".github/workflows", "yml", 20, "#")):
        for i in range(n):
            files[f"{d}/f{i:04d}.{ext}"] = filler(rng, 100, comment)
    return files


def fork_commits(t: Tree, n: int) -> dict[str, str]:
    """Commit the fork's history; returns {role: subject} of the interesting commits."""
    rng = t.rng
    scoped: list[tuple[str, str, dict[str, str] | None]] = []  # role, subject, changes
    scoped.append(("win", "matvec: walk the rows two at a time",
                   None))  # made when reached (edits the file as it is then)
    scoped.append(("regression", "softmax: faster exp with a lookup table", None))
    for k in range(3):
        scoped.append((f"dep{k}a", f"util_{10 + k}: add a scale helper", None))
        scoped.append((f"dep{k}b", f"util_{10 + k}: scale by two", None))
    for k in range(3):
        scoped.append((f"arm{k}", f"arm: faster NEON simd_extra ({k})", None))
        scoped.append((f"neon{k}", f"matvec: speed up the NEON path ({k})", None))
    for k in range(3):
        scoped.append((f"mixed_docs{k}", f"util_{k}: tidy, with docs", None))
    for k in range(2):
        scoped.append((f"mixed_code{k}", f"util_{3 + k}: and the tools", None))
    while len(scoped) < n * 2 // 100:
        k = len(scoped)
        scoped.append((f"neutral{k}", rng.choice(
            ["util: tidy", "kernels: faster loop bounds", "rmsnorm: comment", "util: rename"]
        ) + f" ({k})", None))
    # the win and the regression come late, as in a real fork far ahead
    positions = sorted(rng.sample(range(n // 10, n - n // 20), len(scoped) - 2))
    slots = {n - 40: scoped[0], n - 90: scoped[1]}
    rest = scoped[2:]
    deps = {r for r, _s, _c in rest if r.startswith("dep")}
    rest.sort(key=lambda s: (s[0] not in deps, s[0]))  # dependent pairs stay in order
    for pos, item in zip(positions, rest, strict=True):
        while pos in slots:
            pos += 1
        slots[pos] = item
    out_dirs = [p for p in t.files if not p.startswith("src/")]
    roles: dict[str, str] = {}
    when = 1_700_000_000
    for i in range(n):
        when += 600
        if i in slots:
            role, subject, _ = slots[i]
            roles[role] = subject
            t.commit("fork", subject, scoped_change(t, role, i), when)
        else:
            path = rng.choice(out_dirs)
            t.commit("fork", f"{path.split('/')[0]}: update {i}",
                     t.append(path, f"# change {i}"), when)
    return roles


def scoped_change(t: Tree, role: str, i: int) -> dict[str, str]:
    k = role.rstrip("0123456789ab")
    num = int("".join(c for c in role if c.isdigit()) or 0)
    if role == "win":
        return t.edit("src/kernels/matvec.c", "#define MATVEC_COST 100.0",
                      "#define MATVEC_COST 85.0  /* two rows per step */")
    if role == "regression":
        return t.edit("src/kernels/softmax.c", "#define SOFTMAX_COST 50.0",
                      "#define SOFTMAX_COST 65.0")
    if k == "dep":
        path = f"src/kernels/util_{10 + num:02d}.c"
        if role.endswith("a"):
            return t.append(path, f"int scale_{num}(int x) {{\n    return x;\n}}")
        return t.edit(path, "int x) {\n    return x;\n}", "int x) {\n    return 2 * x;\n}")
    if k == "arm":
        return t.append("src/kernels/arch/arm/simd.c", f"/* tuned {i} */")
    if k == "neon":
        return t.edit("src/kernels/matvec.c", "    return MATVEC_COST * 0.9;",
                      f"    return MATVEC_COST * 0.9; /* {i} */\n    return MATVEC_COST * 0.9;")
    if k == "mixed_docs":
        return {**t.append(f"src/kernels/util_{num:02d}.c", f"/* tidy {i} */"),
                **t.append("docs/f0001.md", f"tidy {i}")}
    if k == "mixed_code":
        return {**t.append(f"src/kernels/util_{3 + num:02d}.c", f"/* {i} */"),
                **t.append("tools/f0001.py", f"# {i}")}
    util = f"src/kernels/util_{t.rng.randrange(10):02d}.c"
    return t.append(util, f"/* {i} */")


def make_fork(root: Path, commits: int, seed: int) -> dict[str, str]:
    t = Tree(random.Random(seed))
    t.commit("master", "the project", base_tree(t), 1_699_000_000)
    roles = fork_commits(t, commits)
    fork = root / "fork"
    fork.mkdir()
    subprocess.run(["git", "init", "-q", "-b", "master", str(fork)], check=True)
    subprocess.run(["git", "-C", str(fork), "fast-import", "--quiet"],
                   input=b"".join(t.stream), check=True)
    subprocess.run(["git", "clone", "-q", "--branch", "master", "--single-branch", str(fork),
                    str(root / "target")], check=True)
    return roles


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--commits", type=int, default=2000)
    ap.add_argument("--max-experiments", type=int, default=8)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--seed", type=int, default=7)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="rf-forktriage-") as tmp:
        root = Path(tmp)
        t0 = time.perf_counter()
        roles = make_fork(root, args.commits, args.seed)
        target = root / "target"
        git_files = len(gitcli.git(target, "ls-files").splitlines())
        print(f"generated: {git_files} files, fork {args.commits} commits ahead "
              f"({time.perf_counter() - t0:.1f} s)\n")
        spec = load_spec(target)
        tgt = target_at(target)
        t0 = time.perf_counter()
        research_target(tgt, spec, offline=True, only=["diagnosis"])
        print(f"research (profile only): {time.perf_counter() - t0:.1f} s")
        ctx = ProposerContext(repo=target, root=target, rel="",
                              baseline=gitcli.resolve_commit(target, "HEAD"), spec=spec,
                              state_dir=target / ".readfirst")
        t0 = time.perf_counter()
        prop = ForksProposer()
        cands = prop.propose(ctx)
        proposal = time.perf_counter() - t0
        win = next(c.id for c in cands if c.title.startswith(roles["win"]))
        report(cands, prop.skipped, roles, proposal, args.commits)
        summary = run_loop(tgt, spec, LoopOptions(proposer="forks", workers=args.workers,
                                                  max_experiments=args.max_experiments))
        verdicts(summary, win, target)


def report(cands: list, skipped: list, roles: dict[str, str], seconds: float, n: int) -> None:
    print(f"proposal: {seconds:.1f} s for {n} commits -> {len(cands)} candidates\n")
    print("| rank | candidate | why |\n|---:|---|---|")
    shown = [*range(min(6, len(cands))), *range(max(6, len(cands) - 3), len(cands))]
    for n, i in enumerate(shown):
        if n and i != shown[n - 1] + 1:
            print(f"| ... | {i - shown[n - 1] - 1} more | |")
        why = cands[i].rationale.split(f"ranked {i + 1} of {len(cands)}: ", 1)[-1]
        print(f"| {i + 1} | {cands[i].title} | {why[:150]} |")
    print()
    print("| skip record | reason |\n|---|---|")
    for cid, _title, reason in skipped:
        if ":" in cid.split("@")[0].removeprefix("fork:"):
            print(f"| {cid} | {reason[:100]} |")
    print()


def touches_scope(repo: Path, sha: str) -> bool:
    names = gitcli.git(repo, "diff-tree", "--root", "-r", "--name-only", "--no-commit-id", sha)
    return any(p.startswith("src/kernels/") for p in names.splitlines())


def verdicts(summary: dict, win: str, target: Path) -> None:
    explored = [e for e in summary["experiments"] if e["kind"] == "explore" and e["wave"] > 0]
    before = next((i for i, e in enumerate(explored) if e["candidate_id"] == win), None)
    out_of_scope = sum(1 for e in explored if not any(
        touches_scope(target, p.split("@")[1]) for p in e["provenance"]))
    print("| # | candidate | verdict | outcome |\n|---:|---|---|---|")
    for i, e in enumerate(explored, 1):
        print(f"| {i} | {e['title'][:60]} | {e['verdict'] or e['status']} | {e['outcome']} |")
    print()
    print(f"experiments before the win was tried: {before if before is not None else 'never'}")
    print(f"experiments on out-of-scope commits: {out_of_scope} of {len(explored)}")
    kept = [e["title"] for e in summary["experiments"]
            if e["kind"] == "confirm" and e["outcome"] == "kept"]
    print(f"kept: {kept}; stop: {summary['stop_reason']}")


if __name__ == "__main__":
    main()
