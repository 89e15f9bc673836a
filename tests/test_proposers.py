"""The `forks` and `patches` proposers, against real git repositories."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from conftest import PROGRAM, TOML, commit, git, make_target, params, write

from readfirst.core.candidate import Candidate
from readfirst.core.config import load_spec
from readfirst.core.errors import ConfigError
from readfirst.proposers import get_proposer
from readfirst.proposers.base import ProposerContext
from readfirst.proposers.forkrank import scope_patterns
from readfirst.proposers.forks import ForksProposer
from readfirst.proposers.patches import PatchesProposer
from readfirst.vcs.apply import ApplyError, apply_candidate
from readfirst.vcs.competitors import REF_PREFIX, PathMapper


def with_research(research: str) -> str:
    return TOML + "\n[research]\n" + research + "\n"


def context(root: Path, **options: object) -> ProposerContext:
    return ProposerContext(
        repo=root,
        root=root,
        rel="",
        baseline=git(root, "rev-parse", "HEAD"),
        spec=load_spec(root),
        state_dir=root / ".readfirst",
        options=dict(options),
    )


def worktree(repo: Path, tmp_path: Path) -> Path:
    wt = tmp_path / "wt"
    git(repo, "worktree", "add", "-q", "--detach", str(wt), "HEAD")
    return wt


def faster_compute(src: str) -> str:
    return src.replace(
        "long compute(long n) { long s = 0; for (long i = 0; i < n; i++) s += i; return s; }",
        "long compute(long n) { return n * (n - 1) / 2; }",
    )


@pytest.fixture
def forked(tmp_path: Path) -> tuple[Path, Path, list[str]]:
    """A target and a clone of it (`fork`) with three commits on top."""
    target = make_target(tmp_path / "target", with_research('competitors = ["../fork"]'))
    fork = tmp_path / "fork"
    git(tmp_path, "clone", "-q", str(target), str(fork))
    write(fork, "src/params.h", params(work=3_000_000))
    shas = [commit(fork, "Halve the work\n\nLess work is faster.")]
    write(fork, "src/prog.c", faster_compute(PROGRAM))
    shas.append(commit(fork, "Closed-form compute"))
    write(fork, "src/fast.h", "#define FAST 1\n")
    shas.append(commit(fork, "Add fast.h"))
    return target, fork, shas


def test_fork_commits_become_candidates_in_order(forked, tmp_path: Path) -> None:
    target, _fork, shas = forked
    prop = get_proposer("forks")
    cands = prop.propose(context(target))
    assert [c.id for c in cands] == [f"fork:fork@{s[:12]}" for s in shas]
    assert [c.title for c in cands] == ["Halve the work", "Closed-form compute", "Add fast.h"]
    assert cands[0].rationale == (f"Less work is faster.\n\nported from fork {shas[0][:12]}\n"
                                  "ranked 1 of 3: performance cues: 'faster'")
    assert cands[1].rationale.startswith(f"ported from fork {shas[1][:12]}\nranked 2 of 3: ")
    assert [c.provenance for c in cands] == [(f"fork@{s}",) for s in shas]
    assert {c.source for c in cands} == {"forks"} and prop.skipped == []
    assert git(target, "rev-parse", REF_PREFIX + "fork") == shas[-1]
    # Plain data: survives a JSON round trip.
    assert Candidate.from_dict(cands[0].to_dict()) == cands[0]
    baseline = git(target, "rev-parse", "HEAD")
    wt = worktree(target, tmp_path)
    for cand in cands:
        apply_candidate(wt, baseline, cand)
    assert (wt / "src/fast.h").read_text() == "#define FAST 1\n"
    assert git(wt, "show", "--stat", "--format=%s", "HEAD").startswith("Add fast.h")


def test_fork_applies_after_target_moved_on(forked, tmp_path: Path) -> None:
    target, _fork, _shas = forked
    write(target, "Makefile", (target / "Makefile").read_text() + "# tuned\n")
    # Edit a line two lines below the fork's change: plain `git apply` fails on the context,
    # the 3-way merge (the fork's blobs were fetched) succeeds.
    src = (target / "src/prog.c").read_text()
    write(target, "src/prog.c", src.replace("int main(int argc", "int main(int  argc"))
    baseline = commit(target, "target moves on")
    cands = ForksProposer().propose(context(target))
    wt = worktree(target, tmp_path)
    apply_candidate(wt, baseline, cands[1])
    text = (wt / "src/prog.c").read_text()
    assert "return n * (n - 1) / 2;" in text and "int main(int  argc" in text
    assert "# tuned" in (wt / "Makefile").read_text()


def test_fork_conflict_is_an_apply_error(forked, tmp_path: Path) -> None:
    target, _fork, shas = forked
    cands = ForksProposer().propose(context(target))
    src = (target / "src/prog.c").read_text()
    write(target, "src/prog.c", src.replace("s += i; return s;", "s += i; return s + 0;"))
    baseline = commit(target, "conflicting change")  # the baseline moved after proposing
    prop = ForksProposer()
    assert [c.id for c in prop.propose(context(target))] == [cands[0].id, cands[2].id]
    ((cid, _title, reason),) = prop.skipped
    assert cid == f"fork:fork@{shas[1][:12]}" and reason.startswith("does not apply")
    wt = worktree(target, tmp_path)
    with pytest.raises(ApplyError, match="conflict"):
        apply_candidate(wt, baseline, cands[1])
    assert git(wt, "status", "--porcelain") == ""  # left clean at the baseline
    apply_candidate(wt, baseline, cands[0])  # the others still apply


def test_already_upstream_empty_and_capped_commits_are_skipped(forked) -> None:
    target, fork, shas = forked
    write(target, "src/params.h", params(work=3_000_000))  # the same change as shas[0]
    commit(target, "Halve the work (upstream)")
    git(fork, "commit", "-q", "--allow-empty", "-m", "Nothing")
    empty = git(fork, "rev-parse", "HEAD")
    write(fork, "src/more.h", "#define MORE 1\n")
    last = commit(fork, "More")
    research = 'competitors = [{ name = "rival", path = "../fork" }]\nmax_fork_commits = 2'
    write(target, "readfirst.toml", with_research(research))
    prop = ForksProposer()
    cands = prop.propose(context(target))
    assert [c.id for c in cands] == [f"fork:rival@{s[:12]}" for s in shas[1:]]
    reasons = {cid: reason for cid, _title, reason in prop.skipped}
    assert reasons["fork:rival:already-upstream"].startswith("already upstream")
    assert shas[0][:12] in reasons["fork:rival:already-upstream"]
    assert reasons["fork:rival:empty"].startswith("empty") and empty[:12] in \
        reasons["fork:rival:empty"]
    assert reasons["fork:rival:cap"].startswith("cap") and last[:12] in reasons["fork:rival:cap"]
    assert ("fork:rival:cap", "1 commit of rival: cap: ranked beyond [research] "
            "max_fork_commits") in [s[:2] for s in prop.skipped]


@pytest.fixture
def unrelated(tmp_path: Path) -> tuple[Path, Path]:
    """A target and an independent project vendoring the same program under lib/prog/."""
    target = make_target(tmp_path / "target", with_research('competitors = ["../other.git"]'))
    other = tmp_path / "other.git"
    other.mkdir()
    git(other, "init", "-q")
    write(other, "lib/prog/src/prog.c", PROGRAM)
    write(other, "lib/prog/src/params.h", params())
    commit(other, "Import prog")
    return target, other


def test_unrelated_fork_is_path_mapped(unrelated, tmp_path: Path) -> None:
    target, other = unrelated
    write(other, "lib/prog/src/prog.c", faster_compute(PROGRAM))
    write(other, "lib/prog/src/params.h", params(work=1000))
    good = commit(other, "Faster compute")
    write(other, "lib/prog/NOTES", "notes\n")
    write(other, "lib/prog/src/prog.c", faster_compute(PROGRAM) + "/* end */\n")
    unmappable = commit(other, "Notes")
    write(other, "Makefile", "all:\n\ttrue\n")
    out_of_scope = commit(other, "Touch the Makefile")
    prop = ForksProposer()
    cands = prop.propose(context(target))
    assert [c.id for c in cands] == [f"fork:other@{good[:12]}"]
    diff = cands[0].diff
    assert "diff --git a/src/prog.c b/src/prog.c" in diff and "+++ b/src/params.h" in diff
    assert "lib/prog" not in diff
    reasons = {cid.split("@")[-1]: reason for cid, _t, reason in prop.skipped}
    assert len(reasons) == 3
    root = git(other, "rev-list", "--max-parents=0", "HEAD")
    assert "new in the fork" in reasons[root[:12]]
    # NOTES has no counterpart in scope and is not docs/CI/tests: not half-ported
    assert reasons["fork:other:mixed"].startswith("mixed") and unmappable[:12] in \
        reasons["fork:other:mixed"]
    assert out_of_scope[:12] in reasons["fork:other:out-of-scope"]  # scope is src/**
    wt = worktree(target, tmp_path)
    apply_candidate(wt, git(target, "rev-parse", "HEAD"), cands[0])
    assert "return n * (n - 1) / 2;" in (wt / "src/prog.c").read_text()
    assert (wt / "src/params.h").read_text() == params(work=1000)


def test_path_mapping_longest_suffix_unique_and_in_scope(tmp_path: Path) -> None:
    repo = tmp_path / "mono"
    repo.mkdir()
    git(repo, "init", "-q")
    for path in ("app/src/util.c", "app/lib/util.c", "app/src/main.c", "docs/main.c"):
        write(repo, path, "x\n")
    head = commit(repo, "layout")
    mapper = PathMapper(repo, head, ["app/**"])
    assert mapper.map("x/y/src/util.c") == "app/src/util.c"
    assert mapper.map("main.c") == "app/src/main.c"  # docs/main.c is outside scope
    with pytest.raises(Exception, match="ambiguous"):
        mapper.map("other/util.c")
    ctx = ProposerContext(repo, repo / "app", "app", head, load_spec_stub(), tmp_path)
    assert scope_patterns(ctx) == ["app/src/**"]


def load_spec_stub():
    from readfirst.core.config import Spec

    return Spec.model_validate({"target": {"bench": "true", "scope": ["src/**"]}})


def test_unreachable_competitors_are_skipped(tmp_path: Path) -> None:
    research = 'competitors = ["file:///nonexistent/far.git", "../missing"]'
    target = make_target(tmp_path / "target", with_research(research))
    prop = ForksProposer()
    assert prop.propose(context(target)) == []
    assert [s[0] for s in prop.skipped] == ["fork:far", "fork:missing"]
    assert all(s[2].startswith("fetch failed") for s in prop.skipped)


@pytest.mark.parametrize(
    ("research", "message"),
    [
        ("", "set \\[research\\] competitors"),
        ("competitors = []", "set \\[research\\] competitors"),
        ('competitors = "../fork"', "expected a list"),
        ("competitors = [42]", "entry 1: expected a path, a git URL or a table"),
        ('competitors = ["../a", { name = "b" }]', "entry 2: expected exactly one of path or url"),
        ('competitors = [{ path = "a", url = "b" }]', "exactly one of path or url"),
        ('competitors = [{ path = "a", tag = "v1" }]', "unknown key 'tag'"),
        ('competitors = [{ path = "a", branch = 3 }]', "branch: expected a non-empty string"),
        ('competitors = ["../a", "x/a"]', "entry 2: duplicate competitor name 'a'"),
        ('competitors = [{ name = "a b", path = "a" }]', "name 'a b'"),
        ('competitors = ["../a"]\nmax_fork_commits = -1', "max_fork_commits"),
    ],
)
def test_malformed_competitors_config(tmp_path: Path, research: str, message: str) -> None:
    target = make_target(tmp_path / "target", with_research(research))
    with pytest.raises(ConfigError, match=message):
        ForksProposer().propose(context(target))


# --- patches -----------------------------------------------------------------------------


def test_patches_directory(forked, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target, fork, _shas = forked
    patches = tmp_path / "patches"
    git(fork, "format-patch", "-q", "-2", "-o", str(patches), "HEAD")
    diff = subprocess.run(
        ["git", "-C", str(fork), "diff", "HEAD~3", "HEAD~2"], capture_output=True, text=True
    ).stdout
    (patches / "work.diff").write_text("Halve the work\n\n" + diff)
    (patches / "bare.patch").write_text(diff)
    (patches / "empty.patch").write_text("")
    (patches / "prose.diff").write_text("Just an idea: make it faster.\n")
    (patches / "README.txt").write_text("not a patch\n")
    monkeypatch.chdir(tmp_path)
    prop = get_proposer("patches")
    assert isinstance(prop, PatchesProposer)
    cands = prop.propose(context(target, patches_dir="patches"))
    names = sorted(p.name for p in patches.iterdir() if p.suffix in (".patch", ".diff"))
    offered = [n for n in names if n not in ("empty.patch", "prose.diff")]
    assert [c.id for c in cands] == [f"patch:{n}" for n in offered]
    by_id = {c.id: c for c in cands}
    fp = by_id["patch:0001-Closed-form-compute.patch"]
    assert fp.title == "Closed-form compute" and fp.rationale == ""
    assert fp.source == "patches" and fp.provenance == (str(patches / fp.id[6:]),)
    assert by_id["patch:0002-Add-fast.h.patch"].title == "Add fast.h"
    assert by_id["patch:work.diff"].title == "Halve the work"
    assert by_id["patch:bare.patch"].title == "bare"
    assert {s[0]: s[2] for s in prop.skipped} == {
        "patch:empty.patch": "empty patch file",
        "patch:prose.diff": "no diff hunk in the file",
    }
    wt = worktree(target, tmp_path)
    baseline = git(target, "rev-parse", "HEAD")
    apply_candidate(wt, baseline, fp)
    assert "return n * (n - 1) / 2;" in (wt / "src/prog.c").read_text()
    apply_candidate(wt, baseline, by_id["patch:work.diff"])
    assert (wt / "src/params.h").read_text() == params(work=3_000_000)


def test_format_patch_subject_and_body(tmp_path: Path) -> None:
    patches = tmp_path / "p"
    patches.mkdir()
    (patches / "x.patch").write_text(
        "From 0123 Mon Sep 17 00:00:00 2001\nFrom: A <a@b>\nDate: today\n"
        "Subject: [RFC PATCH v2 2/3] Use a lookup\n table for speed\n\n"
        "The loop was slow.\n\nNow it is not.\n---\n a.c | 2 +-\n\n"
        "diff --git a/a.c b/a.c\n--- a/a.c\n+++ b/a.c\n@@ -1 +1 @@\n-a\n+b\n"
    )
    root = make_target(tmp_path / "t")
    (cand,) = PatchesProposer().propose(context(root, patches_dir=str(patches)))
    assert cand.title == "Use a lookup table for speed"
    assert cand.rationale == "The loop was slow.\n\nNow it is not."


def test_missing_patches_dir_is_a_config_error(tmp_path: Path) -> None:
    root = make_target(tmp_path / "t")
    with pytest.raises(ConfigError, match="nope"):
        PatchesProposer().propose(context(root, patches_dir=str(tmp_path / "nope")))
    with pytest.raises(ConfigError, match="patches_dir"):
        PatchesProposer().propose(context(root))


def test_competitor_branch(forked) -> None:
    target, fork, shas = forked
    git(fork, "checkout", "-q", "-b", "exp")
    write(fork, "src/exp.h", "#define EXP 1\n")
    exp = commit(fork, "Experiment")
    git(fork, "checkout", "-q", "-")
    write(target, "readfirst.toml", with_research('competitors = ["../fork"]'))
    assert len(ForksProposer().propose(context(target))) == 3
    research = 'competitors = [{ name = "fork-exp", path = "../fork", branch = "exp" }]'
    write(target, "readfirst.toml", with_research(research))
    cands = ForksProposer().propose(context(target))
    assert [c.id for c in cands] == [f"fork:fork-exp@{s[:12]}" for s in [*shas, exp]]
