"""The rough edges a new user hits: init's benchmark detection, compare right after init,
errors with the failing step's tail and log, short apply reasons, numbering, empty patch
directories, clean, help, and `-C`."""

from __future__ import annotations

import json
import os
import re
import sqlite3
import subprocess
import sys
from pathlib import Path

import click
import pytest
from conftest import BASE_WORK, TOML, commit, git, make_target, params, run_cli, write

from readfirst.core.candidate import Candidate
from readfirst.core.config import load_spec
from readfirst.frontends.cli import WORKFLOW_ORDER, cli
from readfirst.measure.metrics import parse_metrics
from readfirst.vcs.apply import ApplyError, apply_candidate

# --- init finds the benchmark a project has -----------------------------------------------


def _init(root: Path) -> tuple[str, str]:
    code, _, proc = run_cli("init", cwd=root)
    assert code == 0, proc.stderr
    return (root / "readfirst.toml").read_text(), proc.stdout


def test_init_finds_bench_sh(tmp_path: Path) -> None:
    write(tmp_path, "bench.sh", "#!/bin/sh\necho METRIC t=1\n", executable=True)
    write(tmp_path, "Makefile", "all:\n\ttrue\n")
    text, said = _init(tmp_path)
    spec = load_spec(tmp_path)
    assert spec.target.bench == "./bench.sh" and "bench.sh" in spec.target.protected
    assert spec.target.build == "make -j" and "bench.sh found" in said
    assert not (tmp_path / "autoresearch.sh").exists()


def test_init_finds_make_bench(tmp_path: Path) -> None:
    write(tmp_path, "Makefile", "all:\n\tcc -o x x.c\n\nbench: all\n\t./x\n")
    _init(tmp_path)
    assert load_spec(tmp_path).target.bench == "make -s bench"


def test_init_finds_pytest_benchmark(tmp_path: Path) -> None:
    write(tmp_path, "pyproject.toml",
          "[project]\nname = 'x'\n[project.optional-dependencies]\ndev = ['pytest-benchmark']\n")
    write(tmp_path, "tests/test_speed.py", "def test_sum(benchmark):\n    benchmark(sum, [1])\n")
    _init(tmp_path)
    spec = load_spec(tmp_path)
    assert "--benchmark-json=" in spec.target.bench
    assert spec.metric.format == "pytest-benchmark-json"
    assert spec.metric.output_file == ".readfirst-bench.json"


