"""Tests of readfirst.measure.metrics: the benchmark-output parsers and their registry."""

from __future__ import annotations

import copy
import json
import math
from importlib.metadata import EntryPoint
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import readfirst.core.formats as formats_mod
from readfirst.core.formats import FORMATS, available_formats
from readfirst.measure.metrics import MetricParseError, parse_metrics
from readfirst.measure.metrics.llama_bench import base_name as llama_base_name

DATA = Path(__file__).parent / "data" / "metrics"
JSON_FORMATS = tuple(f for f in FORMATS if f.endswith("-json"))


def read(name: str) -> str:
    return (DATA / name).read_text(encoding="utf-8")


def load(name: str) -> Any:
    return json.loads(read(name))


def lines(*rows: str) -> str:
    return "\n".join(rows) + "\n"


# --- registry ------------------------------------------------------------------------------


def test_formats_are_the_documented_six() -> None:
    assert FORMATS == (
        "metric-lines",
        "llama-bench-json",
        "hyperfine-json",
        "pytest-benchmark-json",
        "google-benchmark-json",
        "go-bench",
    )
    assert available_formats()[: len(FORMATS)] == FORMATS


def test_unknown_format_lists_the_formats() -> None:
    with pytest.raises(MetricParseError) as info:
        parse_metrics("criterion-json", "{}")
    message = str(info.value)
    assert "'criterion-json'" in message
    for fmt in FORMATS:
        assert fmt in message
    assert isinstance(info.value, ValueError)


def _fake_entry_points(*points: EntryPoint) -> Any:
    def entry_points(*, group: str) -> list[EntryPoint]:
        assert group == "readfirst.metric_formats"
        return list(points)

    return entry_points


def test_plugin_formats_are_listed_and_used(monkeypatch: pytest.MonkeyPatch) -> None:
    group = "readfirst.metric_formats"
    plugin = EntryPoint("zz-lines", "readfirst.measure.metrics.metric_lines:parse", group)
    shadow = EntryPoint("hyperfine-json", "readfirst.measure.metrics.metric_lines:parse", group)
    monkeypatch.setattr(formats_mod, "entry_points", _fake_entry_points(plugin, shadow))
    assert available_formats() == (*FORMATS, "zz-lines")
    assert parse_metrics("zz-lines", "METRIC a=1\n") == {"a": 1.0}
    # A plugin cannot replace a built-in format.
    with pytest.raises(MetricParseError, match="hyperfine-json"):
        parse_metrics("hyperfine-json", "METRIC a=1\n")
    with pytest.raises(MetricParseError, match="zz-lines"):
        parse_metrics("nope", "")


def test_plugin_failures_become_metric_parse_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    group = "readfirst.metric_formats"
    points = (
        EntryPoint("returns-list", "json:loads", group),
        EntryPoint("raises", "math:sqrt", group),
        EntryPoint("missing", "readfirst.no_such_module:parse", group),
    )
    monkeypatch.setattr(formats_mod, "entry_points", _fake_entry_points(*points))
    with pytest.raises(MetricParseError, match="returns-list"):
        parse_metrics("returns-list", "[1, 2]")
    with pytest.raises(MetricParseError, match="'raises'.*failed"):
        parse_metrics("raises", "text")
    with pytest.raises(MetricParseError, match="failed to load"):
        parse_metrics("missing", "")


# --- metric-lines --------------------------------------------------------------------------

AUTORESEARCH_OUTPUT = lines(
    "+ cargo build --release",
    "    Finished `release` profile [optimized] target(s) in 0.07s",
    "running 3 iterations...",
    "METRIC total_µs=15230",
    "METRIC compile.ms=812.5",
    "METRIC peak_rss_mb=412",
    "done.",
)


def test_metric_lines_realistic_output() -> None:
    result = parse_metrics("metric-lines", AUTORESEARCH_OUTPUT)
    assert result == {"total_µs": 15230.0, "compile.ms": 812.5, "peak_rss_mb": 412.0}
    assert next(iter(result)) == "total_µs"  # the primary metric when none is configured
    assert all(type(value) is float for value in result.values())


