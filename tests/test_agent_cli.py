"""The `agent-cli` proposer against stand-in `claude`, `codex` and `aider` executables
(tests/data/agents/) that parse their argv like the real CLIs and edit the worktree."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from conftest import git, make_target

from readfirst.core.config import load_spec
from readfirst.core.config_tables import AgentConfig
from readfirst.core.errors import BudgetExceeded
from readfirst.measure.sandbox import probe
from readfirst.proposers.agent_cli import CLIAgentProposer, agent_command
from readfirst.proposers.base import ProposerContext
from readfirst.research import Hypothesis, Site
from readfirst.research.brief import ResearchStore
from readfirst.research.run import ResearchResult
from readfirst.store.journal import Journal
from readfirst.vcs.apply import apply_candidate
from readfirst.vcs.workspace import Workspace

AGENTS = Path(__file__).parent / "data" / "agents"


@pytest.fixture
def agents(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The stand-ins, executable, first on PATH; returns the log file they append to."""
    bin_dir = tmp_path / "bin"
    shutil.copytree(AGENTS, bin_dir)
    for name in ("claude", "codex", "aider"):
        (bin_dir / name).chmod(0o755)
    path = os.pathsep.join([str(bin_dir), str(Path(sys.executable).parent), os.environ["PATH"]])
    monkeypatch.setenv("PATH", path)
    log = tmp_path / "agent-calls.jsonl"
    monkeypatch.setenv("FAKE_AGENT_LOG", str(log))
    monkeypatch.setenv("FAKE_AGENT_MODE", "halve")
    return log


@pytest.fixture
def target(tmp_path: Path):
    """A target whose own working tree and HEAD must be the same after every test."""
    root = make_target(tmp_path / "target")
    before = (git(root, "status", "--porcelain"), git(root, "rev-parse", "HEAD"),
              (root / "src/params.h").read_text())
    yield root
    after = (git(root, "status", "--porcelain"), git(root, "rev-parse", "HEAD"),
             (root / "src/params.h").read_text())
    assert after == before


FAKE_ENV = ["FAKE_AGENT_LOG", "FAKE_AGENT_MODE", "FAKE_AGENT_PIDFILE", "FAKE_COST"]


def _cfg(**kw: Any) -> AgentConfig:
    """A stand-in's config: the agent's environment is an allow-list, so the variables the
    stand-ins read are named in `[agent] env`."""
    return AgentConfig(**{"env": FAKE_ENV, **kw})


def context(root: Path, sandbox: bool = False, **kw: object) -> ProposerContext:
    """The proposer's logic is tested unsandboxed (the stand-ins log to a file outside their
    worktree); the sandboxed runs are tested on their own below."""
    spec = load_spec(root)
    spec = spec.model_copy(update={"target": spec.target.model_copy(update={"sandbox": sandbox})})
    return ProposerContext(repo=root, root=root, rel="", baseline=git(root, "rev-parse", "HEAD"),
                           spec=spec, state_dir=root / ".readfirst", **kw)  # type: ignore[arg-type]


def calls(log: Path) -> list[dict]:
    return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


def applied(root: Path, tmp_path: Path, cand) -> Path:  # noqa: ANN001
    """The candidate applied to the baseline in a fresh worktree."""
    wt = tmp_path / "check"
    git(root, "worktree", "add", "-q", "--detach", str(wt), "HEAD")
    apply_candidate(wt, git(root, "rev-parse", "HEAD"), cand)
    return wt


def save_research(root: Path, titles: list[str], failed: tuple[int, ...] = ()) -> None:
    Workspace(root).ensure()
    journal = Journal(root / ".readfirst" / "journal.db")
    store = ResearchStore(journal)
    hyps = [Hypothesis(t, "paper", f"why {t}", [Site("src/prog.c", 14, "main")], [f"ref:{i}"],
                       "2x", 1.0 - i / 10) for i, t in enumerate(titles)]
    rid = store.save(ResearchResult(None, hyps, [], []), offline=True, baseline=None)
    for rank in failed:
        hid = store.hypotheses(rid)[rank]["id"]
        store.set_status(hid, "failed", "slower", 0.0)
    journal.close()


