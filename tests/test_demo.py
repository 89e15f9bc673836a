"""The bundled demo: a real C kernel library, its fusions found faster, its traps caught."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import git, run_cli

from readfirst.demo import commit_all, demo_patches


@pytest.fixture(scope="module")
def demo_repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    repo = tmp_path_factory.mktemp("demo") / "repo"
    code, r, proc = run_cli("demo", "--dir", str(repo), "--json", cwd=repo.parent)
    assert code == 0, proc.stderr
    assert r["verdict"] == "improved", r["reason"]
    assert r["ratio"] > 1.1
    assert r["metric"]["name"] == "tok_s" and r["metric"]["direction"] == "higher"
    assert {"rmsnorm_us", "softmax_us", "matvec_us"} <= r["secondary"].keys()
    assert Path(r["demo_repo"]) == repo
    return repo


def _candidate(repo: Path, prefix: str) -> None:
    """Commit one bundled patch on top of the naive base, on a branch of its own."""
    git(repo, "checkout", "-q", "-B", f"try-{prefix}", "HEAD~1" if prefix != "base" else "HEAD")
    (patch,) = [p for p in demo_patches() if p.name.startswith(prefix)]
    git(repo, "apply", str(patch))
    commit_all(repo, patch.stem)


def test_demo_repository_history(demo_repo: Path) -> None:
    subjects = git(demo_repo, "log", "--format=%s", "--reverse").splitlines()
    assert subjects[0] == "Naive multi-pass kernels"


def test_benchmark_edit_is_refused(demo_repo: Path) -> None:
    _candidate(demo_repo, "06-")
    code, r, _ = run_cli("compare", "HEAD~1", "HEAD", "--json", cwd=demo_repo)
    assert code == 0
    assert r["verdict"] == "refused" and r["files"] == ["autoresearch.sh"]


def test_broken_softmax_fails_checks(demo_repo: Path) -> None:
    _candidate(demo_repo, "04-")
    code, r, _ = run_cli("compare", "HEAD~1", "HEAD", "--json", cwd=demo_repo)
    assert code == 0
    assert r["verdict"] == "checks_failed"


def test_slower_matvec_is_regressed(demo_repo: Path) -> None:
    _candidate(demo_repo, "03-")
    code, r, _ = run_cli("compare", "HEAD~1", "HEAD", "--json", cwd=demo_repo)
    assert code == 0
    assert r["verdict"] == "regressed", r["reason"]
    assert r["ratio"] < 0.9
