"""The project's own history and notes: recent performance commits and perf-minded TODOs.

Also home to what the fork sources share: the performance cues of a commit (message words and
diff intrinsics), a parser for `-U0` patches, and the target's scope as patterns and pathspecs.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from pathlib import Path

from readfirst.core.errors import ConfigError
from readfirst.core.globs import matches, under
from readfirst.research import Finding, Hypothesis, Reference, ResearchContext, Site
from readfirst.vcs import gitcli

_I = re.IGNORECASE
MESSAGE_CUES = [re.compile(p, _I) for p in (
    r"\bfaster\b", r"\bspeed(?:s|ed|up|ups|-up)?\b", r"\bperf(?:ormance)?\b",
    r"\boptimi[sz]\w*", r"\bfus(?:e|ed|es|ing|ion)\b", r"\bsimd\b", r"\bavx\w*", r"\bneon\b",
    r"\bvectori[sz]\w*", r"\bcach(?:e|es|ed|ing)\b", r"\bbandwidth\b", r"\blatency\b",
    r"\bthroughput\b", r"\binlin(?:e|ed|es|ing)\b", r"\bunroll\w*", r"\bprefetch\w*",
    r"\b(?:m|c|re)?alloc\w*",
    r"\b(?:reduc\w*|fewer|avoid\w*|less|remov\w*|eliminat\w*)\s+(?:\w+\s+)?cop(?:y|ies)\b",
    r"(?<![\w.])\d+(?:\.\d+)?\s?%|\b\d+(?:\.\d+)?x\b",
)]
ADDED_CUES = [(label, re.compile(p)) for label, p in (
    ("+_mm intrinsics", r"\b_mm\d*_\w+"), ("+__m256 vector types", r"\b__m(?:64|128|256|512)\w*"),
    ("+NEON intrinsics", r"\bv(?:ld|st)[1-4]q?_\w+"), ("+#pragma omp", r"#\s*pragma\s+omp\b"),
    ("+restrict", r"\b(?:__)?restrict(?:__)?\b"), ("+__builtin_prefetch", r"__builtin_prefetch"),
    ("+likely()", r"\b(?:un)?likely\s*\(|\b__builtin_expect\s*\("),
)]
REMOVED_CUES = [("-memcpy", re.compile(r"\bmemcpy\s*\(")),
                ("-malloc", re.compile(r"\b(?:malloc|calloc|realloc)\s*\("))]
TODO_TAG = "(^|[^A-Za-z0-9_])(TODO|FIXME|XXX|HACK)([^A-Za-z0-9_]|$)"
TODO_PERF = re.compile(r"\b(?:slow\w*|optimi[sz]\w*|perf(?:ormance)?\b|speed\w*|fast\w*|"
                       r"cop(?:y|ies|ying)\b|alloc\w*|cach\w*|vectori[sz]\w*|simd)", _I)
_HUNK = re.compile(r"^@@ -(\d+)(?:,(\d+))? \+(\d+)(?:,(\d+))? @@ ?(.*)$")
_KEYWORDS = {"if", "for", "while", "switch", "return", "sizeof", "catch", "defined"}
FOCUSED = 8  # history hypotheses come from commits touching at most this many files in scope
LOG_PATCH = ("-c", "core.quotePath=false", "log", "-p", "-U0", "--no-color", "--no-ext-diff",
             "--no-textconv", "--no-renames", "--src-prefix=a/", "--dst-prefix=b/", "--root")


def perf_cues(message: str, added: list[str], removed: list[str]) -> list[str]:
    """Which performance cues a commit shows: words of its message, intrinsics and pragmas it
    adds, memcpy/malloc calls it removes. Distinct labels, message first."""
    cues: list[str] = []
    for pat in MESSAGE_CUES:
        m = pat.search(message)
        if m and f"'{m.group(0).lower()}'" not in cues:
            cues.append(f"'{m.group(0).lower()}'")
    plus, minus = "\n".join(added), "\n".join(removed)
    cues += [label for label, pat in ADDED_CUES if pat.search(plus)]
    cues += [label for label, pat in REMOVED_CUES
             if len(pat.findall(minus)) > len(pat.findall(plus))]
    return cues


def cue_score(cues: list[str]) -> float:
    """0.6 + 0.1 per cue (at most 3) for performance work, 0.2 otherwise."""
    return round(0.6 + 0.1 * min(3, len(cues)), 2) if cues else 0.2


@dataclass
class FileDiff:
    old: str | None  # None for an added file
    new: str | None  # None for a deleted file
    hunks: list[tuple[int, int, str | None]] = field(default_factory=list)  # old, new, function
    added: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    submodule: bool = False  # a gitlink (mode 160000): its "lines" are commit ids


def _unquote(path: str) -> str:
    if not path.startswith('"'):
        return path
    raw = path[1:-1].encode("latin-1", "backslashreplace").decode("unicode_escape")
    return raw.encode("latin-1").decode("utf-8", "replace")


def function_name(context: str) -> str | None:
    """The function named in a hunk header's context (`static void axpy(int n)` -> axpy)."""
    m = re.search(r"\b(?:def|fn|func|class|struct)\s+([A-Za-z_]\w*)", context)
    if m:
        return m.group(1)
    names = [n for n in re.findall(r"([A-Za-z_][\w:~]*)\s*\(", context) if n not in _KEYWORDS]
    return (names[0].split("::")[-1] or None) if names else None


