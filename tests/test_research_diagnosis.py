"""The bottleneck diagnosis: profile parsing, the bandwidth probe, roofline conclusions, and
degradation when tools or the baseline fail. Real perf/py-spy runs skip where unavailable."""

from __future__ import annotations

import shutil
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
from conftest import commit, git, write

from readfirst.core.config import Spec
from readfirst.research import ResearchContext
from readfirst.research.diagnosis import BottleneckSource
from readfirst.research.machine import resolve_tools
from readfirst.research.roofline import (
    MEMORY_BOUND,
    NO_BYTES,
    hotspot_names,
    parse_bytes,
    parse_perf_report,
    parse_pyspy_raw,
    roofline,
)

HOT_C = textwrap.dedent(
    """\
    #include <stdio.h>
    __attribute__((noinline)) double hot_loop(long n) {
        double s = 0;
        for (long i = 0; i < n; i++) s += (double)i * 0.5 / (double)(i + 1);
        return s;
    }
    int main(void) {
        double s = hot_loop(WORK);
        printf("checksum %f\\n", s);
        printf("METRIC tok_s=100\\n");
        return 0;
    }
    """
)
MAKEFILE = "prog: prog.c\n\t$(CC) -O2 -g -DWORK=120000000L -o prog prog.c\n"
NO_PROFILER: dict[str, str | None] = {"perf": None, "py-spy": None}

PERF_REPORT = """\
# Samples: 371  of event 'cpu-clock'
# Overhead  Shared Object      Symbol
 46.36% \tlibc.so.6        \t[.] __memmove_evex_unaligned_erms\t-      -
 36.66% \th2               \t[.] hot_loop.isra.0            \t-      -
 7.55%  \t[kernel.kallsyms]\t[k] exc_page_fault               \t-      -
 2.16%  \t[kernel.kallsyms]\t[k] __pte_offset_map_lock        \t-      -
 1.00%  \tlibstdc++.so.6   \t[.] std::vector<int>::push_back(int const&)
 0.50%  \tprog             \t[.] 0x0000000000001234
"""


def make_c_target(repo: Path) -> Path:
    repo.mkdir(parents=True)
    git(repo, "init", "-q")
    write(repo, "prog.c", HOT_C)
    write(repo, "Makefile", MAKEFILE)
    write(repo, ".gitignore", "prog\n")
    commit(repo, "base")
    return repo


def context(repo: Path, research: dict[str, Any] | None = None, **target: Any) -> ResearchContext:
    spec = Spec.model_validate({
        "target": {"build": "make", "bench": "./prog", "build_timeout": 60,
                   "bench_timeout": 30, **target},
        "metric": {"name": "tok_s", "direction": "higher", "unit": "tok/s"},
        "research": research or {},
    })
    return ResearchContext(repo, repo, "", spec, repo / ".readfirst")


@pytest.fixture(scope="module")
def c_repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_c_target(tmp_path_factory.mktemp("diag") / "target")


@pytest.fixture(scope="module")
def bandwidth(c_repo: Path) -> float:
    """One real probe run (cached in the target's state dir for the other tests)."""
    finding = BottleneckSource(tools=NO_PROFILER).run(context(c_repo))
    gbs = finding.diagnosis["bandwidth_gbs"]
    assert gbs is not None, finding.notes
    return gbs


def _perf_works(tmp: Path) -> bool:
    perf = shutil.which("perf")
    if not perf:
        return False
    proc = subprocess.run([perf, "record", "-e", "cpu-clock", "-o", str(tmp / "p.data"), "--",
                           "true"], capture_output=True, timeout=60)
    return proc.returncode == 0


def _pyspy_works(tmp: Path) -> str | None:
    pyspy = resolve_tools()["py-spy"]
    if not pyspy:
        return None
    proc = subprocess.run([pyspy, "record", "--format", "raw", "-o", str(tmp / "r.txt"), "--",
                           sys.executable, "-c",
                           "import time; time.sleep(0.3)"], capture_output=True, timeout=60)
    return pyspy if proc.returncode == 0 else None


# --- parsers and the roofline arithmetic ----------------------------------------------------

def test_parse_perf_report_aggregates_kernel_and_strips_markers() -> None:
    top = parse_perf_report(PERF_REPORT)
    assert top[0] == {"function": "__memmove_evex_unaligned_erms", "share": 46.36}
    assert {"function": "[kernel]", "share": 9.71} in top
    assert {"function": "[prog]", "share": 0.5} in top
    assert hotspot_names(top) == ["__memmove_evex_unaligned_erms", "hot_loop",
                                  "std::vector<int>::push_back"]


