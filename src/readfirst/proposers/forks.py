"""The `forks` proposer: port the commits of competing projects, one candidate per commit.

Each competitor (`[research] competitors`) is fetched into the target repository under
`refs/readfirst/competitors/<name>`. With a shared history, the commits after the merge-base
are offered with `--full-index` diffs, so `git apply --3way` merges them like cherry-pick
would. With an unrelated history, each changed file is mapped onto the baseline's file with
the longest common path suffix and the diff's paths are rewritten. Before anything is offered
the commits are triaged (triage.py), stacked on what they depend on (stack.py) and ranked
(rank.py, archcheck.py), all in forkrank.py.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from readfirst.core import constants as C
from readfirst.core.candidate import Candidate
from readfirst.core.errors import ConfigError
from readfirst.measure.guards import matches
from readfirst.proposers import ProposerContext, RecordsSkips, triage
from readfirst.vcs import gitcli

REF_PREFIX = "refs/readfirst/competitors/"
DEFAULT_MAX_COMMITS = C.DEFAULT_MAX_FORK_COMMITS
# Forks the research phase found (research/forks_github.py), relative to the state directory.
DISCOVERED_FILE = "research/discovered_competitors.json"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://|^[\w.-]+@[\w.-]+:")
_ENTRY_KEYS = {"name", "path", "url", "branch"}
# Keep fetches from hanging forever on a stalled network (less than 1 byte/s for a minute).
_FETCH_OPTS = ("-c", "http.lowSpeedLimit=1", "-c", "http.lowSpeedTime=60")


@dataclass(frozen=True)
class Competitor:
    name: str
    source: str  # what `git fetch` is given: an absolute path or a URL
    branch: str | None = None

    @property
    def ref(self) -> str:
        return REF_PREFIX + self.name


class ForksProposer(RecordsSkips):
    """Offers the in-scope commits of the configured competitors, ranked (see rank.py)."""

    name = "forks"

    def propose(self, ctx: ProposerContext) -> list[Candidate]:
        from readfirst.proposers.forkrank import port_competitor  # it imports research

        self._skipped = []
        competitors = competitors_for(ctx.spec.research, ctx.root, ctx.state_dir)
        cap = ctx.spec.research.get("max_fork_commits", DEFAULT_MAX_COMMITS)
        if isinstance(cap, bool) or not isinstance(cap, int) or cap < 0:
            raise ConfigError(f"[research] max_fork_commits: expected an integer >= 0, got {cap!r}")
        out: list[Candidate] = []
        reports: list[str] = []
        for comp in competitors:
            try:
                fetch(ctx.repo, comp)
            except (gitcli.GitError, UnicodeDecodeError) as e:
                self._skipped.append((f"fork:{comp.name}", comp.name, f"fetch failed: {e}"))
                continue
            try:
                ported = port_competitor(ctx, comp, cap)
            except gitcli.GitError as e:  # the listing itself failed: this fork, not the run
                self._skipped.append((f"fork:{comp.name}", comp.name,
                                      f"cannot list its commits: {e}"))
                continue
            self._skipped += ported.skipped
            out += ported.candidates
            reports.append(ported.report)
        if reports:
            write_ranking(ctx, reports)
        return out


def write_ranking(ctx: ProposerContext, reports: list[str]) -> None:
    """The ranking, with reasons, in `research/fork_ranking.md` and as a section of the brief."""
    from readfirst.proposers.forkrank import replace_section

    text = "\n".join(reports)
    out = ctx.state_dir / "research"
    out.mkdir(parents=True, exist_ok=True)
    (out / "fork_ranking.md").write_text(text)
    brief = out / "brief.md"
    if brief.is_file():
        brief.write_text(replace_section(brief.read_text(), text))


class _Skip(Exception):
    """A commit that cannot be offered; the message is the reason."""


def parse_competitors(research: dict[str, Any], root: Path) -> list[Competitor]:
    """The `[research] competitors` list as Competitors; ConfigError naming a bad entry."""
    raw = research.get("competitors")
    if not raw:
        raise ConfigError(
            'no competitors configured: set [research] competitors = ["../fork", '
            '{ name = "x", url = "https://..." }] in readfirst.toml'
        )
    if not isinstance(raw, list):
        raise ConfigError(f"[research] competitors: expected a list, got {raw!r}")
    out: list[Competitor] = []
    for i, entry in enumerate(raw, 1):
        where = f"[research] competitors entry {i}"
        if isinstance(entry, str) and entry.strip():
            name, location, branch = None, entry.strip(), None
        elif isinstance(entry, dict):
            unknown = sorted(set(entry) - _ENTRY_KEYS)
            if unknown:
                raise ConfigError(
                    f"{where}: unknown key {unknown[0]!r} (expected name, path or url, branch)"
                )
            if ("path" in entry) == ("url" in entry):
                raise ConfigError(f"{where}: expected exactly one of path or url, got {entry!r}")
            for key in ("name", "path", "url", "branch"):
                if key in entry and (not isinstance(entry[key], str) or not entry[key].strip()):
                    raise ConfigError(
                        f"{where}: {key}: expected a non-empty string, got {entry[key]!r}"
                    )
            name, branch = entry.get("name"), entry.get("branch")
            location = (entry.get("path") or entry["url"]).strip()
        else:
            raise ConfigError(
                f"{where}: expected a path, a git URL or a table "
                f"{{name, path or url, branch}}, got {entry!r}"
            )
        if not _URL.match(location) or (isinstance(entry, dict) and "path" in entry):
            location = str(root / Path(location).expanduser())
        if name is None:
            tail = re.split(r"[/:\\]", location.rstrip("/\\"))[-1].removesuffix(".git")
            name = re.sub(r"[^A-Za-z0-9._-]", "-", tail).lstrip(".-")
        name = name.strip()
        if not _NAME.match(name) or ".." in name or name.endswith(".lock"):
            raise ConfigError(
                f"{where}: name {name!r}: expected letters, digits, '.', '_' or "
                "'-' (set name = \"...\")"
            )
        if any(c.name == name for c in out):
            raise ConfigError(f'{where}: duplicate competitor name {name!r} (set name = "...")')
        out.append(Competitor(name, location, branch))
    return out


def discovered_competitors(state_dir: Path, root: Path) -> list[Competitor]:
    """The forks the research phase discovered (`<state_dir>/research/discovered_competitors.json`,
    a list of {name, url, branch}); empty when there are none or the file is unreadable."""
    try:
        entries = json.loads((state_dir / DISCOVERED_FILE).read_text())
        return parse_competitors({"competitors": entries}, root) if entries else []
    except (OSError, ValueError, ConfigError):
        return []


def competitors_for(research: dict[str, Any], root: Path, state_dir: Path) -> list[Competitor]:
    """The configured competitors plus the discovered ones, deduplicated by name and source
    (a configured entry wins). ConfigError as parse_competitors when there are none at all."""
    found = discovered_competitors(state_dir, root)
    if found and not research.get("competitors"):
        return found
    configured = parse_competitors(research, root)
    names, sources = {c.name for c in configured}, {c.source for c in configured}
    return configured + [c for c in found if c.name not in names and c.source not in sources]


def fetch(repo: Path, comp: Competitor) -> None:
    """Fetch the competitor's branch (or HEAD) into its ref under refs/readfirst/competitors."""
    src = comp.branch or "HEAD"
    gitcli.git(
        repo, *_FETCH_OPTS, "fetch", "--quiet", "--no-tags", comp.source, f"+{src}:{comp.ref}"
    )


