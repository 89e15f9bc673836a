"""The `llm` proposer against recorded OpenAI / Anthropic / vLLM answers (respx replays)."""

from __future__ import annotations

import json
import sqlite3
import time
import tomllib
from pathlib import Path
from typing import Any

import httpcore2
import httpx
import pytest
import respx
from conftest import MAKEFILE, PROGRAM, TOML, commit, git, params, write
from respx.mocks import AbstractRequestMocker, Mocker
from respx.patterns import parse_url

from readfirst.core.config import Spec
from readfirst.core.errors import BudgetExceeded, ConfigError
from readfirst.llm.clients import PRICES, extract_json, price_of, visible_text
from readfirst.proposers.base import ProposerContext
from readfirst.proposers.edits import EditError, apply_edits, extract_diff, parse_blocks
from readfirst.proposers.llm import LLMProposer
from readfirst.research import Hypothesis, Reference, Site
from readfirst.research.brief import ResearchStore
from readfirst.research.run import ResearchResult
from readfirst.store.journal import Journal
from readfirst.store.ledger import Ledger
from readfirst.vcs.apply import apply_candidate
from readfirst.vcs.workspace import Workspace

DATA = Path(__file__).parent / "data" / "llm"
OPENAI_URL = "https://api.openai.com/v1/chat/completions"
ANTHROPIC_URL = "https://api.anthropic.com/v1/messages"
VLLM_URL = "http://localhost:8000/v1/chat/completions"
KEY = "sk-test-0123456789"


# --- respx for the SDKs' HTTP stack ---------------------------------------------------------
# openai 3.x and anthropic 2.x send through httpx2/httpcore2, which respx 0.23 does not patch;
# this mocker routes httpcore2's connection pool through respx's router, so routes and
# side effects (httpx.Response, httpx.ReadTimeout) work as with plain httpx.
_TRANSPORT_ERRORS = {httpx.ReadTimeout: httpcore2.ReadTimeout,
                     httpx.ConnectTimeout: httpcore2.ConnectTimeout,
                     httpx.WriteTimeout: httpcore2.WriteTimeout,
                     httpx.PoolTimeout: httpcore2.PoolTimeout,
                     httpx.ConnectError: httpcore2.ConnectError,
                     httpx.ReadError: httpcore2.ReadError}

if "httpcore2" not in Mocker.registry:
    class HTTPCore2Mocker(AbstractRequestMocker):
        name = "httpcore2"
        targets = ["httpcore2._sync.connection_pool.ConnectionPool"]
        target_methods = ["handle_request"]

        @classmethod
        def to_httpx_request(cls, **kwargs: Any) -> httpx.Request:
            req = kwargs["request"]
            url = (req.url.scheme, req.url.host, req.url.port, req.url.target)
            return httpx.Request(req.method.decode(), parse_url(url), headers=req.headers,
                                 content=b"".join(req.stream))

        @classmethod
        def prepare_sync_request(cls, httpx_request: httpx.Request, **kwargs: Any) -> Any:
            return httpx_request, kwargs

        @classmethod
        def _send_sync_request(cls, httpx_request: Any, *, target_spec: Any, instance: Any,
                               **kwargs: Any) -> Any:
            try:
                return super()._send_sync_request(httpx_request, target_spec=target_spec,
                                                  instance=instance, **kwargs)
            except httpx.TransportError as e:
                raise _TRANSPORT_ERRORS.get(type(e), httpcore2.NetworkError)(str(e)) from None

        @classmethod
        def from_sync_httpx_response(cls, httpx_response: httpx.Response, target: Any,
                                     **kwargs: Any) -> httpcore2.Response:
            httpx_response.read()
            return httpcore2.Response(httpx_response.status_code,
                                      headers=httpx_response.headers.raw,
                                      content=httpx_response.content)


@pytest.fixture
def api() -> Any:
    with respx.mock(using="httpcore2", assert_all_called=False) as router:
        yield router


