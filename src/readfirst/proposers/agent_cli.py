"""The `agent-cli` proposer: a coding-agent CLI (Claude Code, Codex, aider or any command) edits
an isolated worktree, one research hypothesis per run; what it changed becomes a candidate.

The agent runs in the `agent` worktree slot (reset to the baseline before each run, locked while
it runs) in its own process group, with a timeout, and (unless --no-sandbox) inside bwrap: the
network allowed (it must reach its API), its worktree the only writable place, the user's
checkout and the shared `.git` read-only, `.readfirst/` hidden but for its prompt file, and an
allow-listed environment holding its own API key variable but no other secret. The prompt
travels in the environment (`READFIRST_PROMPT`, `READFIRST_PROMPT_FILE`), never interpolated
into a shell string. The change is read back from git (`add -A`, then the index against the
baseline, so commits made by an unsandboxed agent count too) and checked against the protected
files and the scope before it is offered.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from readfirst.core.candidate import Candidate
from readfirst.core.config import load_agent
from readfirst.core.config_tables import AgentConfig
from readfirst.core.constants import JOURNAL_FILE
from readfirst.core.errors import BudgetExceeded, ConfigError
from readfirst.core.globs import under
from readfirst.measure.guards import check_changes
from readfirst.measure.process import StepResult, run_step
from readfirst.measure.sandbox import Policy, policy_for, probe, step_env
from readfirst.proposers.base import ProposerContext
from readfirst.vcs import gitcli
from readfirst.vcs.workspace import Workspace

CLI_KINDS = ("claude-code", "codex", "aider", "command")
SLOT = "agent"
HISTORY_LINES = 30  # what was tried, newest last
BRIEF_CHARS = 8_000  # excerpt of the research brief in the prompt
DIFF_CHARS = 8_000  # excerpt of a failed candidate's diff in a repair prompt
SUMMARY_CHARS = 1_500  # the agent's own summary, appended to the rationale
TAIL_LINES = 15  # of the agent's output, when it failed without changing anything
ERROR_TAIL_LINES = 60  # of the failed build/checks output, in a repair prompt
# The API key variables each CLI reads (CLAUDE_CODE_OAUTH_TOKEN: a Claude subscription's login)
AGENT_KEYS = {"claude-code": ("ANTHROPIC_API_KEY", "CLAUDE_CODE_OAUTH_TOKEN"),
              "codex": ("OPENAI_API_KEY", "CODEX_API_KEY")}
PROXY_ENV = ("HTTPS_PROXY", "HTTP_PROXY", "NO_PROXY", "https_proxy", "http_proxy", "no_proxy",
             "SSL_CERT_FILE", "SSL_CERT_DIR", "NODE_EXTRA_CA_CERTS")
# Files agents leave behind that are never part of a change (aider's chat history and caches).
DROPPINGS = (":(exclude).aider*",)


def agent_command(cfg: AgentConfig) -> str:
    """The shell command for `cfg.kind`; it reads the prompt from "$READFIRST_PROMPT"."""
    model = f" --model {shlex.quote(cfg.model)}" if cfg.model else ""
    if cfg.kind == "claude-code":  # acceptEdits: edit files without asking, nothing more
        return ('claude -p "$READFIRST_PROMPT" --output-format json'
                f" --permission-mode acceptEdits{model}")
    if cfg.kind == "codex":  # `codex exec` is read-only unless told otherwise
        return f'codex exec --sandbox workspace-write{model} "$READFIRST_PROMPT"'
    if cfg.kind == "aider":  # --no-gitignore: do not add .aider* to the project's .gitignore
        return ('aider --message "$READFIRST_PROMPT" --yes-always --no-auto-commits'
                f" --no-gitignore{model}")
    if cfg.kind == "command" and cfg.command:
        return cfg.command
    raise ConfigError(f"[agent] kind = {cfg.kind!r} is not a coding-agent CLI "
                      f"(expected one of {', '.join(CLI_KINDS)}, with command for 'command')")


def history_lines(history: list[dict[str, Any]], limit: int = HISTORY_LINES) -> list[str]:
    """`- title -> verdict (reason)` for the last `limit` experiments."""
    out = []
    for h in history[-limit:]:
        verdict = h.get("verdict") or h.get("outcome") or "?"
        reason = " ".join(str(h.get("reason") or "").split())[:200]
        out.append(f"- {h.get('title') or h.get('candidate_id')} -> {verdict}"
                   + (f" ({reason})" if reason else ""))
    return out


def _claude_report(stdout: str) -> dict[str, Any]:
    """The result object Claude Code prints with --output-format json ({} when there is none)."""
    for line in reversed(stdout.strip().splitlines()):
        try:
            obj = json.loads(line)
        except ValueError:
            continue
        if isinstance(obj, dict) and obj.get("type") == "result":
            return obj
    try:
        obj = json.loads(stdout)
    except ValueError:
        return {}
    return obj if isinstance(obj, dict) else {}


@dataclass
class _Outcome:
    diff: str = ""
    summary: str = ""
    reason: str = ""  # why there is no candidate


class CLIAgentProposer:
    """Runs a coding-agent CLI once per open research hypothesis (see the module docstring)."""

    name = "agent-cli"
    continuous = True

    def __init__(self, config: AgentConfig | None = None) -> None:
        self.config = config
        self.spent_usd = 0.0  # Claude Code's reported total_cost_usd, summed
        self._skipped: list[tuple[str, str, str]] = []
        self._tried: set[str] = set()
        self.repair_note = ""  # why the last `repair` returned None

    @property
    def skipped(self) -> list[tuple[str, str, str]]:
        return list(self._skipped)

    def _cfg(self, ctx: ProposerContext) -> AgentConfig:
        if self.config is None:
            self.config = load_agent(ctx.spec)
        agent_command(self.config)  # validates the kind
        return self.config

    def _over_budget(self, cfg: AgentConfig) -> bool:
        return self.spent_usd >= cfg.max_cost_usd

    def _budget_error(self, cfg: AgentConfig) -> BudgetExceeded:
        return BudgetExceeded(f"agent spent ${self.spent_usd:.2f} of [agent] max_cost_usd = "
                              f"${cfg.max_cost_usd:.2f}")

    # --- proposing ---------------------------------------------------------------------------

    def propose(self, ctx: ProposerContext) -> list[Candidate]:
        """One agent run per hypothesis; stops early (keeping what it has) at the cost cap and
        raises BudgetExceeded when the cap is reached before the first run."""
        self._skipped = []
        cfg = self._cfg(ctx)
        out: list[Candidate] = []
        for hyp in self._hypotheses(ctx, cfg):
            if self._over_budget(cfg):
                if out:
                    break
                raise self._budget_error(cfg)
            key = str(hyp.get("id", hyp["title"]))
            if "id" in hyp:
                self._tried.add(key)
            res = self._run(ctx, cfg, self.prompt(ctx, hyp))
            label = f"agent:{cfg.kind}:" + (f"hypothesis-{key}" if "id" in hyp else "generic")
            if res.reason:
                self._skipped.append((label, hyp["title"], res.reason))
                continue
            out.append(self._candidate(cfg, hyp["title"], hyp.get("rationale", ""), res,
                                       tuple(hyp.get("sources", ()))))
        return out

    def _hypotheses(self, ctx: ProposerContext, cfg: AgentConfig) -> list[dict[str, Any]]:
        """Open hypotheses of the latest research not tried yet, best first; a generic one when
        there is no research (or it found none)."""
        research = _latest_hypotheses(ctx.state_dir)
        if not research:
            metric = ctx.spec.metric
            name = metric.name or "the benchmark's metric"
            return [{"title": f"Make {name} better",
                     "rationale": f"Improve {name} ({metric.direction} is better) without "
                                  "breaking correctness.", "sites": [], "sources": []}]
        done = {str(h.get("title")) for h in ctx.history}
        fresh = [h for h in research if h.get("status") == "open"
                 and str(h["id"]) not in self._tried and h["title"] not in done]
        return fresh[:cfg.max_hypotheses]

    def prompt(self, ctx: ProposerContext, hyp: dict[str, Any]) -> str:
        """The task for one hypothesis: what to try, what is known, what was tried, the rules."""
        metric = ctx.spec.metric
        name = metric.name or "the benchmark's metric"
        unit = f", in {metric.unit}" if metric.unit else ""
        parts = [f"You are optimising the code in the current directory for {name} "
                 f"({metric.direction} is better{unit}).", "", f"## Hypothesis: {hyp['title']}",
                 "", hyp.get("rationale") or "(no rationale given)"]
        sites = [f"{s['path']}:{s['line']}" + (f" ({s['function']})" if s.get("function") else "")
                 for s in hyp.get("sites", [])[:12]]
        if sites:
            parts += ["", "Sites: " + ", ".join(sites)]
        if hyp.get("expected_effect"):
            parts += ["", f"Expected effect: {hyp['expected_effect']}"]
        brief = ctx.brief or ctx.state_dir / "research" / "brief.md"
        if brief.is_file():
            text = brief.read_text(encoding="utf-8", errors="replace")
            cut = text[:BRIEF_CHARS] + ("\n[... truncated]" if len(text) > BRIEF_CHARS else "")
            parts += ["", f"## Research brief (full text: {brief})", "", cut.rstrip()]
        tried = history_lines(ctx.history)
        if tried:
            parts += ["", "## Already tried (title -> verdict (reason)); do not repeat these", "",
                      *tried]
        return "\n".join(parts + ["", *self._rules(ctx)]) + "\n"

    @staticmethod
    def _rules(ctx: ProposerContext) -> list[str]:
        scope = ctx.spec.target.scope
        return ["## Rules", "",
                "- Change only files matching: " + (", ".join(scope) if scope else
                                                    "anything in the current directory")
                + " (paths relative to the current directory).",
                "- Never change these protected files: "
                + ", ".join(ctx.spec.protected_patterns()) + " (readfirst.toml included).",
                "- Keep the change minimal and focused; keep the program's results correct.",
                "- Do not run the benchmark and do not commit: leave your edits in the working "
                "tree; readfirst builds, checks and measures them.",
                "- End with a short summary of what you changed and why."]

    def _candidate(self, cfg: AgentConfig, title: str, rationale: str, res: _Outcome,
                   sources: tuple[str, ...], cand_id: str | None = None) -> Candidate:
        summary = res.summary.strip()
        if len(summary) > SUMMARY_CHARS:
            summary = summary[:SUMMARY_CHARS] + " [...]"
        why = rationale.strip() + (f"\n\nAgent ({cfg.kind}): {summary}" if summary else "")
        digest = hashlib.sha256(res.diff.encode()).hexdigest()[:12]
        return Candidate(id=cand_id or f"agent:{cfg.kind}:{digest}", title=title,
                         rationale=why.strip(), diff=res.diff, source="agent",
                         provenance=(f"agent:{cfg.kind}", *sources))

    # --- repair and review -------------------------------------------------------------------

    def repair(self, ctx: ProposerContext, cand: Candidate, verdict: str, error_tail: str,
               attempt: int) -> Candidate | None:
        """Rerun the agent on the candidate applied to the baseline, asking it to fix the
        failure; the fixed candidate, or None when the agent could not (see `repair_note`)."""
        cfg = self._cfg(ctx)
        if self._over_budget(cfg):
            raise self._budget_error(cfg)
        tail = "\n".join(error_tail.splitlines()[-ERROR_TAIL_LINES:])
        diff = cand.diff[:DIFF_CHARS] + ("\n[... truncated]" if len(cand.diff) > DIFF_CHARS else "")
        prompt = "\n".join([
            f"The change \"{cand.title}\" is applied (uncommitted) in the current directory. "
            f"It failed: {verdict}. Fix it so it builds and passes the checks, keeping its intent.",
            "", "## Last lines of the failing output", "", tail, "", "## The change", "", diff,
            "", *self._rules(ctx)]) + "\n"
        self.repair_note = ""
        res = self._run(ctx, cfg, prompt, apply=cand)
        if res.reason:
            self.repair_note = res.reason
            return None
        base_id = re.sub(r"-r\d+$", "", cand.id)
        sources = tuple(p for p in cand.provenance if p != f"agent:{cfg.kind}")
        return self._candidate(cfg, cand.title, cand.rationale, res, sources,
                               cand_id=f"{base_id}-r{attempt}")

    def review(self, ctx: ProposerContext, cand: Candidate) -> tuple[bool, str]:
        return True, "no review for CLI agents"

    # --- one agent run -----------------------------------------------------------------------

    def _run(self, ctx: ProposerContext, cfg: AgentConfig, prompt: str,
             apply: Candidate | None = None) -> _Outcome:
        ws = Workspace(ctx.root)
        ws.ensure()
        logs = ctx.state_dir / "agent" / (str(ctx.run_id) if ctx.run_id else "adhoc")
        logs.mkdir(parents=True, exist_ok=True)
        with ws.lock_slot(SLOT):
            n = len(list(logs.glob("*.prompt.md"))) + 1
            prompt_file = logs / f"{n}.prompt.md"
            prompt_file.write_text(prompt, encoding="utf-8")
            wt = ws.checkout(SLOT, ctx.baseline)  # resets stray edits; keeps ignored outputs
            before = ""
            if apply is not None:
                error = _apply(wt, apply, logs / f"{n}.input.patch")
                if error:
                    gitcli.worktree_checkout(wt, ctx.baseline)
                    return _Outcome(reason=f"the candidate does not apply: {error}")
                before = _staged_diff(wt, ctx.baseline)[0]
            cwd = wt / ctx.rel if ctx.rel else wt
            env = agent_env(cfg, {"READFIRST_PROMPT": prompt,
                                  "READFIRST_PROMPT_FILE": str(prompt_file.resolve()),
                                  "READFIRST_WORKTREE": str(cwd.resolve())})
            step = run_step(agent_command(cfg), cwd, logs / str(n), cfg.timeout,
                            sandbox=agent_sandbox(ctx, wt, prompt_file, agent_command(cfg)),
                            clean_env=env)
            report = _claude_report(step.stdout()) if cfg.kind == "claude-code" else {}
            cost = report.get("total_cost_usd")
            if isinstance(cost, int | float):
                self.spent_usd += float(cost)
            if step.timed_out:
                return _Outcome(reason=f"agent timed out after {cfg.timeout:g}s")
            diff, changed = _staged_diff(wt, ctx.baseline)
        summary = str(report.get("result") or "") if cfg.kind == "claude-code" else (
            step.stdout() if cfg.kind == "codex" else "")
        if not diff or diff == before:
            return _Outcome(reason=_no_change_reason(step, report))
        refusal = check_changes(changed, under(ctx.rel, ctx.spec.protected_patterns()),
                                under(ctx.rel, ctx.spec.target.scope
                                               or ([] if not ctx.rel else ["**"])))
        if refusal:
            return _Outcome(reason=f"refused: {refusal.reason()}")
        return _Outcome(diff=diff, summary=summary)


def agent_key_names(cfg: AgentConfig) -> list[str]:
    """The API key variable(s) the agent's CLI reads: `[agent] api_key_env`, else its own."""
    if cfg.api_key_env:
        return [cfg.api_key_env]
    if cfg.kind == "aider":  # its provider follows the model's name
        claude = "claude" in cfg.model or cfg.model.startswith("anthropic/")
        return ["ANTHROPIC_API_KEY" if claude else "OPENAI_API_KEY"]
    return list(AGENT_KEYS.get(cfg.kind, ()))


