"""`--proposer agent`: the `[agent]` table picks an LLM API proposer or a coding-agent CLI."""

from __future__ import annotations

from readfirst.core.candidate import Candidate
from readfirst.proposers.base import ProposerContext


class AgentProposer:
    """Delegates to `LLMProposer` (kind openai / anthropic) or `CLIAgentProposer` (claude-code,
    codex, aider, command), chosen from the spec on first use."""

    name = "agent"
    continuous = True

    def __init__(self) -> None:
        self._inner = None  # type: ignore[var-annotated]

    def _delegate(self, ctx: ProposerContext):  # type: ignore[no-untyped-def]
        if self._inner is None:
            from readfirst.core.config import load_agent
            from readfirst.core.config_tables import API_KINDS

            cfg = load_agent(ctx.spec)
            if cfg.kind in API_KINDS:
                from readfirst.proposers.llm import LLMProposer

                self._inner = LLMProposer()
            else:
                from readfirst.proposers.agent_cli import CLIAgentProposer

                self._inner = CLIAgentProposer()
        return self._inner

    @property
    def skipped(self) -> list[tuple[str, str, str]]:
        return list(self._inner.skipped) if self._inner is not None else []

    def propose(self, ctx: ProposerContext) -> list[Candidate]:
        return self._delegate(ctx).propose(ctx)  # type: ignore[no-any-return]

    def repair(self, ctx: ProposerContext, cand: Candidate, verdict: str, error_tail: str,
               attempt: int) -> Candidate | None:
        return self._delegate(ctx).repair(ctx, cand, verdict, error_tail, attempt)  # type: ignore[no-any-return]

    def review(self, ctx: ProposerContext, cand: Candidate) -> tuple[bool, str]:
        return self._delegate(ctx).review(ctx, cand)  # type: ignore[no-any-return]


def make_agent_proposer() -> AgentProposer:
    return AgentProposer()
