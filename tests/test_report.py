"""Reports from a run summary: markdown + SVG, self-contained HTML, pi log.jsonl, status rows."""

from __future__ import annotations

import copy
import io
import json
import re
import xml.etree.ElementTree as ET
from importlib.resources import files
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from readfirst.report import write_report
from readfirst.report.context import build_context, funnel
from readfirst.report.export import pi_jsonl
from readfirst.report.status import status_rows, status_table

DATA = Path(__file__).parent / "data" / "run_summary.json"


@pytest.fixture
def summary() -> dict[str, Any]:
    return json.loads(DATA.read_text())


@pytest.fixture
def written(summary: dict[str, Any], tmp_path: Path) -> tuple[str, str, Path]:
    md, html = write_report(summary, tmp_path / "out")
    return md.read_text(), html.read_text(), tmp_path / "out"


def _inline_svg(html: str) -> str:
    start, end = html.index("<svg"), html.index("</svg>") + len("</svg>")
    return html[start:end]


def test_files_written_next_to_each_other(summary: dict[str, Any], tmp_path: Path) -> None:
    md, html = write_report(summary, tmp_path / "a" / "b")
    assert md == tmp_path / "a" / "b" / "report.md" and md.is_file()
    assert html == tmp_path / "a" / "b" / "report.html" and html.is_file()
    assert (md.parent / "progress.svg").is_file()
    assert "](progress.svg)" in md.read_text()
    write_report(summary, tmp_path / "a" / "b")  # overwriting works, leaves no temp files
    assert sorted(p.name for p in md.parent.iterdir()) == [
        "forest.svg", "progress.svg", "report.html", "report.md"]


def test_html_is_self_contained(written: tuple[str, str, Path]) -> None:
    _, html, _ = written
    assert "<svg" in html and "<style>" in html
    for bad in ('src="http', 'href="http', "<script src", "<link", "<img", "@import"):
        assert bad not in html, bad
    assert not re.search(r"url\(\s*['\"]?(?!#)", html)  # only internal clip-path references
    assert "<script" not in html


def test_svgs_are_well_formed(written: tuple[str, str, Path]) -> None:
    _, html, out = written
    root = ET.parse(out / "progress.svg").getroot()
    assert root.tag == "{http://www.w3.org/2000/svg}svg"
    assert ET.fromstring(_inline_svg(html)).tag == "{http://www.w3.org/2000/svg}svg"


def test_header_and_sections(written: tuple[str, str, Path]) -> None:
    md, html, _ = written
    for text in (md, html):
        assert "20261121-061500-ab12" in text
        assert "/home/dev/llm-kernels" in text
        assert "readfirst/20261121-061500-ab12" in text
        assert "tok_s" in text and "tok/s" in text and "higher is better" in text
        assert "no candidates left" in text
        assert "1 m 02 s" in text  # wall time
        for section in ("Progress", "Funnel", "Winners", "What didn't work and why",
                        "Time per stage", "Experiments"):
            assert section in text.replace("&#39;", "'"), section
        assert "can exceed the wall time" in text  # 2 workers


def test_funnel(summary: dict[str, Any], written: tuple[str, str, Path]) -> None:
    assert funnel(summary) == {
        "proposed": 7, "built": 5, "checks passed": 4, "faster": 2, "kept": 2}
    md, html, _ = written
    line = "proposed 7 → built 5 → checks passed 4 → faster 2 → kept 2"
    assert line in md and line in html


def test_winners(written: tuple[str, str, Path]) -> None:
    md, html, _ = written
    for text in (md, html):
        winners = text[text.index("Winners"):text.index("What didn")]
        assert "rmsnorm: fuse copy, sum of squares and scale into two passes" in winners
        assert "softmax: fuse exp and sum, drop the scratch buffer" in winners
        assert "+13.6 %" in winners and "[+12.0, +15.0] %" in winners  # the kept confirm row
        assert "+4.8 %" in winners
        assert "36.80 ± 0.40" in winners and "41.80 ± 0.50" in winners
        assert "a53b587094" in winners  # landed commit, short
        assert "matvec" not in winners


def test_failures_list_every_other_candidate(written: tuple[str, str, Path]) -> None:
    md, html, _ = written
    for text in (md, html):
        failed = text[text.index("What didn"):text.index("Time per stage")]
        assert "changes protected files: autoresearch.sh" in failed  # the refused one
        assert "diff did not apply" in failed and "skipped" in failed
        for verdict in ("regressed", "checks_failed", "inconclusive", "refused"):
            assert verdict in failed
        assert "rmsnorm" not in failed