def agent_env(cfg: AgentConfig, extra: dict[str, str]) -> dict[str, str]:
    """What the agent gets: the steps' allow-list, its own key, proxies, `[agent] env`."""
    return step_env(extra, passthrough=[*agent_key_names(cfg), *PROXY_ENV, *cfg.env])


def agent_sandbox(ctx: ProposerContext, wt: Path, prompt_file: Path, command: str
                  ) -> Policy | None:
    """The agent's sandbox (None with --no-sandbox): network on, only its worktree writable,
    `.readfirst/` hidden but for its prompt file (read-only)."""
    if not ctx.spec.target.sandbox or probe() is not None:
        return None
    policy = policy_for(wt, ctx.repo, ctx.state_dir, network=True, commands=[command])
    return dataclasses.replace(policy, exposed=(prompt_file.resolve(),))


def _no_change_reason(step: StepResult, report: dict[str, Any]) -> str:
    if step.exit_code != 0 or report.get("is_error"):
        tail = step.tail(TAIL_LINES).strip()
        what = (f"agent exited with code {step.exit_code}" if step.exit_code != 0
                else f"agent reported an error ({report.get('subtype', 'error')})")
        return what + (f" and changed nothing:\n{tail}" if tail else " and changed nothing")
    return "the agent changed nothing"


