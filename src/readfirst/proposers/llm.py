"""The `llm` proposer: an LLM API turns research into candidates, repairs and reviews them.

propose: one call for hypotheses (brief, diagnosis, open hypotheses, code around their sites,
what was tried), then one call per hypothesis for the edit, applied in the scratch worktree
slot "llm" and taken as `git diff --cached` against the baseline. Every call is checked
against the budget and recorded in the ledger; prompts and answers are kept for auditing
under `.readfirst/llm/<run>/`. A failed call, a refusal or an unusable answer is a skip.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
import time
from typing import Any

from pydantic import ValidationError

from readfirst.core.candidate import Candidate
from readfirst.core.config import load_agent
from readfirst.core.config_tables import AgentConfig
from readfirst.core.constants import JOURNAL_FILE
from readfirst.llm.clients import (
    Completion,
    LLMClient,
    LLMError,
    api_key_of,
    extract_json,
    make_client,
    scrub,
)
from readfirst.measure.guards import check_changes
from readfirst.proposers.base import ProposerContext
from readfirst.proposers.edits import EditError, TargetFiles, apply_edits
from readfirst.proposers.prompts import (
    SYSTEM,
    HypothesesOut,
    HypothesisOut,
    ReviewOut,
    hypotheses_prompt,
    implement_prompt,
    repair_prompt,
    review_prompt,
)
from readfirst.research.brief import ResearchStore
from readfirst.research.roofline import hotspot_names
from readfirst.store.journal import Journal
from readfirst.store.ledger import Ledger, Transcripts
from readfirst.vcs import gitcli
from readfirst.vcs.workspace import Workspace

CONTRIBUTING = ("CONTRIBUTING.md", "CONTRIBUTING", ".github/CONTRIBUTING.md",
                "docs/CONTRIBUTING.md")
CUT = ("length", "max_tokens")  # stop reasons of an answer cut short
CONTEXT_CHARS, WINDOW, HISTORY, BRIEF_HYPS, SLOT = 12_000, 40, 30, 8, "llm"


def _sid(*parts: str) -> str:
    return "llm:skip:" + hashlib.sha256("|".join(parts).encode()).hexdigest()[:12]


def _why(e: Exception) -> str:
    if isinstance(e, ValidationError):
        first = e.errors()[0]
        return f"{'.'.join(str(p) for p in first['loc']) or 'answer'}: {first['msg']}"
    return str(e)[:300]


def _cut(c: Completion) -> str:
    return "; the answer hit [agent] max_tokens" if c.stop_reason in CUT else ""


class LLMProposer:
    """Hypotheses, edits, repairs and reviews from an OpenAI or Anthropic model."""

    name = "llm"
    continuous = True

    def __init__(self, cfg: AgentConfig | None = None, client: LLMClient | None = None) -> None:
        self._cfg, self._client = cfg, client
        self._skipped: list[tuple[str, str, str]] = []
        self.notes: list[str] = []
        self._ledger: Ledger | None = None
        self._adhoc = f"adhoc-{time.strftime('%Y%m%d-%H%M%S')}-{os.urandom(2).hex()}"

    @property
    def skipped(self) -> list[tuple[str, str, str]]:
        return list(self._skipped)

    def close(self) -> None:
        if self._ledger is not None:
            self._ledger.close()
            self._ledger = None

    # --- plumbing ----------------------------------------------------------------------
    def _setup(self, ctx: ProposerContext) -> tuple[AgentConfig, LLMClient]:
        if self._cfg is None:
            self._cfg = load_agent(ctx.spec, ctx.spec.source)
        if self._client is None:
            self._client = make_client(self._cfg)
        Workspace(ctx.root).ensure()
        path = ctx.state_dir / JOURNAL_FILE
        if self._ledger is None or self._ledger.path != path:
            self._ledger = Ledger(path)
        return self._cfg, self._client

    @property
    def _secret(self) -> str | None:
        return api_key_of(self._client) or (self._cfg.api_key() if self._cfg else None)

    def _note(self, text: str) -> None:
        text = scrub(text, self._secret)
        if text not in self.notes:
            self.notes.append(text)

    def _skip(self, cid: str, title: str, reason: str) -> None:
        reason = scrub(reason, self._secret)
        self._skipped.append((cid, title, reason))
        self._note(f"skipped {title!r}: {reason}")

    def _ask(self, ctx: ProposerContext, purpose: str, user: str) -> Completion:
        """One budgeted, recorded, transcribed call; LLMError and BudgetExceeded pass."""
        cfg, client = self._setup(ctx)
        assert self._ledger is not None
        run_key = ctx.run_id or self._adhoc
        self._ledger.check_budget(cfg.max_cost_usd, run_key)
        secret = self._secret
        user = scrub(user, secret)
        tr = Transcripts(ctx.state_dir / "llm" / (ctx.run_id or "adhoc"), secret)
        path = tr.prompt(purpose, client.model, SYSTEM, user)
        try:
            c = self._ledger.call(client, SYSTEM, user, purpose=purpose, run_id=run_key,
                                  cap=cfg.max_cost_usd, secret=secret)
        except LLMError as e:
            tr.response(path, None, str(e))
            raise
        finally:
            for n in client.notes:
                self._note(n)
        tr.response(path, c)
        return c

    def _files(self, ctx: ProposerContext) -> TargetFiles:
        return TargetFiles(ctx.repo, ctx.rel, ctx.baseline, tuple(ctx.spec.target.scope),
                           tuple(ctx.spec.protected_patterns()))

    def _research(self, ctx: ProposerContext) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        """The open hypotheses of the latest research (best first) and its diagnosis."""
        path = ctx.state_dir / JOURNAL_FILE
        if not path.exists():
            return [], {}
        journal = Journal(path)
        try:
            store = ResearchStore(journal)
            rid = store.latest()
            if rid is None:
                return [], {}
            hyps = [h for h in store.hypotheses(rid) if h["status"] == "open"]
            row = journal.db.execute("SELECT diagnosis_json FROM research_runs WHERE id = ?",
                                     (rid,)).fetchone()
            diag = json.loads(row[0]) if row and row[0] else {}
        finally:
            journal.close()
        return sorted(hyps, key=lambda h: -h["score"])[:BRIEF_HYPS], diag or {}

    def _hot_sites(self, ctx: ProposerContext, names: list[str]) -> list[tuple[str, int, int]]:
        """Where the hottest functions are defined (a `git grep` for `name(` not ending in ;)."""
        files, sites = self._files(ctx), []
        for name in (n.rsplit("::", 1)[-1].rsplit(".", 1)[-1] for n in names[:5]):
            out = gitcli.git(ctx.repo, "grep", "-n", "-w", "-F", "-e", name, ctx.baseline, "--",
                             ctx.rel or ".", check=False)
            for hit in out.splitlines():
                parts = hit.split(":", 3)
                if len(parts) < 4 or f"{name}(" not in parts[3].replace(" (", "("):
                    continue
                rel = files.target_path(parts[1])
                if parts[3].rstrip().endswith(";") or not files.allowed(rel):
                    continue
                line = int(parts[2])
                sites.append((rel, line - 5, line + 2 * WINDOW))
                break
        return sites

    # --- the two steps of propose -------------------------------------------------------
    def _hypotheses_prompt(self, ctx: ProposerContext, brief_hyps: list[dict[str, Any]],
                           diag: dict[str, Any], n: int) -> str:
        files = self._files(ctx)
        path = ctx.brief or ctx.state_dir / "research" / "brief.md"
        brief = path.read_text(errors="replace") if path.is_file() else ""
        sites = [(s["path"], s["line"] - WINDOW, s["line"] + WINDOW)
                 for h in brief_hyps for s in h.get("sites", [])[:4]]
        sites += self._hot_sites(ctx, hotspot_names(diag.get("top_functions") or []))
        if not sites:
            sites = [(f, 1, 2 * WINDOW) for f in files.scope_files()[:12]]
        return hypotheses_prompt(n, ctx.spec.target.scope, ctx.spec.protected_patterns(), brief,
                                 diag, brief_hyps, files.windows(sites, CONTEXT_CHARS),
                                 ctx.history[-HISTORY:])

    def _hypotheses(self, ctx: ProposerContext, n: int
                    ) -> list[tuple[HypothesisOut, dict[str, Any] | None]]:
        brief_hyps, diag = self._research(ctx)
        prompt = self._hypotheses_prompt(ctx, brief_hyps, diag, n)
        cid, title = _sid("hypotheses", ctx.baseline, str(len(ctx.history))), "LLM hypotheses"
        err = ""
        for attempt in range(2):
            user = prompt if not attempt else (
                f"{prompt}\n\nYour previous answer could not be used ({err}). Answer again "
                "with only the JSON object.")
            try:
                c = self._ask(ctx, "hypotheses", user)
            except LLMError as e:
                self._skip(cid, title, f"LLM call failed: {e}")
                return []
            if c.refusal:
                self._skip(cid, title, f"model refusal: {c.refusal[:300]}")
                return []
            try:
                parsed = HypothesesOut.model_validate(extract_json(c.text))
            except ValueError as e:
                err = _why(e) + _cut(c)
                continue
            out = []
            for h in parsed.hypotheses[:n]:
                link = (brief_hyps[h.based_on - 1] if h.based_on and
                        0 < h.based_on <= len(brief_hyps) else None)
                link = link or next((b for b in brief_hyps
                                     if b["title"].lower() == h.title.lower()), None)
                out.append((h, link))
            return out
        self._skip(cid, title, f"model output unreadable twice: {err}")
        return []

    def _materialise(self, ctx: ProposerContext, answer: str) -> tuple[str | None, str]:
        """Apply the answer's edits in the scratch worktree: (diff, "") or (None, why)."""
        ws, files = Workspace(ctx.root), self._files(ctx)
        protected = [files.repo_path(p) for p in ctx.spec.protected_patterns()]
        scope = [files.repo_path(p)
                 for p in (ctx.spec.target.scope or (["**"] if ctx.rel else []))]
        with ws.lock_slot(SLOT):
            wt = ws.checkout(SLOT, ctx.baseline)
            try:
                try:
                    apply_edits(wt / ctx.rel if ctx.rel else wt, answer)
                except EditError as e:
                    return None, f"edit does not apply: {e}"
                gitcli.git(wt, "add", "-A")
                changed = gitcli.git(wt, "diff", "--cached", "--no-renames", "--name-only",
                                     "-z", ctx.baseline).split("\0")
                changed = [p for p in changed if p]
                if not changed:
                    return None, "the edit changes nothing"
                refusal = check_changes(changed, protected, scope)
                if refusal:
                    return None, f"refused: {refusal.reason()}"
                diff = gitcli.git(wt, "diff", "--cached", "--binary", "--no-renames",
                                  ctx.baseline)
                return diff + "\n", ""
            finally:
                gitcli.worktree_checkout(wt, ctx.baseline)

    def _implement(self, ctx: ProposerContext, h: HypothesisOut,
                   link: dict[str, Any] | None) -> Candidate | None:
        files = self._files(ctx)
        paths = [p.removeprefix("./") for p in h.files]
        paths = [files.target_path(p) if ctx.rel and p.startswith(f"{ctx.rel}/") else p
                 for p in paths]
        paths += [s["path"] for s in (link or {}).get("sites", [])]
        paths = [p for p in paths if files.allowed(p)] or files.scope_files()
        user = implement_prompt(h, ctx.spec.target.scope, ctx.spec.protected_patterns(),
                                files.full_files(paths))
        title = h.title.strip()[:120]
        try:
            c = self._ask(ctx, "implement", user)
        except LLMError as e:
            self._skip(_sid("implement", title), title, f"LLM call failed: {e}")
            return None
        if c.refusal:
            self._skip(_sid("implement", title), title, f"model refusal: {c.refusal[:300]}")
            return None
        diff, why = self._materialise(ctx, c.text)
        if diff is None:
            why += _cut(c)
            self._skip(_sid("implement", title, why), title, why)
            return None
        sources = tuple((link or {}).get("sources", []))
        rationale = h.rationale + (f"\n\nExpected effect: {h.expected_effect}"
                                   if h.expected_effect else "")
        return Candidate(f"llm:{hashlib.sha256(diff.encode()).hexdigest()[:12]}", title,
                         rationale, diff, self.name, (f"model:{c.model}", *sources))

    # --- the ThinkingProposer protocol ----------------------------------------------------
    def propose(self, ctx: ProposerContext) -> list[Candidate]:
        self._skipped = []
        cfg, _client = self._setup(ctx)
        out: dict[str, Candidate] = {}
        for h, link in self._hypotheses(ctx, cfg.max_hypotheses):
            cand = self._implement(ctx, h, link)
            if cand is not None:
                out.setdefault(cand.id, cand)
        return list(out.values())

    def repair(self, ctx: ProposerContext, cand: Candidate, verdict: str, error_tail: str,
               attempt: int) -> Candidate | None:
        """One call: the diff and the failure's last 50 lines -> a corrected edit, or None."""
        self._setup(ctx)
        files = self._files(ctx)
        tail = "\n".join(error_tail.splitlines()[-50:])
        user = repair_prompt(cand, verdict, tail,
                             files.full_files(list(files.diff_files(cand.diff))))
        try:
            c = self._ask(ctx, "repair", user)
        except LLMError as e:
            self._note(f"repair of {cand.id} failed: {e}")
            return None
        if c.refusal:
            self._note(f"repair of {cand.id}: model refusal: {c.refusal[:300]}")
            return None
        diff, why = self._materialise(ctx, c.text)
        if diff is None:
            self._note(f"repair of {cand.id}: {why}")
            return None
        return Candidate(f"{re.sub(r'-r[0-9]+$', '', cand.id)}-r{attempt}", cand.title,
                         f"{cand.rationale}\n\nRepaired after {verdict} (attempt {attempt}).",
                         diff, self.name,
                         tuple(dict.fromkeys((*cand.provenance, f"repair-of:{cand.id}"))))

    def review(self, ctx: ProposerContext, cand: Candidate) -> tuple[bool, str]:
        """(approve, reason) against CONTRIBUTING and the surrounding code's conventions."""
        cfg, _client = self._setup(ctx)
        if not cfg.review:
            return True, "review disabled ([agent] review = false)"
        files = self._files(ctx)
        top = dataclasses.replace(files, rel="")  # the target's directory, then the repo's top
        rules = next((t for name in CONTRIBUTING for t in (files.show(name), top.show(name))
                      if t), "")
        sites = [(p, line - WINDOW, line + WINDOW)
                 for p, lines in files.diff_files(cand.diff).items() for line in lines]
        user = review_prompt(cand, rules, files.windows(sites, CONTEXT_CHARS, "Code around "
                                                        "the change (baseline)"))
        try:
            c = self._ask(ctx, "review", user)
        except LLMError as e:
            self._note(f"review of {cand.id} not done: {e}")
            return True, "review not done (LLM call failed)"
        if c.refusal:
            self._note(f"review of {cand.id}: model refusal: {c.refusal[:300]}")
            return True, "review refused by the model"
        try:
            r = ReviewOut.model_validate(extract_json(c.text))
        except ValueError as e:
            self._note(f"review of {cand.id}: output unreadable ({_why(e)})")
            return True, "review output unreadable"
        return r.approve, r.reason.strip() or ("approved" if r.approve else "vetoed")