def ok(name: str) -> httpx.Response:
    return httpx.Response(200, json=json.loads((DATA / name).read_text()))


@pytest.fixture(autouse=True)
def env(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("OPENAI_BASE_URL", "ANTHROPIC_BASE_URL", "ANTHROPIC_AUTH_TOKEN"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    monkeypatch.setenv("ANTHROPIC_API_KEY", KEY)


def context(root: Path, run_id: str | None = "run1", rel: str = "", **agent: Any
            ) -> ProposerContext:
    data = tomllib.loads(TOML)
    data["agent"] = {"kind": "openai", "model": "gpt-4o-mini", "max_hypotheses": 1, **agent}
    spec = Spec.model_validate(data)
    repo = root.parents[len(Path(rel).parts) - 1] if rel else root
    return ProposerContext(repo=repo, root=root, rel=rel, baseline=git(repo, "rev-parse", "HEAD"),
                           spec=spec, state_dir=Workspace(root).state, run_id=run_id)


def applied(ctx: ProposerContext, cand: Any) -> str:
    """The target's src/prog.c after applying the candidate in a fresh worktree."""
    ws = Workspace(ctx.root)
    wt = ws.checkout("check", ctx.baseline)
    apply_candidate(wt, ctx.baseline, cand)
    return (wt / ctx.rel / "src" / "prog.c").read_text()


def ledger_rows(ctx: ProposerContext) -> list[sqlite3.Row]:
    led = Ledger(ctx.state_dir / "journal.db")
    rows = led.db.execute("SELECT * FROM llm_calls ORDER BY id").fetchall()
    led.close()
    return rows


# --- propose ----------------------------------------------------------------------------
def test_openai_search_replace_candidate_applies(target: Path, api: Any) -> None:
    route = api.post(OPENAI_URL).mock(side_effect=[
        ok("openai_hypotheses.json"), ok("openai_implement_search_replace.json")])
    ctx = context(target)
    prop = LLMProposer()
    cands = prop.propose(ctx)
    assert prop.skipped == []
    assert len(cands) == 1
    cand = cands[0]
    assert cand.id.startswith("llm:") and len(cand.id) == 16
    assert cand.source == "llm" and cand.title == "Closed-form sum in compute()"
    assert cand.provenance == ("model:gpt-4o-mini-2024-07-18",)
    assert "return n * (n - 1) / 2;" in applied(ctx, cand)
    first = json.loads(route.calls[0].request.content)
    assert [m["role"] for m in first["messages"]] == ["system", "user"]
    assert first["max_completion_tokens"] == 8192 and "max_tokens" not in first
    assert "src/prog.c" in first["messages"][1]["content"]  # the code context
    assert route.calls[0].request.headers["authorization"] == f"Bearer {KEY}"
    rows = ledger_rows(ctx)
    assert [r["purpose"] for r in rows] == ["hypotheses", "implement"]
    assert all(r["ok"] == 1 and r["run_id"] == "run1" for r in rows)
    assert rows[0]["cost_usd"] == pytest.approx((1834 * 0.15 + 212 * 0.60) / 1e6)
    audit = sorted(p.name for p in (ctx.state_dir / "llm" / "run1").iterdir())
    assert audit == ["001-hypotheses.prompt.txt", "001-hypotheses.response.txt",
                     "002-implement.prompt.txt", "002-implement.response.txt"]


def test_anthropic_unified_diff_candidate_applies(target: Path, api: Any) -> None:
    route = api.post(ANTHROPIC_URL).mock(side_effect=[
        ok("anthropic_hypotheses.json"), ok("anthropic_implement_diff.json")])
    ctx = context(target, kind="anthropic", model="claude-haiku-4-5")
    cands = LLMProposer().propose(ctx)
    assert len(cands) == 1
    assert cands[0].provenance == ("model:claude-haiku-4-5-20251001",)
    assert "return n * (n - 1) / 2;" in applied(ctx, cands[0])
    req = route.calls[0].request
    body = json.loads(req.content)
    assert KEY in (req.headers.get("x-api-key"), req.headers.get("authorization", "")[7:])
    assert "anthropic-version" in req.headers
    assert body["model"] == "claude-haiku-4-5" and body["max_tokens"] == 8192
    assert isinstance(body["system"], str) and body["messages"][0]["role"] == "user"
    assert ledger_rows(ctx)[0]["cost_usd"] == pytest.approx((2011 * 1.0 + 305 * 5.0) / 1e6)


def test_vllm_compatible_endpoint(target: Path, api: Any) -> None:
    route = api.post(VLLM_URL).mock(side_effect=[ok("vllm_hypotheses.json"),
                                                 ok("vllm_implement.json")])
    ctx = context(target, model="Qwen/Qwen2.5-Coder-7B-Instruct",
                  base_url="http://localhost:8000/v1")
    prop = LLMProposer()
    assert len(prop.propose(ctx)) == 1
    body = json.loads(route.calls[0].request.content)
    assert body["max_tokens"] == 8192 and "max_completion_tokens" not in body
    assert any("price unknown" in n and "price_input_per_mtok" in n for n in prop.notes)
    assert all(r["cost_usd"] == 0 for r in ledger_rows(ctx))


@pytest.mark.parametrize("kind,url,answers", [
    ("openai", OPENAI_URL, ["openai_hypotheses.json", "openai_implement_search_replace.json"]),
    ("anthropic", ANTHROPIC_URL, ["anthropic_hypotheses.json",
                                  "anthropic_implement_diff.json"])])
def test_target_in_a_subdirectory(tmp_path: Path, api: Any, kind: str, url: str,
                                  answers: list[str]) -> None:
    repo = tmp_path / "mono"
    repo.mkdir()
    git(repo, "init", "-q")
    for rel, text in {"src/prog.c": PROGRAM, "src/params.h": params(), "Makefile": MAKEFILE,
                      "autoresearch.sh": "#!/bin/sh\nexec ./build/prog\n",
                      "readfirst.toml": TOML}.items():
        write(repo, f"bench/{rel}", text)
    write(repo, "src/other.c", "int other;\n")  # outside the target
    commit(repo, "base")
    api.post(url).mock(side_effect=[ok(a) for a in answers])
    model = "gpt-4o-mini" if kind == "openai" else "claude-haiku-4-5"
    ctx = context(repo / "bench", rel="bench", kind=kind, model=model)
    [cand] = LLMProposer().propose(ctx)
    assert "+++ b/bench/src/prog.c" in cand.diff
    assert "return n * (n - 1) / 2;" in applied(ctx, cand)


def test_configured_prices_are_used(target: Path, api: Any) -> None:
    api.post(VLLM_URL).mock(side_effect=[ok("vllm_hypotheses.json"), ok("vllm_implement.json")])
    ctx = context(target, model="local-model", base_url="http://localhost:8000/v1",
                  price_input_per_mtok=1.0, price_output_per_mtok=2.0)
    LLMProposer().propose(ctx)
    assert ledger_rows(ctx)[0]["cost_usd"] == pytest.approx((1790 + 240 * 2.0) / 1e6)


def test_malformed_json_then_valid_on_retry(target: Path, api: Any) -> None:
    route = api.post(OPENAI_URL).mock(side_effect=[
        ok("openai_malformed.json"), ok("openai_hypotheses.json"),
        ok("openai_implement_search_replace.json")])
    ctx = context(target)
    prop = LLMProposer()
    assert len(prop.propose(ctx)) == 1
    retry = json.loads(route.calls[1].request.content)["messages"][1]["content"]
    assert "could not be used" in retry and "no JSON object" in retry


def test_malformed_twice_is_skipped_with_note(target: Path, api: Any) -> None:
    route = api.post(OPENAI_URL).mock(side_effect=[ok("openai_malformed.json"),
                                                   ok("openai_wrong_schema.json")])
    prop = LLMProposer()
    assert prop.propose(context(target)) == []
    assert route.call_count == 2
    [(cid, title, reason)] = prop.skipped
    assert cid.startswith("llm:") and "unreadable twice" in reason and "hypotheses" in reason
    assert any("unreadable twice" in n for n in prop.notes)


@pytest.mark.parametrize("kind,url,body", [
    ("openai", OPENAI_URL, "openai_refusal.json"),
    ("anthropic", ANTHROPIC_URL, "anthropic_refusal.json")])
def test_refusal_is_skipped_with_note(target: Path, api: Any, kind: str, url: str,
                                      body: str) -> None:
    api.post(url).mock(return_value=ok(body))
    prop = LLMProposer()
    model = "gpt-4o-mini" if kind == "openai" else "claude-haiku-4-5"
    assert prop.propose(context(target, kind=kind, model=model)) == []
    [(_cid, _title, reason)] = prop.skipped
    assert reason.startswith("model refusal")
    assert any("model refusal" in n for n in prop.notes)


def test_rate_limit_then_success_is_retried(target: Path, api: Any) -> None:
    limited = httpx.Response(429, headers={"retry-after-ms": "50", "retry-after": "1"},
                             json=json.loads((DATA / "openai_429.json").read_text()))
    route = api.post(OPENAI_URL).mock(side_effect=[
        limited, ok("openai_hypotheses.json"), ok("openai_implement_search_replace.json")])
    t0 = time.monotonic()
    cands = LLMProposer().propose(context(target))
    assert len(cands) == 1 and route.call_count == 3
    assert time.monotonic() - t0 >= 0.05  # the retry waited as the server asked


def test_timeout_is_a_skip_not_a_crash(target: Path, api: Any) -> None:
    route = api.post(OPENAI_URL).mock(side_effect=httpx.ReadTimeout)
    prop = LLMProposer()
    assert prop.propose(context(target, timeout=5)) == []
    assert route.call_count == 3  # the first try and the SDK's two retries
    [(_cid, _title, reason)] = prop.skipped
    assert "timed out after 5 s" in reason
    [row] = ledger_rows(context(target))
    assert row["ok"] == 0 and "timed out" in row["error"]


def test_edit_of_protected_file_is_refused(target: Path, api: Any) -> None:
    api.post(OPENAI_URL).mock(side_effect=[ok("openai_hypotheses.json"),
                                           ok("openai_implement_protected.json")])
    prop = LLMProposer()
    assert prop.propose(context(target)) == []
    [(_cid, title, reason)] = prop.skipped
    assert title == "Closed-form sum in compute()"
    assert reason.startswith("refused:") and "autoresearch.sh" in reason
    assert Workspace(target).slot_path("llm").joinpath("autoresearch.sh").read_text() == (
        "#!/bin/sh\nexec ./build/prog\n")  # the scratch worktree is back at the baseline


def test_brief_hypothesis_gives_provenance(target: Path, api: Any) -> None:
    ctx = context(target)
    Workspace(target).ensure()
    journal = Journal(ctx.state_dir / "journal.db")
    hyp = Hypothesis("Closed-form sum in compute()", "todo", "the loop is an arithmetic series",
                     [Site("src/prog.c", 7, "compute")], ["src/prog.c:7"], "O(1)", 0.9)
    ResearchStore(journal).save(ResearchResult(
        {"conclusion": "compute-bound", "top_functions": [{"function": "compute", "share": 91.0}]},
        [hyp], [Reference("src/prog.c:7", "code", "compute loop")], []), False, ctx.baseline)
    journal.close()
    route = api.post(OPENAI_URL).mock(side_effect=[
        ok("openai_hypotheses.json"), ok("openai_implement_search_replace.json")])
    [cand] = LLMProposer().propose(ctx)
    assert cand.provenance == ("model:gpt-4o-mini-2024-07-18", "src/prog.c:7")
    prompt = json.loads(route.calls[0].request.content)["messages"][1]["content"]
    assert "compute-bound" in prompt and "1. Closed-form sum in compute()" in prompt


def test_history_is_in_the_prompt(target: Path, api: Any) -> None:
    route = api.post(OPENAI_URL).mock(side_effect=[
        ok("openai_hypotheses.json"), ok("openai_implement_search_replace.json")])
    ctx = context(target)
    ctx.history = [{"title": f"idea {i}", "verdict": "no_change", "reason": "within noise"}
                   for i in range(40)]
    LLMProposer().propose(ctx)
    prompt = json.loads(route.calls[0].request.content)["messages"][1]["content"]
    assert "tried: idea 39 -> no_change (within noise)" in prompt
    assert "idea 9 " not in prompt and "tried: idea 10 ->" in prompt  # the last 30


# --- repair and review --------------------------------------------------------------------
def test_repair_returns_fixed_candidate(target: Path, api: Any) -> None:
    api.post(OPENAI_URL).mock(side_effect=[ok("openai_hypotheses.json"),
                                           ok("openai_implement_search_replace.json")])
    ctx = context(target)
    prop = LLMProposer()
    [cand] = prop.propose(ctx)
    api.reset()
    route = api.post(OPENAI_URL).mock(return_value=ok("openai_repair.json"))
    tail = "\n".join(f"line {i}" for i in range(100)) + "\nprog.c:7: error: overflow"
    fixed = prop.repair(ctx, cand, "crash", tail, 1)
    assert fixed is not None and fixed.id == f"{cand.id}-r1"
    assert f"repair-of:{cand.id}" in fixed.provenance
    assert "(n * (n - 1L)) / 2L" in applied(ctx, fixed)
    prompt = json.loads(route.calls[0].request.content)["messages"][1]["content"]
    assert "error: overflow" in prompt and "line 49\n" not in prompt and "line 51" in prompt
    assert cand.diff.splitlines()[0] in prompt
    again = prop.repair(ctx, fixed, "crash", "still broken", 2)
    assert again is not None and again.id == f"{cand.id}-r2"


def test_review_veto_and_unreadable(target: Path, api: Any) -> None:
    api.post(OPENAI_URL).mock(side_effect=[ok("openai_hypotheses.json"),
                                           ok("openai_implement_search_replace.json")])
    write(target, "CONTRIBUTING.md", "Comment every non-obvious formula.\n")
    commit(target, "contributing")
    ctx = context(target)
    prop = LLMProposer()
    [cand] = prop.propose(ctx)
    api.reset()
    route = api.post(OPENAI_URL).mock(side_effect=[ok("openai_review_veto.json"),
                                                   ok("openai_review_unreadable.json")])
    approve, reason = prop.review(ctx, cand)
    assert approve is False and "CONTRIBUTING.md" in reason
    prompt = json.loads(route.calls[0].request.content)["messages"][1]["content"]
    assert "Comment every non-obvious formula." in prompt and "int main" in prompt
    assert prop.review(ctx, cand) == (True, "review output unreadable")
    assert any("unreadable" in n for n in prop.notes)
    purposes = [r["purpose"] for r in ledger_rows(ctx)]
    assert purposes == ["hypotheses", "implement", "review", "review"]


# --- money, keys, secrets -----------------------------------------------------------------
def test_ledger_totals_and_budget(tmp_path: Path) -> None:
    led = Ledger(tmp_path / "journal.db")
    led.record(run_id="a", provider="openai", model="m", purpose="hypotheses",
               input_tokens=10, output_tokens=5, cost_usd=0.25, seconds=1.0)
    led.record(run_id="b", provider="openai", model="m", purpose="implement", cost_usd=0.5,
               ok=False, error="timed out")
    assert led.spent("a") == 0.25 and led.spent() == 0.75
    assert led.totals("b") == {"calls": 1, "input_tokens": 0, "output_tokens": 0,
                               "cost_usd": 0.5, "failed": 1}
    led.check_budget(0.3, "a")
    with pytest.raises(BudgetExceeded, match="max_cost_usd"):
        led.check_budget(0.25, "a")
    assert led.db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    cols = [r[1] for r in led.db.execute("PRAGMA table_info(llm_calls)")]
    assert cols == ["id", "ts", "run_id", "provider", "model", "purpose", "input_tokens",
                    "output_tokens", "cost_usd", "seconds", "ok", "error"]


def test_budget_exceeded_stops_before_the_next_call(target: Path, api: Any) -> None:
    route = api.post(OPENAI_URL).mock(side_effect=[
        ok("openai_hypotheses.json"), ok("openai_implement_search_replace.json")])
    ctx = context(target, max_cost_usd=0.0001)
    with pytest.raises(BudgetExceeded):
        LLMProposer().propose(ctx)
    assert route.call_count == 1
    assert Ledger(ctx.state_dir / "journal.db").spent("run1") > 0.0001


@pytest.mark.parametrize("agent,var", [({}, "OPENAI_API_KEY"),
                                       ({"api_key_env": "MY_LLM_KEY"}, "MY_LLM_KEY"),
                                       ({"kind": "anthropic", "model": "claude-haiku-4-5"},
                                        "ANTHROPIC_API_KEY")])
def test_missing_key_names_the_variable(target: Path, monkeypatch: pytest.MonkeyPatch,
                                        agent: dict[str, Any], var: str) -> None:
    monkeypatch.delenv("OPENAI_API_KEY")
    monkeypatch.delenv("ANTHROPIC_API_KEY")
    with pytest.raises(ConfigError, match=var):
        LLMProposer().propose(context(target, **agent))


def test_canary_key_is_written_nowhere(target: Path, api: Any,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    canary = "sk-canary-123"
    monkeypatch.setenv("OPENAI_API_KEY", canary)
    route = api.post(OPENAI_URL).mock(side_effect=[
        ok("openai_hypotheses.json"), ok("openai_implement_search_replace.json"),
        ok("openai_review_veto.json")])
    ctx = context(target, run_id=None)
    prop = LLMProposer()
    [cand] = prop.propose(ctx)
    prop.review(ctx, cand)
    assert route.calls[0].request.headers["authorization"] == f"Bearer {canary}"
    files = [p for p in (target / ".readfirst").rglob("*") if p.is_file()]
    assert any(p.name.endswith(".prompt.txt") for p in files)
    assert (target / ".readfirst" / "llm" / "adhoc").is_dir()
    for p in files:
        assert canary.encode() not in p.read_bytes(), p
    blob = json.dumps([cand.to_dict(), prop.notes, prop.skipped])
    assert canary not in blob


# --- edits ------------------------------------------------------------------------------
def test_parse_blocks_formats(tmp_path: Path) -> None:
    text = ("Intro.\n\nFile: src/a.c\n<<<<<<< SEARCH\nint a;\n=======\nint a = 1;\n"
            ">>>>>>> REPLACE\n\n```c src/b.c\n<<<<<<< SEARCH\nx\n=======\ny\n>>>>>>> REPLACE\n"
            "```\n<<<<<<< SEARCH\nz\n=======\nw\n>>>>>>> REPLACE\n\n**src/c.h**\n```\n"
            "<<<<<<< SEARCH\n=======\n#pragma once\n>>>>>>> REPLACE\n```\n")
    blocks = parse_blocks(text)
    assert [(b.path, b.search, b.replace) for b in blocks] == [
        ("src/a.c", "int a;\n", "int a = 1;\n"), ("src/b.c", "x\n", "y\n"),
        ("src/b.c", "z\n", "w\n"), ("src/c.h", "", "#pragma once\n")]
    (tmp_path / "src").mkdir()
    (tmp_path / "src/a.c").write_text("int a;\nint b;\n")
    (tmp_path / "src/b.c").write_text("x\nz\n")
    assert apply_edits(tmp_path, text) == ["src/a.c", "src/b.c", "src/c.h"]
    assert (tmp_path / "src/b.c").read_text() == "y\nw\n"
    assert (tmp_path / "src/c.h").read_text() == "#pragma once\n"


def test_search_whitespace_insensitive_and_errors(tmp_path: Path) -> None:
    (tmp_path / "f.py").write_text("def f():\n    if x:\n        return  1\n    return 2\n")
    edit = ("f.py\n<<<<<<< SEARCH\nif x:\n    return 1\n=======\nif x:\n    return 3\n"
            ">>>>>>> REPLACE\n")
    assert apply_edits(tmp_path, edit) == ["f.py"]
    assert (tmp_path / "f.py").read_text() == (
        "def f():\n    if x:\n        return 3\n    return 2\n")
    missing = "f.py\n<<<<<<< SEARCH\n  nothing like it\n=======\nx\n>>>>>>> REPLACE\n"
    with pytest.raises(EditError, match=r"f\.py.*'nothing like it'"):
        apply_edits(tmp_path, missing)
    (tmp_path / "g.c").write_text("a;\na;\n")
    with pytest.raises(EditError, match=r"g\.c: SEARCH matches 2 places"):
        apply_edits(tmp_path, "g.c\n<<<<<<< SEARCH\na;\n=======\nb;\n>>>>>>> REPLACE\n")
    with pytest.raises(EditError, match="not a path inside"):
        apply_edits(tmp_path, "../x.c\n<<<<<<< SEARCH\n=======\nb\n>>>>>>> REPLACE\n")
    with pytest.raises(EditError, match="no SEARCH/REPLACE block and no unified diff"):
        apply_edits(tmp_path, "I would unroll the loop.")


def test_unified_diff_bare_and_fallback(target: Path) -> None:
    bare = ("Here:\n--- src/params.h\n+++ src/params.h\n@@ -1,2 +1,2 @@\n"
            "-#define WORK 6000000L\n+#define WORK 5000000L\n #define SCALE 1.0\nThat's it.\n")
    assert extract_diff(bare) is not None and "That's it" not in (extract_diff(bare) or "")
    assert apply_edits(target, bare) == ["src/params.h"]
    assert "5000000L" in (target / "src/params.h").read_text()
    # wrong line numbers and a missing context space: git refuses, the hunk match does not
    sloppy = ("```diff\n--- a/src/params.h\n+++ b/src/params.h\n@@ -40,2 +40,2 @@\n"
              "-#define WORK 5000000L\n+#define WORK 4000000L\n#define SCALE 1.0\n```\n")
    assert apply_edits(target, sloppy) == ["src/params.h"]
    assert "4000000L" in (target / "src/params.h").read_text()


def test_extract_json_and_prices() -> None:
    assert extract_json('x ```json\n{"a": 1}\n``` y') == {"a": 1}
    assert extract_json('Answer: {"a": {"b": 2}} trailing') == {"a": {"b": 2}}
    assert extract_json('use {braces} then {"ok": true}') == {"ok": True}
    with pytest.raises(ValueError):
        extract_json("no json here")
    assert visible_text("<think>{draft}</think>\n{\"a\": 1}") == '{"a": 1}'
    cfg: Any = type("C", (), {"price_input_per_mtok": None, "price_output_per_mtok": None})
    assert price_of("gpt-4o-mini-2024-07-18", cfg) == PRICES["gpt-4o-mini"]
    assert price_of("gpt-4o-2024-08-06", cfg) == (2.5, 10.0)
    assert price_of("claude-sonnet-4-20250514", cfg) == (3.0, 15.0)
    assert price_of("mystery", cfg) is None