def _apply(wt: Path, cand: Candidate, patch: Path) -> str:
    """Apply `cand` uncommitted with a 3-way merge; git's error, or "" when it applied."""
    patch.write_text(cand.diff if cand.diff.endswith("\n") else cand.diff + "\n")
    try:
        gitcli.git(wt, "apply", "--3way", "--whitespace=nowarn", str(patch.resolve()))
    except gitcli.GitError as e:
        return str(e)
    return ""


def _staged_diff(wt: Path, baseline: str) -> tuple[str, list[str]]:
    """Stage everything, then (binary diff, changed paths) of the index against `baseline`:
    uncommitted edits and commits the agent made alike."""
    gitcli.git(wt, "add", "-A", "--", ".", *DROPPINGS)
    opts = ("diff", "--cached", "--no-renames", "--no-ext-diff", "--no-textconv", "--no-color")
    names = gitcli.git(wt, *opts, "--name-only", "-z", baseline)
    diff = gitcli.git(wt, *opts, "--binary", "--full-index", baseline)
    return (diff + "\n" if diff else ""), [p for p in names.split("\0") if p]


def _latest_hypotheses(state_dir: Path) -> list[dict[str, Any]]:
    """Hypotheses of the latest research run in the journal, ranked ([] when there is none)."""
    path = state_dir / JOURNAL_FILE
    if not path.is_file():
        return []
    from readfirst.research.brief import ResearchStore
    from readfirst.store.journal import Journal

    journal = Journal(path)
    try:
        store = ResearchStore(journal)
        latest = store.latest()
        return store.hypotheses(latest) if latest is not None else []
    finally:
        journal.close()