def test_metric_lines_no_metric_is_empty_not_an_error() -> None:
    assert parse_metrics("metric-lines", "") == {}
    assert parse_metrics("metric-lines", "Segmentation fault (core dumped)\n") == {}


@pytest.mark.parametrize(
    "line",
    [
        " METRIC a=1",  # anchored: no leading space
        "\tMETRIC a=1",
        "> METRIC a=1",
        "METRIC a=1 extra",
        "METRIC a=1 # comment",
        "metric a=1",
        "METRICa=1",
        "METRIC a =1",
        "METRIC a= 1",
        "METRIC =1",
        "METRIC a=",
        "METRIC a:1",
        "METRIC café=1",  # \w is ASCII, as in pi-autoresearch's JavaScript regex
        "METRIC a-b=1",
    ],
)
def test_metric_lines_rejected_lines(line: str) -> None:
    assert parse_metrics("metric-lines", lines("x", line, "y")) == {}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("METRIC a=1   \n", {"a": 1.0}),
        ("METRIC a=1\t\n", {"a": 1.0}),
        ("METRIC a=1\r\n", {"a": 1.0}),
        ("METRIC a=1", {"a": 1.0}),  # no final newline
        ("METRIC \t a=1\n", {"a": 1.0}),
        ("METRIC latency.p99_µs=12.5\n", {"latency.p99_µs": 12.5}),
        ("METRIC a.b.c=2\n", {"a.b.c": 2.0}),
        ("METRIC _x9=3\n", {"_x9": 3.0}),
        ("building 40%\rMETRIC a=1\n", {"a": 1.0}),  # \r ends a line, as for JavaScript's /m
    ],
)
def test_metric_lines_accepted_lines(text: str, expected: dict[str, float]) -> None:
    assert parse_metrics("metric-lines", text) == expected


@pytest.mark.parametrize(
    ("raw", "value"),
    [
        ("42", 42.0),
        ("-3.5", -3.5),
        ("+7", 7.0),
        (".5", 0.5),
        ("5.", 5.0),
        ("1e-3", 0.001),
        ("6.02E+23", 6.02e23),
        ("0x1F", 31.0),  # JavaScript Number() also reads hex, octal and binary
        ("0o17", 15.0),
        ("0b101", 5.0),
        ("1e308", 1e308),
    ],
)
def test_metric_lines_number_syntax(raw: str, value: float) -> None:
    assert parse_metrics("metric-lines", f"METRIC v={raw}\n") == {"v": value}


@pytest.mark.parametrize(
    "raw",
    ["nan", "NaN", "inf", "-inf", "Infinity", "-Infinity", "1e999", "12ms", "1_000", "1,5", "0x",
     "-0x10", "٣", "abc", "--1", "1e", "."],
)  # fmt: skip
def test_metric_lines_non_finite_or_non_numeric_values_are_not_metrics(raw: str) -> None:
    assert parse_metrics("metric-lines", f"METRIC v={raw}\n") == {}


def test_metric_lines_later_valid_value_counts_after_nan() -> None:
    text = lines("METRIC a=1", "METRIC b=nan", "METRIC b=inf", "METRIC b=2.5")
    assert parse_metrics("metric-lines", text) == {"a": 1.0, "b": 2.5}


def test_metric_lines_nan_does_not_erase_an_earlier_value() -> None:
    assert parse_metrics("metric-lines", lines("METRIC a=1", "METRIC a=nan")) == {"a": 1.0}


@pytest.mark.parametrize("name", ["__proto__", "constructor", "prototype"])
def test_metric_lines_forbidden_names_are_refused(name: str) -> None:
    text = lines(f"METRIC {name}=1", "METRIC ok=2", f"METRIC {name}=3")
    assert parse_metrics("metric-lines", text) == {"ok": 2.0}
    # Only the exact names are refused.
    assert parse_metrics("metric-lines", f"METRIC {name}.x=1\n") == {f"{name}.x": 1.0}