@pytest.mark.parametrize("kind", ["claude-code", "codex", "aider"])
def test_cli_agent_edits_become_a_candidate(kind: str, target: Path, agents: Path,
                                            tmp_path: Path) -> None:
    prop = CLIAgentProposer(_cfg(kind=kind, model="m-1"))
    cands = prop.propose(context(target))
    assert prop.skipped == [] and len(cands) == 1
    cand = cands[0]
    assert cand.id.startswith(f"agent:{kind}:") and len(cand.id.split(":")[-1]) == 12
    assert cand.title == "Make time_ms better" and cand.source == "agent"
    assert cand.provenance == (f"agent:{kind}",)
    assert "src/params.h" in cand.diff and "autoresearch" not in cand.diff
    wt = applied(target, tmp_path, cand)
    assert "WORK 3000000L" in (wt / "src/params.h").read_text()
    (call,) = calls(agents)
    assert call["prompt_file_matches"]
    assert Path(call["cwd"]) == Path(call["worktree"]) == (
        target / ".readfirst" / "worktrees" / "agent").resolve()
    assert "--model" in call["argv"] and "m-1" in call["argv"]
    logs = target / ".readfirst" / "agent" / "adhoc"
    assert (logs / "1.prompt.md").is_file() and (logs / "1.out").is_file()
    assert (logs / "1.err").is_file()
    if kind == "claude-code":
        assert call["argv"][call["argv"].index("--output-format") + 1] == "json"
        assert "--permission-mode" in call["argv"]
        assert prop.spent_usd == pytest.approx(0.12)
        assert "Agent (claude-code): Halved WORK" in cand.rationale
    else:
        assert prop.spent_usd == 0.0
    if kind == "aider":
        assert {"--yes-always", "--no-auto-commits"} <= set(call["argv"])


def test_commands_quote_nothing_from_the_prompt() -> None:
    cmd = agent_command(_cfg(kind="claude-code"))
    assert cmd.startswith('claude -p "$READFIRST_PROMPT" --output-format json')
    assert "--model" not in cmd
    assert agent_command(_cfg(kind="codex", model="o3; rm -rf /")).endswith(
        "--model 'o3; rm -rf /' \"$READFIRST_PROMPT\"")
    assert agent_command(_cfg(kind="command", command="./go.sh")) == "./go.sh"


def test_command_kind_reads_the_prompt_file(target: Path, agents: Path, tmp_path: Path) -> None:
    cmd = ("grep -q '^## Rules' \"$READFIRST_PROMPT_FILE\""
           " && test \"$PWD\" = \"$READFIRST_WORKTREE\""
           " && sed -i 's/WORK 6000000L/WORK 2000000L/' src/params.h")
    prop = CLIAgentProposer(_cfg(kind="command", command=cmd))
    (cand,) = prop.propose(context(target, run_id="r7"))
    assert cand.id.startswith("agent:command:")
    assert "WORK 2000000L" in (applied(target, tmp_path, cand) / "src/params.h").read_text()
    assert (target / ".readfirst" / "agent" / "r7" / "1.prompt.md").is_file()


