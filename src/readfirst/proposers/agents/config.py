"""The `[agent]` table: which model or coding-agent CLI proposes candidates, and its limits.

Keys never live here: `api_key_env` names the environment variable that holds the key.
"""

from __future__ import annotations

import os
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from readfirst.core.config import Spec
from readfirst.core.errors import ConfigError

AgentKind = Literal["openai", "anthropic", "claude-code", "codex", "aider", "command"]
API_KINDS = ("openai", "anthropic")
DEFAULT_KEY_ENV = {"openai": "OPENAI_API_KEY", "anthropic": "ANTHROPIC_API_KEY"}


class AgentConfig(BaseModel):
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
