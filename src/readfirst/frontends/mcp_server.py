"""`readfirst mcp`: readfirst as the toolbox of a coding agent, over MCP (stdio, official SDK).

The agent edits code; readfirst does the homework (research, papers, forks, sibling backends,
the diagnosis) and the trustworthy measurement (`compare` of HEAD against the agent's
uncommitted change, or against a patch applied in the scratch worktree slot `mcp`). Every
experiment is recorded in the journal table `mcp_experiments`. Only `keep` and `discard` touch
the user's working tree, and only because the agent asks for it explicitly.

Run it as `readfirst mcp -C DIR` or `python -m readfirst.frontends.mcp_server -C DIR`.
"""

from __future__ import annotations

import argparse
import functools
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.types import CallToolResult

from readfirst.core.errors import ConfigError, ReadfirstError
from readfirst.frontends.mcp_experiments import ExperimentTools, ToolFailure, one_line
from readfirst.measure.process import kill_all_live
from readfirst.research import Finding, ResearchContext
from readfirst.research.history import commit_patches, perf_cues, skip_notes
from readfirst.research.orchestrate import research_target
from readfirst.research.papers import merge_papers
from readfirst.research.run import load_source
from readfirst.vcs import gitcli
from readfirst.vcs.apply import ApplyError
from readfirst.vcs.competitors import DEFAULT_MAX_COMMITS, competitors_for, fetch, list_fork_commits

PAPER_SOURCES = ("arxiv", "semantic_scholar", "papers_dir")
TOOL_NAMES = ("research", "search_papers", "fork_commits", "backend_gaps", "profile",
              "run_experiment", "keep", "discard", "status", "report")
INSTRUCTIONS = (
    "readfirst: research first (research, profile, fork_commits, backend_gaps, search_papers), "
    "then one hypothesis per experiment: edit the code, run_experiment, keep only 'improved' "
    "(keep), discard the rest (discard). Never edit the benchmark, checks or protected files."
)


class Toolbox(ExperimentTools):
    """The tools, as plain methods over one target (the MCP layer only wraps them): the
    research tools here, the experiment tools in mcp_experiments.py."""

    # --- helpers ---------------------------------------------------------------------------

    def _run_source(self, name: str, ctx: ResearchContext) -> Finding:
        return load_source(name).run(ctx)

    # --- research --------------------------------------------------------------------------

    def research(self, offline: bool = True, profile: bool = False) -> dict[str, Any]:
        """Run all research sources and write the brief: ranked hypotheses (port a fork's
        commit, a sibling backend's fusion, fewer passes over memory, paper ideas), their
        references, the diagnosis when profile=true, and the brief's path. offline=true uses
        local sources and caches only."""
        if not profile:
            return research_target(self.target, self._spec(), offline=offline,
                                   profile=False).to_dict()
        with self._exclusive():  # profiling runs the benchmark
            return research_target(self.target, self._spec(), offline=offline,
                                   profile=True).to_dict()

    def search_papers(self, query: str, offline: bool = True) -> dict[str, Any]:
        """Search arXiv, Semantic Scholar and the local papers_dir for an explicit query;
        papers ranked by relevance, deduplicated. offline=true answers from the cache only."""
        if not query.strip():
            raise ToolFailure("query is empty")
        spec = self._spec()
        spec = spec.model_copy(update={"research": {**spec.research, "topics": [query]}})
        ctx = self._ctx(offline, spec)
        ctx.keywords = [query]
        findings = [self._run_source(name, ctx) for name in PAPER_SOURCES]
        papers, renamed = merge_papers([r for f in findings for r in f.references])
        found_by: dict[str, set[str]] = {}
        best: dict[str, float] = {}
        for f in findings:
            for r in f.references:
                found_by.setdefault(renamed.get(r.id, r.id), set()).add(f.source)
            for h in f.hypotheses:
                pid = renamed.get(h.sources[0], h.sources[0])
                best[pid] = max(best.get(pid, 0.0), h.score)
        papers.sort(key=lambda r: -best.get(r.id, 0.0))  # stable: each source's order
        return {"query": query, "offline": offline,
                "papers": [{**r.to_dict(), "year": getattr(r, "year", None),
                            "pdf": getattr(r, "pdf_url", None), "relevance": best.get(r.id),
                            "found_by": sorted(found_by.get(r.id, ()))} for r in papers],
                "notes": [n for f in findings for n in f.notes]}

    def fork_commits(self) -> dict[str, Any]:
        """The commits competing forks have and HEAD lacks ([research] competitors and the
        forks research discovered): id, title, competitor, sha, performance cues. See one
        with `git show <sha>`; port it as your change, then run_experiment. Commits git cannot
        give a readable patch of are under `skipped`, each with its reason."""
        spec, repo, head = self._spec(), self.target.repo, self._head()
        self.ws.ensure()
        comps = competitors_for(spec.research, self.target.root, self.ws.state)
        cap = spec.research.get("max_fork_commits", DEFAULT_MAX_COMMITS)
        commits: list[dict[str, Any]] = []
        skipped: list[dict[str, Any]] = []
        notes: list[str] = []
        for comp in comps:
            try:
                fetch(repo, comp)
            except (gitcli.GitError, UnicodeDecodeError) as e:
                have = gitcli.git(repo, "rev-parse", "--verify", "--quiet", comp.ref, check=False)
                notes.append(f"{comp.name}: fetch failed ({one_line(e)})"
                             + ("; listing the earlier fetch" if have else ""))
                if not have:
                    continue
            try:
                found, _shared = list_fork_commits(repo, head, comp.ref)
            except gitcli.GitError as e:  # this fork's listing, not the others'
                notes.append(f"{comp.name}: cannot list its commits ({one_line(e)})")
                continue
            found = found[:cap] if isinstance(cap, int) else found
            patches = commit_patches(repo, [c.sha for c in found])
            notes += skip_notes(comp.name, patches.skipped)
            for c in found:
                if c.sha in patches.skipped:  # git cannot give its patch: say why, go on
                    skipped.append({"id": f"fork:{comp.name}@{c.sha[:12]}", "sha": c.sha,
                                    "title": c.subject or c.sha[:12], "competitor": comp.name,
                                    "reason": patches.skipped[c.sha]})
                    continue
                diffs = patches.get(c.sha, [])
                commits.append({
                    "id": f"fork:{comp.name}@{c.sha[:12]}", "title": c.subject or c.sha[:12],
                    "competitor": comp.name, "sha": c.sha,
                    "perf_cues": perf_cues(f"{c.subject}\n{c.body}",
                                           [ln for d in diffs for ln in d.added],
                                           [ln for d in diffs for ln in d.removed]),
                    "files": sorted({p for d in diffs for p in (d.old, d.new) if p}),
                    "already_upstream": c.mark == "="})
        return {"baseline": head, "commits": commits, "skipped": skipped, "notes": notes}

    def backend_gaps(self) -> dict[str, Any]:
        """What sibling backends (cpu/cuda/metal/..., or _avx2/_neon/_scalar files) fuse or
        implement that the target backend lacks, as hypotheses with sites."""
        f = self._run_source("siblings", self._ctx(True))
        return {"hypotheses": [h.to_dict() for h in f.hypotheses],
                "references": [r.to_dict() for r in f.references], "notes": f.notes}

    def profile(self) -> dict[str, Any]:
        """Profile the benchmark at HEAD and probe memory bandwidth: hot functions, achieved
        vs. peak bandwidth and the conclusion (memory-bound means passes over memory are the
        lever; compute-bound means arithmetic is)."""
        with self._exclusive():
            f = self._run_source("diagnosis", self._ctx(True))
        return {**(f.diagnosis or {}), "notes": f.notes}

    # --- experiments -----------------------------------------------------------------------

    # --- status and report -----------------------------------------------------------------


