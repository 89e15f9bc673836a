"""`readfirst judge` against benchstat's own expected outputs (golang.org/x/perf testdata).

Runs `judge_results` on benchstat's test inputs (tests/data/benchstat: old.txt vs new.txt and
crc-old.txt vs crc-new.txt, Go benchmark text) and reads benchstat's golden outputs for the
same inputs (csvOldNew.stdout, crcIgnore.stdout). Prints one Markdown row per benchmark and
unit: benchstat's change and p, readfirst's change, p and verdict, and whether they agree on
"significant change" (benchstat: p < 0.05; readfirst: p < 0.05 and a verdict of improved or
regressed, i.e. also the whole 95 % CI beyond the 1 % noise threshold), then a summary.

Usage: PYTHONPATH=src .venv/bin/python benchmarks/judge_vs_benchstat.py [--threshold 0.01]
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

from readfirst.core.constants import DEFAULT_NOISE_THRESHOLD, JUDGE_ALPHA
from readfirst.frontends.judge_cmd import judge_results

DATA = Path(__file__).resolve().parent.parent / "tests" / "data" / "benchstat"
# benchstat normalises units: ns/op is shown as sec/op and MB/s as B/s
UNIT = {"sec/op": "ns/op", "B/s": "MB/s"}
_ROW = re.compile(r"^(\S+)\s+.*?\s(~|[+-][\d.]+%)\s+\(p=([\d.]+) n=(\d+)\)\s*$")
_CSV_ROW = re.compile(r"^([^,]+),[^,]*,[^,]*,[^,]*,[^,]*,(~|[+-][\d.]+%),p=([\d.]+) n=(\d+)$")


def golden_text(path: Path) -> dict[tuple[str, str], tuple[str, float]]:
    """(benchmark, unit) -> (change text, p) from benchstat's text tables."""
    out: dict[tuple[str, str], tuple[str, float]] = {}
    unit = ""
    for line in path.read_text().splitlines():
        header = re.search(r"│\s+(\S+)\s+│\s+\S+\s+vs base", line)
        if header:
            unit = UNIT.get(header.group(1), header.group(1))
            continue
        m = _ROW.match(line)
        if m:
            out[(m.group(1), unit)] = (m.group(2), float(m.group(3)))
    return out


def golden_csv(path: Path) -> dict[tuple[str, str], tuple[str, float]]:
    out: dict[tuple[str, str], tuple[str, float]] = {}
    for line in path.read_text().splitlines():
        m = _CSV_ROW.match(line)
        if m:
            out[(m.group(1), "ns/op")] = (m.group(2), float(m.group(3)))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--threshold", type=float, default=DEFAULT_NOISE_THRESHOLD)
    args = ap.parse_args()
    cases = [("old.txt", "new.txt", golden_csv(DATA / "csvOldNew.stdout")),
             ("crc-old.txt", "crc-new.txt", golden_text(DATA / "crcIgnore.stdout"))]
    print(f"alpha = {JUDGE_ALPHA}, noise threshold = {args.threshold:.0%}\n")
    print("| files | benchmark | unit | benchstat | benchstat p | readfirst | readfirst p "
          "| verdict | agree |")
    print("|---|---|---|---:|---:|---:|---:|---|---|")
    total = agree = both = 0
    only_bs: list[str] = []
    only_rf: list[str] = []
    p_gap = 0.0
    for old, new, golden in cases:
        r = judge_results(DATA / old, DATA / new, "go-bench", JUDGE_ALPHA, args.threshold)
        for row in r["rows"]:
            key = (row["name"], row["unit"])
            if key not in golden:
                continue
            change, p = golden[key]
            bs_sig = change != "~"
            rf_sig = row["verdict"] in ("improved", "regressed")
            total += 1
            agree += bs_sig == rf_sig
            both += bs_sig and rf_sig
            label = f"{row['name']} ({row['unit']})"
            if bs_sig and not rf_sig:
                only_bs.append(label)
            if rf_sig and not bs_sig:
                only_rf.append(label)
            p_gap = max(p_gap, abs(round(row["p_value"], 3) - p))
            mine = f"{row['change'] * 100:+.2f}%" if row["significant"] else "~"
            print(f"| {old} {new} | {row['name']} | {row['unit']} | {change} | {p:.3f} | "
                  f"{mine} | {row['p_value']:.3f} | {row['verdict']} | "
                  f"{'yes' if bs_sig == rf_sig else '**no**'} |")
    print(f"\n{total} rows: same call on {agree} ({agree / total:.0%}); significant for both: "
          f"{both}; largest difference in p (3 decimals): {p_gap:.3f}")
    print(f"benchstat only ({len(only_bs)}): {', '.join(only_bs) or '-'}")
    print(f"readfirst only ({len(only_rf)}): {', '.join(only_rf) or '-'}")


if __name__ == "__main__":
    main()