def test_title_is_escaped(summary: dict[str, Any], tmp_path: Path) -> None:
    evil = copy.deepcopy(summary)
    evil["experiments"][7]["title"] = "bench: <script>alert(1)</script> | faster"
    md, html = write_report(evil, tmp_path)
    h, m = html.read_text(), md.read_text()
    assert "<script>" not in h and "&lt;script&gt;alert(1)&lt;/script&gt;" in h
    assert "<script>" not in m and r"&lt;script&gt;alert(1)&lt;/script&gt; \| faster" in m


def test_pi_jsonl(summary: dict[str, Any]) -> None:
    text = pi_jsonl(summary)
    assert text.endswith("\n")
    lines = text.splitlines()
    objs = [json.loads(line) for line in lines]
    assert all(json.dumps(o, separators=(",", ":"), ensure_ascii=False) == line
               for o, line in zip(objs, lines, strict=True))
    assert objs[0] == {"type": "config", "name": "20261121-061500-ab12", "metricName": "tok_s",
                       "metricUnit": "tok/s", "bestDirection": "higher"}
    baseline, runs = objs[1], objs[2:]
    first_base = summary["experiments"][0]["base"]["median"]
    assert baseline == {"run": 1, "commit": summary["base_commit"][:7], "metric": first_base,
                        "metrics": {"tok_s": first_base}, "status": "keep",
                        "description": "baseline", "segment": 0, "confidence": None,
                        "timestamp": int(summary["experiments"][0]["started"] * 1000)}
    assert [r["run"] for r in runs] == list(range(2, 11))
    assert [r["status"] for r in runs] == [
        "discard", "discard", "keep", "discard", "keep", "checks_failed", "discard", "discard",
        "discard"]
    first, kept = runs[0], runs[2]
    assert kept["commit"] == summary["experiments"][2]["cand_commit"][:7]
    assert kept["metric"] == 41.9 and kept["metrics"] == {"tok_s": 41.9}
    assert kept["description"].startswith("rmsnorm: fuse copy")
    assert " — +13.60%" in kept["description"]
    assert kept["timestamp"] == int(summary["experiments"][2]["finished"] * 1000)
    assert first["confidence"] is None  # one value: MAD 0
    # seq 3: medians so far 42.0, 38.8, 41.9 -> median 41.9, MAD 0.1; |41.9 - 36.9| / 0.1
    assert kept["confidence"] == pytest.approx(50.0)
    skipped = runs[8]
    # nothing measured: no metric at all, never a 0 that plots as a drop
    assert skipped["metric"] is None and skipped["metrics"] == {}
    assert skipped["confidence"] is None
    assert all(r["metric"] is None for r in runs if r["status"] == "checks_failed")
    assert skipped["commit"] == summary["experiments"][8]["baseline"][:7]
    assert all(r["segment"] == 0 for r in runs)


def test_pi_status_crash_and_pending(summary: dict[str, Any]) -> None:
    exps = summary["experiments"]
    exps[3] |= {"verdict": "crash", "outcome": "discarded"}
    exps[6] |= {"status": "worker_died", "verdict": None}
    exps.append(exps[8] | {"seq": 10, "status": "queued", "finished": None})
    summary["metric"]["direction"] = "lower"
    objs = [json.loads(line) for line in pi_jsonl(summary).splitlines()]
    assert objs[0]["bestDirection"] == "lower"
    assert len(objs) == 11  # config, baseline, 9 rows: the queued one has not run yet
    assert objs[5]["status"] == "crash" and objs[8]["status"] == "crash"


def test_status_rows(summary: dict[str, Any]) -> None:
    rows = status_rows(summary)
    assert [r["seq"] for r in rows] == list(range(1, 10))
    assert set(rows[0]) == {"seq", "candidate_id", "title", "source", "verdict", "outcome",
                            "status", "change", "ci_low", "ci_high", "duration", "worker",
                            "reason", "ratio", "ratio_ci_low", "ratio_ci_high", "ci_level",
                            "significant", "change_text"}
    kept = rows[2]
    assert kept["outcome"] == "kept" and kept["verdict"] == "improved" and kept["worker"] == "w1"
    assert kept["change"] == pytest.approx(13.6)
    assert kept["ci_low"] == pytest.approx(12.0) and kept["ci_high"] == pytest.approx(15.0)
    assert kept["ratio"] == 1.136 and (kept["ratio_ci_low"], kept["ratio_ci_high"]) == (1.12, 1.15)
    assert kept["significant"] is True and kept["change_text"] == "+13.6 % [+12.0, +15.0] %"
    unclear = rows[6]  # inconclusive, its CI holds no change: benchstat's "~"
    assert unclear["significant"] is False and unclear["change_text"].startswith("~ +0.3 %")
    assert kept["duration"] == pytest.approx(11.9)
    assert kept["candidate_id"].startswith("fork:fastfork@")
    refused = rows[7]
    assert refused["verdict"] == "refused" and refused["change"] is None
    assert refused["reason"] == "changes protected files: autoresearch.sh"
    skipped = rows[8]
    assert skipped["status"] == "skipped" and skipped["verdict"] is None
    json.dumps(rows)