def parse_patch(text: str) -> list[FileDiff]:
    """The files of a `-U0` patch with their hunks (first changed line each side) and lines."""
    files: list[FileDiff] = []
    cur: FileDiff | None = None
    in_hunk = False
    for line in text.splitlines():
        if line.startswith("diff --git "):
            cur, in_hunk = FileDiff(None, None), False
            files.append(cur)
            a, _, b = line[11:].partition(" b/")
            cur.old = cur.new = _unquote(b if b else a.removeprefix("a/"))
        elif cur is None:
            continue
        elif not in_hunk and line.startswith(("--- ", "+++ ")):
            p = line[4:].rstrip("\t")
            side = None if p == "/dev/null" else _unquote(p)[2:]
            if line[0] == "-":
                cur.old = side
            else:
                cur.new = side
        elif not in_hunk and line.startswith(("index ", "new file mode ", "deleted file mode ",
                                              "old mode ", "new mode ")):
            cur.submodule |= line.endswith(" 160000")
        elif m := _HUNK.match(line):
            in_hunk = True
            a, b, c, d = int(m[1]), int(m[2] or 1), int(m[3]), int(m[4] or 1)
            cur.hunks.append((max(a if b else a + 1, 1), max(c if d else c + 1, 1),
                              function_name(m[5])))
        elif in_hunk and line.startswith("+"):
            cur.added.append(line[1:])
        elif in_hunk and line.startswith("-"):
            cur.removed.append(line[1:])
    return files


NOT_UTF8 = "the diff is not UTF-8 text"
_PATCH_BATCH = 200  # commits per `git log --no-walk`


class Patches(dict[str, list[FileDiff]]):
    """sha -> its file diffs; `skipped` holds the commits without a readable patch, each with
    the reason (what git could not read, a diff that is not UTF-8 text, only a submodule)."""

    def __init__(self) -> None:
        super().__init__()
        self.skipped: dict[str, str] = {}


def commit_patches(repo: Path, shas: list[str], *pathspec: str) -> Patches:
    """The `-U0` patches of the given commits, in one `git log --no-walk` per 200 commits. A
    batch git fails on (a partial clone's missing blob, a corrupt object) is retried commit by
    commit, so one unreadable commit is a skip with its reason and never costs the others."""
    out = Patches()
    for i in range(0, len(shas), _PATCH_BATCH):
        _read_patches(repo, shas[i:i + _PATCH_BATCH], pathspec, out)
    return out