def test_parse_pyspy_raw_sums_leaf_frames() -> None:
    raw = ("<module> (bench.py:9);main (bench.py:7);hot_loop (bench.py:4) 30\n"
           "<module> (bench.py:9);main (bench.py:7);hot_loop (bench.py:3) 10\n"
           "<module> (bench.py:9);main (bench.py:8) 10\n")
    top = parse_pyspy_raw(raw)
    assert top[0] == {"function": "hot_loop", "file": "bench.py", "share": 80.0}
    assert hotspot_names(top) == ["hot_loop", "main"]
    # --subprocesses: process frames (commands may hold ';') go; the parent's own samples too
    parent = 'process 7:"python -c import sys; run(sys.argv[1]) bench"'
    raw = (f'{parent};<module> (<string>:1);Popen._try_wait (subprocess.py:1959) 5\n'
           f'{parent};process 8:"python bench.py";<module> (bench.py:9);hot_loop (bench.py:4) 6\n'
           f'{parent};process 8:"python bench.py" 2\n')
    top = parse_pyspy_raw(raw, skip_parent=True)
    assert top == [{"function": "hot_loop", "file": "bench.py", "share": 75.0},
                   {"function": "[no Python frame]", "file": "", "share": 25.0}]


def test_roofline_units_and_bytes() -> None:
    assert parse_bytes("606MiB") == 606 * 2**20
    assert parse_bytes(1e9) == 1e9 and parse_bytes("lots") is None and parse_bytes(0) is None
    # 49 tok/s x 606 MiB = 31 GB/s against 32 GB/s: memory-bound
    achieved, share, conclusion = roofline(49, "tok/s", "higher", 606 * 2**20, 32.0)
    assert achieved == pytest.approx(31.1, abs=0.1) and conclusion == MEMORY_BOUND
    # 100 MB in 50 ms = 2 GB/s of 20: compute-bound; the same in µs units
    assert roofline(50, "ms", "lower", 1e8, 20.0)[1] == pytest.approx(0.1)
    assert roofline(50_000, "µs", "lower", 1e8, 20.0)[1] == pytest.approx(0.1)
    assert roofline(50, "ms", "lower", 1e8, 4.0)[2].startswith("mixed")
    assert "time unit" in roofline(50, "items", "lower", 1e8, 4.0)[2]
    assert roofline(50, "ms", "lower", None, 4.0) == (None, None, NO_BYTES)


# --- end to end -----------------------------------------------------------------------------

def test_probe_reports_plausible_bandwidth(c_repo: Path, bandwidth: float) -> None:
    assert bandwidth > 0.1
    state = c_repo / ".readfirst" / "research"
    assert (state / "stream_probe").is_file() and (state / "bandwidth.json").is_file()


def test_perf_profile_finds_hot_loop(c_repo: Path, bandwidth: float, tmp_path: Path) -> None:
    if not _perf_works(tmp_path):
        pytest.skip("perf record does not work here")
    finding = BottleneckSource().run(context(c_repo))
    diag = finding.diagnosis
    assert diag["profiler"] == "perf", finding.notes
    shares = {t["function"]: t["share"] for t in diag["top_functions"]}
    assert shares.get("hot_loop", 0) > 30, diag["top_functions"]
    assert diag["hotspots"][0] == "hot_loop"
    incl = {r["function"]: r["share"] for r in diag["inclusive"]}  # through callees
    assert incl["main"] >= incl["hot_loop"] >= shares["hot_loop"], diag["inclusive"]
    assert diag["inclusive_method"] in ("call stacks", "static call graph")
    assert "hot_loop" in diag["profiled"] and "main" in diag["profiled"]
    assert diag["metric"] == {"name": "tok_s", "value": 100.0, "unit": "tok/s"}
    assert NO_BYTES in diag["conclusion"]
    assert any(r.id == "profile:hot_loop" for r in finding.references)
    assert (c_repo / ".readfirst" / "research" / "logs" / "build.out").is_file()


def test_memory_bound(c_repo: Path, bandwidth: float) -> None:
    bytes_per_unit = 0.9 * bandwidth * 1e9 / 100  # the bench reports 100 tok/s
    finding = BottleneckSource(tools=NO_PROFILER).run(
        context(c_repo, {"bytes_per_unit": bytes_per_unit}))
    diag = finding.diagnosis
    assert diag["share"] == pytest.approx(0.9, rel=1e-6)
    assert diag["conclusion"].startswith("memory-bound")
    (hyp,) = finding.hypotheses
    assert hyp.kind == "memory-bound" and hyp.score == 0.9
    assert hyp.title == "The workload is memory-bound: cut passes over memory"
    assert "GB/s" in hyp.rationale


def test_compute_bound_with_sites(c_repo: Path, bandwidth: float, tmp_path: Path) -> None:
    tools = None if _perf_works(tmp_path) else NO_PROFILER
    bytes_per_unit = 0.05 * bandwidth * 1e9 / 100
    finding = BottleneckSource(tools=tools).run(
        context(c_repo, {"bytes_per_unit": bytes_per_unit}))
    assert finding.diagnosis["conclusion"].startswith("compute")
    (hyp,) = finding.hypotheses
    assert hyp.kind == "compute-bound" and hyp.score == 0.4
    if tools is None:
        assert [(s.path, s.function) for s in hyp.sites] == [("prog.c", "hot_loop")]


