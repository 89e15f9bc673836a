"""Quality and speed of `readfirst research` on whole trees: is what it offers in scope, listed
once, and in the code the benchmark runs?

For each tree: the research (offline; the static sources siblings, multipass, history, plus
the profiled diagnosis where the tree has a benchmark) with `[target] scope`, timed on this
machine's cores (`[research] jobs` = 2), then over the top 20 hypotheses: the share whose
sites are all in scope (goal 100 %), duplicates (two rows with the same first site or title;
goal 0), and, where a benchmark was profiled, the share in profiled code.

Trees: the bundled demo (a benchmark: profiled), the synthetic 500k-line ggml-like tree of
benchmarks/research_static.py, and any `--tree NAME=PATH:SCOPE[,SCOPE...]` (a source tree,
copied to a temporary git repository when it is not one; nothing is written to PATH).

Usage (sdists from the package registry, unpacked outside the repository):
    .venv/bin/python benchmarks/research_quality.py \
      --tree "llama.cpp=$SDIST/llama_cpp_python-0.3.36/vendor/llama.cpp:ggml/src/ggml-cpu/**" \
      --tree "blis=$SDIST/blis-1.3.4:blis/_src/kernels/penryn/**,blis/_src/config/penryn/**"
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from readfirst.core.config import Spec, load_spec
from readfirst.research import ResearchContext
from readfirst.research import treesit as T
from readfirst.research.ranking import in_scope
from readfirst.research.run import ResearchResult, run_research
from readfirst.vcs.workspace import target_at

sys.path.insert(0, str(Path(__file__).parent))
from research_static import GIT_ENV, generate  # noqa: E402

TOP = 20
STATIC = ["siblings", "multipass", "history"]


def git_copy(src: Path, dest: Path) -> Path:
    """`src` itself when it is a git work tree's top, else a committed copy at `dest`."""
    if (src / ".git").is_dir():
        return src
    shutil.copytree(src, dest, symlinks=True, ignore=shutil.ignore_patterns(".git"))
    env = {**os.environ, **GIT_ENV}
    for args in (["init", "-q"], ["add", "-A"], ["commit", "-q", "-m", "import"]):
        subprocess.run(["git", "-C", str(dest), *args], check=True, env=env,
                       stdout=subprocess.DEVNULL)
    return dest


def measure(name: str, root: Path, scope: list[str], spec: Spec | None = None,
            profile: bool = False) -> dict[str, Any]:
    spec = spec or Spec.model_validate({"target": {"bench": "true"}})
    spec = spec.model_copy(deep=True)
    spec.target.scope = scope
    spec.research = {**spec.research, "jobs": 2, "discover_forks": False}
    target = target_at(root)
    ctx = ResearchContext(repo=target.repo, root=target.root, rel=target.rel, spec=spec,
                          state_dir=root / ".readfirst", offline=True)
    files = T.tracked_files(root)
    lines = sum((root / f).read_bytes().count(b"\n") for f in files if (root / f).is_file())
    only = (["diagnosis"] if profile else []) + STATIC + (["forks"] if profile else [])
    started = time.perf_counter()
    result = run_research(ctx, only=only, profile=profile)
    seconds = time.perf_counter() - started
    slowest = max(result.sources, key=lambda s: s["seconds"])
    return {"tree": name, "lines": lines, "seconds": seconds,
            "slowest": f"{slowest['name']} {slowest['seconds']:.1f} s",
            **score(result, scope, profile)}


def score(result: ResearchResult, scope: list[str], profiled: bool) -> dict[str, Any]:
    top = result.hypotheses[:TOP]
    with_sites = [h for h in top if h.sites]
    inside = [h for h in with_sites if all(in_scope(s.path, scope) for s in h.sites)]
    keys = [(h.sites[0].path, h.sites[0].line) for h in with_sites] + [h.title for h in top]
    dups = len(keys) - len(set(keys))
    out: dict[str, Any] = {"hypotheses": len(result.hypotheses), "top": len(top),
                           "in_scope": len(inside) / len(with_sites) if with_sites else None,
                           "duplicates": dups, "profiled": None, "kinds": {}}
    for h in top:
        out["kinds"][h.kind] = out["kinds"].get(h.kind, 0) + 1
    if profiled and result.diagnosis and result.diagnosis.get("profiled"):
        hot = [h for h in with_sites if h.data.get("in_profile")]
        out["profiled"] = len(hot) / len(with_sites) if with_sites else None
    return out


def pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.0f} %"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tree", action="append", default=[],
                    help="NAME=PATH:SCOPE[,SCOPE...] (scope relative to PATH)")
    ap.add_argument("--bench", action="append", default=[],
                    help="NAME=COMMAND: a benchmark for tree NAME (METRIC lines; profiled)")
    ap.add_argument("--lines", type=int, default=500_000, help="of the synthetic tree")
    ap.add_argument("--no-demo", action="store_true")
    ap.add_argument("--no-synthetic", action="store_true")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="rf-quality-"))
    rows = []
    try:
        if not args.no_demo:
            from readfirst.frontends.demo import make_demo

            demo, _fork = make_demo(tmp / "demo")
            rows.append(measure("demo (bundled, profiled)", demo, ["src/**"],
                                load_spec(demo), profile=True))
        if not args.no_synthetic:
            synth = tmp / "synthetic"
            synth.mkdir()
            generate(synth, args.lines)
            rows.append(measure(f"synthetic ggml-like ({args.lines // 1000}k lines)", synth,
                                ["ggml/src/ggml-cpu/**", "src/lib000/**"]))
        benches = dict(b.partition("=")[::2] for b in args.bench)
        for spec_arg in args.tree:
            name, _, rest = spec_arg.partition("=")
            path, _, scopes = rest.partition(":")
            root = git_copy(Path(path).resolve(), tmp / name)
            bench = benches.get(name)
            spec = Spec.model_validate({"target": {"bench": bench}}) if bench else None
            rows.append(measure(name + (" (profiled)" if bench else ""), root,
                                [s for s in scopes.split(",") if s], spec, profile=bool(bench)))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"{os.cpu_count()} CPUs; research offline with [research] jobs = 2; top {TOP}\n")
    print("| tree | lines | seconds (slowest source) | hypotheses | top-20 in scope | "
          "duplicates | top-20 in profiled code | kinds in the top 20 |")
    print("|---|---:|---:|---:|---:|---:|---:|---|")
    for r in rows:
        kinds = ", ".join(f"{k} {n}" for k, n in sorted(r["kinds"].items(), key=lambda kv: -kv[1]))
        print(f"| {r['tree']} | {r['lines']} | {r['seconds']:.1f} ({r['slowest']}) | "
              f"{r['hypotheses']} | "
              f"{pct(r['in_scope'])} | {r['duplicates']} | {pct(r['profiled'])} | {kinds} |")


if __name__ == "__main__":
    main()