def _read_patches(repo: Path, shas: list[str], pathspec: tuple[str, ...], out: Patches) -> None:
    try:
        raw = gitcli.git_bytes(repo, *LOG_PATCH, "--no-walk=unsorted", "--format=%x1e%H%x1f",
                               *shas, "--", *pathspec)
    except gitcli.GitError as e:
        if len(shas) == 1:
            out.skipped[shas[0]] = gitcli.cannot_read(e)
        for sha in shas if len(shas) > 1 else ():
            _read_patches(repo, [sha], pathspec, out)
        return
    for chunk in raw.split(b"\x1e")[1:]:
        head, _, patch = chunk.partition(b"\x1f")
        sha = head.decode("ascii", "replace").strip()
        try:
            diffs = parse_patch(patch.decode("utf-8"))
        except UnicodeDecodeError:
            out.skipped[sha] = NOT_UTF8
            continue
        subs = [d.new or d.old or "?" for d in diffs if d.submodule]
        if subs and len(subs) == len(diffs):
            out.skipped[sha] = f"changes only a submodule: {', '.join(subs)}"
            continue
        out[sha] = [d for d in diffs if not d.submodule]


def skip_notes(label: str, skipped: dict[str, str]) -> list[str]:
    """One note per reason: `label: 3 commits skipped, <reason> (e.g. sha, sha)`."""
    by_reason: dict[str, list[str]] = {}
    for sha, reason in skipped.items():
        by_reason.setdefault(reason, []).append(sha[:12])
    notes = []
    for reason, shas in by_reason.items():
        noun = "commit" if len(shas) == 1 else "commits"
        more = f" and {len(shas) - 3} more" if len(shas) > 3 else ""
        notes.append(f"{label}: {len(shas)} {noun} skipped, {reason} "
                     f"({', '.join(shas[:3])}{more})")
    return notes


def scope_of(ctx: ResearchContext) -> list[str]:
    """Repo-relative patterns of the files in scope; empty means the whole repository."""
    pats = under(ctx.rel, ctx.spec.target.scope)
    return pats or ([f"{ctx.rel.rstrip('/')}/**"] if ctx.rel else [])


def in_scope(path: str, patterns: list[str]) -> bool:
    return not patterns or matches(path, patterns)


def pathspecs(patterns: list[str]) -> list[str]:
    """Git pathspecs covering at least the patterns (results are still filtered by them)."""
    pats = [p.strip().lstrip("/").removeprefix("./").rstrip("/") for p in patterns]
    if not pats or any(not p or "[" in p or "\\" in p or p.startswith("!") for p in pats):
        return []
    return [s for p in pats for s in (f":(glob){p}", f":(glob){p}/**")]


def to_root(path: str, rel: str) -> str:
    """A repo-relative path relative to the target's root."""
    prefix = rel.rstrip("/") + "/"
    return path[len(prefix):] if rel and path.startswith(prefix) else path


def baseline_of(ctx: ResearchContext) -> str:
    rev = getattr(ctx, "baseline", None) or "HEAD"
    return gitcli.git(ctx.repo, "rev-parse", "--verify", f"{rev}^{{commit}}")


def int_option(ctx: ResearchContext, key: str, default: int) -> int:
    v = ctx.research.get(key, default)
    if isinstance(v, bool) or not isinstance(v, int) or v < 0:
        raise ConfigError(f"[research] {key}: expected an integer >= 0, got {v!r}")
    return v


