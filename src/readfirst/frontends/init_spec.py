"""`readfirst init`: write a commented readfirst.toml from what the target already has.

The benchmark is found, in this order: pi-autoresearch's `.auto/measure.sh` or
`autoresearch.sh`; a `bench.sh` / `benchmark.sh`; a `bench` target of the Makefile; `cargo
bench` (Rust's built-in harness, through a small converting script); pytest-benchmark. When there
is none, a stub `autoresearch.sh` is written that says what to fill in.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

from readfirst.core.config import CONFIG_FILE, load_spec
from readfirst.core.errors import ConfigError
from readfirst.core.fsutil import atomic_write

STUB_BENCH = "autoresearch.sh"
PYTEST_BENCH_JSON = ".readfirst-bench.json"

# Rust's libtest prints `test name ... bench:   1,234 ns/iter (+/- 56)`; METRIC lines for readfirst.
CARGO_BENCH_SCRIPT = """\
#!/bin/sh
# Written by `readfirst init`: runs `cargo bench` and prints each benchmark as a METRIC line
# (nanoseconds per iteration, lower is better). Criterion benchmarks print another format:
# write their figures as `METRIC name=value` lines instead.
set -e
cargo bench --quiet 2>&1 | awk '
  / bench: / { name = $2; gsub(/[^A-Za-z0-9_.]/, "_", name); v = $0;
               sub(/.* bench: */, "", v); sub(/ .*/, "", v); gsub(/,/, "", v);
               out = out "METRIC " name "=" v "\\n" }
  { print }
  END { printf "%s", out }'
"""

STUB_SCRIPT = """\
#!/bin/sh
# Written by `readfirst init`: the benchmark readfirst runs. It must print `METRIC name=value`
# lines (last), one per figure; the first is the primary metric unless [metric] name says.
# Set CMD to the command whose speed matters, e.g. CMD="./build/app --input data.txt".
CMD=""
if [ -z "$CMD" ]; then
  echo "autoresearch.sh: set CMD to the command to time (written by readfirst init)" >&2
  exit 2