def test_metric_lines_last_value_wins_at_first_position() -> None:
    text = lines("METRIC a=1", "METRIC b=2", "METRIC a=3", "noise", "METRIC c=4", "METRIC b=5")
    result = parse_metrics("metric-lines", text)
    assert result == {"a": 3.0, "b": 5.0, "c": 4.0}
    assert list(result) == ["a", "b", "c"]


@given(st.floats(allow_nan=False, allow_infinity=False))
def test_metric_lines_any_finite_float_round_trips(value: float) -> None:
    result = parse_metrics("metric-lines", f"noise\nMETRIC x={value!r}\nmore noise\n")
    assert result == {"x": value}
    assert math.copysign(1.0, result["x"]) == math.copysign(1.0, value)


_NAMES = st.text(alphabet="abcXYZ019_.µ", min_size=1, max_size=8).filter(
    lambda name: name not in {"__proto__", "constructor", "prototype"}
)
_NOISE = st.text(alphabet=st.characters(blacklist_characters="\n\r\u2028\u2029"), max_size=30)


@given(
    st.lists(
        st.tuples(_NAMES, st.floats(allow_nan=False, allow_infinity=False), _NOISE), max_size=12
    )
)
def test_metric_lines_model(rows: list[tuple[str, float, str]]) -> None:
    """Last value wins, order of first appearance, noise lines never count."""
    expected: dict[str, float] = {}
    out: list[str] = []
    for name, value, noise in rows:
        expected[name] = value
        out += [f"METRIC {name}={value!r}", noise if not noise.startswith("METRIC") else ""]
    result = parse_metrics("metric-lines", "\n".join(out))
    assert result == expected
    assert list(result) == list(expected)


@given(st.text())
def test_metric_lines_never_raise(text: str) -> None:
    result = parse_metrics("metric-lines", text)
    assert all(math.isfinite(value) for value in result.values())


# --- llama-bench ---------------------------------------------------------------------------

LLAMA_ARRAY_METRICS = {
    "pp512": 14377.883126,
    "pp512.avg_ns": 35612480.0,
    "tg128": 189.796812,
    "tg128.avg_ns": 674409320.0,
}


def test_llama_bench_json_array() -> None:
    result = parse_metrics("llama-bench-json", read("llama_bench.json"))
    assert result == LLAMA_ARRAY_METRICS
    assert list(result) == list(LLAMA_ARRAY_METRICS)


def test_llama_bench_log_noise_before_the_array() -> None:
    text = read("llama_bench_log_noise.txt")
    assert text.startswith("[bench]")  # a line starting with "[" that is not the JSON
    assert parse_metrics("llama-bench-json", text) == LLAMA_ARRAY_METRICS


def test_llama_bench_jsonl_two_models_depths_and_pp_tg() -> None:
    result = parse_metrics("llama-bench-json", read("llama_bench_two_models.jsonl"))
    assert list(result) == [
        "pp512", "pp512.avg_ns", "tg128", "tg128.avg_ns",
        "pp512@d4096", "pp512@d4096.avg_ns", "tg128@d4096", "tg128@d4096.avg_ns",
        "pp512+tg128", "pp512+tg128.avg_ns",
        "pp512#2", "pp512#2.avg_ns", "tg128#2", "tg128#2.avg_ns",
        "pp512@d4096#2", "pp512@d4096#2.avg_ns", "tg128@d4096#2", "tg128@d4096#2.avg_ns",
        "pp512+tg128#2", "pp512+tg128#2.avg_ns",
    ]  # fmt: skip
    assert result["pp512"] == pytest.approx(7278.471742)
    assert result["tg128#2"] == pytest.approx(74.425928)
    assert result["pp512@d4096.avg_ns"] == 79646367.0
    assert result["pp512+tg128"] == pytest.approx(560.755355)


def test_llama_bench_array_and_jsonl_agree() -> None:
    tests = load("llama_bench.json")
    jsonl = "".join(json.dumps(test) + "\n" for test in tests)
    assert parse_metrics("llama-bench-json", jsonl) == LLAMA_ARRAY_METRICS