def test_no_profiler_is_a_note(c_repo: Path, bandwidth: float) -> None:
    finding = BottleneckSource(tools=NO_PROFILER).run(context(c_repo))
    diag = finding.diagnosis
    assert diag["profiler"] is None and diag["top_functions"] == []
    assert any("no profiler available" in n for n in finding.notes)
    assert diag["metric"]["value"] == 100.0


def test_failing_perf_falls_back_to_a_plain_run(c_repo: Path, bandwidth: float,
                                                tmp_path: Path) -> None:
    fake = tmp_path / "perf"
    write(tmp_path, "perf", "#!/bin/sh\necho 'perf_event_open: Permission denied' >&2\nexit 1\n",
          executable=True)
    finding = BottleneckSource(tools={"perf": str(fake), "py-spy": None}).run(context(c_repo))
    diag = finding.diagnosis
    assert diag["profiler"] is None and diag["hardware_counters"] is False
    assert any(n.startswith("perf run failed (exit 1): perf_event_open") for n in finding.notes)
    assert diag["metric"]["value"] == 100.0 and NO_BYTES in diag["conclusion"]


def test_failed_build_and_bench_are_notes(c_repo: Path, bandwidth: float) -> None:
    finding = BottleneckSource(tools=NO_PROFILER).run(context(c_repo, build="exit 2"))
    assert finding.diagnosis["conclusion"] == "not diagnosed: the baseline build failed"
    assert any("baseline build failed (exit 2)" in n for n in finding.notes)
    finding = BottleneckSource().run(context(c_repo, bench="./prog && exit 3"))
    assert finding.diagnosis["conclusion"] == "not diagnosed: the baseline benchmark failed"
    assert finding.diagnosis["bandwidth_gbs"] == bandwidth


def test_python_target_with_py_spy(tmp_path: Path) -> None:
    pyspy = _pyspy_works(tmp_path)
    if not pyspy:
        pytest.skip("py-spy cannot profile here")
    repo = tmp_path / "py"
    repo.mkdir()
    git(repo, "init", "-q")
    write(repo, "bench.py", textwrap.dedent("""\
        def hot_loop(n):
            s = 0
            for i in range(n):
                s += i * i
            return s

        hot_loop(3_000_000)
        print("METRIC tok_s=100")
        """))
    commit(repo, "base")
    ctx = context(repo, {"bandwidth_gbs": 10.0, "bytes_per_unit": 1000}, build=None,
                  bench=f"{sys.executable} bench.py")
    finding = BottleneckSource(tools={"perf": None, "py-spy": pyspy}).run(ctx)
    diag = finding.diagnosis
    assert diag["profiler"] == "py-spy", finding.notes
    assert diag["hotspots"][0] == "hot_loop", diag["top_functions"]
    assert diag["top_functions"][0]["share"] > 30
    assert diag["bandwidth_gbs"] == 10.0
    assert [(s.path, s.line) for s in finding.hypotheses[0].sites] == [("bench.py", 1)]
    # py-spy exits 0 whatever the benchmark did: the failure is still seen
    ctx = context(repo, build=None, bench=f"{sys.executable} bench.py && exit 4")
    finding = BottleneckSource(tools={"perf": None, "py-spy": pyspy}).run(ctx)
    assert finding.diagnosis["conclusion"] == "not diagnosed: the baseline benchmark failed"
    assert any("failed under py-spy (exit 4)" in n for n in finding.notes)


def test_the_profiled_baseline_runs_in_the_sandbox(tmp_path: Path) -> None:
    # the baseline may hold kept candidates' code: under the profiler it still cannot write
    # the user's checkout or readfirst's state, and the profile is still taken
    from readfirst.measure import sandbox

    if sandbox.probe() is not None:
        pytest.skip(sandbox.probe())
    if not _perf_works(tmp_path):
        pytest.skip("perf record does not work here")
    repo = make_c_target(tmp_path / "target")
    (repo / ".readfirst").mkdir()
    escape = (f"./prog; echo hostile > {repo}/escaped || true; "
              f"echo hostile > {repo}/.readfirst/planted || true")
    finding = BottleneckSource().run(context(repo, bench=escape))
    assert finding.diagnosis["profiler"] == "perf", finding.notes
    assert finding.diagnosis["hotspots"][0] == "hot_loop"
    assert not (repo / "escaped").exists()
    assert not (repo / ".readfirst" / "planted").exists()
    assert not (repo / ".readfirst" / "research" / "profile" / "planted").exists()