def test_status_table(summary: dict[str, Any]) -> None:
    summary["experiments"][0]["title"] = "[bold]not markup[/bold]"
    table = status_table(summary)
    assert [c.header for c in table.columns] == [
        "#", "experiment", "result", "change (CI)", "time", "wkr"]
    assert table.row_count == 9
    console = Console(record=True, width=200)
    console.print(table)
    out = console.export_text()
    assert "[bold]not markup[/bold]" in out and "+13.6 %" in out and "checks_failed" in out


def test_status_table_readable_at_80_columns(summary: dict[str, Any]) -> None:
    """One line per experiment, nothing past column 80, every result and change visible."""
    summary["experiments"][1]["title"] = "a very long title " * 8
    console = Console(record=True, width=80)
    console.print(status_table(summary))
    lines = console.export_text().splitlines()
    assert max(len(ln) for ln in lines) <= 80
    rows = [ln for ln in lines if re.match(r"^\s*\d+\s", ln)]
    assert [int(r.split()[0]) for r in rows] == list(range(1, 10))  # one line each, in order
    for row, e in zip(rows, summary["experiments"], strict=True):
        label = "kept" if e["outcome"] == "kept" else (e["verdict"] or e["status"])
        assert label in row
        if e["ratio"] is not None:
            assert f"{(e['ratio'] - 1) * 100:+.1f} %" in row
    assert "…" in rows[1]  # the long title is cut, not wrapped


def test_direction_lower_marks_lower_ratio_good(summary: dict[str, Any]) -> None:
    summary["metric"] = {"name": "time_ms", "unit": "ms", "direction": "lower"}
    rows = build_context(summary)["rows"]
    assert rows[3]["tone"] == "good" and rows[2]["tone"] == "bad"


def _edge_cases() -> dict[str, dict[str, Any]]:
    base = json.loads(DATA.read_text())
    empty = base | {"experiments": [], "finished": None, "status": "running",
                    "stop_reason": None, "final_commit": None}
    queued = copy.deepcopy(base) | {"status": "running", "finished": None}
    for e in queued["experiments"]:
        e |= {"status": "queued", "verdict": None, "outcome": None, "finished": None,
              "ratio": None, "ci_low": None, "ci_high": None, "base": None, "cand": None,
              "timings": {}}
    skipped = copy.deepcopy(base)
    for e in skipped["experiments"]:
        e |= {"status": "skipped", "verdict": None, "outcome": None, "base": None, "cand": None,
              "ratio": None, "ci_low": None, "ci_high": None, "cand_commit": None}
    nulls = copy.deepcopy(base) | {"workers": None, "metric": {"name": "x", "unit": None,
                                                                "direction": "lower"}}
    for e in nulls["experiments"]:
        e |= {"ratio": None, "ci_low": None, "ci_high": None, "p_value": None, "timings": None,
              "started": None, "finished": None, "provenance": None, "worker": None,
              "base": {"mean": None, "stddev": None, "median": None, "n": 0}}
    bare = {"run_id": "r", "status": "interrupted",
            "experiments": [{"seq": 1, "status": "running"}]}
    return {"empty": empty, "queued": queued, "skipped": skipped, "nulls": nulls, "bare": bare}


@pytest.mark.parametrize("name", list(_edge_cases()))
def test_edge_cases_do_not_crash(name: str, tmp_path: Path) -> None:
    s = _edge_cases()[name]
    md, html = write_report(s, tmp_path)
    h = html.read_text()
    ET.fromstring(_inline_svg(h))
    ET.parse(tmp_path / "progress.svg")
    if name in ("empty", "queued", "skipped", "bare"):
        assert "no measurements yet" in (tmp_path / "progress.svg").read_text()
        assert "No measurements yet." in md.read_text()
    if name == "empty":
        assert "proposed 0 → built 0 → checks passed 0 → faster 0 → kept 0" in h
        assert "No experiments yet." in h
    if name == "skipped":
        assert "proposed 7 → built 0" in h and "No candidate was kept." in h
    if name == "queued":
        assert "candidate(s) still queued or running" in h
    for line in pi_jsonl(s).splitlines():
        json.loads(line)
    json.dumps(status_rows(s))
    Console(file=io.StringIO()).print(status_table(s))


def test_templates_are_package_data() -> None:
    templates = files("readfirst.report") / "templates"
    assert (templates / "report.html.j2").is_file() and (templates / "report.md.j2").is_file()


