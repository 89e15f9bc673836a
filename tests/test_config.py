"""Target spec: readfirst.toml, pi-autoresearch's .auto/ and flat files, and `readfirst init`."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from conftest import BASE_WORK, commit, make_target, params, run_cli, write

from readfirst.core.config import load_spec
from readfirst.core.errors import ConfigError
from readfirst.core.globs import matches, under
from readfirst.measure.guards import check_changes


def test_toml_defaults_and_always_protected(target: Path) -> None:
    spec = load_spec(target)
    assert spec.target.build == "make" and spec.compare.alpha == 0.005
    assert spec.compare.mode == "interleaved"
    assert "readfirst.toml" in spec.protected_patterns()


def test_flat_autoresearch_files_without_toml(tmp_path: Path) -> None:
    target = make_target(tmp_path / "t", toml="")
    spec = load_spec(target)
    assert spec.target.bench == "bash autoresearch.sh"
    assert spec.target.checks == "bash autoresearch.checks.sh"
    assert spec.metric.name is None and spec.metric.direction == "lower"
    assert {"autoresearch.sh", "autoresearch.checks.sh"} <= set(spec.protected_patterns())


def test_flat_layout_compare_takes_metric_from_first_metric_line(tmp_path: Path) -> None:
    target = make_target(tmp_path / "t", toml="")
    # the flat scripts build for themselves, as autoresearch.sh usually does
    write(target, "autoresearch.sh", "#!/bin/sh\nset -e\nmake -s >&2\nexec ./build/prog\n", True)
    write(target, "autoresearch.checks.sh", "#!/bin/sh\nmake -s\nexec ./build/prog --check\n",
          True)
    # no readfirst.toml, so the wall-clock guard is on: enough work for the clock to see it
    write(target, "src/params.h", params(BASE_WORK * 20))
    commit(target, "self-building scripts")
    write(target, "src/params.h", params(BASE_WORK * 10))
    commit(target, "half")
    code, r, proc = run_cli("compare", "HEAD~1", "HEAD", "--json", cwd=target)
    assert code == 0, proc.stderr
    assert r["metric"]["name"] == "time_ms"  # the first METRIC line
    assert r["verdict"] == "improved"


def test_pi_autoresearch_session_dir(tmp_path: Path) -> None:
    target = make_target(tmp_path / "t", toml="")
    (target / ".auto").mkdir()
    shutil.move(target / "autoresearch.sh", target / ".auto/measure.sh")
    shutil.move(target / "autoresearch.checks.sh", target / ".auto/checks.sh")
    write(target, ".auto/config.json", json.dumps(
        {"name": "demo", "metricName": "work", "metricUnit": "iters", "bestDirection": "higher"}))
    spec = load_spec(target)
    assert spec.target.bench == "bash .auto/measure.sh"
    assert spec.target.checks == "bash .auto/checks.sh"
    assert (spec.metric.name, spec.metric.unit, spec.metric.direction) == (
        "work", "iters", "higher")


def test_bad_config_json_names_file_and_line(tmp_path: Path) -> None:
    target = make_target(tmp_path / "t", toml="")
    write(target, "autoresearch.config.json", '{\n  "bestDirection": sideways\n}')
    with pytest.raises(ConfigError, match=r"autoresearch.config.json:2: invalid JSON"):
        load_spec(target)


def test_glob_semantics() -> None:
    assert matches("tests/a/b.c", ["tests/**"])
    assert matches("tests/a.c", ["tests"])  # a directory pattern covers what is below it
    assert matches("src/x.c", ["src/*.c"]) and not matches("src/sub/x.c", ["src/*.c"])
    assert matches("src/sub/x.c", ["src/**/*.c"]) and matches("src/x.c", ["src/**/*.c"])
    assert not matches("autoresearch.sh.bak", ["autoresearch.sh"])
    refusal = check_changes(["src/a.c", "tests/t.c", "Makefile"], ["tests/**"], ["src/**"])
    assert refusal is not None
    assert refusal.protected == ("tests/t.c",) and refusal.out_of_scope == ("Makefile",)
    assert check_changes(["src/a.c"], ["tests/**"], ["src/**"]) is None
    assert check_changes(["anything.c"], ["tests/**"], []) is None  # no scope: anywhere


def test_globs_double_star_and_negation() -> None:
    # `**` crosses directories at any depth, also zero of them; glued to a name it still does
    assert matches("src/a/b/c/k.c", ["src/**/k.c"]) and matches("src/k.c", ["src/**/k.c"])
    assert matches("lib/deep/x.c", ["**/*.c"]) and matches("x.c", ["**/*.c"])
    assert matches("src/a/b.c", ["src/**.c"]) and not matches("src/a/b.h", ["src/**.c"])
    # anchored at the top: a pattern without a slash is not a name at any depth
    assert matches("bench.sh", ["bench.sh"]) and not matches("tools/bench.sh", ["bench.sh"])
    # a later `!pattern` takes paths back out; the last matching pattern decides
    protected = ["tests/**", "!tests/scratch/**"]
    assert matches("tests/unit/t.c", protected)
    assert not matches("tests/scratch/tmp.c", protected)
    assert matches("tests/scratch/keep.c", [*protected, "tests/scratch/keep.c"])
    refusal = check_changes(["tests/scratch/tmp.c", "tests/unit/t.c"], protected, [])
    assert refusal is not None and refusal.protected == ("tests/unit/t.c",)


def test_a_negation_cannot_unprotect_the_judges_files(tmp_path: Path) -> None:
    target = make_target(tmp_path / "t")
    toml = (target / "readfirst.toml").read_text()
    write(target, "readfirst.toml", toml.replace(
        'protected = ["autoresearch.sh", "autoresearch.checks.sh", "tests/**"]',
        'protected = ["tests/**", "!readfirst.toml", "!autoresearch.sh", "!**"]'))
    patterns = load_spec(target).protected_patterns()
    assert matches("readfirst.toml", patterns) and matches("autoresearch.sh", patterns)


def test_target_relative_patterns_keep_their_negation() -> None:
    assert under("app", ["src/**", "!src/gen/**", "/x.c"]) == [
        "app/src/**", "!app/src/gen/**", "app/x.c"]
    assert under("", ["!a"]) == ["!a"]


def test_init_writes_a_commented_loadable_toml(tmp_path: Path) -> None:
    target = make_target(tmp_path / "t", toml="")
    code, _, proc = run_cli("init", cwd=target)
    assert code == 0, proc.stderr
    text = (target / "readfirst.toml").read_text()
    assert text.count("#") > 10
    spec = load_spec(target)
    assert spec.target.build == "make -j"
    assert spec.target.bench == "./autoresearch.sh"
    assert spec.target.scope == ["src/**"]
    assert "tests/**" in spec.target.protected
    # never overwrites without --force
    code, _, proc = run_cli("init", cwd=target)
    assert code == 2 and "exists" in proc.stderr
    assert run_cli("init", "--force", cwd=target)[0] == 0


def test_init_detects_cmake_and_pytest(tmp_path: Path) -> None:
    root = tmp_path / "p"
    root.mkdir()
    write(root, "CMakeLists.txt", "project(x)\n")
    write(root, "pyproject.toml", "[project]\nname='x'\n")
    (root / "tests").mkdir()
    code, _, proc = run_cli("init", cwd=root)
    assert code == 0
    text = (root / "readfirst.toml").read_text()
    assert "cmake --build build" in text and 'checks = "python -m pytest -q"' in text
    assert "bench: none found" in proc.stdout  # no benchmark was found, and it says so
