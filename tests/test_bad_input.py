"""Bad input: a one-line error naming file, line, key and expectation; exit 2; nothing written."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import TOML, make_target, run_cli, write


def _assert_clean_exit_2(proc, target: Path, *needles: str) -> None:
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]
    assert "Traceback" not in proc.stderr
    assert proc.stdout == ""
    assert not (target / ".readfirst").exists()


@pytest.mark.parametrize(
    ("toml", "needles"),
    [
        (TOML.replace("rounds = 5", "rounds = 'five'"),
         ["readfirst.toml:20", "[compare] rounds", "expected", "'five'"]),
        (TOML.replace('unit = "ms"', 'unit = "ms"\nformat = "csv"'),
         ["readfirst.toml:15", "[metric] format", "llama-bench-json"]),
        (TOML.replace('direction = "lower"', 'direction = "down"'),
         ["readfirst.toml:13", "[metric] direction", "'higher' or 'lower'"]),
        (TOML.replace('bench = "./autoresearch.sh"\n', ""),
         ["readfirst.toml:1", "[target] bench", "missing"]),
        (TOML.replace("warmup = 1", "warmup = 1\nwarmpu = 2"),
         ["readfirst.toml:24", "[compare] warmpu", "unknown key"]),
        (TOML.replace("[metric]", "[metric"), ["readfirst.toml:11: invalid TOML", "column 8"]),
        (TOML.replace("max_rounds = 20", "max_rounds = 3"), ["max_rounds", ">= rounds"]),
    ],
)
def test_malformed_config(tmp_path: Path, toml: str, needles: list[str]) -> None:
    target = make_target(tmp_path / "t", toml)
    code, _, proc = run_cli("compare", "HEAD", "HEAD", "--json", cwd=target)
    _assert_clean_exit_2(proc, target, *needles)


def test_bench_not_executable(tmp_path: Path) -> None:
    target = make_target(tmp_path / "t")
    (target / "autoresearch.sh").chmod(0o644)
    _, _, proc = run_cli("compare", "HEAD", "HEAD", cwd=target)
    _assert_clean_exit_2(proc, target, "./autoresearch.sh is not executable", "chmod +x")


def test_unknown_revision(target: Path) -> None:
    _, _, proc = run_cli("compare", "HEAD", "no-such-branch", cwd=target)
    _assert_clean_exit_2(proc, target, "unknown revision 'no-such-branch'")


def test_not_a_git_repository(tmp_path: Path) -> None:
    plain = tmp_path / "plain"
    plain.mkdir()
    write(plain, "readfirst.toml", TOML)
    _, _, proc = run_cli("compare", "A", "B", cwd=plain)
    _assert_clean_exit_2(proc, plain, "not a git repository")


def test_no_spec_at_all(tmp_path: Path) -> None:
    target = make_target(tmp_path / "t", toml="")
    for name in ("autoresearch.sh", "autoresearch.checks.sh"):
        (target / name).unlink()
    _, _, proc = run_cli("bench", cwd=target)
    _assert_clean_exit_2(proc, target, "no readfirst.toml", "readfirst init")


def test_too_few_rounds_for_any_verdict(target: Path) -> None:
    _, _, proc = run_cli("compare", "HEAD", "HEAD", "--rounds", "3", "--max-rounds", "3",
                         cwd=target)
    _assert_clean_exit_2(proc, target, "max_rounds = 3 is too few")


def test_usage_error_exits_2(target: Path) -> None:
    code, _, proc = run_cli("compare", "HEAD", cwd=target)
    assert code == 2
    assert "Missing argument" in proc.stderr