def test_agent_editing_a_protected_file_is_refused(target: Path, agents: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKE_AGENT_MODE", "protected")
    prop = CLIAgentProposer(_cfg(kind="claude-code"))
    assert prop.propose(context(target)) == []
    ((cid, title, reason),) = prop.skipped
    assert cid == "agent:claude-code:generic" and title == "Make time_ms better"
    assert reason == "refused: changes protected files: autoresearch.sh"


def test_out_of_scope_change_is_refused(target: Path, agents: Path) -> None:
    prop = CLIAgentProposer(_cfg(kind="command", command="echo x >> Makefile"))
    assert prop.propose(context(target)) == []
    assert prop.skipped[0][2] == "refused: changes files outside scope: Makefile"


def test_agent_that_changes_nothing_is_skipped(target: Path, agents: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKE_AGENT_MODE", "nothing")
    prop = CLIAgentProposer(_cfg(kind="codex"))
    assert prop.propose(context(target)) == []
    assert prop.skipped[0][2] == "the agent changed nothing"


def test_failing_agent_is_skipped_with_its_output(target: Path, agents: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKE_AGENT_MODE", "fail")
    prop = CLIAgentProposer(_cfg(kind="aider"))
    assert prop.propose(context(target)) == []
    reason = prop.skipped[0][2]
    assert reason.startswith("agent exited with code 3 and changed nothing:")
    assert "thinking..." in reason and "error: model overloaded" in reason


def test_hanging_agent_is_killed(target: Path, agents: Path, tmp_path: Path,
                                 monkeypatch: pytest.MonkeyPatch) -> None:
    pidfile = tmp_path / "agent.pid"
    monkeypatch.setenv("FAKE_AGENT_MODE", "hang")
    monkeypatch.setenv("FAKE_AGENT_PIDFILE", str(pidfile))
    prop = CLIAgentProposer(_cfg(kind="claude-code", timeout=2))
    assert prop.propose(context(target)) == []
    assert prop.skipped[0][2] == "agent timed out after 2s"
    pid = int(pidfile.read_text())
    while _alive(pid):  # SIGKILL was sent; the kernel ends it at once, however busy
        time.sleep(0.05)
    # The slot is usable again, and reset: the next run starts from the baseline.
    monkeypatch.setenv("FAKE_AGENT_MODE", "halve")
    assert len(prop.propose(context(target))) == 1


def _alive(pid: int) -> bool:
    """Running (a zombie waiting to be reaped counts as gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def test_commits_by_the_agent_are_still_taken(target: Path, agents: Path, tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKE_AGENT_MODE", "commit")
    (cand,) = CLIAgentProposer(_cfg(kind="codex")).propose(context(target))
    assert "WORK 3000000L" in (applied(target, tmp_path, cand) / "src/params.h").read_text()


def test_budget(target: Path, agents: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    save_research(target, ["A", "B", "C"])
    monkeypatch.setenv("FAKE_COST", "0.15")
    prop = CLIAgentProposer(_cfg(kind="claude-code", max_cost_usd=0.25))
    cands = prop.propose(context(target))  # two runs reach the cap; the third never starts
    assert [c.title for c in cands] == ["A", "B"]
    assert prop.spent_usd == pytest.approx(0.30) and len(calls(agents)) == 2
    with pytest.raises(BudgetExceeded, match="max_cost_usd"):
        prop.propose(context(target))
    assert len(calls(agents)) == 2


def test_research_hypotheses_and_history_in_the_prompt(target: Path, agents: Path) -> None:
    save_research(target, ["Tile the loop", "Use SIMD", "Unroll", "Prefetch"], failed=(1,))
    (target / ".readfirst" / "research").mkdir()
    (target / ".readfirst" / "research" / "brief.md").write_text("# Research brief\n" + "x" * 9000)
    history = [{"title": f"old {i}", "verdict": "no_change", "reason": f"r{i}"}
               for i in range(40)]
    history.append({"title": "Prefetch", "verdict": "regressed", "reason": ""})
    prop = CLIAgentProposer(_cfg(kind="claude-code", max_hypotheses=1))
    ctx = context(target, history=history)
    (cand,) = prop.propose(ctx)
    assert cand.title == "Tile the loop" and cand.provenance == ("agent:claude-code", "ref:0")
    assert cand.rationale.startswith("why Tile the loop")
    prompt = (target / ".readfirst" / "agent" / "adhoc" / "1.prompt.md").read_text()
    assert "## Hypothesis: Tile the loop" in prompt and "src/prog.c:14 (main)" in prompt
    assert "[... truncated]" in prompt and str(target / ".readfirst/research/brief.md") in prompt
    assert "- old 39 -> no_change (r39)" in prompt and "- old 11 -> no_change (r11)" in prompt
    assert "- old 10 -> " not in prompt and "- Prefetch -> regressed\n" in prompt
    assert "Change only files matching: src/**" in prompt
    for protected in ("autoresearch.sh", "autoresearch.checks.sh", "tests/**", "readfirst.toml"):
        assert protected in prompt
    assert "Do not run the benchmark and do not commit" in prompt
    # Asked again: the next open one ("Use SIMD" failed, "Prefetch" was tried), then none left.
    assert [c.title for c in prop.propose(ctx)] == ["Unroll"]
    assert prop.propose(ctx) == [] and len(calls(agents)) == 2


def test_repair_reruns_the_agent_on_the_candidate(target: Path, agents: Path, tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    prop = CLIAgentProposer(_cfg(kind="claude-code"))
    ctx = context(target)
    (cand,) = prop.propose(ctx)
    monkeypatch.setenv("FAKE_AGENT_MODE", "fix")
    fixed = prop.repair(ctx, cand, "crash", "cc: error: FIXED undeclared", 1)
    assert fixed is not None and fixed.id == cand.id + "-r1"
    assert fixed.provenance == cand.provenance and prop.spent_usd == pytest.approx(0.24)
    params = (applied(target, tmp_path, fixed) / "src/params.h").read_text()
    assert "WORK 3000000L" in params and "#define FIXED 1" in params
    prompt = (target / ".readfirst" / "agent" / "adhoc" / "2.prompt.md").read_text()
    assert "It failed: crash" in prompt and "cc: error: FIXED undeclared" in prompt
    monkeypatch.setenv("FAKE_AGENT_MODE", "nothing")
    assert prop.repair(ctx, fixed, "crash", "still", 2) is None
    assert prop.repair_note == "the agent changed nothing"
    assert prop.review(ctx, fixed) == (True, "no review for CLI agents")


def test_target_in_a_subdirectory(tmp_path: Path, agents: Path,
                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FAKE_AGENT_LOG")  # sandboxed (when bwrap works): its log is out of reach
    repo = make_target(tmp_path / "mono")
    root = repo / "bench"
    root.mkdir()
    names = [p.name for p in repo.iterdir() if p.name not in (".git", "bench", ".gitignore")]
    git(repo, "mv", *names, "bench/")
    git(repo, "commit", "-qm", "move into bench/")
    ctx = ProposerContext(repo=repo, root=root, rel="bench",
                          baseline=git(repo, "rev-parse", "HEAD"), spec=load_spec(root),
                          state_dir=root / ".readfirst")
    (cand,) = CLIAgentProposer(_cfg(kind="codex")).propose(ctx)
    assert "bench/src/params.h" in cand.diff
    assert git(repo, "status", "--porcelain") == ""


def test_agent_droppings_are_not_part_of_the_change(target: Path, agents: Path) -> None:
    cmd = ("echo chat > .aider.chat.history.md && mkdir -p .aider.tags.cache.v4"
           " && echo x > .aider.tags.cache.v4/t && echo '#define X 1' >> src/params.h")
    (cand,) = CLIAgentProposer(_cfg(kind="command", command=cmd)).propose(context(target))
    assert ".aider" not in cand.diff and "#define X 1" in cand.diff


@pytest.mark.skipif(probe() is not None, reason=f"no usable sandbox: {probe()}")
def test_a_hostile_agent_is_held(target: Path, agents: Path,
                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """It writes past its worktree and looks for the other provider's key; it keeps its own."""
    other = "sk-other-" + uuid.uuid4().hex
    monkeypatch.setenv("OPENAI_API_KEY", "sk-own-" + uuid.uuid4().hex)  # codex's own key
    monkeypatch.setenv("ANTHROPIC_API_KEY", other)
    monkeypatch.setenv("FAKE_AGENT_MODE", "escape")
    monkeypatch.setenv("FAKE_OWN_KEY", "OPENAI_API_KEY")
    monkeypatch.setenv("FAKE_OTHER_KEY_NAME", "ANTHROPIC_API_KEY")
    monkeypatch.setenv("FAKE_OTHER_KEY_SHA256", hashlib.sha256(other.encode()).hexdigest())
    monkeypatch.delenv("FAKE_AGENT_LOG")
    save_research(target, ["Halve the work"])
    journal = (target / ".readfirst" / "journal.db").read_bytes()
    config = (target / ".git" / "config").read_bytes()
    refs = git(target, "for-each-ref")
    env = [*FAKE_ENV, "FAKE_OWN_KEY", "FAKE_OTHER_KEY_NAME", "FAKE_OTHER_KEY_SHA256"]
    (cand,) = CLIAgentProposer(_cfg(kind="codex", env=env)).propose(context(target, True))
    assert "WORK 3000000L" in cand.diff  # it did its job
    out = (target / ".readfirst" / "agent" / "adhoc" / "1.out").read_text()
    seen = json.loads(out.splitlines()[0])
    assert seen["own_key"] == "present" and seen["other_key_env"] == "absent"
    assert seen["prompt_readable"] == "True"
    # held: nothing outside its worktree changes, no process it can see shows the key
    assert seen == {**seen, "checkout": "held", "git_config": "held", "ref": "held",
                    "other_key_proc": "absent"}
    # and the real files are as they were (the fixture checks the user's checkout)
    assert (target / ".readfirst" / "journal.db").read_bytes() == journal
    assert (target / ".git" / "config").read_bytes() == config
    assert git(target, "for-each-ref") == refs
    assert other not in out


def test_without_the_sandbox_the_agent_still_gets_only_its_own_key(
        target: Path, agents: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-own-" + uuid.uuid4().hex)
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-other-" + uuid.uuid4().hex)
    monkeypatch.setenv("GITHUB_TOKEN", "ghp-" + uuid.uuid4().hex)
    cmd = ('test -n "$OPENAI_API_KEY" && test -z "$ANTHROPIC_API_KEY$GITHUB_TOKEN"'
           " && sed -i 's/WORK 6000000L/WORK 2000000L/' src/params.h")
    cfg = _cfg(kind="command", command=cmd, api_key_env="OPENAI_API_KEY")
    (cand,) = CLIAgentProposer(cfg).propose(context(target, sandbox=False))
    assert "WORK 2000000L" in cand.diff
