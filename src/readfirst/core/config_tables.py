"""The typed `[executor]`, `[research]`, `[agent]` and `[loop]` tables of readfirst.toml.

`Spec` keeps these tables as plain dicts (the stages read them with `.get`), but `load_spec`
checks each against its model first: a wrong type or an unknown key is a ConfigError naming
the file, the line, the key, what was expected and, for a misspelt key, the likely one.
"""

from __future__ import annotations

import difflib
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from readfirst.core import constants as C

BUILTIN_EXECUTORS = ("local", "ray", "skypilot")


class _Table(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ExecutorTable(_Table):
    kind: str = "local"  # local | ray | skypilot | a plugin's name (its own keys allowed)
    noise_check: bool | None = None  # default: on for ray and skypilot
    max_worker_cv: float = Field(C.MAX_WORKER_CV, gt=0)
    noise_every: int = Field(C.NOISE_EVERY_WAVES, ge=1)
    verify: dict[str, Any] | None = None  # a second pool winners must also win on
    # ray
    address: str | None = None
    resource: str | None = None
    num_cpus: float | None = Field(None, gt=0)
    per_node: int | None = Field(None, ge=1)
    node_cache: str | None = None
    runtime_env: dict[str, Any] | None = None
    # skypilot
    infra: str | None = None
    cpus: str | int | None = None
    memory: str | int | None = None
    instance_type: str | None = None
    arch: str | None = None
    workers: int | None = Field(None, ge=1)
    idle_minutes_to_autostop: int | None = None
    cluster_prefix: str | None = None
    down_at_end: bool | None = None
    dry_run: bool | None = None
    wheel: str | None = None
    python: str | None = None


class _PluginExecutorTable(ExecutorTable):
    model_config = ConfigDict(extra="allow")


class ResearchTable(_Table):
    # the forks proposer checks each competitor entry itself, with the entry's number
    competitors: Any = []
    topics: list[str] = []
    bytes_per_unit: str | int | float | None = None
    bandwidth_gbs: float | None = Field(None, gt=0)
    stream_mib: int | None = Field(None, ge=1)
    papers_dir: str | None = None
    sources: list[str] | None = None
    jobs: int | None = Field(None, ge=1)
    backend: str | None = None
    base_branch: str | None = None
    discover_forks: bool | int | None = None
    github_token_env: str | None = None
    semantic_scholar_key_env: str | None = None
    siblings: dict[str, Any] | None = None  # [research.siblings]
    compile_commands: str | None = None
    refresh_on_landing: bool = True
    max_fork_commits: int | None = Field(None, ge=0)
    max_forks: int | None = Field(None, ge=0)
    max_fetched_forks: int | None = Field(None, ge=0)
    max_fork_pages: int | None = Field(None, ge=0)
    history_commits: int | None = Field(None, ge=0)
    max_history_files: int | None = Field(None, ge=0)
    max_todos: int | None = Field(None, ge=0)


class LoopTable(_Table):
    """Defaults for `readfirst run` options not given on the command line."""

    proposer: str | None = None
    patches: str | None = None
    workers: int | None = Field(None, ge=1)
    max_experiments: int | None = Field(None, ge=1)
    max_time: float | None = Field(None, ge=0)
    patience: int | None = Field(None, ge=1)
    max_cost: float | None = Field(None, ge=0)
    pin_cpus: bool | None = None
    waves: bool | None = None
    executor: Literal["local", "ray", "skypilot"] | None = None


def table_models() -> dict[str, type[BaseModel]]:
    from readfirst.proposers.agents.config import AgentConfig  # it reads Spec: imported late

    return {"executor": ExecutorTable, "research": ResearchTable, "agent": AgentConfig,
            "loop": LoopTable}


def check_table(name: str, data: dict[str, Any]) -> tuple[tuple[str, ...], str] | None:
    """(where in the table, what is wrong) for the first problem, or None when it is fine."""
    model = table_models()[name]
    if name == "executor" and str(data.get("kind", "local")) not in BUILTIN_EXECUTORS:
        model = _PluginExecutorTable
    try:
        model.model_validate(data)
    except ValidationError as e:
        first = e.errors()[0]
        loc = tuple(str(p) for p in first["loc"])
        if first["type"] == "extra_forbidden":
            return loc, "unknown key" + _did_you_mean(loc[-1], model)
        if first["type"] == "missing":
            return loc, "missing (required)"
        msg = first["msg"].removeprefix("Value error, ").removeprefix("Input should be ")
        got = first.get("input")
        return loc, f"expected {msg[0].lower() + msg[1:]}, got {got!r}"
    return None


def _did_you_mean(key: str, model: type[BaseModel]) -> str:
    close = difflib.get_close_matches(key, list(model.model_fields), n=1, cutoff=0.6)
    return f" (did you mean {close[0]}?)" if close else ""
