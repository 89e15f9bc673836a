"""LLM API clients (OpenAI or any OpenAI-compatible endpoint, Anthropic), one call each; what
they cost; answers' JSON and visible text. What the proposers ask is in proposers/prompts.py.

The SDKs retry 429/5xx themselves (honouring retry-after); what still fails becomes `LLMError`,
which the proposer turns into a skip. Keys come from the environment and are never logged.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import urlparse

from readfirst.core.config_tables import DEFAULT_KEY_ENV, AgentConfig
from readfirst.core.errors import ConfigError

# USD per million (input, output) tokens; the longest matching prefix of the model id wins.
PRICES: dict[str, tuple[float, float]] = {
    "gpt-4o-mini": (0.15, 0.60),
    "gpt-4o": (2.50, 10.00),
    "gpt-4.1-mini": (0.40, 1.60),
    "gpt-4.1": (2.00, 8.00),
    "claude-3-5-haiku": (0.80, 4.00),
    "claude-3-5-sonnet": (3.00, 15.00),
    "claude-sonnet-4": (3.00, 15.00),
    "claude-haiku-4-5": (1.00, 5.00),
}
PRICE_UNKNOWN = ("price unknown for model {model!r}: cost counted as 0; set [agent] "
                 "price_input_per_mtok and price_output_per_mtok")
_THINK = re.compile(r"<think>.*?(?:</think>|$)", re.DOTALL)
LOCAL_HOSTS = ("localhost", "127.0.0.1", "::1", "0.0.0.0")
REDACTED = "[redacted]"
LOCAL_KEY = "not-needed"  # sent to local servers that ignore keys


class LLMError(Exception):
    """A call that failed after the SDK's own retries (timeout, network, API error)."""


@dataclass(frozen=True)
class Completion:
    text: str
    input_tokens: int
    output_tokens: int
    cost_usd: float
    model: str
    stop_reason: str | None
    refusal: str | None = None  # the model declined: its words (or the stop reason)


class LLMClient(Protocol):
    provider: str
    model: str
    notes: list[str]

    def complete(self, system: str, user: str, *, purpose: str) -> Completion: ...


def price_of(model: str, cfg: AgentConfig) -> tuple[float, float] | None:
    """(input, output) USD per million tokens: the config's prices, else the table's."""
    if cfg.price_input_per_mtok is not None or cfg.price_output_per_mtok is not None:
        return (cfg.price_input_per_mtok or 0.0, cfg.price_output_per_mtok or 0.0)
    known = [p for p in PRICES if model.startswith(p)]
    return PRICES[max(known, key=len)] if known else None


def scrub(text: str, secret: str | None) -> str:
    """`text` with the secret replaced (a final safety net: prompts never hold the key)."""
    if secret and len(secret) >= 8 and secret in text:
        return text.replace(secret, REDACTED)
    return text


def extract_json(text: str) -> Any:
    """The JSON value of a model's answer: a ```json fence, else the first {...} that parses."""
    for m in re.finditer(r"```(?:json|JSON)?[ \t]*\n(.*?)```", text, re.DOTALL):
        try:
            return json.loads(m.group(1))
        except json.JSONDecodeError:
            continue
    starts = [m.start() for m in re.finditer(r"\{", text)]
    if not starts:
        raise ValueError("no JSON object in the answer")
    first_error = ""
    for start in starts[:50]:
        try:
            return json.JSONDecoder().raw_decode(text[start:])[0]
        except json.JSONDecodeError as e:
            first_error = first_error or str(e)
    raise ValueError(f"invalid JSON: {first_error}")


def visible_text(text: str) -> str:
    """The answer without the reasoning some open models print in <think> tags."""
    return _THINK.sub("", text).strip() if "<think>" in text else text


def _is_local(base_url: str | None) -> bool:
    return bool(base_url) and (urlparse(base_url or "").hostname or "") in LOCAL_HOSTS


def _key(cfg: AgentConfig) -> str:
    env = cfg.api_key_env or DEFAULT_KEY_ENV.get(cfg.kind, "")
    key = cfg.api_key()
    if key:
        return key
    if cfg.kind == "openai" and _is_local(cfg.base_url):
        return LOCAL_KEY  # local OpenAI-compatible servers (vLLM, Ollama) take any key
    raise ConfigError(f"[agent] kind = {cfg.kind!r} needs an API key: set the environment "
                      f"variable {env} (or name another one with api_key_env)")


@dataclass
class _Base:
    cfg: AgentConfig
    provider: str = ""
    notes: list[str] = field(default_factory=list)

    @property
    def model(self) -> str:
        return self.cfg.model

    def _cost(self, model: str, tin: int, tout: int) -> float:
        price = price_of(self.cfg.model, self.cfg) or price_of(model, self.cfg)
        if price is None:
            note = PRICE_UNKNOWN.format(model=self.cfg.model)
            if note not in self.notes:
                self.notes.append(note)
            return 0.0
        return (tin * price[0] + tout * price[1]) / 1e6

    def _fail(self, what: str, err: Exception, key: str) -> LLMError:
        where = self.cfg.base_url or self.provider
        lines = str(getattr(err, "message", "") or err).strip().splitlines()
        msg = lines[0][:300] if lines else ""
        return LLMError(scrub(f"{self.provider} {self.cfg.model} ({where}): {what}"
                              + (f": {msg}" if msg else ""), key))