@pytest.mark.parametrize(
    ("n_prompt", "n_gen", "n_depth", "name"),
    [
        (512, 0, 0, "pp512"),
        (0, 128, 0, "tg128"),
        (512, 128, 0, "pp512+tg128"),
        (512, 0, 4096, "pp512@d4096"),
        (0, 32, 16384, "tg32@d16384"),
        (64, 16, 512, "pp64+tg16@d512"),
    ],
)
def test_llama_bench_test_names(n_prompt: int, n_gen: int, n_depth: int, name: str) -> None:
    assert llama_base_name(n_prompt, n_gen, n_depth) == name


def test_llama_bench_duplicates_by_threads() -> None:
    tests = load("llama_bench.json")[:1] * 3
    for threads, test in zip((4, 8, 16), tests, strict=True):
        test["n_threads"] = threads
    text = json.dumps([dict(test) for test in tests])
    assert list(parse_metrics("llama-bench-json", text)) == [
        "pp512", "pp512.avg_ns", "pp512#2", "pp512#2.avg_ns", "pp512#3", "pp512#3.avg_ns",
    ]  # fmt: skip


def test_llama_bench_without_n_depth_from_older_builds() -> None:
    tests = load("llama_bench.json")
    for test in tests:
        del test["n_depth"]
    assert parse_metrics("llama-bench-json", json.dumps(tests)) == LLAMA_ARRAY_METRICS


def test_llama_bench_missing_avg_ts_names_the_test() -> None:
    tests = load("llama_bench.json")
    del tests[1]["avg_ts"]
    with pytest.raises(MetricParseError, match=r"^llama-bench-json: test #2 lacks 'avg_ts'$"):
        parse_metrics("llama-bench-json", json.dumps(tests, indent=2))


def test_llama_bench_jsonl_errors_give_the_line() -> None:
    text = read("llama_bench_two_models.jsonl")
    test = json.loads(text.splitlines()[8])
    del test["n_gen"]
    rows = text.splitlines()
    rows[8] = json.dumps(test)
    with pytest.raises(MetricParseError, match=r"test #3 lacks 'n_gen' \(line 9\)"):
        parse_metrics("llama-bench-json", "\n".join(rows))


def test_llama_bench_truncated_jsonl_is_an_error() -> None:
    text = read("llama_bench_two_models.jsonl")
    with pytest.raises(MetricParseError, match=r"invalid JSON line \(line 16, column"):
        parse_metrics("llama-bench-json", text[: len(text) - 40])


def test_llama_bench_truncated_array_is_an_error_not_a_partial_result() -> None:
    text = read("llama_bench_log_noise.txt")
    cut = text.index('"n_prompt": 0')  # inside the second test: the first one is complete
    line = text[:cut].count("\n") + 1  # the decoding error is where the text stops
    with pytest.raises(MetricParseError, match=rf"^llama-bench-json: expected .*\(line {line}, "):
        parse_metrics("llama-bench-json", text[:cut])


@pytest.mark.parametrize(
    ("text", "pattern"),
    [
        ("", "the output is empty"),
        ("main: error: failed to load model 'x.gguf'\n", "no line starts with"),
        ("[1, 2]\n", "does not hold only objects"),
        ('[{"n_prompt": 512}]', "test #1 lacks 'n_gen'"),
        ('[{"n_prompt": -1, "n_gen": 0}]', "n_prompt of test #1 to be a non-negative integer"),
        ('[{"n_prompt": "512", "n_gen": 0}]', "got the string '512'"),
        ('[{"n_prompt": 512, "n_gen": 0, "avg_ts": "fast", "avg_ns": 1}]', "avg_ts"),
    ],
)
def test_llama_bench_malformed(text: str, pattern: str) -> None:
    with pytest.raises(MetricParseError, match=pattern):
        parse_metrics("llama-bench-json", text)


def test_llama_bench_empty_array_and_non_finite_values() -> None:
    assert parse_metrics("llama-bench-json", "[]\n") == {}
    text = '[{"n_prompt": 512, "n_gen": 0, "avg_ts": NaN, "avg_ns": 1e400}]'
    assert parse_metrics("llama-bench-json", text) == {}
    text = '[{"n_prompt": 512, "n_gen": 0, "avg_ts": Infinity, "avg_ns": 5}]'
    assert parse_metrics("llama-bench-json", text) == {"pp512.avg_ns": 5.0}