def test_html_funnel_table(summary: dict[str, Any], written: tuple[str, str, Path]) -> None:
    _, html, _ = written
    ctx = build_context(summary)
    for label, count in ctx["funnel"]:
        assert re.search(rf"<th>{label}</th><td class=\"num\">{count}</td>", html), label


def test_charts_colour_by_result_and_escape_titles(summary: dict[str, Any]) -> None:
    from readfirst.report.charts import COLOURS, forest_plot, progress_chart

    summary["experiments"][6]["title"] = "<script>alert(1)</script>"
    svg = progress_chart(summary)
    ET.fromstring(svg)  # well-formed
    assert "<script>" not in svg and "&lt;script&gt;" in svg
    # one star per kept winner (the confirmation), never one for its exploration too
    kept = [e for e in summary["experiments"] if e["outcome"] == "kept" and e["kind"] == "confirm"]
    assert svg.count("<polygon") == len(kept) + 1  # + the legend's star
    # experiments without a measurement are on the axis, as crosses
    unmeasured = [e for e in summary["experiments"] if e["cand"] is None]
    assert svg.count("<path d=") == len(unmeasured)
    # inconclusive is amber, not green; each row's CI is drawn
    forest = forest_plot(summary)
    ET.fromstring(forest)
    inconclusive = next(e for e in summary["experiments"] if e["verdict"] == "inconclusive")
    assert f"#{inconclusive['seq']} " in forest
    assert COLOURS["inconclusive"] in forest and COLOURS["inconclusive"] != COLOURS["improved"]
    measured = [e for e in summary["experiments"] if e["ratio"] is not None]
    assert forest.count('stroke-width="3"') == len(measured)


def test_no_kept_means_no_stars_and_no_zero_cost(summary: dict[str, Any], tmp_path: Path) -> None:
    for e in summary["experiments"]:
        if e["outcome"] == "kept":
            e["outcome"] = "discarded"
    summary["cost"] = {"compute_usd": 0.0, "api_usd": 0.0, "total_usd": 0.0}
    _md, html = write_report(summary, tmp_path, machine={
        "host": "bench-1", "cpus": 2, "base_cv_median": 0.02, "measured": 7})
    text = html.read_text()
    assert "stars" not in text and "<polygon" not in _inline_svg(text)
    assert "$0.0000" not in text and "<h2>Cost</h2>" not in text
    assert "bench-1, 2 CPUs" in text and "median CV of the base side 2.00% over 7" in text


def test_status_table_one_notation_with_the_level_in_the_header(summary: dict[str, Any]) -> None:
    """Every change in readfirst's notation (notation.format_change): percent, CI in percent,
    "~" where not significant; one shared CI level goes in the header, rows fit 80 columns."""
    for e in summary["experiments"]:
        if e["ratio"] is not None:
            e["ci_level"] = 0.995
    table = status_table(summary)
    assert [c.header for c in table.columns][3] == "change (99.5 % CI)"
    console = Console(record=True, width=80)
    console.print(table)
    lines = console.export_text().splitlines()
    assert max(len(ln) for ln in lines) <= 80
    rows = {int(ln.split()[0]): ln for ln in lines if re.match(r"^\s*\d+\s", ln)}
    assert "+13.9 % [+12.1, +15.3] %" in rows[1] and "~" not in rows[1]
    assert "~ +0.3 % [-1.0, +1.6] %" in rows[7]
    summary["experiments"][6]["ci_level"] = 0.95  # levels differ: each row says its own
    table = status_table(summary)
    assert [c.header for c in table.columns][3] == "change (CI)"
    console = Console(record=True, width=160)
    console.print(table)
    text = console.export_text()
    assert "~ +0.3 % [-1.0, +1.6] % (95 % CI)" in text and "(99.5 % CI)" in text


def test_evidence_and_report_rows_use_the_notation(summary: dict[str, Any]) -> None:
    from readfirst.report.status import evidence_str

    e = summary["experiments"][6] | {"ci_level": 0.995}
    assert evidence_str(e, summary["metric"]).startswith(
        "tok_s ") and "(~ +0.3 % [-1.0, +1.6] % (99.5 % CI), p=0.41" in evidence_str(e)
    # a compare result with its look's level: significance is p below it, as benchstat
    r = e | {"ci_low": 1.001, "p_value": 0.002, "alpha_look": 0.001}
    assert evidence_str(r).count("~") == 1
    rows = build_context(summary)["rows"]
    assert rows[6]["change"].startswith("~ +0.3 %") and rows[2]["change"].startswith("+13.6 %")
    assert (rows[2]["ratio"], rows[2]["ci_low"], rows[2]["ci_high"]) == (1.136, 1.12, 1.15)
    assert "ci" not in rows[2]  # the CI is part of the change's text
