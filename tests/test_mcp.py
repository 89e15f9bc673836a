"""`readfirst mcp` end to end: the real server over stdio, driven by the official SDK client, on
real temp repos (tests/conftest.py's tiny C target: halving WORK is a real ~2x speedup)."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from conftest import BASE_WORK, GIT_ENV, git, params, write

pytest.importorskip("mcp")

from mcp.client.session import ClientSession  # noqa: E402
from mcp.client.stdio import StdioServerParameters, stdio_client  # noqa: E402

from readfirst.frontends.mcp_server import TOOL_NAMES  # noqa: E402

Body = Callable[["Client"], Awaitable[None]]


class Client:
    """A thin wrapper: `call` returns the tool's JSON, `error` the text of a tool error."""

    def __init__(self, session: ClientSession) -> None:
        self.session = session

    async def _raw(self, tool: str, args: dict[str, Any] | None) -> Any:
        return await self.session.call_tool(tool, args or {})

    async def call(self, tool: str, **args: Any) -> dict[str, Any]:
        res = await self._raw(tool, args)
        text = res.content[0].text if res.content else ""
        assert not res.is_error, f"{tool} failed: {text}"
        data = res.structured_content
        return data if isinstance(data, dict) else json.loads(text)

    async def error(self, tool: str, **args: Any) -> str:
        res = await self._raw(tool, args)
        assert res.is_error, f"{tool} should have failed: {res.content}"
        text: str = res.content[0].text
        assert "\n" not in text
        return text


def drive(target: Path, body: Body, args: list[str] | None = None) -> None:
    """Start the server for `target`, initialise a session and run `body` against it."""
    params_ = StdioServerParameters(
        command=sys.executable,
        args=args or ["-m", "readfirst.frontends.mcp_server", "-C", str(target)],
        env=GIT_ENV,
    )

    async def main() -> None:
        async with stdio_client(params_) as (read, write_), \
                ClientSession(read, write_) as session:
            await session.initialize()
            await body(Client(session))

    asyncio.run(main())


def log(target: Path) -> list[str]:
    return git(target, "log", "--format=%s").splitlines()