fi
start=$(date +%s%N)
sh -c "$CMD" > /dev/null
end=$(date +%s%N)
awk -v a="$start" -v b="$end" 'BEGIN { printf "METRIC wall_ms=%.3f\\n", (b - a) / 1e6 }'
"""


def _q(s: str) -> str:
    return json.dumps(s)  # a TOML basic string is JSON-compatible for these values


def _script_cmd(root: Path, rel: str) -> str:
    return f"./{rel}" if os.access(root / rel, os.X_OK) else f"bash {rel}"


def _make_targets(root: Path) -> set[str]:
    for name in ("GNUmakefile", "makefile", "Makefile"):
        path = root / name
        if path.is_file():
            text = path.read_text(encoding="utf-8", errors="replace")
            return set(re.findall(r"^([A-Za-z0-9_.-]+)\s*:(?!=)", text, re.MULTILINE))
    return set()


def _uses_pytest_benchmark(root: Path) -> bool:
    for name in ("pyproject.toml", "setup.cfg", "tox.ini", "requirements.txt",
                 "requirements-dev.txt", "dev-requirements.txt"):
        path = root / name
        if path.is_file() and re.search(r"pytest[-_]benchmark",
                                        path.read_text(encoding="utf-8", errors="replace")):
            return True
    tests = root / "tests"
    if tests.is_dir():
        for path in sorted(tests.rglob("test_*.py"))[:200]:
            text = path.read_text(encoding="utf-8", errors="replace")
            if re.search(r"def test_\w+\([^)]*\bbenchmark\b", text):
                return True
    return False


def _detect_build(root: Path, found: dict[str, object], notes: list[str]) -> None:
    if (root / "CMakeLists.txt").is_file():
        found["build"] = "cmake -S . -B build -DCMAKE_BUILD_TYPE=Release && cmake --build build -j"
        notes.append("build: CMakeLists.txt found")
    elif any((root / n).is_file() for n in ("Makefile", "makefile", "GNUmakefile")):
        found["build"] = "make -j"
        notes.append("build: Makefile found")
    elif (root / "Cargo.toml").is_file():
        found["build"] = "cargo build --release"
        notes.append("build: Cargo.toml found")


def _detect_bench(root: Path, found: dict[str, object], notes: list[str],
                  protected: list[str]) -> Path | None:
    """Sets found["bench"] (and metric hints); returns the config JSON to read, if any."""
    if (root / ".auto" / "measure.sh").is_file():
        found["bench"] = "bash .auto/measure.sh"
        protected.append(".auto/**")
        if (root / ".auto" / "checks.sh").is_file():
            found["checks"] = "bash .auto/checks.sh"
        notes.append("bench: pi-autoresearch .auto/ session found")
        return root / ".auto" / "config.json"
    if (root / "autoresearch.sh").is_file():
        found["bench"] = _script_cmd(root, "autoresearch.sh")
        protected.append("autoresearch.sh")
        if (root / "autoresearch.checks.sh").is_file():
            found["checks"] = "bash autoresearch.checks.sh"
            protected.append("autoresearch.checks.sh")
        notes.append("bench: autoresearch.sh found")
        return root / "autoresearch.config.json"
    for rel in ("bench.sh", "benchmark.sh", "scripts/bench.sh", "scripts/benchmark.sh"):
        if (root / rel).is_file():
            found["bench"] = _script_cmd(root, rel)
            protected.append(rel)
            notes.append(f"bench: {rel} found; it must print `METRIC name=value` lines")
            return None
    targets = _make_targets(root)
    for name in ("bench", "benchmark"):
        if name in targets:
            found["bench"] = f"make -s {name}"
            notes.append(f"bench: Makefile target `{name}` found; it must print "
                         "`METRIC name=value` lines")
            return None
    if (root / "Cargo.toml").is_file() and (
            (root / "benches").is_dir()
            or "[[bench]]" in (root / "Cargo.toml").read_text(encoding="utf-8", errors="replace")):
        _write_script(root, "cargo-bench.sh", CARGO_BENCH_SCRIPT)
        found.update(bench="./cargo-bench.sh", unit="ns/iter", direction="lower")
        protected.append("cargo-bench.sh")
        notes.append("bench: `cargo bench` found; wrote cargo-bench.sh, which turns its "
                     "`ns/iter` lines into METRIC lines")
        return None
    if _uses_pytest_benchmark(root):
        found.update(bench=f"python -m pytest -q --benchmark-only "
                           f"--benchmark-json={PYTEST_BENCH_JSON}",
                     format="pytest-benchmark-json", output_file=PYTEST_BENCH_JSON, unit="s",
                     direction="lower")
        notes.append("bench: pytest-benchmark found; the metric is the first benchmark's mean")
        return None
    _write_script(root, STUB_BENCH, STUB_SCRIPT)
    found.update(bench=f"./{STUB_BENCH}", name="wall_ms", unit="ms", direction="lower")
    protected.append(STUB_BENCH)
    notes.append(f"bench: none found; wrote a stub {STUB_BENCH}: set CMD in it to the command "
                 "to time (or make it print your own `METRIC name=value` lines)")
    return None


def _write_script(root: Path, rel: str, text: str) -> None:
    path = root / rel
    if path.exists():
        raise ConfigError(f"{path} exists; remove it or set [target] bench yourself")
    atomic_write(path, text, mode=0o755)


def detect(root: Path) -> tuple[dict[str, object], list[str]]:
    """What the target's files say: build, bench, checks, scope, protected, metric.

    Writes a bench script when the benchmark needs one (cargo bench) or none was found."""
    notes: list[str] = []
    found: dict[str, object] = {}
    _detect_build(root, found, notes)
    protected: list[str] = []
    cfg_json = _detect_bench(root, found, notes, protected)
    if "checks" not in found and (root / "pyproject.toml").is_file() and (root / "tests").is_dir():
        found["checks"] = "python -m pytest -q"
        notes.append("checks: pyproject.toml and tests/ found")
    if (root / "tests").is_dir():
        protected.append("tests/**")
    found["protected"] = protected
    found["scope"] = [f"{d}/**" for d in ("src", "lib", "include") if (root / d).is_dir()]

    if cfg_json is not None and cfg_json.is_file():
        try:
            cfg = json.loads(cfg_json.read_text(encoding="utf-8"))
        except json.JSONDecodeError as e:
            raise ConfigError(f"{cfg_json}:{e.lineno}: invalid JSON: {e.msg}") from None
        if isinstance(cfg, dict):
            for src, dst in (("metricName", "name"), ("metricUnit", "unit"),
                             ("bestDirection", "direction")):
                if cfg.get(src) is not None:
                    found[dst] = str(cfg[src])
    return found, notes


def render(found: dict[str, object]) -> str:
    def opt(key: str, default_comment: str) -> str:
        return f"{key} = {_q(str(found[key]))}" if key in found else f"# {key} = {default_comment}"

    fmt = str(found.get("format", "metric-lines"))
    lines = [
        "# readfirst target spec. Paths are relative to this file's directory.",
        "[target]",
        "# Build command, run once per revision in its own worktree (incremental across calls).",
        opt("build", '"make -j"'),
        "# Benchmark: prints `METRIC name=value` lines (or JSON, see [metric] format).",
        f"bench = {_q(str(found['bench']))}",
        "# Correctness checks; a candidate that fails them is `checks_failed` whatever its speed.",
        opt("checks", '"./autoresearch.checks.sh"'),
        "build_timeout = 600                   # seconds",
        "bench_timeout = 300",
        "checks_timeout = 300",
        "# A candidate may never change these (readfirst.toml and autoresearch files always are).",
        f"protected = {json.dumps(found.get('protected', []))}",
        "# Where candidates may change code ([] = anywhere not protected).",
        f"scope = {json.dumps(found.get('scope', []))}",
        "",
        "[metric]",
        "# Primary metric; every other metric printed is recorded as secondary.",
        opt("name", '"tg128"   # default: the first metric of the output'),
        f"direction = {_q(str(found.get('direction', 'lower')))}                 "
        "# or \"higher\"",
        opt("unit", '"ms"'),
        f"format = {_q(fmt)}   # | metric-lines | llama-bench-json | hyperfine-json | "
        "pytest-benchmark-json | google-benchmark-json",
        opt("output_file", '"bench.json"   # read the output from this file instead of stdout'),
        "",
        "[compare]",
        "rounds = 1                 # a look after every round, from the 10th on",
        "max_rounds = 40",
        "noise_threshold = 0.01     # relative change that counts as no change",
        "alpha = 0.005              # false-verdict rate over all looks",
        "warmup = 1",
        'mode = "interleaved"       # or "duet": both at once on disjoint pinned CPUs',
        "",
    ]
    return "\n".join(lines)


def write_init(root: Path, *, force: bool = False) -> tuple[Path, list[str]]:
    if not root.is_dir():
        raise ConfigError(f"{root}: no such directory")
    path = root / CONFIG_FILE
    if path.exists() and not force:
        raise ConfigError(f"{path} exists (use --force to overwrite)")
    found, notes = detect(root)
    atomic_write(path, render(found), mode=0o644)
    try:
        load_spec(root)
    except ConfigError as e:
        notes.append(f"edit it before use: {e}")
    return path, notes