class HistorySource:
    """Performance commits in the target's own history and perf-minded TODO/FIXME notes."""

    name = "history"
    needs_network = False

    def run(self, ctx: ResearchContext) -> Finding:
        t0 = time.monotonic()
        f = Finding(self.name)
        base, pats = baseline_of(ctx), scope_of(ctx)
        self._commits(ctx, f, base, pats)
        self._todos(ctx, f, base, pats)
        f.seconds = time.monotonic() - t0
        return f

    def _commits(self, ctx: ResearchContext, f: Finding, base: str, pats: list[str]) -> None:
        n = int_option(ctx, "history_commits", 500)
        fmt = "--format=%x1e%H%x1f%s%x1f%b%x1f"
        log = gitcli.git(ctx.repo, "-c", "core.quotePath=false", "log", f"-n{n}", "--no-merges",
                         "--name-only", fmt, base, errors="replace") if n else ""
        commits: list[tuple[str, str, str, list[str]]] = []
        for chunk in log.split("\x1e")[1:]:
            sha, subject, body, names = (chunk.split("\x1f", 3) + [""] * 3)[:4]
            files = [_unquote(p) for p in names.splitlines() if p.strip()]
            commits.append((sha, subject, body, [p for p in files if in_scope(p, pats)]))
        touching = [c[0] for c in commits if c[3]]
        patches = commit_patches(ctx.repo, touching, *pathspecs(pats))
        f.notes += skip_notes("history", patches.skipped)
        per_file: dict[str, list[tuple[str, str, Site | None]]] = {}
        for sha, subject, body, files in commits:
            if sha in patches.skipped:  # noted above with its reason
                continue
            diffs = [d for d in patches.get(sha, []) if d.new and d.new in files]
            cues = perf_cues(f"{subject}\n{body}", [ln for d in diffs for ln in d.added],
                             [ln for d in diffs for ln in d.removed])
            if not cues:
                continue
            f.references.append(Reference(f"self@{sha}", "commit", subject,
                                          detail=commit_detail(subject, body)))
            if len(diffs) > FOCUSED:  # a sweeping change says little about any one file
                continue
            for d in diffs:
                site = Site(to_root(d.new, ctx.rel), d.hunks[0][1], d.hunks[0][2]) \
                    if d.hunks and d.new else None
                per_file.setdefault(d.new or "", []).append((sha, subject, site))
        alive = set(gitcli.git(ctx.repo, "ls-tree", "-r", "-z", "--name-only", "--full-tree",
                               base, "--", *per_file, errors="replace").split("\0")) \
            if per_file else set()
        ranked = sorted((p for p in per_file if p in alive), key=lambda p: -len(per_file[p]))
        for path in ranked[:int_option(ctx, "max_history_files", 10)]:
            work = per_file[path]
            rel = to_root(path, ctx.rel)
            subjects = "; ".join(s for _, s, _ in work[:3])
            f.hypotheses.append(Hypothesis(
                title=f"Revisit {rel}: recent performance work", kind="history",
                rationale=f"{len(work)} recent performance commit(s) touched it: {subjects}",
                sites=[work[0][2] or Site(rel, 1)], sources=[f"self@{s}" for s, _, _ in work[:5]],
                score=0.15, data={"commits": [s for s, _, _ in work]}))

    def _todos(self, ctx: ResearchContext, f: Finding, base: str, pats: list[str]) -> None:
        out = gitcli.git(ctx.repo, "-c", "core.quotePath=false", "grep", "-n", "-p", "-I", "-E",
                         "-e", TODO_TAG, base, "--", *pathspecs(pats), check=False,
                         errors="replace")
        func: dict[str, str | None] = {}
        notes: dict[str, Hypothesis] = {}  # the same note in many files is one hypothesis
        for line in out.splitlines():
            m = re.match(rf"^{base}:(.*?)([:=])(\d+)\2(.*)$", line)
            if not m or not in_scope(_unquote(m[1]), pats):
                continue
            path, sep, lineno, text = _unquote(m[1]), m[2], int(m[3]), m[4]
            if sep == "=":  # `git grep -p`: the function the next matches are in
                func[path] = function_name(text)
                continue
            note = text[re.search(TODO_TAG, text).start(2):]  # type: ignore[union-attr]
            note = re.sub(r"\s*(\*/|-->)\s*$", "", note).strip()[:120]
            if not TODO_PERF.search(note):
                continue
            if note not in notes:
                if len(notes) >= int_option(ctx, "max_todos", 30):
                    continue
                notes[note] = Hypothesis(title=note, kind="todo",
                                         rationale=f"a note in the code: {text.strip()}",
                                         score=0.3)
            h, rel = notes[note], to_root(path, ctx.rel)
            if len(h.sites) < 10:
                h.sites.append(Site(rel, lineno, func.get(path)))
                h.sources.append(f"{rel}:{lineno}")
                f.references.append(Reference(f"{rel}:{lineno}", "code", note,
                                              detail=text.strip()))
        f.hypotheses.extend(notes.values())

def commit_detail(subject: str, body: str, lines: int = 6) -> str:
    """The first lines of a commit message, for a Reference's detail."""
    return "\n".join([subject, *body.strip().splitlines()[:lines]]).strip()[:600]
