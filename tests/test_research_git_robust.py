"""Research and the MCP fork listing on commits git cannot read whole: a partial clone's
missing blob, a diff that is not UTF-8, a submodule, a binary file. Each is a skip with its
reason (or, for a binary file, simply no lines); the other commits are still studied.

The target is a real `--filter=blob:none` clone whose promisor remote is gone; the blobs of
every commit but one were fetched while it was still there.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from conftest import TOML, commit, git, make_target, write

from readfirst.core.config import load_spec
from readfirst.frontends.mcp_server import Toolbox
from readfirst.research import ResearchContext
from readfirst.research.forks_github import ForkDiscoverySource
from readfirst.research.history import HistorySource, commit_patches

KERNEL = "void axpy(int n, float a, const float *x, float *y)\n{\n" \
    "    for (int i = 0; i < n; i++)\n        y[i] += a * x[i];\n}\n"
RESEARCH = '\n[research]\ncompetitors = [{ name = "rival", path = "../fork" }]\n' \
    'discover_forks = false\n'


def _edit(repo: Path, rel: str, old: str, new: str) -> None:
    text = (repo / rel).read_text()
    assert old in text
    write(repo, rel, text.replace(old, new, 1))


@pytest.fixture
def world(tmp_path: Path) -> dict[str, object]:
    upstream = make_target(tmp_path / "upstream", TOML + RESEARCH)
    git(upstream, "config", "uploadpack.allowFilter", "true")
    write(upstream, "src/kernel.c", KERNEL)
    commit(upstream, "Add axpy")
    _edit(upstream, "src/kernel.c", "y[i] += a * x[i];", "y[i] = y[i] + a * x[i];")
    own_old = commit(upstream, "Unroll axpy: 2x faster")  # its old blob will be missing
    _edit(upstream, "src/kernel.c", "int i = 0", "int i = 0 /* i */")
    own_ok = commit(upstream, "Vectorize axpy loop, 20% faster")
    shas: dict[str, str] = {}
    git(upstream, "checkout", "-q", "-b", "fast")
    _edit(upstream, "src/kernel.c", "{\n", "{\n    /* SIMD */\n")
    shas["ok"] = commit(upstream, "Vectorize the loop: 2x faster")
    write(upstream, "src/extra.h", "#define EXTRA 1\n" * 50)
    shas["missing"] = commit(upstream, "Faster extra.h tables")
    kernel = (upstream / "src/kernel.c").read_bytes()
    (upstream / "src/kernel.c").write_bytes(kernel + b"/* caf\xe9: faster */\n")  # Latin-1
    shas["latin1"] = commit(upstream, "Faster cafe path")
    git(upstream, "update-index", "--add", "--cacheinfo", f"160000,{shas['ok']},src/vendor")
    git(upstream, "commit", "-q", "-m", "Bump the vendored SIMD library: faster")
    shas["submodule"] = git(upstream, "rev-parse", "HEAD")
    (upstream / "src/table.bin").write_bytes(bytes(range(256)) * 4)
    shas["binary"] = commit(upstream, "Precomputed table: 3x faster lookups")
    kernel = (upstream / "src/kernel.c").read_bytes()  # still holds the Latin-1 line
    (upstream / "src/kernel.c").write_bytes(kernel.replace(b"/* SIMD */", b"/* SIMD, unrolled */"))
    shas["later"] = commit(upstream, "Unroll by 4: 10% faster")
    git(upstream, "checkout", "-q", "-")
    target = tmp_path / "target"
    git(tmp_path, "clone", "-q", "--filter=blob:none", f"file://{upstream}", str(target))
    fork = tmp_path / "fork"
    git(tmp_path, "clone", "-q", "--branch", "fast", str(upstream), str(fork))
    # fetch every blob the commits name while the promisor remote is there, but extra.h's and
    # the first kernel.c's
    for blob in [f"{sha}:src/kernel.c" for sha in (shas["ok"], shas["latin1"], shas["later"],
                                                   own_ok, f"{own_ok}~1")] \
            + [f"{shas['binary']}:src/table.bin"]:
        subprocess.run(["git", "-C", str(target), "cat-file", "-p", blob], check=True,
                       capture_output=True)  # bytes: one of them is Latin-1
    shutil.rmtree(upstream)
    missing = subprocess.run(["git", "-C", str(target), "cat-file", "-e",
                              f"{shas['missing']}:src/extra.h"], capture_output=True)
    assert missing.returncode != 0  # the blob is really gone
    return {"target": target, "shas": shas, "own_old": own_old, "own_ok": own_ok}


def _ctx(root: Path) -> ResearchContext:
    return ResearchContext(root, root, "", load_spec(root), root / ".readfirst", offline=True)


def test_commit_patches_skip_each_unreadable_commit_with_its_reason(world) -> None:
    target, shas = world["target"], world["shas"]
    order = [shas[k] for k in ("ok", "missing", "latin1", "submodule", "binary", "later")]
    patches = commit_patches(target, order)
    assert set(patches.skipped) == {shas["missing"], shas["latin1"], shas["submodule"]}
    assert patches.skipped[shas["missing"]].startswith("git cannot read this commit")
    assert patches.skipped[shas["latin1"]] == "the diff is not UTF-8 text"
    assert patches.skipped[shas["submodule"]] == "changes only a submodule: src/vendor"
    assert set(patches) == {shas["ok"], shas["binary"], shas["later"]}
    [binary] = patches[shas["binary"]]  # git says "Binary files differ": a file, no lines
    assert binary.new == "src/table.bin" and binary.added == [] and binary.hunks == []
    assert "    /* SIMD, unrolled */" in patches[shas["later"]][0].added


def test_competitor_study_skips_unreadable_commits_and_studies_the_rest(world) -> None:
    target, shas = world["target"], world["shas"]
    f = ForkDiscoverySource().run(_ctx(target))
    studied = {h.data["commit"] for h in f.hypotheses if h.kind == "port-commit"}
    assert {shas["ok"], shas["later"], shas["binary"]} <= studied
    assert not studied & {shas["missing"], shas["latin1"], shas["submodule"]}
    notes = "\n".join(f.notes)
    assert "competitor rival: 1 commit skipped, git cannot read this commit" in notes
    assert f"competitor rival: 1 commit skipped, the diff is not UTF-8 text " \
           f"({shas['latin1'][:12]})" in notes
    assert "changes only a submodule: src/vendor" in notes


def test_history_of_a_partial_clone_skips_what_it_cannot_read(world) -> None:
    target = world["target"]
    f = HistorySource().run(_ctx(target))
    refs = {r.id for r in f.references}
    assert f"self@{world['own_ok']}" in refs  # readable: still found
    assert f"self@{world['own_old']}" not in refs
    assert any(n.startswith("history: ") and "git cannot read this commit" in n
               and world["own_old"][:12] in n for n in f.notes)


def test_mcp_fork_commits_lists_the_readable_and_says_why_not_the_rest(world) -> None:
    target, shas = world["target"], world["shas"]
    out = Toolbox(target).fork_commits()
    listed = {c["sha"] for c in out["commits"]}
    assert listed == {shas["ok"], shas["binary"], shas["later"]}
    reasons = {s["sha"]: s["reason"] for s in out["skipped"]}
    assert set(reasons) == {shas["missing"], shas["latin1"], shas["submodule"]}
    assert reasons[shas["latin1"]] == "the diff is not UTF-8 text"
    assert all(s["id"] == f"fork:rival@{s['sha'][:12]}" for s in out["skipped"])
    row = next(c for c in out["commits"] if c["sha"] == shas["binary"])
    assert row["files"] == ["src/table.bin"] and row["title"].startswith("Precomputed table")