# --- hyperfine -----------------------------------------------------------------------------


def test_hyperfine_two_commands() -> None:
    result = parse_metrics("hyperfine-json", read("hyperfine_two_commands.json"))
    assert list(result) == [
        "python3 -c pass", "python3 -c pass.median", "python3 -c pass.min",
        "python3 -S -c pass", "python3 -S -c pass.median", "python3 -S -c pass.min",
    ]  # fmt: skip
    assert result["python3 -c pass"] == pytest.approx(0.0166960244)
    assert result["python3 -S -c pass.median"] == pytest.approx(0.0099470488)
    assert result["python3 -S -c pass.min"] == pytest.approx(0.0097230133)
    assert "mean" not in result


def test_hyperfine_one_command_adds_plain_keys() -> None:
    result = parse_metrics("hyperfine-json", read("hyperfine_one_command.json"))
    command = "./build/sort-bench --n 100000"
    assert list(result) == [
        command, f"{command}.median", f"{command}.min", "mean", "median", "min", "max", "stddev",
    ]  # fmt: skip
    assert result[command] == result["mean"] == pytest.approx(0.4159244677)
    assert result["median"] == pytest.approx(0.4150032317)
    assert result["min"] == pytest.approx(0.4121790137)
    assert result["max"] == pytest.approx(0.4201184417)
    assert result["stddev"] == pytest.approx(0.003240129891422345)


def test_hyperfine_single_run_has_null_stddev() -> None:
    doc = load("hyperfine_one_command.json")
    result = doc["results"][0]
    result.update(times=[0.41], exit_codes=[0], stddev=None, mean=0.41, median=0.41)
    result.update(min=0.41, max=0.41)
    metrics = parse_metrics("hyperfine-json", json.dumps(doc))
    assert metrics["mean"] == 0.41
    assert "stddev" not in metrics


@pytest.mark.parametrize("codes", [[0, 1, 0], [0, None], [2, 2]])
def test_hyperfine_non_zero_exit_code_is_an_error(codes: list[int | None]) -> None:
    doc = load("hyperfine_two_commands.json")
    doc["results"][1]["exit_codes"] = codes
    with pytest.raises(MetricParseError, match=r"command 'python3 -S -c pass' exited non-zero"):
        parse_metrics("hyperfine-json", json.dumps(doc))


def test_hyperfine_without_exit_codes_from_older_versions() -> None:
    doc = load("hyperfine_two_commands.json")
    for result in doc["results"]:
        del result["exit_codes"]
    assert len(parse_metrics("hyperfine-json", json.dumps(doc))) == 6


def test_hyperfine_duplicate_commands_and_parameters() -> None:
    doc = load("hyperfine_two_commands.json")
    doc["results"][1]["command"] = doc["results"][0]["command"]
    doc["results"][1]["parameters"] = {"run": "2"}
    result = parse_metrics("hyperfine-json", json.dumps(doc))
    assert list(result)[3:] == [
        "python3 -c pass#2",
        "python3 -c pass#2.median",
        "python3 -c pass#2.min",
    ]


def test_hyperfine_noise_around_the_json() -> None:
    text = "Benchmark 1: ./build/sort-bench --n 100000\n" + read("hyperfine_one_command.json")
    assert parse_metrics("hyperfine-json", text + "\nexported.\n")["mean"] == pytest.approx(
        0.4159244677
    )


