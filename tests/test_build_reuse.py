"""Build reuse: the base is built once per baseline, a fresh candidate slot starts from the
base's outputs, and only what differs is rebuilt (real make, real cc, real worktrees)."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from conftest import TOML, commit, git, make_target, params, write

from readfirst.core.config import load_spec
from readfirst.measure.compare import compare
from readfirst.vcs.workspace import target_at

MAKEFILE = textwrap.dedent(
    """\
    build/prog: build/prog.o build/other.o build/where.txt
    \t$(CC) -o build/prog build/prog.o build/other.o
    build/prog.o: src/prog.c src/params.h
    \tmkdir -p build
    \techo "prog.o $(CURDIR)" >> "$(COMPILE_LOG)"
    \t$(CC) -O2 -c -o $@ src/prog.c
    build/other.o: src/other.c
    \tmkdir -p build
    \techo "other.o $(CURDIR)" >> "$(COMPILE_LOG)"
    \t$(CC) -O2 -c -o $@ src/other.c
    build/where.txt:
    \tmkdir -p build
    \techo "$(CURDIR)" > $@
    """
)


@pytest.fixture
def reuse_target(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path, str]:
    # the build appends to a log outside its worktree: no sandbox, COMPILE_LOG passed through
    toml = TOML.replace("max_rounds = 20", "max_rounds = 10").replace(
        "[metric]", 'env = ["COMPILE_LOG"]\nsandbox = false\n\n[metric]')
    target = make_target(tmp_path / "target", toml)
    write(target, "Makefile", MAKEFILE)
    write(target, "src/other.c", "int other(void) { return 1; }\n")
    base = commit(target, "two objects")
    write(target, "src/params.h", params(work=3_000_000))
    cand = commit(target, "half the work")
    git(target, "reset", "-q", "--hard", base)
    write(target, "src/params.h", params(work=4_000_000))
    git(target, "branch", "-q", "later", commit(target, "less work again"))
    git(target, "reset", "-q", "--hard", base)
    log = tmp_path / "compiles.log"
    monkeypatch.setenv("COMPILE_LOG", str(log))
    return target, log, cand


def compiles(log: Path, slot: str) -> list[str]:
    return sorted(line.split()[0] for line in log.read_text().splitlines()
                  if line.endswith(f"/{slot}"))


def test_fresh_candidate_starts_from_the_base_build(reuse_target) -> None:
    target, log, cand = reuse_target
    spec = load_spec(target)
    result = compare(target_at(target), "HEAD", cand, spec, slots=("w0-base", "w0-cand"))
    assert result["verdict"] == "improved"  # the candidate's change was really rebuilt
    assert compiles(log, "w0-base") == ["other.o", "prog.o"]
    assert compiles(log, "w0-cand") == ["prog.o"]  # other.o came from the base
    slots = target / ".readfirst/worktrees"
    # paths inside copied outputs name the candidate's own worktree
    assert (slots / "w0-cand/build/where.txt").read_text().strip() == str(slots / "w0-cand")
    # a second worker at the same baseline copies the built base and compiles nothing for it
    result = compare(target_at(target), "HEAD", cand, spec, slots=("w1-base", "w1-cand"))
    assert result["verdict"] == "improved"
    assert compiles(log, "w1-base") == []
    assert compiles(log, "w1-cand") == ["prog.o"]
    assert (slots / "w1-base/build/where.txt").read_text().strip() == str(slots / "w1-base")
    # the next candidate in a seeded slot is an ordinary incremental build: the slot's files
    # are moved by `reset --hard`, which rewrites (and so rebuilds) only what changed
    log.write_text("")
    later = git(target, "rev-parse", "later")
    from readfirst.core.candidate import Candidate
    from readfirst.vcs.apply import apply_candidate

    cand_slot = slots / "w0-cand"
    diff = git(target, "diff", "--full-index", "HEAD", later) + "\n"
    applied = apply_candidate(cand_slot, git(target, "rev-parse", "HEAD"),
                              Candidate("later", "later", "", diff, "test"))
    result = compare(target_at(target), "HEAD", applied, spec, slots=("w0-base", "w0-cand"))
    assert result["verdict"] == "improved"
    assert compiles(log, "w0-base") == [] and compiles(log, "w0-cand") == ["prog.o"]


def test_clean_rebuild_does_not_reuse(reuse_target) -> None:
    target, log, cand = reuse_target
    spec = load_spec(target)
    compare(target_at(target), "HEAD", cand, spec, slots=("w0-base", "w0-cand"))
    log.write_text("")
    compare(target_at(target), "HEAD", cand, spec, slots=("w0-base", "w0-cand"),
            clean_cand=True)
    assert compiles(log, "w0-cand") == ["other.o", "prog.o"]