class OpenAIClient(_Base):
    """Chat completions on api.openai.com or any OpenAI-compatible `base_url`."""

    def __init__(self, cfg: AgentConfig) -> None:
        super().__init__(cfg, "openai")
        import openai

        self._key = _key(cfg)
        self._sdk = openai
        self._client = openai.OpenAI(api_key=self._key, base_url=cfg.base_url,
                                     timeout=cfg.timeout, max_retries=2)
        # OpenAI's own API wants max_completion_tokens (max_tokens is deprecated and refused
        # by reasoning models); compatible servers (vLLM, Ollama, llama.cpp) know max_tokens.
        official = not cfg.base_url or "api.openai.com" in cfg.base_url
        self._limit = "max_completion_tokens" if official else "max_tokens"

    def complete(self, system: str, user: str, *, purpose: str) -> Completion:
        sdk = self._sdk
        messages = [{"role": "system", "content": system}, {"role": "user", "content": user}]
        try:
            resp = self._client.chat.completions.create(
                model=self.cfg.model, messages=messages,  # type: ignore[arg-type]
                **{self._limit: self.cfg.max_tokens})
        except sdk.APITimeoutError as e:
            raise self._fail(f"timed out after {self.cfg.timeout:g} s ({purpose})", e,
                             self._key) from None
        except sdk.APIConnectionError as e:
            raise self._fail(f"connection failed ({purpose})", e, self._key) from None
        except sdk.APIStatusError as e:
            raise self._fail(f"HTTP {e.status_code} ({purpose})", e, self._key) from None
        except sdk.OpenAIError as e:
            raise self._fail(f"failed ({purpose})", e, self._key) from None
        if not resp.choices:
            raise LLMError(f"openai {self.cfg.model}: the answer has no choices ({purpose})")
        choice = resp.choices[0]
        msg = choice.message
        refusal = msg.refusal
        if refusal is None and choice.finish_reason == "content_filter":
            refusal = "stopped by the content filter"
        tin = resp.usage.prompt_tokens if resp.usage else 0
        tout = resp.usage.completion_tokens if resp.usage else 0
        model = resp.model or self.cfg.model
        return Completion(visible_text(msg.content or ""), tin, tout,
                          self._cost(model, tin, tout), model, choice.finish_reason, refusal)


class AnthropicClient(_Base):
    """The Messages API (api.anthropic.com, or `base_url`)."""

    def __init__(self, cfg: AgentConfig) -> None:
        super().__init__(cfg, "anthropic")
        import anthropic

        self._key = _key(cfg)
        self._sdk = anthropic
        self._client = anthropic.Anthropic(api_key=self._key, base_url=cfg.base_url,
                                           timeout=cfg.timeout, max_retries=2)

    def complete(self, system: str, user: str, *, purpose: str) -> Completion:
        sdk = self._sdk
        try:
            resp = self._client.messages.create(
                model=self.cfg.model, system=system, max_tokens=self.cfg.max_tokens,
                messages=[{"role": "user", "content": user}])
        except sdk.APITimeoutError as e:
            raise self._fail(f"timed out after {self.cfg.timeout:g} s ({purpose})", e,
                             self._key) from None
        except sdk.APIConnectionError as e:
            raise self._fail(f"connection failed ({purpose})", e, self._key) from None
        except sdk.APIStatusError as e:
            raise self._fail(f"HTTP {e.status_code} ({purpose})", e, self._key) from None
        except sdk.AnthropicError as e:
            raise self._fail(f"failed ({purpose})", e, self._key) from None
        text = "".join(getattr(b, "text", "") for b in resp.content
                       if getattr(b, "type", "") == "text")
        refusal = (text.strip() or "the model refused") if resp.stop_reason == "refusal" else None
        tin, tout = resp.usage.input_tokens, resp.usage.output_tokens
        model = resp.model or self.cfg.model
        return Completion(text, tin, tout, self._cost(model, tin, tout), model,
                          resp.stop_reason, refusal)


def make_client(cfg: AgentConfig) -> OpenAIClient | AnthropicClient:
    """The API client for `[agent] kind`; ConfigError for CLI kinds or a missing key."""
    if cfg.kind == "openai":
        return OpenAIClient(cfg)
    if cfg.kind == "anthropic":
        return AnthropicClient(cfg)
    raise ConfigError(f"[agent] kind = {cfg.kind!r} is a coding-agent CLI, not an API "
                      "(the llm proposer needs kind = \"openai\" or \"anthropic\")")


def api_key_of(client: object) -> str | None:
    """The key a client uses (for scrubbing only)."""
    key = getattr(client, "_key", None)
    return None if key == LOCAL_KEY else key