@pytest.mark.parametrize(
    ("text", "pattern"),
    [
        ('{"results": [1,', r"^hyperfine-json: expected an object with 'results' \(line 1, column"),
        ("{'results': []}", r"expected an object with 'results' \(line 1, column 2: Expecting"),
        ('{"benchmarks": []}', r"expected an object with 'results' \(line 1: found an object"),
        ("", r"expected an object with 'results' \(the output is empty\)"),
        ("Error: Command terminated with non-zero exit code\n", "no line starts with"),
        ('{"results": {}}', r"expected results to be an array, got an object"),
        ('{"results": [[]]}', r"expected results\[0\] to be an object, got an array"),
        ('{"results": [{"mean": 1}]}', r"results\[0\] lacks 'command'"),
        (
            '{"results": [{"command": "ls", "mean": 1, "median": 1, "min": 1}]}',
            r"^hyperfine-json: results\[0\] lacks 'max' \(command 'ls'\)$",
        ),
        (
            '{"results": [{"command": "ls", "mean": "1", "median": 1, "min": 1, "max": 1}]}',
            r"expected results\[0\]\.mean to be a number, got the string '1' \(command 'ls'\)",
        ),
        (
            '{"results": [{"command": "ls", "mean": 1, "median": 1, "min": 1, "max": true}]}',
            r"got a boolean",
        ),
    ],
)
def test_hyperfine_malformed(text: str, pattern: str) -> None:
    with pytest.raises(MetricParseError, match=pattern):
        parse_metrics("hyperfine-json", text)


def test_hyperfine_missing_mean_in_a_real_export() -> None:
    doc = load("hyperfine_two_commands.json")
    del doc["results"][1]["mean"]
    with pytest.raises(
        MetricParseError,
        match=r"^hyperfine-json: results\[1\] lacks 'mean' \(command 'python3 -S -c pass'\)$",
    ):
        parse_metrics("hyperfine-json", json.dumps(doc, indent=2))


# --- pytest-benchmark ----------------------------------------------------------------------


def test_pytest_benchmark() -> None:
    result = parse_metrics("pytest-benchmark-json", read("pytest_benchmark.json"))
    assert list(result) == [
        "test_sort[1000]", "test_sort[1000].median", "test_sort[1000].min",
        "test_sort[100000]", "test_sort[100000].median", "test_sort[100000].min",
    ]  # fmt: skip
    assert result["test_sort[1000]"] == pytest.approx(4.230514285714286e-05)
    assert result["test_sort[1000].median"] == pytest.approx(4.2151e-05)
    assert result["test_sort[100000].min"] == pytest.approx(0.0070791)


def test_pytest_benchmark_missing_stat() -> None:
    doc = load("pytest_benchmark.json")
    del doc["benchmarks"][1]["stats"]["median"]
    with pytest.raises(
        MetricParseError,
        match=r"^pytest-benchmark-json: benchmarks\[1\]\.stats lacks 'median' "
        r"\(benchmark 'test_sort\[100000\]'\)$",
    ):
        parse_metrics("pytest-benchmark-json", json.dumps(doc, indent=4))
    del doc["benchmarks"][1]["stats"]
    with pytest.raises(MetricParseError, match=r"benchmarks\[1\] lacks 'stats'"):
        parse_metrics("pytest-benchmark-json", json.dumps(doc))


def test_pytest_benchmark_no_benchmarks_and_duplicates() -> None:
    doc = load("pytest_benchmark.json")
    assert parse_metrics("pytest-benchmark-json", json.dumps({**doc, "benchmarks": []})) == {}
    doc["benchmarks"][1]["name"] = doc["benchmarks"][0]["name"]
    assert "test_sort[1000]#2" in parse_metrics("pytest-benchmark-json", json.dumps(doc))


def test_pytest_benchmark_not_json() -> None:
    text = "============================= test session starts =============================\n"
    with pytest.raises(MetricParseError, match="expected an object with 'benchmarks'"):
        parse_metrics("pytest-benchmark-json", text)


# --- Google Benchmark ----------------------------------------------------------------------


