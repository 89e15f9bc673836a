"""LLM API clients (OpenAI or any OpenAI-compatible endpoint, Anthropic), one call each, and
what the llm proposer asks them: the prompts and the shapes of the answers it accepts.

The SDKs retry 429/5xx themselves (honouring retry-after); what still fails becomes `LLMError`,
which the proposer turns into a skip. Keys come from the environment and are never logged.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import urlparse

from pydantic import BaseModel, ConfigDict, Field

from readfirst.core.errors import ConfigError
from readfirst.proposers.agents.config import DEFAULT_KEY_ENV, AgentConfig

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


# --- what the proposer asks, and the shapes of the answers it accepts ---------------------
SYSTEM = ("You are a senior performance engineer improving someone else's code. You propose "
          "small, safe, measurable speed-ups and implement them exactly. The benchmark and the "
          "correctness checks are fixed; the program's behaviour must stay the same.")
EDIT_FORMAT = """Reply with SEARCH/REPLACE blocks, one per change, the file's path on the line
before each block (paths relative to the target's directory):

src/example.c
<<<<<<< SEARCH
exact lines copied from the file
=======
the new lines
>>>>>>> REPLACE

An empty SEARCH creates a new file. A unified diff (```diff, --- a/path +++ b/path) is also
accepted. Give a short explanation first if you like, but no other code."""


class HypothesisOut(BaseModel):
    model_config = ConfigDict(extra="ignore")
    title: str = Field(min_length=1)
    rationale: str
    files: list[str]
    expected_effect: str
    based_on: int | None = None  # the number of the research hypothesis it develops


class HypothesesOut(BaseModel):
    hypotheses: list[HypothesisOut]


class ReviewOut(BaseModel):
    approve: bool
    reason: str


BRIEF_CHARS = 8_000


def _rules(scope: list[str], protected: list[str]) -> list[str]:
    return [f"- Only change files matching: {', '.join(scope) or 'any file'}.",
            f"- Never change: {', '.join(protected)}.",
            "- Keep the program's output and behaviour identical; the checks must pass."]


def hypotheses_prompt(n: int, scope: list[str], protected: list[str], brief: str,
                      diag: dict[str, Any], research: list[dict[str, Any]], code: str,
                      history: list[dict[str, Any]]) -> str:
    """Ask for up to n hypotheses as JSON, from the research and the code around its sites."""
    out = ["# Task", "", f"Propose up to {n} distinct, concrete performance hypotheses for this "
           "code, best first, each a small source change.", "", *_rules(scope, protected), ""]
    if brief:
        cut = "\n... (truncated)" if len(brief) > BRIEF_CHARS else ""
        out += ["## Research brief", "", brief[:BRIEF_CHARS] + cut, ""]
    if diag:
        top = ", ".join(f"{t['function']} {t['share']:.1f} %"
                        for t in (diag.get("top_functions") or [])[:8])
        out += ["## Diagnosis", "", f"conclusion: {diag.get('conclusion', 'none')}"
                + (f"; hottest: {top}" if top else ""), ""]
    if research:
        out += ["## Open research hypotheses", ""]
        for i, h in enumerate(research, 1):
            sites = ", ".join(f"{s['path']}:{s['line']}" for s in h.get("sites", [])[:4])
            out.append(f"{i}. {h['title']} ({h['kind']}, score {h['score']:.2f}): "
                       f"{h['rationale'][:400].rstrip('.')}." + (f" Sites: {sites}." if sites
                                                                 else "")
                       + (f" Expected: {h['expected_effect']}" if h.get("expected_effect")
                          else ""))
        out.append("")
    if code:
        out += [code, ""]
    if history:
        out += ["## Already tried (do not propose these again)", ""]
        out += [f"- tried: {h.get('title', '?')} -> {h.get('verdict') or h.get('outcome')}"
                + (f" ({str(h['reason'])[:160]})" if h.get("reason") else "") for h in history]
        out.append("")
    out += ["# Answer", "", "Only a JSON object, in a ```json fence:", "",
            '{"hypotheses": [{"title": str, "rationale": str, "files": [str], '
            '"expected_effect": str, "based_on": int or null}]}', "",
            "files: the paths (relative to the target's directory) the change edits; "
            "based_on: the number of the research hypothesis it develops, if any."]
    return "\n".join(out)


def implement_prompt(h: HypothesisOut, scope: list[str], protected: list[str],
                     files: str) -> str:
    return "\n".join([
        "# Implement this performance hypothesis", "", f"Title: {h.title}",
        f"Rationale: {h.rationale}", f"Expected effect: {h.expected_effect}", "", "# Rules", "",
        *_rules(scope, protected), "- SEARCH text must be copied exactly from the files below.",
        "", "# Files (at the baseline)", "", files, "", "# Answer format", "", EDIT_FORMAT])


def repair_prompt(cand: Any, verdict: str, tail: str, files: str) -> str:
    return "\n".join([
        "# Repair a failed performance change", "", f"Title: {cand.title}",
        f"Rationale: {cand.rationale}", "", f"It was applied to the baseline and ended with "
        f"verdict {verdict!r}. Its diff:", "", "```diff", cand.diff.rstrip(), "```", "",
        "The last lines of the failing step:", "", "```", tail, "```", "",
        "Write the corrected change as a complete edit against the baseline files below (not "
        "on top of the failed diff). Keep the optimisation; fix the failure. Only change files "
        "in scope; never change the benchmark, checks or tests.", "",
        "# Files (at the baseline)", "", files, "", "# Answer format", "", EDIT_FORMAT])


def review_prompt(cand: Any, rules: str, code: str) -> str:
    return "\n".join([
        "# Review a change before it is merged", "",
        "It made the benchmark faster and passed the checks. Judge only whether the project's "
        "maintainers would accept it: style, conventions, readability, portability, hidden "
        "behaviour changes.", "", f"Title: {cand.title}", "", "```diff", cand.diff.rstrip(),
        "```", "", f"## CONTRIBUTING\n\n{rules[:6000]}\n" if rules else "", code, "",
        'Answer only a JSON object: {"approve": true or false, "reason": "one sentence"}'])


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
