"""The typed `[executor]`, `[research]`, `[agent]` and `[loop]` tables of readfirst.toml.

`Spec` keeps these tables as plain dicts (the stages read them with `.get`), but `load_spec`
checks each against its model first: a wrong type or an unknown key is a ConfigError naming
the file, the line, the key, what was expected and, for a misspelt key, the likely one.
"""

from __future__ import annotations

import difflib
import os
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from readfirst.core import constants as C

BUILTIN_EXECUTORS = ("local", "ray", "skypilot")

AgentKind = Literal["openai", "anthropic", "claude-code", "codex", "aider", "command"]
API_KINDS = ("openai", "anthropic")
DEFAULT_KEY_ENV = {"openai": "OPENAI_API_KEY", "anthropic": "ANTHROPIC_API_KEY"}


class AgentConfig(BaseModel):
    """The `[agent]` table: which model or coding-agent CLI proposes candidates, and its
    limits. Keys never live here: `api_key_env` names the environment variable that holds
    the key."""

    model_config = ConfigDict(extra="forbid")
    kind: AgentKind
    model: str = ""  # required for API kinds; optional for CLIs (passed as --model when set)
    base_url: str | None = None  # any OpenAI-compatible endpoint (vLLM, Ollama, llama.cpp)
    api_key_env: str | None = None  # default OPENAI_API_KEY / ANTHROPIC_API_KEY
    # CLI kinds: more environment variables passed to the agent (its own API key variable and
    # the proxy variables always are; nothing else that looks like a secret)
    env: list[str] = Field(default_factory=list)
    command: str | None = None  # kind = "command": a shell command run in the worktree
    max_cost_usd: float = Field(20.0, ge=0)
    # USD per million tokens, for endpoints whose prices readfirst does not know
    price_input_per_mtok: float | None = Field(None, ge=0)
    price_output_per_mtok: float | None = Field(None, ge=0)
    max_hypotheses: int = Field(5, ge=1)  # candidates asked for per proposal round
    repair_attempts: int = Field(2, ge=0)  # on a build or check failure
    timeout: float = Field(600.0, gt=0)  # seconds per API call or CLI run
    max_tokens: int = Field(8192, ge=256)
    review: bool = True  # API kinds: review a winner against the project's conventions

    def api_key(self) -> str | None:
        """The key from the environment (never stored anywhere by readfirst)."""
        env = self.api_key_env or DEFAULT_KEY_ENV.get(self.kind)
        return os.environ.get(env) if env else None


class _Table(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ExecutorTable(_Table):
    kind: str = "local"  # local | ray | skypilot | a plugin's name (its own keys allowed)
    noise_check: bool | None = None  # default: on for ray and skypilot
    max_worker_cv: float = Field(C.MAX_WORKER_CV, gt=0)
    noise_every: int = Field(C.NOISE_EVERY_WAVES, ge=1)
    verify: dict[str, Any] | None = None  # a second pool winners must also win on
    # local: other workers' builds and checks stop while a timed run runs ("auto": when the
    # workers' timed runs and builds could not each have a core)
    quiet_timed_runs: bool | Literal["auto"] = "auto"
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