def test_google_benchmark_repetitions_and_aggregates() -> None:
    result = parse_metrics("google-benchmark-json", read("google_benchmark.json"))
    assert list(result) == [
        "BM_Sort/1024", "BM_Sort/1024.cpu_time", "BM_Sort/1024.median",
        "BM_Sort/1024.stddev", "BM_Sort/1024.cv",
        "BM_HashLookup/threads:4", "BM_HashLookup/threads:4.cpu_time",
        "BM_HashLookup/threads:4.median", "BM_HashLookup/threads:4.stddev",
        "BM_HashLookup/threads:4.cv",
        "BM_Parse/small", "BM_Parse/small.cpu_time",
    ]  # fmt: skip
    # In the benchmark's own unit (BM_Sort/1024 is in us), not converted.
    assert result["BM_Sort/1024"] == pytest.approx(31.97369103)
    assert result["BM_Sort/1024.cpu_time"] == pytest.approx(31.947055516666666)
    assert result["BM_Sort/1024.median"] == pytest.approx(31.92841375)
    assert result["BM_Sort/1024.cv"] == pytest.approx(0.003910619025898046)
    assert result["BM_HashLookup/threads:4"] == pytest.approx(166.7232)
    assert result["BM_Parse/small"] == pytest.approx(712.40317)
    assert "BM_Parse/corrupt" not in result  # error_occurred: the metric is missing


def test_google_benchmark_mean_aggregate_is_preferred() -> None:
    doc = load("google_benchmark.json")
    for entry in doc["benchmarks"]:
        if entry["name"] == "BM_Sort/1024_mean":
            entry["real_time"] = 40.0
    assert parse_metrics("google-benchmark-json", json.dumps(doc))["BM_Sort/1024"] == 40.0


def test_google_benchmark_without_aggregates_averages_iterations() -> None:
    doc = load("google_benchmark.json")
    doc["benchmarks"] = [e for e in doc["benchmarks"] if e["run_type"] == "iteration"]
    result = parse_metrics("google-benchmark-json", json.dumps(doc))
    assert result["BM_Sort/1024"] == pytest.approx((31.92841375 + 32.11505923 + 31.87760011) / 3)
    assert "BM_Sort/1024.median" not in result


def test_google_benchmark_aggregates_only() -> None:
    doc = load("google_benchmark.json")
    doc["benchmarks"] = [e for e in doc["benchmarks"] if e["run_type"] == "aggregate"]
    result = parse_metrics("google-benchmark-json", json.dumps(doc))
    assert result["BM_Sort/1024"] == pytest.approx(31.97369103)
    assert "BM_Parse/small" not in result


def test_google_benchmark_old_schema_without_run_name() -> None:
    text = json.dumps(
        {
            "context": {"date": "2019-03-01 10:00:00", "library_build_type": "release"},
            "benchmarks": [
                {"name": "BM_Copy/8", "iterations": 1000000, "real_time": 9.5,
                 "cpu_time": 9.4, "time_unit": "ns"},
                {"name": "BM_Copy/64", "iterations": 500000, "real_time": 21.0,
                 "cpu_time": 20.9, "time_unit": "ns"},
            ],
        }
    )  # fmt: skip
    assert parse_metrics("google-benchmark-json", text) == {
        "BM_Copy/8": 9.5,
        "BM_Copy/8.cpu_time": 9.4,
        "BM_Copy/64": 21.0,
        "BM_Copy/64.cpu_time": 20.9,
    }


def test_google_benchmark_stderr_noise_before_the_json() -> None:
    noise = (
        "***WARNING*** CPU scaling is enabled, the benchmark real time measurements may be "
        "noisy and will incur extra overhead.\n"
    )
    result = parse_metrics("google-benchmark-json", noise + read("google_benchmark.json"))
    assert result["BM_Parse/small"] == pytest.approx(712.40317)


@pytest.mark.parametrize(
    ("mutate", "pattern"),
    [
        (lambda e: e.pop("real_time"), r"benchmarks\[0\] lacks 'real_time' \(benchmark"),
        (lambda e: e.update(cpu_time=None), r"benchmarks\[0\]\.cpu_time to be a number, got null"),
        (lambda e: e.update(run_type="warmup"), r"'iteration' or 'aggregate'"),
        (lambda e: e.update(time_unit="ms"), r"benchmarks\[1\] is in us but benchmarks\[0\]"),
        (lambda e: e.pop("name"), r"benchmarks\[0\] lacks 'name'"),
    ],
)
def test_google_benchmark_malformed(mutate: Any, pattern: str) -> None:
    doc = load("google_benchmark.json")
    mutate(doc["benchmarks"][0])
    with pytest.raises(MetricParseError, match=pattern):
        parse_metrics("google-benchmark-json", json.dumps(doc))