def test_init_finds_cargo_bench_and_its_script_prints_metrics(tmp_path: Path) -> None:
    root = tmp_path / "crate"
    write(root, "Cargo.toml", "[package]\nname = 'x'\nversion = '0.1.0'\n")
    write(root, "benches/b.rs", "// benches\n")
    _init(root)
    spec = load_spec(root)
    assert spec.target.build == "cargo build --release"
    assert spec.target.bench == "./cargo-bench.sh" and spec.metric.unit == "ns/iter"
    # a stand-in `cargo` printing libtest's documented bench lines
    bin_dir = tmp_path / "bin"
    write(bin_dir, "cargo", "#!/bin/sh\n"
          "echo 'running 2 tests'\n"
          "echo 'test tests::parse_small ... bench:       1,234 ns/iter (+/- 56)'\n"
          "echo 'test tests::parse_big   ... bench:     987,654 ns/iter (+/- 1,000)'\n"
          "echo 'test result: ok. 0 passed; 0 failed; 0 ignored; 0 measured'\n", executable=True)
    out = subprocess.run(["./cargo-bench.sh"], cwd=root, capture_output=True, text=True,
                         env={**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"},
                         check=True).stdout
    assert parse_metrics("metric-lines", out) == {"tests__parse_small": 1234.0,
                                                  "tests__parse_big": 987654.0}


def test_init_without_a_benchmark_writes_a_stub_and_bench_says_what_to_do(
        tmp_path: Path) -> None:
    root = make_target(tmp_path / "t", toml="")
    git(root, "rm", "-q", "autoresearch.sh", "autoresearch.checks.sh")
    commit(root, "no benchmark yet")
    text, said = _init(root)
    stub = root / "autoresearch.sh"
    assert stub.is_file() and os.access(stub, os.X_OK)
    assert "wrote a stub autoresearch.sh" in said
    spec = load_spec(root)
    assert spec.target.bench == "./autoresearch.sh" and spec.metric.name == "wall_ms"
    commit(root, "readfirst config and stub")
    code, _, proc = run_cli("bench", cwd=root, timeout=None)
    assert code == 3
    # the failing step's own words and where its log is, not just an exit code
    assert "set CMD to the command to time" in proc.stderr
    log = re.search(r"log: (\S+)", proc.stderr)
    assert log and Path(log.group(1)).is_file()
    # once CMD is set, the stub measures
    stub.write_text(stub.read_text().replace('CMD=""', 'CMD="./build/prog"'))
    commit(root, "time the program")
    code, data, proc = run_cli("bench", "--rounds", "2", "--json", cwd=root, timeout=None)
    assert code == 0, proc.stderr
    assert data["metric"]["name"] == "wall_ms" and data["median"] > 0


def test_failing_base_shows_tail_and_log(target: Path) -> None:
    write(target, "readfirst.toml", TOML.replace('bench = "./autoresearch.sh"',
                                                 'bench = "./no-such-bench.sh"'))
    commit(target, "bench renamed")
    code, _, proc = run_cli("bench", "--rounds", "2", cwd=target, timeout=None)
    assert code == 3
    assert "exit code 127" in proc.stderr and "not found" in proc.stderr
    assert re.search(r"log: \S+base-bench\S*\.err", proc.stderr) or "log: " in proc.stderr


# --- compare right after init ---------------------------------------------------------------


def test_compare_worktree_right_after_init_is_measured(tmp_path: Path) -> None:
    root = make_target(tmp_path / "t", toml="")
    # init's config keeps the wall-clock guard on: enough work for the clock to see the change
    write(root, "src/params.h", params(BASE_WORK * 20))
    commit(root, "more work")
    _init(root)  # readfirst.toml now exists, uncommitted
    write(root, "src/params.h", params(BASE_WORK * 10))  # the user's uncommitted change
    code, data, proc = run_cli("compare", "HEAD", "WORKTREE", "--json", cwd=root, timeout=None)
    assert code == 0, proc.stderr
    assert data["verdict"] == "improved", data["reason"]
    # the snapshot carries the code change but not the config: that is read from the tree
    changed = git(root, "diff", "--name-only", data["base_commit"], data["cand_commit"])
    assert changed.split() == ["src/params.h"]


def test_a_committed_config_change_is_still_refused(target: Path) -> None:
    write(target, "readfirst.toml", TOML.replace("noise_threshold = 0.02",
                                                 "noise_threshold = 0.5"))
    commit(target, "loosen the judge")
    code, data, _ = run_cli("compare", "HEAD~1", "HEAD", "--json", cwd=target, timeout=None)
    assert code == 0 and data["verdict"] == "refused"
    assert data["files"] == ["readfirst.toml"]


# --- short reasons ----------------------------------------------------------------------------


def test_apply_failure_is_one_short_line(target: Path) -> None:
    write(target, "src/params.h", params(BASE_WORK // 2))
    diff = git(target, "diff") + "\n"
    git(target, "checkout", "-q", "--", ".")
    write(target, "src/params.h", params(BASE_WORK * 3))
    base = commit(target, "moved on")
    wt = target / ".readfirst" / "wt"
    git(target, "worktree", "add", "-q", "--detach", str(wt), base)
    with pytest.raises(ApplyError) as e:
        apply_candidate(wt, base, Candidate("c", "half", "", diff, "patches"))
    assert str(e.value) == "conflicts in src/params.h"
    missing = diff.replace("src/params.h", "src/gone.h")
    with pytest.raises(ApplyError) as e:
        apply_candidate(wt, base, Candidate("d", "gone", "", missing, "patches"))
    assert str(e.value) == "src/gone.h does not exist"


# --- the loop: one numbering, empty patch directories, clean ----------------------------------


def _patch_half(target: Path, tmp_path: Path) -> Path:
    patches = tmp_path / "patches"
    original = (target / "src/params.h").read_text()
    write(target, "src/params.h", params(BASE_WORK // 2))
    (patches).mkdir()
    (patches / "01-half.patch").write_text(git(target, "diff") + "\n")
    write(target, "src/params.h", original)
    return patches


def test_one_numbering_in_console_status_and_commits(target: Path, tmp_path: Path) -> None:
    patches = _patch_half(target, tmp_path)
    code, _, proc = run_cli("run", "--proposer", "patches", "--patches", str(patches),
                            "--workers", "2", cwd=target, timeout=None)
    assert code == 0, proc.stderr
    code, status, _ = run_cli("status", "--json", cwd=target)
    by_seq = {e["seq"]: e for e in status["experiments"]}
    said = dict(re.findall(r"\] (?:explore|confirm) #(\d+): (.+)", proc.stderr))
    assert said and all(by_seq[int(n)]["title"] == t.strip() for n, t in said.items())
    message = git(target, "log", "-1", "--format=%B", status["branch"])
    (seq,) = [int(n) for n in re.findall(r"experiment #(\d+)", message)]
    assert by_seq[seq]["outcome"] == "kept" and said[str(seq)].strip() == by_seq[seq]["title"]
    assert f"#{seq} improved" in proc.stderr


def test_empty_patches_directory_is_an_error_and_leaves_no_branch(target: Path,
                                                                  tmp_path: Path) -> None:
    empty = tmp_path / "nothing"
    empty.mkdir()
    (empty / "README").write_text("ideas go here\n")
    code, _, proc = run_cli("run", "--proposer", "patches", "--patches", str(empty),
                            cwd=target, timeout=None)
    assert code == 2 and "no .patch or .diff files" in proc.stderr
    assert git(target, "for-each-ref", "refs/heads/readfirst/") == ""


def test_clean_keeps_branches_unless_asked_and_refuses_during_a_run(target: Path,
                                                                   tmp_path: Path) -> None:
    head = git(target, "rev-parse", "HEAD")
    git(target, "update-ref", "refs/heads/readfirst/20260101-000000-abcd", head)
    git(target, "update-ref", "refs/heads/other/keep-me", head)
    (target / ".readfirst/worktrees/w0-base").mkdir(parents=True)
    code, _, proc = run_cli("clean", cwd=target)
    assert code == 0 and "removed 1 worktree" in proc.stdout
    assert "readfirst clean --branches" in proc.stdout
    assert git(target, "rev-parse", "readfirst/20260101-000000-abcd") == head
    # a run in progress (this test's own, live pid) blocks any clean-up
    run_cli("status", cwd=target)  # creates nothing; the journal comes from the loop tables
    from readfirst.store.journal import Journal
    from readfirst.store.loop_journal import LoopLog

    journal = Journal(target / ".readfirst/journal.db")
    LoopLog(journal).create("20260101-000001-beef", target, "readfirst/x", head, {})
    journal.db.execute("UPDATE loop_runs SET pid = ?", (os.getpid(),))
    journal.close()
    code, _, proc = run_cli("clean", "--branches", cwd=target)
    assert code == 2 and "in progress" in proc.stderr
    assert git(target, "rev-parse", "readfirst/20260101-000000-abcd") == head
    db = sqlite3.connect(target / ".readfirst/journal.db")
    db.execute("UPDATE loop_runs SET status = 'done'")
    db.commit()
    db.close()
    code, _, proc = run_cli("clean", "--branches", cwd=target)
    assert code == 0 and f"git branch readfirst/20260101-000000-abcd {head[:12]}" in proc.stdout
    assert git(target, "for-each-ref", "refs/heads/readfirst/") == ""
    assert git(target, "rev-parse", "other/keep-me") == head  # only readfirst's own


# --- help ---------------------------------------------------------------------------------------


def test_help_lists_commands_in_workflow_order_with_examples() -> None:
    code, _, proc = run_cli("--help", cwd=Path.cwd())
    assert code == 0
    listed = re.findall(r"^  (\w+)\s{2,}", proc.stdout.split("Commands:")[1], re.MULTILINE)
    assert listed == [c for c in WORKFLOW_ORDER if c in listed]
    assert listed[:6] == ["init", "research", "bench", "compare", "judge", "run"]
    assert "..." not in proc.stdout.split("Commands:")[1]  # no cut summaries
    for name, command in cli.commands.items():
        for param in command.params:
            if isinstance(param, click.Option) and param.name != "help":
                assert param.help, f"{name} {param.opts}: no help"
        assert "Example" in (command.epilog or ""), f"{name}: no example"
    assert "agent" in next(p.help for p in cli.commands["run"].params if p.name == "proposer")


def test_dash_c_before_the_subcommand_and_did_you_mean(target: Path, tmp_path: Path) -> None:
    code, _, proc = run_cli("-C", str(target), "status", cwd=tmp_path)
    assert code == 2 and "no journal yet" in proc.stderr  # it looked in the target
    code, _, proc = run_cli("-C", str(tmp_path / "nope"), "status", cwd=tmp_path)
    assert code == 2 and "nope" in proc.stderr
    code, _, proc = run_cli("staus", cwd=tmp_path)
    assert code == 2 and "Did you mean 'status'?" in proc.stderr
    code, _, proc = run_cli("comapre", "a", "b", cwd=tmp_path)
    assert code == 2 and "Did you mean 'compare'?" in proc.stderr


def test_help_works_without_a_target(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "readfirst", "run", "--help"], cwd=tmp_path,
                          capture_output=True, text=True)
    assert proc.returncode == 0 and "Examples:" in proc.stdout
    assert json.dumps(proc.stdout)  # plain text
