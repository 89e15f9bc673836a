"""Ranking a fork's in-scope commits before the cap, with the reason for each rank.

Order: commits that change functions hot in the research profile (by their share), then those
that touch a site a research hypothesis names, then performance cues (message words, SIMD
intrinsics, pragmas, loop work in the diff), then fork order. Code this machine cannot run (a
file the build does not compile, lines under an `#if` the build's compiler makes false) goes
last, marked. The research results are read from the journal (`ResearchStore`).
"""

from __future__ import annotations

import contextlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from readfirst.core import constants as C
from readfirst.proposers.archcheck import C_FAMILY, BuildInfo, live_lines
from readfirst.research.history import cue_score, function_name, perf_cues
from readfirst.vcs import gitcli

_HUNK = re.compile(r"^@@ -(\d+)(?:,(\d+))? \+(\d+)(?:,(\d+))? @@ ?(.*)$")
_DEF_LINE = re.compile(r"^[A-Za-z_][\w\s\*&:<>,]*?\b([A-Za-z_]\w*)\s*\([^;]*$")


@dataclass
class Signals:
    """What research found that ranking uses."""

    hot: list[tuple[str, float]] = field(default_factory=list)  # (function, share %), hottest
    sites: list[tuple[str, int, str | None, str, float]] = field(default_factory=list)
    # (repo path, line, function, hypothesis title, score)
    commit_hyps: dict[str, tuple[str, float]] = field(default_factory=dict)  # sha -> (title, score)


def read_signals(state_dir: Path, rel: str) -> Signals:
    """The latest research run's profile and hypotheses; empty when research has not run."""
    db = state_dir / "journal.db"
    if not db.is_file():
        return Signals()
    from readfirst.research.brief import ResearchStore
    from readfirst.store.journal import Journal

    journal = Journal(db)
    try:
        store = ResearchStore(journal)
        rid = store.latest()
        if rid is None:
            return Signals()
        row = journal.db.execute("SELECT diagnosis_json FROM research_runs WHERE id = ?",
                                 (rid,)).fetchone()
        return _signals(json.loads(row[0] or "null") or {}, store.hypotheses(rid), rel)
    finally:
        journal.close()


def _signals(diag: dict[str, Any], hyps: list[dict[str, Any]], rel: str) -> Signals:
    out = Signals()
    shares = {str(t.get("function", "")): float(t.get("share") or 0)
              for t in diag.get("top_functions", [])}
    for name in diag.get("hotspots", [])[:C.FORK_HOT_FUNCTIONS]:
        share = next((s for f, s in shares.items() if name in f), 0.0)
        out.hot.append((name.split("::")[-1], share))
    prefix = f"{rel.rstrip('/')}/" if rel else ""
    for h in hyps:
        if h.get("status") == "failed":
            continue
        data = h.get("data") or {}
        if h.get("kind") == "port-commit" and data.get("commit"):
            out.commit_hyps[str(data["commit"])] = (h["title"], float(h.get("score", 0)))
            continue  # its sites are the commit's own hunks
        for s in h.get("sites", []):
            out.sites.append((prefix + s["path"], int(s.get("line") or 0), s.get("function"),
                              h["title"], float(h.get("score", 0))))
    return out


@dataclass
class FileHunks:
    path: str
    old_blob: str | None
    new_blob: str | None
    old_lines: list[int] = field(default_factory=list)  # removed lines (1-based, old side)
    new_lines: list[int] = field(default_factory=list)  # added lines (new side)
    starts: list[int] = field(default_factory=list)  # old-side start of each hunk
    functions: set[str] = field(default_factory=set)
    added: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)


def parse_diff(diff: str) -> list[FileHunks]:
    files: list[FileHunks] = []
    cur: FileHunks | None = None
    old_no = new_no = 0
    for line in diff.splitlines():
        if line.startswith("diff --git "):
            cur = FileHunks(line[11:].partition(" b/")[2] or line[13:], None, None)
            files.append(cur)
        elif cur is None:
            continue
        elif line.startswith("index ") and ".." in line:
            a, _, b = line[6:].split()[0].partition("..")
            cur.old_blob, cur.new_blob = (a.strip("0") and a), (b.strip("0") and b)
        elif m := _HUNK.match(line):
            old_no, new_no = int(m[1]), int(m[3])
            cur.starts.append(old_no)
            fn = function_name(m[5])
            if fn:
                cur.functions.add(fn)
        elif line.startswith("+") and not line.startswith("+++ "):
            cur.added.append(line[1:])
            cur.new_lines.append(new_no)
            new_no += 1
            _defines(line[1:], cur.functions)
        elif line.startswith("-") and not line.startswith("--- "):
            cur.removed.append(line[1:])
            cur.old_lines.append(old_no)
            old_no += 1
            _defines(line[1:], cur.functions)
        elif line.startswith(" "):
            old_no += 1
            new_no += 1
            _defines(line[1:], cur.functions)
    return files


