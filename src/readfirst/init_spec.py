"""`readfirst init`: write a commented readfirst.toml from what the target already has."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

from readfirst.config import CONFIG_FILE, load_spec
from readfirst.errors import ConfigError


def _q(s: str) -> str:
    return json.dumps(s)  # a TOML basic string is JSON-compatible for these values


def detect(root: Path) -> tuple[dict[str, object], list[str]]:
    """What the target's files say: build, bench, checks, scope, protected, metric."""
    notes: list[str] = []
    found: dict[str, object] = {}
    if (root / "CMakeLists.txt").is_file():
        found["build"] = "cmake -S . -B build -DCMAKE_BUILD_TYPE=Release && cmake --build build -j"
        notes.append("build: CMakeLists.txt found")
    elif any((root / n).is_file() for n in ("Makefile", "makefile", "GNUmakefile")):
        found["build"] = "make -j"
        notes.append("build: Makefile found")
    elif (root / "Cargo.toml").is_file():
        found["build"] = "cargo build --release"
        notes.append("build: Cargo.toml found")

    protected: list[str] = []
    cfg_json = None
    if (root / ".auto" / "measure.sh").is_file():
        found["bench"] = "bash .auto/measure.sh"
        protected.append(".auto/**")
        if (root / ".auto" / "checks.sh").is_file():
            found["checks"] = "bash .auto/checks.sh"
        cfg_json = root / ".auto" / "config.json"
        notes.append("bench: pi-autoresearch .auto/ session found")
    elif (root / "autoresearch.sh").is_file():
        found["bench"] = "./autoresearch.sh" if os.access(root / "autoresearch.sh", os.X_OK) \
            else "bash autoresearch.sh"
        protected.append("autoresearch.sh")
        if (root / "autoresearch.checks.sh").is_file():
            found["checks"] = "bash autoresearch.checks.sh"
            protected.append("autoresearch.checks.sh")
        cfg_json = root / "autoresearch.config.json"
        notes.append("bench: autoresearch.sh found")
    else:
        notes.append(
            "bench: none found; write autoresearch.sh that prints `METRIC name=value` lines "
            "and set [target] bench"
        )
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

    bench = found.get("bench", "./autoresearch.sh")
    lines = [
        "# readfirst target spec. Paths are relative to this file's directory.",
        "[target]",
        "# Build command, run once per revision in its own worktree (incremental across calls).",
        opt("build", '"make -j"'),
        "# Benchmark: prints `METRIC name=value` lines (or JSON, see [metric] format).",
        f"bench = {_q(str(bench))}",
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
        opt("name", '"tg128"   # default: the first METRIC line'),
        f"direction = {_q(str(found.get('direction', 'lower')))}                 "
        "# or \"higher\"",
        opt("unit", '"ms"'),
        'format = "metric-lines"   # | llama-bench-json | hyperfine-json | '
        "pytest-benchmark-json | google-benchmark-json",
        '# output_file = "bench.json"   # read the output from this file instead of stdout',
        "",
        "[compare]",
        "rounds = 5                 # first batch; more batches up to max_rounds",
        "max_rounds = 30",
        "noise_threshold = 0.01     # relative change that counts as no change",
        "alpha = 0.05               # false-verdict rate over all looks",
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
    text = render(found)
    # Atomic: a temp file in the same directory, renamed over the target.
    fd, tmp = tempfile.mkstemp(prefix=".readfirst-", suffix=".toml", dir=root)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    try:
        load_spec(root)
    except ConfigError as e:
        notes.append(f"edit it before use: {e}")
    return path, notes
