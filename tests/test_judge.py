"""`readfirst judge OLD NEW`: results already measured, in every format, against benchstat."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from conftest import run_cli

DATA = Path(__file__).parent / "data"
BENCHSTAT = DATA / "benchstat"
METRICS = DATA / "metrics"


def _judge(*args: str, cwd: Path) -> dict[str, Any]:
    code, r, proc = run_cli("judge", *args, "--json", cwd=cwd)
    assert code == 0, proc.stderr
    assert r is not None
    return r


def _rows(r: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    return {(row["name"], row["unit"]): row for row in r["rows"]}


def test_benchstat_old_new_matches_its_golden_output(tmp_path: Path) -> None:
    r = _judge(str(BENCHSTAT / "old.txt"), str(BENCHSTAT / "new.txt"), cwd=tmp_path)
    assert r["format"] == "go-bench"
    rows = _rows(r)
    json_row = rows[("Encode/format=json-48", "ns/op")]
    gob_row = rows[("Encode/format=gob-48", "ns/op")]
    # benchstat: -17.20% (p=0.000 n=10) and ~ (p=0.446 n=10); geomean -8.94%
    assert json_row["change"] == pytest.approx(-0.1720, abs=5e-5)
    assert json_row["p_value"] < 0.0005 and json_row["verdict"] == "improved"
    assert json_row["old"]["n"] == json_row["new"]["n"] == 10
    assert not gob_row["significant"] and round(gob_row["p_value"], 3) == pytest.approx(0.446,
                                                                                         abs=0.002)
    assert gob_row["verdict"] in ("no_change", "inconclusive")
    assert r["geomean"]["ns/op"]["change"] == pytest.approx(-0.0894, abs=5e-5)
    assert json_row["ci_low"] <= json_row["ratio"] <= json_row["ci_high"] < 0.99


def test_benchstat_crc_significance_and_p_values(tmp_path: Path) -> None:
    """Every row of benchstat's crc golden output: same p (to 0.01) and, with no noise
    threshold, the same significant / not significant call."""
    golden: dict[tuple[str, str], tuple[bool, float]] = {}
    unit = ""
    for line in (BENCHSTAT / "crcIgnore.stdout").read_text().splitlines():
        header = re.search(r"│\s+(\S+)\s+│\s+\S+\s+vs base", line)
        if header:
            unit = {"sec/op": "ns/op", "B/s": "MB/s"}[header.group(1)]
        m = re.match(r"^(\S+)\s+.*?\s(~|[+-][\d.]+%)\s+\(p=([\d.]+) n=10\)$", line)
        if m:
            golden[(m.group(1), unit)] = (m.group(2) != "~", float(m.group(3)))
    assert len(golden) == 72
    r = _judge(str(BENCHSTAT / "crc-old.txt"), str(BENCHSTAT / "crc-new.txt"),
               "--threshold", "0", cwd=tmp_path)
    rows = _rows(r)
    assert set(golden) <= set(rows)
    for key, (significant, p) in golden.items():
        assert rows[key]["p_value"] == pytest.approx(p, abs=0.01), key
        assert rows[key]["significant"] == significant, key
    assert rows[("CRC32/poly=IEEE/size=512/align=0-8", "MB/s")]["direction"] == "higher"


def test_human_table_is_benchstat_like(tmp_path: Path) -> None:
    code, _, proc = run_cli("judge", str(BENCHSTAT / "old.txt"), str(BENCHSTAT / "new.txt"),
                            cwd=tmp_path)
    assert code == 0, proc.stderr
    out = proc.stdout
    assert "Encode/format=json-48" in out and "geomean" in out
    assert re.search(r"-17\.2 % \[-1\d\.\d, -1\d\.\d\] %", out)
    gob = next(line for line in out.splitlines() if "format=gob" in line)
    assert " ~ " in gob and "n=10+10" in gob and "p=0.4" in gob
    assert "95 % CI" in out


def _scaled_json(src: Path, dest: Path, scale: float, edit: Any) -> Path:
    doc = json.loads(src.read_text())
    edit(doc, scale)
    dest.write_text(json.dumps(doc))
    return dest


def test_hyperfine_times_are_the_samples(tmp_path: Path) -> None:
    def halve(doc: dict[str, Any], s: float) -> None:
        for res in doc["results"]:
            res["times"] = [t * s for t in res["times"]]
    new = _scaled_json(METRICS / "hyperfine_two_commands.json", tmp_path / "new.json", 0.5, halve)
    r = _judge(str(METRICS / "hyperfine_two_commands.json"), str(new), cwd=tmp_path)
    assert r["format"] == "hyperfine-json" and len(r["rows"]) == 2
    for row in r["rows"]:
        assert row["unit"] == "s" and row["old"]["n"] == 10
        assert row["verdict"] == "improved" and row["change"] == pytest.approx(-0.5)


def test_llama_bench_samples_higher_is_better(tmp_path: Path) -> None:
    def slower(doc: list[dict[str, Any]], s: float) -> None:
        for test in doc:
            test["samples_ts"] = [v * s for v in test["samples_ts"]]
    new = _scaled_json(METRICS / "llama_bench.json", tmp_path / "new.json", 0.8, slower)
    r = _judge(str(METRICS / "llama_bench.json"), str(new), cwd=tmp_path)
    assert r["format"] == "llama-bench-json"
    assert {row["name"] for row in r["rows"]} == {"pp512", "tg128"}
    for row in r["rows"]:
        assert row["direction"] == "higher" and row["old"]["n"] == 5
        assert row["verdict"] == "regressed"


def test_google_benchmark_repetitions(tmp_path: Path) -> None:
    r = _judge(str(METRICS / "google_benchmark.json"), str(METRICS / "google_benchmark.json"),
               cwd=tmp_path)
    assert r["format"] == "google-benchmark-json"
    rows = _rows(r)
    assert rows[("BM_Sort/1024", "us")]["old"]["n"] == 3  # aggregates are not samples
    for row in r["rows"]:
        assert row["p_value"] == 1.0 and row["ratio"] == 1.0 and not row["significant"]


def test_pytest_benchmark_directory_of_saved_runs(tmp_path: Path) -> None:
    doc = json.loads((METRICS / "pytest_benchmark.json").read_text())
    for side, scale in (("old", 1.0), ("new", 0.6)):
        (tmp_path / side).mkdir()
        for i in range(6):
            for bench in doc["benchmarks"]:
                bench["stats"]["mean"] = bench["stats"]["min"] * scale * (1 + 0.01 * i)
            (tmp_path / side / f"run{i}.json").write_text(json.dumps(doc))
    r = _judge(str(tmp_path / "old"), str(tmp_path / "new"), "--format",
               "pytest-benchmark-json", cwd=tmp_path)
    assert len(r["rows"]) == 2
    for row in r["rows"]:
        assert row["old"]["n"] == row["new"]["n"] == 6
        assert row["verdict"] == "improved" and row["change"] == pytest.approx(-0.4, abs=1e-9)


def test_metric_line_logs_in_directories(tmp_path: Path) -> None:
    for side, tok in (("old", 50.0), ("new", 50.2)):
        (tmp_path / side).mkdir()
        for i in range(8):
            (tmp_path / side / f"run{i}.log").write_text(
                f"warming up\nMETRIC tok_s={tok + 0.1 * (i % 3)}\nMETRIC rss_mb={900 + i}\n")
    r = _judge(str(tmp_path / "old"), str(tmp_path / "new"), "--direction", "higher",
               cwd=tmp_path)
    assert r["format"] == "metric-lines"
    tok = _rows(r)[("tok_s", "")]
    assert tok["old"]["n"] == 8 and tok["significant"]
    # +0.4 % is real (p < 0.05) but below the 1 % noise threshold: not a verdict either way
    assert tok["verdict"] in ("no_change", "inconclusive")


@pytest.mark.parametrize(
    ("name", "text", "where"),
    [
        ("bad.txt", "goos: linux\nBenchmarkA-8  100  12 ns/op\nBenchmarkA-8  100  abc ns/op\n",
         "line 3"),
        ("bad.txt", "BenchmarkA-8  100  12 ns/op 7\n", "line 1"),
        ("bad.json", '{"results": [\n  {"command": "x", "times": [1.0,\n  ]}\n]}\n', "line 3"),
        ("bad.log", "METRIC tok_s=51.0\nMETRIC tok_s=fast\n", "line 2"),
        ("bad.json", '{"results": [{"command": "x", "times": "soon"}]}', "results[0].times"),
    ],
)
def test_malformed_file_is_one_line_exit_2(tmp_path: Path, name: str, text: str,
                                           where: str) -> None:
    bad = tmp_path / name
    bad.write_text(text)
    code, _, proc = run_cli("judge", str(BENCHSTAT / "old.txt"), str(bad), cwd=tmp_path)
    if name.endswith(".txt"):
        assert code == 2
    code, _, proc = run_cli("judge", str(bad), str(bad), cwd=tmp_path)
    assert code == 2, proc.stdout
    assert proc.stdout == ""
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and str(bad) in lines[0] and where in lines[0], proc.stderr


def test_missing_and_unknown_inputs_exit_2(tmp_path: Path) -> None:
    code, _, proc = run_cli("judge", str(tmp_path / "nope"), str(BENCHSTAT / "new.txt"),
                            cwd=tmp_path)
    assert code == 2 and "no such file" in proc.stderr
    (tmp_path / "prose.txt").write_text("just some words\n")
    code, _, proc = run_cli("judge", str(tmp_path / "prose.txt"), str(BENCHSTAT / "new.txt"),
                            cwd=tmp_path)
    assert code == 2 and "prose.txt" in proc.stderr and "--format" in proc.stderr


@pytest.mark.parametrize(("fmt", "text", "message"), [
    ("pytest-benchmark-json", '{"benchmarks": [{"name": "t"}]}', "benchmarks[0] lacks 'stats'"),
    ("hyperfine-json", '{"results": [{"mean": 1}]}', "results[0] lacks 'command'"),
    ("google-benchmark-json", '{"context": {}, "benchmarks": [3]}',
     "expected benchmarks[0] to be an object, got the number 3"),
    ("llama-bench-json", '[{"n_prompt": 512}]', "test #1 lacks 'n_gen'"),
])
def test_judge_and_metrics_read_a_format_with_one_parser(tmp_path: Path, fmt: str, text: str,
                                                         message: str) -> None:
    """`readfirst judge` reads samples with the metric format's own reader: the same file is
    refused with the same words by both."""
    from readfirst.core.errors import ConfigError
    from readfirst.measure.metrics import MetricParseError, parse_metrics
    from readfirst.measure.samples import read_side

    bad = tmp_path / "bad.json"
    bad.write_text(text)
    with pytest.raises(MetricParseError) as metric_error:
        parse_metrics(fmt, text)
    with pytest.raises(ConfigError) as judge_error:
        read_side(bad, fmt)
    assert message in str(metric_error.value)
    assert str(judge_error.value) == f"{bad}: {metric_error.value}"