def _guarded(fn: Callable[..., dict[str, Any]]) -> Callable[..., dict[str, Any]]:
    """Every failure becomes an MCP tool error with a one-line message; the server lives on."""
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> dict[str, Any]:
        try:
            return fn(*args, **kwargs)
        except (ToolFailure, ReadfirstError, ApplyError) as e:
            raise ToolError(one_line(e)) from None
        except gitcli.GitError as e:
            raise ToolError(f"git failed: {one_line(e)}") from None
        except Exception as e:  # noqa: BLE001 - a bug must not end the agent's session
            raise ToolError(f"internal error ({type(e).__name__}): {one_line(e)}") from None

    return wrapper


async def _one_line_errors(ctx: Any, call_next: Callable[[Any], Any]) -> Any:
    """Middleware: tool errors reach the agent as one line (the SDK's own argument errors are
    multi-line pydantic reports). Results arrive as wire dicts or as CallToolResult."""
    result = await call_next(ctx)
    if isinstance(result, CallToolResult) and result.is_error:
        result = result.model_dump(by_alias=True, exclude_none=True)
    if isinstance(result, dict) and result.get("isError"):
        for block in result.get("content") or []:
            if isinstance(block, dict) and isinstance(block.get("text"), str):
                block["text"] = one_line(Exception(block["text"]))
    return result


def build_server(directory: Path) -> Any:
    """The MCPServer with readfirst's tools for the target at `directory`."""
    box = Toolbox(directory)
    server = MCPServer("readfirst", instructions=INSTRUCTIONS, log_level="WARNING",
                       middleware=[_one_line_errors])
    for name in TOOL_NAMES:
        server.add_tool(_guarded(getattr(box, name)), name=name)
    return server


def serve(directory: Path) -> None:
    """Serve over stdio until the client closes the connection."""
    server = build_server(directory)
    try:
        server.run("stdio")
    finally:
        kill_all_live()  # builds and benchmarks still running when the client went away


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="readfirst-mcp", description=__doc__.splitlines()[0])
    parser.add_argument("-C", "--dir", dest="directory", type=Path, default=Path("."))
    args = parser.parse_args(argv)
    try:
        serve(args.directory)
    except ConfigError as e:
        print(f"readfirst: error: {e}", file=sys.stderr)
        sys.exit(e.exit_code)
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    main()
