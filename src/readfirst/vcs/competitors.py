"""Competitors: other versions of the target's code, fetched into the target's repository.

Each competitor (`[research] competitors`, or one research discovered) is fetched under
`refs/readfirst/competitors/<name>`. One `git log --raw` lists the commits it has beyond the
baseline with the files each changes (trees only: no blob is read, so a partial clone's missing
blobs cannot stop the listing). With an unrelated history, `PathMapper` maps each changed file
onto the baseline's file with the longest common path suffix and rewrites the diff's paths.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from readfirst.core import constants as C
from readfirst.core.errors import ConfigError
from readfirst.core.globs import matches
from readfirst.vcs import gitcli

EMPTY_TREE = "4b825dc642cb6eb9a060e54bf8d69288fbee4904"
SUBMODULE_MODE = "160000"
_LOG_FORMAT = "--format=%x1e%m%x1f%H%x1f%P%x1f%s%x1f%b%x1f"
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
class FileChange:
    """One entry of `git log --raw`: a file a commit adds, modifies or deletes."""

    status: str  # A, M, D, T
    old_mode: str
    new_mode: str
    old_blob: str
    new_blob: str
    path: str  # repo-relative; undecodable bytes kept as surrogate escapes

    @property
    def submodule(self) -> bool:
        return SUBMODULE_MODE in (self.old_mode, self.new_mode)

    @property
    def utf8_path(self) -> bool:
        try:
            self.path.encode("utf-8")
        except UnicodeEncodeError:
            return False
        return True


@dataclass(frozen=True)
class ForkCommit:
    mark: str  # git log --cherry-mark: "=" when a patch-equivalent commit is in the baseline
    sha: str
    parent: str  # first parent, or the empty tree for a root commit
    subject: str
    body: str
    files: tuple[FileChange, ...] = ()


def list_fork_commits(repo: Path, baseline: str, ref: str) -> tuple[list[ForkCommit], bool]:
    """The non-merge commits of `ref` the baseline lacks, oldest first, each with the files it
    changes, and whether the two share history (without a merge-base, all of `ref`)."""
    base = gitcli.git(repo, "merge-base", baseline, ref, check=False).strip()
    rng = ["--cherry-mark", "--right-only", f"{baseline}...{ref}"] if base else [ref]
    raw = gitcli.git_bytes(repo, "-c", "core.quotePath=false", "log", "-z", "--no-merges",
                           "--reverse", "--raw", "--no-renames", "--no-abbrev", _LOG_FORMAT,
                           *rng)
    return [_parse_commit(chunk) for chunk in raw.split(b"\x1e")[1:]], bool(base)


def _parse_commit(chunk: bytes) -> ForkCommit:
    head, _, rest = chunk.partition(b"\x1f\x00")
    fields = head.decode("utf-8", "replace").split("\x1f")
    mark, sha, parents, subject, body = (fields + [""] * 5)[:5]
    parent = parents.split()[0] if parents.split() else EMPTY_TREE
    parts = rest.lstrip(b"\n").split(b"\x00")
    files: list[FileChange] = []
    for meta, path in zip(parts[0::2], parts[1::2], strict=False):
        bits = meta.lstrip(b"\n").decode("ascii", "replace").lstrip(":").split()
        if len(bits) != 5:
            continue
        files.append(FileChange(bits[4][:1], bits[0], bits[1], bits[2], bits[3],
                                path.decode("utf-8", "surrogateescape")))
    return ForkCommit(mark, sha, parent, subject.strip(), body, tuple(files))


def commit_diff(repo: Path, parent: str, sha: str, paths: list[str] | None = None) -> str:
    """The commit's change (restricted to `paths` when given) with full blob ids, so that
    `apply --3way` merges it like cherry-pick would. Plumbing, so user diff settings do not
    leak in. GitError when git cannot read an object (`gitcli.cannot_read` says which);
    UnicodeDecodeError when not UTF-8."""
    spec = ["--", *paths] if paths else []
    out = gitcli.git_bytes(repo, "-c", "core.quotePath=false", "diff-tree", "-p", "--binary",
                           "--full-index", "--no-renames", parent, sha, *spec,
                           env={"GIT_LITERAL_PATHSPECS": "1"})
    return out.decode("utf-8")


@dataclass(frozen=True)
class Competitor:
    name: str
    source: str  # what `git fetch` is given: an absolute path or a URL
    branch: str | None = None

    @property
    def ref(self) -> str:
        return REF_PREFIX + self.name


class CannotPort(Exception):
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
        """The baseline file `path` corresponds to; CannotPort naming the file when there is
        none."""
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
            raise CannotPort(f"{path}: no file of that name in the target (within scope)")
        if len(best) > 1:
            raise CannotPort(f"{path}: ambiguous, could be {', '.join(sorted(best))}")
        return best[0]

    def lookup(self, path: str) -> str | None:
        """Like `map`, but None when there is no unique counterpart."""
        try:
            return self.map(path)
        except CannotPort:
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
            raise CannotPort("cannot split the diff into its files")
        return "".join(self._rewrite(s, p) for s, p in zip(sections, paths, strict=True))

    def _rewrite(self, section: str, path: str) -> str:
        new = self.map(path)
        lines = section.splitlines(keepends=True)
        if any(ln.startswith("new file mode") for ln in lines[:4]):
            raise CannotPort(f"{path}: new in the fork, but the target already has {new}")
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