def test_tools_listed_and_a_worktree_speedup_is_kept(target: Path) -> None:
    async def body(c: Client) -> None:
        tools = await c.session.list_tools()
        names = {t.name for t in tools.tools}
        assert names >= set(TOOL_NAMES)
        assert all(t.description for t in tools.tools)

        write(target, "src/params.h", params(BASE_WORK // 2))
        r = await c.call("run_experiment", title="Halve the work")
        assert r["verdict"] == "improved", r["reason"]
        assert r["kind"] == "worktree" and r["ratio"] < 0.8
        exp = r["experiment_id"]
        write(target, "src/extra.h", "/* changed after measuring */\n")
        assert "changed since it was measured" in await c.error("keep", experiment_id=exp)
        (target / "src/extra.h").unlink()
        kept = await c.call("keep", experiment_id=exp)
        assert "already kept" in await c.error("keep", experiment_id=exp)
        head = git(target, "rev-parse", "HEAD")
        assert kept["commit"] == head and kept["branch"]
        status = (await c.call("status"))["mcp_experiments"]
        assert [(e["id"], e["status"], e["commit"]) for e in status] == [(exp, "kept", head)]

    drive(target, body)
    assert log(target) == ["Halve the work", "base"]
    message = git(target, "log", "-1", "--format=%B")
    assert "time_ms" in message and "CI" in message and "readfirst experiment 1" in message
    assert git(target, "show", "HEAD:src/params.h") == params(BASE_WORK // 2).strip()
    assert git(target, "status", "--porcelain") == ""


def test_regression_is_refused_then_discarded_into_a_stash(target: Path) -> None:
    async def body(c: Client) -> None:
        assert "no uncommitted changes" in await c.error("run_experiment")
        write(target, "src/params.h", params(BASE_WORK * 2))
        write(target, "src/notes.txt", "an untracked file\n")
        r = await c.call("run_experiment", title="Double the work")
        assert r["verdict"] == "regressed", r["reason"]
        msg = await c.error("keep", experiment_id=r["experiment_id"])
        assert "'regressed'" in msg and "not 'improved'" in msg
        assert "no experiment 99" in await c.error("keep", experiment_id=99)
        assert "experiment_id" in await c.error("keep", experiment_id="x")  # one line too
        d = await c.call("discard", experiment_id=r["experiment_id"])
        assert d["stash"] == "stash@{0}" and "stashed as stash@{0}" in d["message"]
        rows = (await c.call("status"))["mcp_experiments"]
        assert rows[0]["status"] == "discarded" and rows[0]["verdict"] == "regressed"
        report = await c.call("report")
        md = Path(report["paths"][-1])
        assert md.parent == target / ".readfirst/reports/mcp"
        assert "Double the work" in md.read_text()

    drive(target, body)
    assert log(target) == ["base"]
    assert "readfirst discard 1" in git(target, "stash", "list")
    assert git(target, "status", "--porcelain") == ""
    git(target, "stash", "pop")  # recoverable: both files come back
    assert (target / "src/params.h").read_text() == params(BASE_WORK * 2)
    assert (target / "src/notes.txt").exists()


def _patch(target: Path, work: int) -> str:
    """A unified diff of src/params.h to `work`, made without touching the user's tree."""
    old = (target / "src/params.h").read_text().splitlines()
    new = params(work).splitlines()
    body = "".join(f"-{a}\n+{b}\n" if a != b else f" {a}\n" for a, b in zip(old, new, strict=True))
    return (f"diff --git a/src/params.h b/src/params.h\n--- a/src/params.h\n"
            f"+++ b/src/params.h\n@@ -1,{len(old)} +1,{len(new)} @@\n{body}")


def test_patch_experiment_measured_in_a_scratch_worktree_then_kept(target: Path) -> None:
    patch = _patch(target, BASE_WORK // 2)

    async def body(c: Client) -> None:
        assert "does not apply" in await c.error("run_experiment", patch="garbage\n")
        r = await c.call("run_experiment", patch=patch, title="Halve the work (patch)")
        assert r["verdict"] == "improved", r["reason"]
        assert r["kind"] == "patch"
        assert git(target, "status", "--porcelain") == ""  # measured elsewhere
        write(target, "scratch.txt", "dirty\n")
        assert "uncommitted changes" in await c.error("keep", experiment_id=r["experiment_id"])
        (target / "scratch.txt").unlink()
        kept = await c.call("keep", experiment_id=r["experiment_id"])
        assert kept["commit"] == git(target, "rev-parse", "HEAD")
        assert "warning" not in kept

    drive(target, body)
    assert log(target) == ["Halve the work (patch)", "base"]
    assert (target / "src/params.h").read_text() == params(BASE_WORK // 2)
    assert git(target, "status", "--porcelain") == ""


def test_research_tools_offline(target: Path) -> None:
    papers = target / "papers"
    write(target, "papers/summation.md", "# Fast summation loops\nLoop unrolling for sums.\n")
    write(target, "readfirst.toml", (target / "readfirst.toml").read_text()
          + '\n[research]\npapers_dir = "papers"\n')
    git(target, "add", "-A")
    git(target, "commit", "-q", "-m", "papers")

    async def body(c: Client) -> None:
        r = await c.call("research", offline=True)
        assert set(r) >= {"hypotheses", "references", "diagnosis", "brief", "notes"}
        assert isinstance(r["hypotheses"], list) and Path(r["brief"]).is_file()
        assert all({"rank", "title", "kind", "score"} <= set(h) for h in r["hypotheses"])
        p = await c.call("search_papers", query="summation loop unrolling")
        assert [x["id"] for x in p["papers"]] == ["file:papers/summation.md"]
        assert p["papers"][0]["found_by"] == ["papers_dir"]
        assert any("offline" in n for n in p["notes"])  # arXiv/S2: nothing cached
        d = await c.call("profile")
        assert {"conclusion", "hotspots", "top_functions", "notes"} <= set(d)
        gaps = await c.call("backend_gaps")
        assert gaps["hypotheses"] == [] and gaps["notes"]
        assert "no competitors configured" in await c.error("fork_commits")
        s = await c.call("status")
        assert s == {"mcp_experiments": [], "loop_run": None}
        assert "nothing to report" in await c.error("report")

    assert papers.is_dir()
    drive(target, body)


def test_status_and_report_include_the_latest_loop_run(target: Path) -> None:
    from readfirst.core.candidate import Candidate
    from readfirst.store.journal import Journal
    from readfirst.store.loop_journal import LoopLog

    head = git(target, "rev-parse", "HEAD")
    (target / ".readfirst").mkdir()
    journal = Journal(target / ".readfirst/journal.db")
    loop = LoopLog(journal)
    loop.create("r1", target, "readfirst/r1", head, {"proposer": "patches", "workers": 1})
    cand = Candidate("patch:a", "Try A", "", "diff", "patches")
    exp = loop.start_experiment("r1", 1, "explore", cand, head, "w0")
    loop.finish_experiment(exp, "finished", verdict="no_change", outcome="discarded",
                           result={"ratio": 1.001, "ci_low": 0.99, "ci_high": 1.01})
    loop.finish("r1", "done", "no candidates left")
    journal.close()

    async def body(c: Client) -> None:
        s = await c.call("status")
        assert s["loop_run"]["run_id"] == "r1"
        [row] = s["loop_run"]["experiments"]
        assert row["title"] == "Try A" and row["verdict"] == "no_change"
        paths = (await c.call("report"))["paths"]
        assert [Path(p).name for p in paths] == ["report.md", "report.html"]
        assert all(Path(p).parent == target / ".readfirst/reports/r1" for p in paths)

    drive(target, body)


def test_fork_commits_lists_a_competitors_divergent_commits(target: Path, tmp_path: Path) -> None:
    fork = tmp_path / "fork"
    subprocess.run(["git", "clone", "-q", str(target), str(fork)], check=True)
    write(fork, "src/params.h", params(BASE_WORK // 2))
    git(fork, "commit", "-q", "-am", "Halve the work: 2x faster")
    write(target, "readfirst.toml", (target / "readfirst.toml").read_text()
          + f'\n[research]\ncompetitors = ["{fork}"]\n')
    git(target, "commit", "-q", "-am", "competitor")

    async def body(c: Client) -> None:
        r = await c.call("fork_commits")
        [row] = r["commits"]
        assert row["competitor"] == "fork" and row["title"] == "Halve the work: 2x faster"
        assert row["id"] == f"fork:fork@{row['sha'][:12]}" and row["files"] == ["src/params.h"]
        assert "'faster'" in row["perf_cues"]

    drive(target, body)


def test_click_command_serves_and_bad_directory_is_a_one_line_error(target: Path,
                                                                   tmp_path: Path) -> None:
    async def body(c: Client) -> None:
        names = {t.name for t in (await c.session.list_tools()).tools}
        assert names >= set(TOOL_NAMES)

    code = "from readfirst.frontends.agent_cli_commands import mcp; mcp()"
    drive(target, body, ["-c", code, "-C", str(target)])
    proc = subprocess.run([sys.executable, "-m", "readfirst.frontends.mcp_server", "-C",
                           str(tmp_path / "nowhere")], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert proc.stderr.strip().startswith("readfirst: error:")
    assert len(proc.stderr.strip().splitlines()) == 1