# --- every JSON format: malformed output only ever raises MetricParseError -----------------

FIXTURES = {
    "llama-bench-json": ["llama_bench.json", "llama_bench_two_models.jsonl"],
    "hyperfine-json": ["hyperfine_two_commands.json", "hyperfine_one_command.json"],
    "pytest-benchmark-json": ["pytest_benchmark.json"],
    "google-benchmark-json": ["google_benchmark.json"],
}
FIXTURE_CASES = [(fmt, name) for fmt, names in FIXTURES.items() for name in names]

_JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()
    | st.text(max_size=5)
    | st.sampled_from(["mean", "iteration", "aggregate", "0"]),
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(
            st.sampled_from(
                [
                    "results",
                    "benchmarks",
                    "command",
                    "mean",
                    "median",
                    "min",
                    "max",
                    "stats",
                    "name",
                    "run_name",
                    "run_type",
                    "aggregate_name",
                    "real_time",
                    "cpu_time",
                    "time_unit",
                    "exit_codes",
                    "n_prompt",
                    "n_gen",
                    "n_depth",
                    "avg_ts",
                    "avg_ns",
                ]
            ),
            children,
            max_size=6,
        )
    ),  # fmt: skip
    max_leaves=20,
)


def _check(fmt: str, text: str) -> None:
    try:
        result = parse_metrics(fmt, text)
    except MetricParseError:
        return
    assert all(isinstance(k, str) and math.isfinite(v) for k, v in result.items())


@pytest.mark.parametrize("fmt", JSON_FORMATS)
@given(document=_JSON)
def test_json_formats_only_raise_metric_parse_error(fmt: str, document: Any) -> None:
    _check(fmt, json.dumps(document))


def _paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [prefix]
    if isinstance(node, dict):
        for key, child in node.items():
            found += _paths(child, (*prefix, key))
    elif isinstance(node, list):
        for index, child in enumerate(node[:3]):
            found += _paths(child, (*prefix, index))
    return found


@pytest.mark.parametrize(("fmt", "name"), FIXTURE_CASES)
@settings(suppress_health_check=[HealthCheck.too_slow], max_examples=60)
@given(data=st.data())
def test_mutated_fixtures_only_raise_metric_parse_error(fmt: str, name: str, data: Any) -> None:
    text = read(name)
    if name.endswith(".jsonl"):
        rows = text.splitlines()
        index = data.draw(st.sampled_from([i for i, r in enumerate(rows) if r.startswith("{")]))
        document = json.loads(rows[index])
    else:
        document = json.loads(text)
    mutated = copy.deepcopy(document)
    path = data.draw(st.sampled_from(_paths(mutated)[1:]))
    parent = mutated
    for step in path[:-1]:
        parent = parent[step]
    if data.draw(st.booleans()):
        del parent[path[-1]]
    else:
        parent[path[-1]] = data.draw(_JSON)
    if name.endswith(".jsonl"):
        rows[index] = json.dumps(mutated)
        _check(fmt, "\n".join(rows))
    else:
        _check(fmt, json.dumps(mutated, indent=2))


@pytest.mark.parametrize(("fmt", "name"), FIXTURE_CASES)
@given(data=st.data())
def test_truncated_fixtures_only_raise_metric_parse_error(fmt: str, name: str, data: Any) -> None:
    text = read(name)
    _check(fmt, text[: data.draw(st.integers(0, len(text)))])


@pytest.mark.parametrize("fmt", FORMATS)
@given(text=st.text(alphabet='[]{}":,0123456789.eE-+ \nabtrueflsn', max_size=60))
def test_any_text_only_raises_metric_parse_error(fmt: str, text: str) -> None:
    _check(fmt, text)


@pytest.mark.parametrize("fmt", JSON_FORMATS)
def test_deeply_nested_json_is_a_parse_error(fmt: str) -> None:
    with pytest.raises(MetricParseError):
        parse_metrics(fmt, "{" + '"a":[' * 100_000 + "]" * 100_000 + "}")
