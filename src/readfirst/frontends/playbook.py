"""`readfirst playbook`: the instruction file that teaches a coding agent the research-first
method and readfirst's MCP tools (CLAUDE.md, AGENTS.md or READFIRST.md in the target's dir).

readfirst owns only the part between its markers, so rerunning replaces that part and leaves
the rest of an existing file as it was.
"""

from __future__ import annotations

import json
import shlex
from pathlib import Path

from readfirst.core import constants as C
from readfirst.core.config import Spec, load_spec
from readfirst.core.errors import ConfigError
from readfirst.core.fsutil import atomic_write

BEGIN = "<!-- readfirst:begin -->"
END = "<!-- readfirst:end -->"
AGENT_FILES = {"claude": "CLAUDE.md", "codex": "AGENTS.md", "generic": "READFIRST.md"}
# One line per MCP tool (the names of readfirst.frontends.mcp_server.TOOL_NAMES), in the order
# of use.
TOOL_LINES = {
    "research": "`research(offline=true, profile=false)`: all sources; ranked hypotheses, "
                "references, diagnosis and the brief's path.",
    "profile": "`profile()`: hot functions, achieved vs. peak memory bandwidth, and the "
               "conclusion (memory-bound, compute-bound, mixed).",
    "fork_commits": "`fork_commits()`: commits competing forks have and HEAD lacks, with "
                    "their performance cues; read one with `git show <sha>`.",
    "backend_gaps": "`backend_gaps()`: fusions and kernels sibling backends (or SIMD "
                    "variants) have and the target lacks, with sites.",
    "search_papers": "`search_papers(query, offline=true)`: arXiv, Semantic Scholar and the "
                     "local papers folder for an explicit query.",
    "run_experiment": "`run_experiment(patch=null, title=\"\")`: measure your uncommitted "
                      "diff (or a patch, applied on HEAD in a scratch worktree) against HEAD; "
                      "the verdict and an `experiment_id`.",
    "keep": "`keep(experiment_id)`: commit an `improved` experiment on the current branch, "
            "with the metric change and CI in the message.",
    "discard": "`discard(experiment_id)`: stash your uncommitted change (recoverable with "
               "`git stash pop`); a patch experiment is only marked discarded.",
    "status": "`status()`: every experiment so far with its verdict, change and outcome.",
    "report": "`report()`: write the reports (Markdown, HTML) and return their paths.",
}


def _goal(spec: Spec | None) -> list[str]:
    if spec is None:
        return ["There is no readfirst.toml yet: run `readfirst init` in this directory, "
                "check the benchmark command it found, then rerun `readfirst playbook`."]
    m = spec.metric
    what = f"`{m.name}`" if m.name else "the benchmark's first metric"
    unit = f" ({m.unit})" if m.unit else ""
    lines = [f"Goal: improve {what}{unit}, {m.direction} is better, as printed by the "
             f"benchmark `{spec.target.bench}`."]
    if spec.target.checks:
        lines.append(f"Correctness: `{spec.target.checks}` must keep passing.")
    if spec.target.scope:
        lines.append("Change code only within: " + ", ".join(f"`{p}`" for p in
                                                          spec.target.scope) + ".")
    return lines


def _protected(spec: Spec | None) -> list[str]:
    return spec.protected_patterns() if spec is not None else list(C.ALWAYS_PROTECTED)


def _registration(agent: str, root: Path) -> list[str]:
    d = str(root)
    claude = ["Claude Code:", "", "```sh", f"claude mcp add readfirst -- readfirst mcp -C "
              f"{shlex.quote(d)}", "```", "",
              "Experiments take minutes: raise the tool timeout, e.g. `MCP_TOOL_TIMEOUT=1800000`."]
    codex = ["Codex (`~/.codex/config.toml`):", "", "```toml", "[mcp_servers.readfirst]",
             'command = "readfirst"', f"args = {json.dumps(['mcp', '-C', d])}",
             "tool_timeout_sec = 1800  # experiments take minutes", "```"]
    generic = ["Any MCP client (stdio):", "", "```json", json.dumps(
        {"mcpServers": {"readfirst": {"command": "readfirst", "args": ["mcp", "-C", d]}}},
        indent=2), "```"]
    tail = ["", "Use the full path of `readfirst` (e.g. `.venv/bin/readfirst`) if it is not on "
            "PATH."]
    if agent == "claude":
        return [*claude, *tail]
    if agent == "codex":
        return [*codex, *tail]
    return [*claude, "", *codex, "", *generic, *tail]


