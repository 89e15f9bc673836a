"""Reading a profile and the roofline, as pure functions: perf's and py-spy's output as hot
functions, byte sizes, and what the achieved bandwidth says (memory- or compute-bound).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterator
from typing import Any

MEMORY_BOUND_SHARE, COMPUTE_BOUND_SHARE = 0.6, 0.3
TIME_UNITS = {"s": 1.0, "sec": 1.0, "secs": 1.0, "second": 1.0, "seconds": 1.0, "ms": 1e-3,
              "msec": 1e-3, "us": 1e-6, "µs": 1e-6, "μs": 1e-6, "usec": 1e-6, "ns": 1e-9}
SIZES = {"": 1, "b": 1, "kb": 1e3, "mb": 1e6, "gb": 1e9, "kib": 2**10, "mib": 2**20,
         "gib": 2**30}
MEMORY_BOUND = ("memory-bound: compute micro-optimisations won't move the metric; "
                "passes over memory are the lever")
COMPUTE_BOUND = ("compute- or latency-bound: the hot functions' instructions and stalls are "
                 "the lever, not memory bandwidth")
MIXED = "mixed: partly bandwidth-limited; cut passes over memory and tighten the hot loops"
NO_BYTES = "no roofline conclusion: set [research] bytes_per_unit to get the roofline conclusion"
HYPOTHESES = {  # conclusion -> (title, kind, why, expected effect, score)
    MEMORY_BOUND: ("The workload is memory-bound: cut passes over memory", "memory-bound",
                   "Near the bandwidth ceiling fewer instructions do not help; fusing passes, "
                   "smaller data types and better reuse do.",
                   "fewer bytes moved per unit raises the metric about proportionally", 0.9),
    COMPUTE_BOUND: ("The workload is compute- or latency-bound: optimise the hot functions",
                    "compute-bound", "Far below the bandwidth ceiling: instructions, "
                    "dependencies, branches or cache misses in the hot functions are the lever.",
                    "faster hot loops (vectorisation, less work per unit)", 0.4),
}
_PERF_LINE = re.compile(r"^\s*(\d+(?:\.\d+)?)%\s+(?:(.*?)\s+)?\[(.)\]\s+(.*?)\s*(?:\t|\s{2,}|$)")
_PROCESS_FRAME = re.compile(r'(?:^|(?<=;))process \d+:".*?"(?=;|$)')
_SUFFIX = re.compile(r"(\.(isra|constprop|part|cold|lto_priv|localalias)(\.\d+)?)+$|@.*$")


def parse_perf_report(text: str) -> list[dict[str, Any]]:
    """`perf report --stdio --sort dso,symbol` -> [{"function", "share"}] by share; kernel
    symbols are summed into "[kernel]", unresolved addresses into "[<dso>]"."""
    shares: Counter[str] = Counter()
    for m in filter(None, map(_PERF_LINE.match, text.splitlines())):
        share, dso, mark, symbol = float(m[1]), (m[2] or "").strip(), m[3], m[4].strip()
        if mark in "kgH" or dso.startswith("[kernel"):
            shares["[kernel]"] += share
        else:
            bad = not symbol or symbol.startswith("0x")
            shares[f"[{dso or 'unknown'}]" if bad else symbol] += share
    return [{"function": f, "share": round(s, 2)} for f, s in shares.most_common()]


def pyspy_lines(text: str) -> Iterator[tuple[str, int]]:
    """(stack, sample count) of each line of py-spy's `--format raw` output: collapsed stacks,
    "f (file:line);g (file:line) N", root first; other lines skipped."""
    for line in text.splitlines():
        stack, _, n = line.rstrip().rpartition(" ")
        if stack and n.isdigit():
            yield stack, int(n)


def parse_pyspy_raw(text: str, skip_parent: bool = False) -> list[dict[str, Any]]:
    """py-spy `--format raw` (collapsed stacks, "f (file:line);g (file:line) N") -> leaf-frame
    shares, [{"function", "file", "share"}] by share. `process N:"cmd"` frames (from
    --subprocesses) are dropped, and with skip_parent the root process's own samples; a sample
    without a Python frame counts as "[no Python frame]"."""
    counts: Counter[tuple[str, str]] = Counter()
    for stack, n in pyspy_lines(text):
        stack, processes = _PROCESS_FRAME.subn("", stack)
        if skip_parent and processes == 1:
            continue
        frames = [f for f in stack.split(";") if f]
        m = re.match(r"^(.*?) \((.*?)(?::\d+)?\)$", frames[-1]) if frames else None
        counts[(m[1], m[2]) if m else ("[no Python frame]", "")] += n
    total = sum(counts.values()) or 1
    return [{"function": f, "file": file, "share": round(100.0 * c / total, 2)}
            for (f, file), c in counts.most_common()]


def hotspot_names(top: list[dict[str, Any]]) -> list[str]:
    """Plain function names, hottest first: no "[kernel]"/"<module>", C++ arguments and
    compiler suffixes (.isra.0, .cold, @plt) stripped."""
    names: list[str] = []
    for entry in top:
        name = str(entry["function"])
        cut = name.find("(")
        name = _SUFFIX.sub("", name[:cut] if cut > 0 else name).strip()
        if name and not name.startswith(("[", "<")) and name not in names:
            names.append(name)
    return names


def parse_bytes(value: Any) -> float | None:
    """bytes_per_unit as a number of bytes: 635437056, "606MiB", "1.2 GB"; None if unreadable."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int | float):
        return float(value) if value > 0 else None
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?(?:e\d+)?)\s*([A-Za-z]*)\s*", str(value))
    if not m or m[2].lower() not in SIZES:
        return None
    return float(m[1]) * SIZES[m[2].lower()] or None


def roofline(value: float | None, unit: str, direction: str, bytes_per_unit: float | None,
             bandwidth_gbs: float | None) -> tuple[float | None, float | None, str]:
    """(achieved GB/s, share of the measured bandwidth, conclusion). A higher-is-better metric
    counts units per second; a lower-is-better one is the time one unit takes."""
    if bytes_per_unit is None:
        return None, None, NO_BYTES
    if value is None or value <= 0:
        return None, None, "no roofline conclusion: no metric value from the profiled run"
    if direction == "higher":
        achieved = value * bytes_per_unit / 1e9
    elif unit.strip() in TIME_UNITS:
        achieved = bytes_per_unit / (value * TIME_UNITS[unit.strip()]) / 1e9
    else:
        return None, None, ("no roofline conclusion: a lower-is-better metric needs a time "
                            f"unit (s, ms, us, ns), got {unit!r}")
    if not bandwidth_gbs:
        return achieved, None, "no roofline conclusion: the memory bandwidth was not measured"
    share = achieved / bandwidth_gbs
    if share >= MEMORY_BOUND_SHARE:
        return achieved, share, MEMORY_BOUND
    return achieved, share, COMPUTE_BOUND if share < COMPUTE_BOUND_SHARE else MIXED
