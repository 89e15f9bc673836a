"""The target spec: `readfirst.toml`, or the conventions pi-autoresearch users already have.

Lookup order at the target's root:
1. `readfirst.toml`
2. pi-autoresearch's `.auto/measure.sh` (+ `.auto/checks.sh`, `.auto/config.json`)
3. the flat `autoresearch.sh` (+ `autoresearch.checks.sh`, `autoresearch.config.json`)
"""

from __future__ import annotations

import json
import os
import re
import shlex
import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from readfirst.core import constants as C
from readfirst.core.config_tables import API_KINDS, AgentConfig, check_table
from readfirst.core.errors import ConfigError
from readfirst.core.formats import available_formats

CONFIG_FILE = "readfirst.toml"
# Sections that later stages read; accepted here so one file serves the whole tool.
RESERVED_SECTIONS = ("research", "agent", "executor", "loop")

Seconds = Annotated[float, Field(gt=0)]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TargetSection(_Section):
    build: str | None = None
    bench: str
    checks: str | None = None
    build_timeout: Seconds = C.DEFAULT_BUILD_TIMEOUT
    bench_timeout: Seconds = C.DEFAULT_BENCH_TIMEOUT
    checks_timeout: Seconds = C.DEFAULT_CHECKS_TIMEOUT
    protected: list[str] = []
    scope: list[str] = []
    # Threads one benchmark run uses: `readfirst run` warns when workers x this > cores.
    bench_threads: int = Field(1, ge=1)
    # Untrusted candidates (docs/security.md): every step runs in the bwrap sandbox (false =
    # --no-sandbox), without network unless `network = true`, with an allow-listed
    # environment plus `env`: a table of NAME = "value", or a list of names to pass through.
    sandbox: bool = True
    network: bool = False
    env: dict[str, str] | list[str] = {}

    @field_validator("bench")
    @classmethod
    def _bench_not_empty(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("a non-empty command")
        return v


class MetricSection(_Section):
    name: str | None = None  # None: the first METRIC line of the base's output
    direction: Literal["higher", "lower"] = "lower"
    unit: str = ""
    format: str = "metric-lines"
    # Read the benchmark's output from this file (relative to the checkout) instead of stdout,
    # e.g. for `hyperfine --export-json out.json`.
    output_file: str | None = None
    # readfirst's own wall clock must show at least `wall_share` of the change the metric
    # claims (the share of the process the metric times), else `suspect`. Lower the share, or
    # turn the check off, when the metric times a small part of a long run (a model load, a
    # set-up) that the wall clock hardly sees; candidates cannot change this file.
    wall_check: bool = True
    wall_share: float = Field(C.WALL_MIN_TIMED_SHARE, gt=0, le=1)

    @field_validator("format")
    @classmethod
    def _known_format(cls, v: str) -> str:
        formats = available_formats()
        if v not in formats:
            raise ValueError(f"one of {', '.join(formats)}")
        return v


class CompareSection(_Section):
    rounds: int = Field(C.DEFAULT_ROUNDS, ge=1)
    max_rounds: int = Field(C.DEFAULT_MAX_ROUNDS, ge=1)
    noise_threshold: float = Field(C.DEFAULT_NOISE_THRESHOLD, ge=0, lt=1)
    alpha: float = Field(C.DEFAULT_ALPHA, gt=0, lt=1)
    spending: Literal["pocock", "obrien_fleming"] = C.DEFAULT_SPENDING
    warmup: int = Field(C.DEFAULT_WARMUP, ge=0)
    mode: Literal["interleaved", "duet"] = C.DEFAULT_MODE
    plausible_ratio: float = Field(C.PLAUSIBLE_RATIO, gt=1)
    baseline_drift: float = Field(C.BASELINE_DRIFT, gt=0)

    @model_validator(mode="after")
    def _max_at_least_rounds(self) -> CompareSection:
        if self.max_rounds < self.rounds:
            raise ValueError(f"max_rounds ({self.max_rounds}) >= rounds ({self.rounds})")
        return self


class Spec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    target: TargetSection
    metric: MetricSection = MetricSection()
    compare: CompareSection = CompareSection()
    research: dict[str, Any] = {}
    agent: dict[str, Any] = {}
    executor: dict[str, Any] = {}
    loop: dict[str, Any] = {}
    # Not from the file: where the spec came from, for messages.
    source: str = Field(default=CONFIG_FILE, exclude=True)

    def protected_patterns(self) -> list[str]:
        # the always-protected files come last: a user's `!pattern` cannot take them back out
        own = [p for p in self.target.protected if p not in C.ALWAYS_PROTECTED]
        return list(dict.fromkeys([*own, *C.ALWAYS_PROTECTED]))


def load_spec(root: Path) -> Spec:
    """The spec for the target at `root`, or ConfigError with file, line, key and expectation."""
    path = root / CONFIG_FILE
    if path.is_file():
        spec = _load_toml(path)
    elif (root / ".auto" / "measure.sh").is_file():
        spec = _from_conventions(root, ".auto/measure.sh", ".auto/checks.sh", ".auto/config.json")
    elif (root / "autoresearch.sh").is_file():
        spec = _from_conventions(
            root, "autoresearch.sh", "autoresearch.checks.sh", "autoresearch.config.json"
        )
    else:
        raise ConfigError(
            f"{root}: no {CONFIG_FILE}, .auto/measure.sh or autoresearch.sh "
            "(run `readfirst init` to write a readfirst.toml)"
        )
    _check_executable(root, spec)
    return spec


def _load_toml(path: Path) -> Spec:
    text = path.read_text(encoding="utf-8")
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        m = re.search(r"\(at line (\d+), column (\d+)\)", str(e))
        where = f"{path}:{m.group(1)}" if m else str(path)
        raise ConfigError(f"{where}: invalid TOML: {e}") from None
    try:
        spec = Spec.model_validate(data)
    except ValidationError as e:
        raise ConfigError(_describe_validation(path, text, e)) from None
    _check_tables(path, text, data)
    return spec


def _check_tables(path: Path, text: str, data: dict[str, Any]) -> None:
    """The [executor], [research], [agent] and [loop] tables against their typed models."""
    for name in RESERVED_SECTIONS:
        table = data.get(name)
        problem = check_table(name, table) if isinstance(table, dict) else None
        if problem is not None:
            loc, what = problem
            line = _line_of(text, name, loc[0] if loc else None)
            where = f"{path}:{line}" if line else str(path)
            raise ConfigError(f"{where}: [{name}] {'.'.join(loc)}: {what}")


def _describe_validation(path: Path, text: str, err: ValidationError) -> str:
    first = err.errors()[0]
    loc = [str(p) for p in first["loc"]]
    section, key = (loc[0], loc[1] if len(loc) > 1 else None)
    line = _line_of(text, section, key)
    where = f"{path}:{line}" if line else str(path)
    what = f"[{section}] {key}" if key else f"[{section}]"
    msg = first["msg"].removeprefix("Value error, ")
    kind = first["type"]
    if kind == "missing":
        return f"{where}: {what}: missing (required)"
    if kind == "extra_forbidden":
        return f"{where}: {what}: unknown key{_did_you_mean(loc, Spec)}"
    got = first.get("input")
    got_s = "" if isinstance(got, dict) else f", got {got!r}"
    return f"{where}: {what}: expected {msg[0].lower() + msg[1:]}{got_s}"


def _did_you_mean(loc: list[str], model: type[BaseModel]) -> str:
    """` (did you mean X?)` for a misspelt section or key, else ''."""
    import difflib

    for part in loc[:-1]:
        field = model.model_fields.get(part)
        annotation = field.annotation if field else None
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            return ""
        model = annotation
    close = difflib.get_close_matches(loc[-1], list(model.model_fields), n=1, cutoff=0.6)
    return f" (did you mean {close[0]}?)" if close else ""


def _line_of(text: str, section: str, key: str | None) -> int | None:
    """Line number of `key` inside `[section]` (or of the header), for error messages."""
    in_section = False
    header_line = None
    for no, line in enumerate(text.splitlines(), 1):
        stripped = line.strip()
        m = re.match(r"^\[\s*([^\]]+?)\s*\]", stripped)
        if m:
            in_section = m.group(1) == section
            if in_section:
                header_line = no
            continue
        if in_section and key and re.match(rf"^{re.escape(key)}\s*=", stripped):
            return no
    return header_line


def _from_conventions(root: Path, bench: str, checks: str, config_json: str) -> Spec:
    metric: dict[str, Any] = {"format": "metric-lines"}
    cfg_path = root / config_json
    if cfg_path.is_file():
        try:
            cfg = json.loads(cfg_path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as e:
            raise ConfigError(f"{cfg_path}:{e.lineno}: invalid JSON: {e.msg}") from None
        if not isinstance(cfg, dict):
            raise ConfigError(f"{cfg_path}: expected a JSON object")
        name = cfg.get("metricName") or cfg.get("metric")
        direction = cfg.get("bestDirection") or cfg.get("direction")
        if name is not None:
            metric["name"] = str(name)
        if cfg.get("metricUnit") is not None:
            metric["unit"] = str(cfg["metricUnit"])
        if direction is not None:
            if direction not in ("higher", "lower"):
                raise ConfigError(
                    f"{cfg_path}: bestDirection: expected 'higher' or 'lower', got {direction!r}"
                )
            metric["direction"] = direction
    protected = [bench, config_json]
    target: dict[str, Any] = {"bench": f"bash {shlex.quote(bench)}", "protected": protected}
    if (root / checks).is_file():
        target["checks"] = f"bash {shlex.quote(checks)}"
        protected.append(checks)
    try:
        spec = Spec.model_validate({"target": target, "metric": metric})
    except ValidationError as e:  # only reachable through odd config.json values
        raise ConfigError(f"{cfg_path}: {e.errors()[0]['msg']}") from None
    spec.source = bench
    return spec


def _check_executable(root: Path, spec: Spec) -> None:
    """A bench/checks command that names a script must find it, executable, in the target."""
    for key in ("bench", "checks"):
        cmd = getattr(spec.target, key)
        if not cmd:
            continue
        try:
            words = shlex.split(cmd)
        except ValueError as e:
            raise ConfigError(f"{spec.source}: [target] {key}: cannot parse {cmd!r}: {e}") from None
        if not words:
            continue
        prog = words[0]
        if prog in ("bash", "sh") and len(words) > 1 and not words[1].startswith("-"):
            script = root / words[1]
            if not script.is_file():
                raise ConfigError(f"{spec.source}: [target] {key}: {words[1]} does not exist")
        elif "/" in prog:
            exe = root / prog
            if not exe.exists():
                if spec.target.build:
                    continue  # may be a build output; a missing one shows up as a crash
                raise ConfigError(f"{spec.source}: [target] {key}: {prog} does not exist")
            if not os.access(exe, os.X_OK):
                raise ConfigError(
                    f"{spec.source}: [target] {key}: {prog} is not executable "
                    f"(chmod +x {prog})"
                )


def load_agent(spec: Spec, source: str = "readfirst.toml") -> AgentConfig:
    if not spec.agent:
        raise ConfigError(f"{source}: no [agent] table (kind = \"openai\" | \"anthropic\" | "
                          "\"claude-code\" | \"codex\" | \"aider\" | \"command\")")
    try:
        cfg = AgentConfig.model_validate(spec.agent)
    except ValidationError as e:
        first = e.errors()[0]
        key = ".".join(str(p) for p in first["loc"]) or "agent"
        msg = first["msg"].removeprefix("Value error, ")
        raise ConfigError(f"{source}: [agent] {key}: {msg}") from None
    if cfg.kind in API_KINDS and not cfg.model:
        raise ConfigError(f"{source}: [agent] model: required for kind = {cfg.kind!r}")
    if cfg.kind == "command" and not cfg.command:
        raise ConfigError(f"{source}: [agent] command: required for kind = 'command'")
    return cfg
