"""The LLM proposer inside the loop, against recorded API exchanges, with a canary key."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest
import respx
import test_llm_proposer  # noqa: F401 - registers the httpcore2 respx mocker the SDKs need
from conftest import TOML, make_target

from readfirst.core.config import load_spec
from readfirst.loop.loop import LoopOptions, run_loop
from readfirst.vcs.workspace import target_at

DATA = Path(__file__).parent / "data" / "llm"
CANARY = "sk-canary-7f3a9c1e5b"


def _ok(name: str) -> httpx.Response:
    return httpx.Response(200, json=json.loads((DATA / name).read_text()))


def test_llm_loop_counts_cost_and_never_writes_the_key(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", CANARY)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    toml = TOML + '\n[agent]\nkind = "openai"\nmodel = "gpt-4o-mini"\nmax_hypotheses = 1\n'
    target = make_target(tmp_path / "t", toml)
    with respx.mock(using="httpcore2", assert_all_called=False) as api:
        route = api.post("https://api.openai.com/v1/chat/completions").mock(side_effect=[
            _ok("openai_hypotheses.json"), _ok("openai_implement_search_replace.json")])
        summary: dict[str, Any] = run_loop(
            target_at(target), load_spec(target),
            LoopOptions(proposer="agent", workers=1, max_experiments=1))
    assert route.call_count == 2
    assert all(CANARY not in str(call.request.content) for call in route.calls)
    (exp,) = [e for e in summary["experiments"] if e["kind"] == "explore"]
    assert exp["source"] == "llm" and exp["title"] == "Closed-form sum in compute()"
    assert exp["verdict"] in ("no_change", "inconclusive")  # compute() is not what is timed
    assert summary["api_cost"]["calls"] == 2 and summary["api_cost"]["usd"] > 0
    assert summary["stop_reason"] == "max experiments"
    # the key is nowhere in what readfirst wrote: journal, prompts, logs, report
    written = [p for p in (target / ".readfirst").rglob("*") if p.is_file()]
    assert any(p.suffix == ".txt" and "prompt" in p.name for p in written)
    for path in written:
        assert CANARY.encode() not in path.read_bytes(), path
