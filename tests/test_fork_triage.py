"""The forks proposer on real forks: triage, robustness, ranking, dependent commits."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from conftest import PROGRAM, TOML, commit, git, make_target, params, run_cli, write

from readfirst.core.config import load_spec
from readfirst.proposers.base import ProposerContext
from readfirst.proposers.forks import ForksProposer
from readfirst.research import Hypothesis, Site
from readfirst.research.brief import ResearchStore
from readfirst.research.run import ResearchResult
from readfirst.store.journal import Journal
from readfirst.vcs.apply import apply_candidate

KERNEL = "\n".join(
    [f"void helper_{i}(float *x, int n) {{ for (int j = 0; j < n; j++) x[j] += {i}; }}"
     for i in range(100)]
    + ["", "void hot_kernel(float *x, int n) {", "    for (int j = 0; j < n; j++) x[j] *= 2;",
       "}", "", "#if defined(__ARM_NEON)", "void neon_path(float *x) {", "    x[0] = 1;", "}",
       "#else", "void plain_path(float *x) {", "    x[0] = 2;", "}", "#endif", ""]
)


def research(extra: str = "") -> str:
    return TOML + '\n[research]\ncompetitors = [{ name = "rival", path = "../fork" }]\n' + extra


def context(root: Path) -> ProposerContext:
    return ProposerContext(repo=root, root=root, rel="", baseline=git(root, "rev-parse", "HEAD"),
                           spec=load_spec(root), state_dir=root / ".readfirst")


@pytest.fixture
def pair(tmp_path: Path) -> tuple[Path, Path]:
    target = make_target(tmp_path / "target", research())
    write(target, "src/kernel.c", KERNEL)
    write(target, "docs/guide.md", "# guide\n")
    write(target, "tools/run.py", "print('x')\n")
    commit(target, "kernel")
    fork = tmp_path / "fork"
    git(tmp_path, "clone", "-q", str(target), str(fork))
    return target, fork


def edit(repo: Path, rel: str, old: str, new: str) -> None:
    text = (repo / rel).read_text()
    assert old in text, old
    write(repo, rel, text.replace(old, new, 1))


def by_id(cands: list, sha: str):
    return next(c for c in cands if c.id == f"fork:rival@{sha[:12]}")


def test_triage_counts_out_of_scope_and_restricts_mixed_commits(pair) -> None:
    target, fork = pair
    shas = {}
    for i in range(3):
        write(fork, "docs/guide.md", f"# guide {i}\n")
        commit(fork, f"docs {i}")
    write(fork, ".github/workflows/ci.yml", "on: push\n")
    commit(fork, "CI")
    write(fork, "tools/run.py", "print('y')\n")
    commit(fork, "tools")
    write(fork, "src/params.h", params(work=3_000_000))
    write(fork, "docs/guide.md", "# faster now\n")
    write(fork, "tests/README", "new expectations\n")
    shas["mixed_docs"] = commit(fork, "Halve the work, with docs")
    edit(fork, "src/kernel.c", "x[j] += 3;", "x[j] += 4;")
    write(fork, "tools/run.py", "print('z')\n")
    shas["mixed_code"] = commit(fork, "kernel and tools")
    prop = ForksProposer()
    cands = prop.propose(context(target))
    assert [c.id for c in cands] == [f"fork:rival@{shas['mixed_docs'][:12]}"]
    cand = cands[0]
    assert "src/params.h" in cand.diff and "docs/guide.md" not in cand.diff
    assert "tests/README" not in cand.diff
    assert "restricted to its in-scope part" in cand.rationale
    assert "docs/guide.md" in cand.rationale and "tests/README" in cand.rationale
    records = {cid: (title, reason) for cid, title, reason in prop.skipped}
    assert set(records) == {"fork:rival:out-of-scope", "fork:rival:mixed"}
    title, reason = records["fork:rival:out-of-scope"]
    assert title.startswith("5 commits of rival") and "(5 commits;" in reason
    assert "1 commit of rival" in records["fork:rival:mixed"][0]
    wt = target.parent / "wt"
    git(target, "worktree", "add", "-q", "--detach", str(wt), "HEAD")
    apply_candidate(wt, git(target, "rev-parse", "HEAD"), cand)
    assert (wt / "src/params.h").read_text() == params(work=3_000_000)
    assert (wt / "docs/guide.md").read_text() == "# guide\n"


def test_git_failures_on_one_commit_are_skips(pair, tmp_path: Path) -> None:
    """Non-UTF-8 diff, submodule, rename, binary file: each commit skipped or offered on its
    own; the run goes on."""
    target, fork = pair
    (fork / "src/latin1.c").write_bytes("/* caf\xe9 */\nint x;\n".encode("latin-1"))
    latin = commit(fork, "latin-1 source")
    sub = tmp_path / "sub"
    sub.mkdir()
    git(sub, "init", "-q")
    write(sub, "a.txt", "a\n")
    commit(sub, "sub")
    git(fork, "-c", "protocol.file.allow=always", "submodule", "add", "-q", str(sub),
        "src/vendor")
    submodule = commit(fork, "add a submodule")
    git(fork, "mv", "src/params.h", "src/config.h")
    edit(fork, "src/prog.c", '#include "params.h"', '#include "config.h"')
    renamed = commit(fork, "rename params.h")
    (fork / "src/table.bin").write_bytes(bytes(range(256)) * 4)
    binary = commit(fork, "binary lookup table")
    prop = ForksProposer()
    cands = prop.propose(context(target))
    reasons = {cid.split("@")[-1]: r for cid, _t, r in prop.skipped}
    assert "not UTF-8" in reasons[latin[:12]]
    assert "submodule" in reasons[submodule[:12]]
    assert {c.id for c in cands} == {f"fork:rival@{renamed[:12]}", f"fork:rival@{binary[:12]}"}
    wt = tmp_path / "wt"
    git(target, "worktree", "add", "-q", "--detach", str(wt), "HEAD")
    base = git(target, "rev-parse", "HEAD")
    apply_candidate(wt, base, by_id(cands, renamed))
    assert (wt / "src/config.h").is_file() and not (wt / "src/params.h").exists()
    apply_candidate(wt, base, by_id(cands, binary))
    assert (wt / "src/table.bin").read_bytes() == bytes(range(256)) * 4


def test_partial_clone_with_a_missing_blob_is_a_skip(tmp_path: Path) -> None:
    """The target is a `--filter=blob:none` clone whose promisor remote is gone; the fork's
    commits came with the clone, so one of them names a blob nobody can provide."""
    upstream = make_target(tmp_path / "upstream", research())
    git(upstream, "config", "uploadpack.allowFilter", "true")
    git(upstream, "checkout", "-q", "-b", "fast")
    write(upstream, "src/params.h", params(work=3_000_000))
    readable = commit(upstream, "Halve the work")
    write(upstream, "src/extra.h", "#define EXTRA 1\n" * 50)
    missing = commit(upstream, "Add extra.h")
    git(upstream, "checkout", "-q", "-")
    target = tmp_path / "target"
    git(tmp_path, "clone", "-q", "--filter=blob:none", f"file://{upstream}", str(target))
    fork = tmp_path / "fork"
    git(tmp_path, "clone", "-q", "--branch", "fast", str(upstream), str(fork))
    git(target, "cat-file", "-p", f"{readable}:src/params.h")  # fetched while reachable
    shutil.rmtree(upstream)
    prop = ForksProposer()
    cands = prop.propose(context(target))
    assert [c.id for c in cands] == [f"fork:rival@{readable[:12]}"]
    reasons = {cid: r for cid, _t, r in prop.skipped}
    assert reasons[f"fork:rival@{missing[:12]}"].startswith("git cannot read this commit")


def save_research(target: Path, hotspots: list[tuple[str, float]],
                  hypotheses: list[Hypothesis]) -> None:
    journal = Journal(target / ".readfirst" / "journal.db")
    try:
        diag = {"hotspots": [h for h, _ in hotspots],
                "top_functions": [{"function": h, "share": s} for h, s in hotspots]}
        result = ResearchResult(diagnosis=diag, hypotheses=hypotheses, references=[], notes=[])
        ResearchStore(journal).save(result, True, None)
    finally:
        journal.close()


def test_ranking_hot_then_sites_then_cues_other_arch_last_and_cap(pair) -> None:
    target, fork = pair
    (target / ".readfirst").mkdir()
    save_research(target, [("hot_kernel", 61.5), ("main", 3.0)], [
        Hypothesis("Fuse helper_20 into its caller", "fusion", "two passes",
                   [Site("src/kernel.c", 21, "helper_20")], score=0.8)])
    # compile_commands.json of the build: kernel.c and prog.c are compiled, arm.c is not
    build = target / "build"
    build.mkdir()
    (build / "compile_commands.json").write_text(json.dumps([
        {"directory": str(build), "file": str(target / f"src/{f}"),
         "arguments": ["cc", "-O2", "-c", f"../src/{f}"]} for f in ("kernel.c", "prog.c")]))
    shas = {}
    write(fork, "src/notes.h", "/* nothing */\n")
    shas["plain"] = commit(fork, "Add notes.h")
    write(fork, "src/arm.c", "void arm_kernel(void) {}\n")
    shas["arm_file"] = commit(fork, "Faster arm kernel with NEON")
    edit(fork, "src/kernel.c", "    x[0] = 1;", "    x[0] = 3; /* 2x faster */")
    shas["neon_block"] = commit(fork, "Speed up the NEON path")
    edit(fork, "src/kernel.c", "x[j] += 80;", "x[j] += 81;")
    shas["cue"] = commit(fork, "Vectorize helper_80 for 20% speedup")
    edit(fork, "src/kernel.c", "x[j] += 20;", "x[j] += 21;")
    shas["site"] = commit(fork, "helper_20 tweak")
    edit(fork, "src/kernel.c", "x[j] *= 2;", "x[j] = x[j] + x[j];")
    shas["hot"] = commit(fork, "hot_kernel: add instead of multiply")
    prop = ForksProposer()
    cands = prop.propose(context(target))
    order = [next(k for k, s in shas.items() if c.id.endswith(s[:12])) for c in cands]
    assert order[:4] == ["hot", "site", "cue", "plain"]
    assert set(order[4:]) == {"arm_file", "neon_block"}
    assert "hot_kernel (61.5 % of the profile)" in cands[0].rationale
    assert "Fuse helper_20 into its caller" in cands[1].rationale
    assert "performance cues:" in cands[2].rationale
    arm = by_id(cands, shas["arm_file"]).rationale
    assert "cannot run on this machine" in arm and "src/arm.c is not compiled" in arm
    neon = by_id(cands, shas["neon_block"]).rationale
    assert "#if conditions this build's compiler makes false" in neon
    ranking = (target / ".readfirst/research/fork_ranking.md").read_text()
    assert "hot_kernel" in ranking and "ranked last" in ranking
    # The cap applies after ranking: it cuts the least promising commits, counted once.
    write(target, "readfirst.toml", research("max_fork_commits = 2\n"))
    commit(target, "cap")
    prop = ForksProposer()
    capped = prop.propose(context(target))
    assert [c.id for c in capped] == [c.id for c in cands[:2]]
    records = {cid: r for cid, _t, r in prop.skipped}
    assert records["fork:rival:cap"].startswith("cap: ranked beyond") and "(4 commits;" in \
        records["fork:rival:cap"]


def dependent_fork(pair) -> tuple[Path, str, str]:
    """`first` adds a tunable; `win` uses it (does not apply without `first`)."""
    target, fork = pair
    write(fork, "src/params.h", params() + "#define DIVISOR 1\n")
    first = commit(fork, "params: add DIVISOR")
    write(fork, "src/params.h", params() + "#define DIVISOR 2\n")
    edit(fork, "src/prog.c", "for (long i = 0; i < WORK; i++)",
         "for (long i = 0; i < WORK / DIVISOR; i++)")
    win = commit(fork, "Halve the loop: 2x faster")
    return target, first, win


def test_dependent_commit_is_stacked_on_what_it_needs(pair, tmp_path: Path) -> None:
    target, first, win = dependent_fork(pair)
    cands = ForksProposer().propose(context(target))
    stacked = by_id(cands, win)
    assert stacked.provenance == (f"rival@{first}", f"rival@{win}")
    assert "stacked on the earlier commit(s)" in stacked.rationale and first[:12] in \
        stacked.rationale
    assert by_id(cands, first).provenance == (f"rival@{first}",)
    wt = tmp_path / "wt"
    git(target, "worktree", "add", "-q", "--detach", str(wt), "HEAD")
    apply_candidate(wt, git(target, "rev-parse", "HEAD"), stacked)
    assert "#define DIVISOR 2" in (wt / "src/params.h").read_text()
    assert "WORK / DIVISOR" in (wt / "src/prog.c").read_text()


def test_loop_keeps_a_win_that_depends_on_an_earlier_commit(pair) -> None:
    target, _first, win = dependent_fork(pair)
    code, s, proc = run_cli("run", "--proposer", "forks", "--workers", "1", "--json",
                            cwd=target)
    assert code == 0, proc.stderr
    kept = [e for e in s["experiments"] if e["outcome"] == "kept" and e["kind"] == "explore"]
    assert [e["candidate_id"] for e in kept] == [f"fork:rival@{win[:12]}"]
    first_tried = next(e for e in s["experiments"] if e["kind"] == "explore" and e["wave"] > 0)
    assert first_tried["candidate_id"] == f"fork:rival@{win[:12]}"  # ranked first: 2x, faster
    assert PROGRAM  # the program the fork changes