def commit_diff(repo: Path, parent: str, sha: str, paths: list[str] | None = None) -> str:
    """The commit's change with full blob ids (see triage.commit_diff)."""
    return triage.commit_diff(repo, parent, sha, paths)


def scope_patterns(ctx: ProposerContext) -> list[str]:
    """The target's scope as repo-relative patterns; empty means everything."""
    return repo_scope(ctx.spec.target.scope, ctx.rel)


def repo_scope(scope: list[str], rel: str) -> list[str]:
    """`[target] scope` (relative to the target's root `rel`) as repo-relative patterns."""
    return [f"{rel.rstrip('/')}/{p.lstrip('/')}" for p in scope] if rel else list(scope)


class PathMapper:
    """Maps a fork's paths onto the baseline's files by longest common path suffix."""

    def __init__(self, repo: Path, baseline: str, scope: list[str]) -> None:
        self.repo = repo
        out = gitcli.git(repo, "ls-tree", "-r", "-z", "--name-only", "--full-tree", baseline,
                         errors="surrogateescape")  # a path in another encoding: no match
        self.by_name: dict[str, list[str]] = {}
        for path in out.split("\0"):
            if path and (not scope or matches(path, scope)):
                self.by_name.setdefault(path.rsplit("/", 1)[-1], []).append(path)

    def map(self, path: str) -> str:
        """The baseline file `path` corresponds to; _Skip naming the file when there is none."""
        parts = path.split("/")
        best, best_len = [], 0
        for cand in self.by_name.get(parts[-1], []):
            cparts = cand.split("/")
            n = 0
            while n < min(len(parts), len(cparts)) and parts[-1 - n] == cparts[-1 - n]:
                n += 1
            if n > best_len:
                best, best_len = [cand], n
            elif n == best_len:
                best.append(cand)
        if not best:
            raise _Skip(f"{path}: no file of that name in the target (within scope)")
        if len(best) > 1:
            raise _Skip(f"{path}: ambiguous, could be {', '.join(sorted(best))}")
        return best[0]

    def lookup(self, path: str) -> str | None:
        """Like `map`, but None when there is no unique counterpart."""
        try:
            return self.map(path)
        except _Skip:
            return None

    def diff(self, parent: str, sha: str, only: list[str] | None = None) -> str:
        """The commit's diff (of the files `only`, when given) with every path rewritten to
        its baseline counterpart."""
        names = gitcli.git(self.repo, "diff-tree", "-r", "-z", "--no-renames", "--name-only",
                           parent, sha, *(["--", *only] if only else []),
                           env={"GIT_LITERAL_PATHSPECS": "1"})
        paths = [p for p in names.split("\0") if p]
        text = commit_diff(self.repo, parent, sha, only)
        sections = re.split(r"(?m)^(?=diff --git )", text)
        sections = [s for s in sections if s.startswith("diff --git ")]
        if len(sections) != len(paths):
            raise _Skip("cannot split the diff into its files")
        return "".join(self._rewrite(s, p) for s, p in zip(sections, paths, strict=True))

    def _rewrite(self, section: str, path: str) -> str:
        new = self.map(path)
        lines = section.splitlines(keepends=True)
        if any(ln.startswith("new file mode") for ln in lines[:4]):
            raise _Skip(f"{path}: new in the fork, but the target already has {new}")
        tab = "\t" if " " in new else ""
        lines[0] = f"diff --git {_quote('a/' + new)} {_quote('b/' + new)}\n"
        for i, ln in enumerate(lines[1:], 1):
            if ln.startswith(("@@", "GIT binary patch")):
                break
            if ln.startswith(("--- ", "+++ ")) and not ln.startswith(
                ("--- /dev/null", "+++ /dev/null")
            ):
                side = "a/" if ln.startswith("---") else "b/"
                lines[i] = f"{ln[:4]}{_quote(side + new)}{tab}\n"
        return "".join(lines)


# C-style escapes git uses for special characters in the paths of diff headers.
_ESC = {chr(i): f"\\{i:03o}" for i in [*range(0x20), 0x7F]} | {
    c: "\\" + e for c, e in zip('\a\b\t\n\v\f\r"\\', 'abtnvfr"\\', strict=True)
}


def _quote(path: str) -> str:
    """A path as git writes it in diff headers (quoted when it has special characters)."""
    if not any(c in _ESC for c in path):
        return path
    return '"' + "".join(_ESC.get(c, c) for c in path) + '"'