def _defines(line: str, into: set[str]) -> None:
    if "(" not in line or len(line) > 300:  # generated or minified lines define nothing here
        return
    m = _DEF_LINE.match(line)
    if m and m[1] not in ("if", "for", "while", "switch", "return"):
        into.add(m[1])


@dataclass
class Rank:
    hot: float = 0.0
    site: float = 0.0
    cues: float = 0.0
    elsewhere: str | None = None  # why this code cannot run here (ranked last, marked)
    reasons: list[str] = field(default_factory=list)

    def key(self, order: int) -> tuple[bool, float, float, float, int]:
        return (self.elsewhere is None, self.hot, self.site, self.cues, -order)


def rank_commit(subject: str, body: str, sha: str, files: list[FileHunks], signals: Signals,
                build: BuildInfo, blobs: dict[str, str]) -> Rank:
    r = Rank()
    touched = {f for fh in files for f in fh.functions}
    hot = [(n, s) for n, s in signals.hot if n in touched]
    if hot:
        r.hot = sum(max(s, 0.1) for _n, s in hot)
        r.reasons.append("changes hot function" + ("s " if len(hot) > 1 else " ") + ", ".join(
            f"{n} ({s:.1f} % of the profile)" if s else n for n, s in hot))
    hits: dict[str, float] = {}
    for path, line, fn, title, score in signals.sites:
        for fh in files:
            if fh.path == path and ((fn and fn in fh.functions) or any(
                    abs(s - line) <= C.FORK_SITE_WINDOW for s in fh.starts)):
                hits[title] = max(hits.get(title, 0.0), score or 0.1)
    if hits:
        r.site = sum(hits.values())
        r.reasons.append("touches sites of research hypotheses: " + "; ".join(
            f"'{t}'" for t in sorted(hits, key=lambda t: -hits[t])[:3]))
    cues = perf_cues(f"{subject}\n{body}", [ln for f in files for ln in f.added],
                     [ln for f in files for ln in f.removed])
    if cues:
        r.cues = cue_score(cues)
        r.reasons.append("performance cues: " + ", ".join(cues))
    if sha in signals.commit_hyps:
        title, score = signals.commit_hyps[sha]
        r.cues = max(r.cues, score)
    r.elsewhere = _elsewhere(files, build, blobs)
    return r


def _elsewhere(files: list[FileHunks], build: BuildInfo, blobs: dict[str, str]) -> str | None:
    """Why every changed line of code is out of this machine's reach; None when some runs."""
    why: list[str] = []
    for fh in files:
        if build.not_compiled(fh.path):
            why.append(f"{fh.path} is not compiled by this build ({build.origin})")
            continue
        if Path(fh.path).suffix not in C_FAMILY:
            return None
        dead: list[str] = []
        for blob, lines in ((fh.new_blob, fh.new_lines), (fh.old_blob, fh.old_lines)):
            if not lines:
                continue
            text = blobs.get(blob or "")
            if text is None:
                return None
            live = live_lines(text, build)
            if any(n - 1 >= len(live) or live[n - 1] is not False for n in lines):
                return None
            dead.append(fh.path)
        why.append(f"{fh.path}: only lines under #if conditions this build's compiler makes "
                   "false")
    return "; ".join(dict.fromkeys(why)) or None


def read_blobs(repo: Path, shas: set[str]) -> dict[str, str]:
    """Blob contents by id in one `git cat-file --batch`; missing or non-UTF-8 ones left out."""
    want = sorted(s for s in shas if s)
    if not want:
        return {}
    try:
        data = gitcli.git_bytes(repo, "cat-file", "--batch", input="\n".join(want).encode() + b"\n")
    except gitcli.GitError:
        return {}
    out: dict[str, str] = {}
    pos = 0
    while pos < len(data):
        end = data.index(b"\n", pos)
        head = data[pos:end].decode("ascii", "replace").split()
        pos = end + 1
        if len(head) == 3 and head[1] == "blob":
            size = int(head[2])
            with contextlib.suppress(UnicodeDecodeError):
                out[head[0]] = data[pos:pos + size].decode("utf-8")
            pos += size + 1
    return out
