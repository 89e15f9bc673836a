"""What LLM calls cost: the `llm_calls` table of the journal, and the audit transcripts.

The table holds counts and money only, never prompt text. Transcripts (prompt and answer of
every call) go to `.readfirst/llm/<run>/` for auditing; they never hold the key (it is not in
any prompt, and a final scrub replaces it should it appear).
"""

from __future__ import annotations

import re
import sqlite3
import time
from pathlib import Path
from typing import Any

from readfirst.core.errors import BudgetExceeded
from readfirst.llm.clients import Completion, LLMClient, LLMError, scrub

SCHEMA = """
CREATE TABLE IF NOT EXISTS llm_calls (
    id INTEGER PRIMARY KEY,
    ts REAL NOT NULL,
    run_id TEXT,
    provider TEXT NOT NULL,
    model TEXT NOT NULL,
    purpose TEXT NOT NULL,          -- hypotheses | implement | repair | review
    input_tokens INTEGER NOT NULL,
    output_tokens INTEGER NOT NULL,
    cost_usd REAL NOT NULL,
    seconds REAL NOT NULL,
    ok INTEGER NOT NULL,
    error TEXT
);
CREATE INDEX IF NOT EXISTS llm_calls_by_run ON llm_calls(run_id);
"""


class Ledger:
    """Cost accounting in the journal file (own connection, WAL, one transaction per insert)."""

    def __init__(self, journal_path: Path) -> None:
        journal_path.parent.mkdir(parents=True, exist_ok=True)
        self.path = journal_path
        self.db = sqlite3.connect(journal_path, isolation_level=None, timeout=30)
        self.db.row_factory = sqlite3.Row
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.executescript(SCHEMA)

    def close(self) -> None:
        self.db.close()

    def record(self, *, run_id: str | None, provider: str, model: str, purpose: str,
               input_tokens: int = 0, output_tokens: int = 0, cost_usd: float = 0.0,
               seconds: float = 0.0, ok: bool = True, error: str | None = None) -> int:
        cur = self.db.execute(
            "INSERT INTO llm_calls (ts, run_id, provider, model, purpose, input_tokens,"
            " output_tokens, cost_usd, seconds, ok, error) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
            (time.time(), run_id, provider, model, purpose, input_tokens, output_tokens,
             cost_usd, seconds, int(ok), error))
        return int(cur.lastrowid or 0)

    def spent(self, run_id: str | None = None) -> float:
        """USD spent by one run (all runs when None)."""
        if run_id is None:
            row = self.db.execute("SELECT COALESCE(SUM(cost_usd), 0) FROM llm_calls").fetchone()
        else:
            row = self.db.execute("SELECT COALESCE(SUM(cost_usd), 0) FROM llm_calls"
                                  " WHERE run_id = ?", (run_id,)).fetchone()
        return float(row[0])

    def totals(self, run_id: str | None = None) -> dict[str, Any]:
        where, args = ("WHERE run_id = ?", (run_id,)) if run_id is not None else ("", ())
        row = self.db.execute(
            "SELECT COUNT(*), COALESCE(SUM(input_tokens), 0), COALESCE(SUM(output_tokens), 0),"
            f" COALESCE(SUM(cost_usd), 0), COALESCE(SUM(1 - ok), 0) FROM llm_calls {where}",
            args).fetchone()
        return {"calls": row[0], "input_tokens": row[1], "output_tokens": row[2],
                "cost_usd": float(row[3]), "failed": row[4]}

    def check_budget(self, cap: float, run_id: str | None = None) -> None:
        """BudgetExceeded when the money spent has reached `cap` (checked before each call)."""
        spent = self.spent(run_id)
        if spent >= cap:
            raise BudgetExceeded(f"LLM budget reached: ${spent:.4f} spent of [agent] "
                                 f"max_cost_usd = ${cap:g}")

    def call(self, client: LLMClient, system: str, user: str, *, purpose: str,
             run_id: str | None, cap: float, secret: str | None = None) -> Completion:
        """Check the budget, make the call, record it (failed calls too); LLMError passes."""
        self.check_budget(cap, run_id)
        t0 = time.monotonic()
        try:
            c = client.complete(system, user, purpose=purpose)
        except LLMError as e:
            self.record(run_id=run_id, provider=client.provider, model=client.model,
                        purpose=purpose, seconds=time.monotonic() - t0, ok=False,
                        error=scrub(str(e), secret)[:500])
            raise
        self.record(run_id=run_id, provider=client.provider, model=c.model, purpose=purpose,
                    input_tokens=c.input_tokens, output_tokens=c.output_tokens,
                    cost_usd=c.cost_usd, seconds=time.monotonic() - t0, ok=c.refusal is None,
                    error=("refusal: " + scrub(c.refusal, secret)[:300]) if c.refusal else None)
        return c


class Transcripts:
    """`<state>/llm/<run>/<n>-<purpose>.{prompt,response}.txt`, n counting up per directory."""

    def __init__(self, directory: Path, secret: str | None) -> None:
        self.dir = directory
        self.secret = secret

    def _next(self) -> int:
        nums = [int(m.group(1)) for p in self.dir.glob("*.prompt.txt")
                if (m := re.match(r"(\d+)-", p.name))]
        return max(nums, default=0) + 1

    def prompt(self, purpose: str, model: str, system: str, user: str) -> Path:
        self.dir.mkdir(parents=True, exist_ok=True)
        path = self.dir / f"{self._next():03d}-{purpose}.prompt.txt"
        text = f"model: {model}\npurpose: {purpose}\n\n=== system ===\n{system}\n\n" \
               f"=== user ===\n{user}\n"
        path.write_text(scrub(text, self.secret))
        return path

    def response(self, prompt_path: Path, c: Completion | None, error: str = "") -> None:
        path = prompt_path.with_name(prompt_path.name.replace(".prompt.", ".response."))
        if c is None:
            text = f"error: {error}\n"
        else:
            text = (f"model: {c.model}\nstop_reason: {c.stop_reason}\ntokens: "
                    f"{c.input_tokens} in, {c.output_tokens} out\ncost_usd: {c.cost_usd:.6f}\n"
                    + (f"refusal: {c.refusal}\n" if c.refusal else "") + f"\n{c.text}\n")
        path.write_text(scrub(text, self.secret))