def render_section(agent: str, root: Path, spec: Spec | None) -> str:
    """The readfirst section, markers included, for `agent` and the target at `root`."""
    if agent not in AGENT_FILES:
        raise ConfigError(f"--agent {agent!r}: expected one of {', '.join(AGENT_FILES)}")
    lines = [
        BEGIN,
        "## Optimising this project with readfirst: research first, measure everything",
        "",
        f"This section is written by `readfirst playbook --agent {agent}`; rerunning it "
        "replaces everything between the readfirst markers and nothing else.",
        "",
        *_goal(spec),
        "",
        *_method(spec),
        "",
        *_tools(),
        "",
        *_shell(),
        "",
        "### Registering the readfirst MCP server",
        "",
        *_registration(agent, root),
        END,
    ]
    return "\n".join(lines) + "\n"


def _method(spec: Spec | None) -> list[str]:
    """The research-first method, step by step; the protected files listed in step 7."""
    return [
        "### The method",
        "",
        "1. **Research before you edit.** Call `research` and read the brief it writes "
        "(`.readfirst/research/brief.md`): ranked hypotheses, each with its evidence and "
        "references. `offline=false` also searches papers and GitHub forks online; "
        "`profile=true` adds the diagnosis.",
        "2. **Read the diagnosis** (`profile`). Memory-bound means passes over memory are the "
        "lever: fuse loops, drop temporaries and copies, touch each buffer once. Compute-bound "
        "means arithmetic is: vectorise, do less work.",
        "3. **Port before you invent.** What competing forks already did (`fork_commits`) and "
        "what sibling backends already have (`backend_gaps`) are the best-evidenced ideas; "
        "papers (`search_papers`) come after.",
        "4. **One hypothesis per experiment**: one small change, so the verdict tells what "
        "worked. Give each `run_experiment` a title that names the hypothesis.",
        "5. **Measure with `run_experiment`; never trust a single run** (yours or anyone's). "
        "It builds HEAD and your change in isolated worktrees, runs the checks, and runs "
        "randomised interleaved rounds until the statistics decide.",
        "6. **Keep only `improved`** (`keep`). Anything else (`no_change`, `inconclusive`, "
        "`regressed`, `checks_failed`, `crash`, `suspect`, `refused`): `discard` it and move "
        "on. If the working tree changes after measuring, measure again before keeping.",
        "7. **Never edit the benchmark, the checks or the protected files**; an experiment that "
        "touches them is `refused`:",
        *[f"   - `{p}`" for p in _protected(spec)],
        "8. **Log what failed and why**: readfirst records every experiment (`status`, "
        "`report`); add your reading of each failure (the verdict, the reason, what it rules "
        "out) to your notes so the idea is not tried again.",
    ]


def _tools() -> list[str]:
    """readfirst's MCP tools, one line each, and which of them touch the working tree."""
    return [
        "### readfirst's MCP tools",
        "",
        *[f"- {line}" for line in TOOL_LINES.values()],
        "",
        "Only `keep` and `discard` touch your working tree, and only when you call them; "
        "everything else works in worktrees under `.readfirst/`.",
    ]


def _shell() -> list[str]:
    """The same workflow from a shell."""
    return [
        "### The same from a shell",
        "",
        "- `readfirst research [--offline]`: the brief and ranked hypotheses.",
        "- `readfirst compare HEAD WORKTREE`: your uncommitted change against HEAD.",
        "- `readfirst status`: the experiments of the latest `readfirst run`.",
        "- `readfirst report`: its Markdown and HTML report.",
    ]


def merge(existing: str | None, section: str) -> str:
    """`existing` with its readfirst section replaced by `section` (appended when absent)."""
    if not existing:
        return section
    start, end = existing.find(BEGIN), existing.find(END)
    if start == -1 and end == -1:
        return existing.rstrip("\n") + "\n\n" + section
    if start == -1 or end < start or existing.count(BEGIN) > 1 or existing.count(END) > 1:
        raise ConfigError(f"the file has unbalanced readfirst markers ({BEGIN} ... {END}): "
                          "fix or remove them by hand, then rerun")
    after = existing[end + len(END):].removeprefix("\n")
    return existing[:start] + section + after


def _spec_or_none(root: Path) -> Spec | None:
    """The target's spec; None when it has none yet (a broken one is an error)."""
    if not any((root / f).is_file() for f in ("readfirst.toml", ".auto/measure.sh",
                                              "autoresearch.sh")):
        return None
    return load_spec(root)


def playbook_section(root: Path, agent: str) -> str:
    """The section for the target at `root` (its spec read when there is one)."""
    root = root.resolve()
    if not root.is_dir():
        raise ConfigError(f"{root}: no such directory")
    return render_section(agent, root, _spec_or_none(root))


def write_playbook(root: Path, agent: str) -> Path:
    """Write or update the agent's instruction file in `root`; its path."""
    section = playbook_section(root, agent)
    path = root.resolve() / AGENT_FILES[agent]
    existing = path.read_text(encoding="utf-8") if path.exists() else None
    atomic_write(path, merge(existing, section))
    return path
