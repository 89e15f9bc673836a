"""Turn a model's answer into file edits: aider-style SEARCH/REPLACE blocks or a unified diff.

SEARCH text must match exactly once; failing that, once when whitespace is ignored (the
replacement is re-indented to the file's indentation). An empty SEARCH creates the file (or
appends to it). Unified diffs go through `git apply --3way --recount`, and when git refuses
them, their hunks are retried as SEARCH/REPLACE blocks.
"""

from __future__ import annotations

import re
import tempfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from readfirst.core.globs import matches
from readfirst.vcs import gitcli

_SEARCH = re.compile(r"^\s*<{5,9}\s*SEARCH\s*$")
_DIVIDER = re.compile(r"^\s*={5,9}\s*$")
_REPLACE = re.compile(r"^\s*>{5,9}\s*REPLACE\s*$")
_FENCE = re.compile(r"^\s*(```+|~~~+)\s*(\S*)\s*(\S*)\s*$")
_HUNK = re.compile(r"^@@ -\d+(?:,\d+)? \+\d+(?:,\d+)? @@")
_DIFF_LINE = ("diff --git ", "index ", "--- ", "+++ ", "@@", "new file mode", "deleted file mode",
              "old mode", "new mode", "similarity index", "rename from", "rename to", "\\")


class EditError(Exception):
    """The answer holds no usable edit, or an edit does not fit the files."""


@dataclass(frozen=True)
class Block:
    path: str
    search: str
    replace: str


def _looks_like_path(s: str) -> bool:
    return bool(s) and " " not in s and ("/" in s or bool(re.search(r"\.\w{1,8}$", s)))


def _clean_path(line: str) -> str:
    s = line.strip().strip("*`'\"#").strip()
    s = re.sub(r"^(?:File|Path|Filename)\s*:\s*", "", s, flags=re.IGNORECASE).strip("`*'\" ")
    return s.rstrip(":").strip()


def _path_before(lines: list[str], i: int) -> str | None:
    """The file a SEARCH marker at line i belongs to: a fence header path, else the nearest
    non-blank, non-fence line above."""
    j = i - 1
    while j >= 0 and not lines[j].strip():
        j -= 1
    if j >= 0 and (m := _FENCE.match(lines[j])):
        for word in (m.group(3), m.group(2)):
            if _looks_like_path(_clean_path(word)):
                return _clean_path(word)
        j -= 1
        while j >= 0 and not lines[j].strip():
            j -= 1
    if j >= 0:
        cand = _clean_path(lines[j])
        if _looks_like_path(cand):
            return cand
    return None


def parse_blocks(text: str) -> list[Block]:
    """SEARCH/REPLACE blocks in order; a block without its own path continues the last file."""
    lines = text.splitlines()
    blocks: list[Block] = []
    path: str | None = None
    i = 0
    while i < len(lines):
        if not _SEARCH.match(lines[i]):
            i += 1
            continue
        path = _path_before(lines, i) or path
        if path is None:
            raise EditError("a SEARCH/REPLACE block names no file (put the path on the line "
                            "before it)")
        j = i + 1
        while j < len(lines) and not _DIVIDER.match(lines[j]):
            j += 1
        k = j + 1
        while k < len(lines) and not _REPLACE.match(lines[k]):
            k += 1
        if j >= len(lines) or k >= len(lines):
            raise EditError(f"{path}: unterminated SEARCH/REPLACE block")
        search, replace = lines[i + 1:j], lines[j + 1:k]
        blocks.append(Block(path, _joined(search), _joined(replace)))
        i = k + 1
    return blocks


def _joined(lines: list[str]) -> str:
    return "".join(ln + "\n" for ln in lines)


def extract_diff(text: str) -> str | None:
    """A unified diff in the answer (```diff fences, else bare), or None."""
    fenced = re.findall(r"```(?:diff|patch|udiff)[^\n]*\n(.*?)```", text, re.DOTALL)
    body = "".join(f if f.endswith("\n") else f + "\n" for f in fenced) if fenced else text
    out: list[str] = []
    in_hunk = False
    for ln in body.splitlines():
        if ln.startswith(("diff --git ", "--- ")) or (ln.startswith("+++ ") and out):
            in_hunk = False
            out.append(ln)
        elif _HUNK.match(ln) and out:
            in_hunk = True
            out.append(ln)
        elif (in_hunk and (ln[:1] in (" ", "+", "-", "\\") or ln == "")) or (
                out and not in_hunk and ln.startswith(_DIFF_LINE)):
            out.append(ln)
        elif out and ln.strip():
            in_hunk = False  # prose between or after diffs
    diff = "\n".join(out).rstrip("\n") + "\n"
    return diff if any(_HUNK.match(ln) for ln in out) else None


def _safe(root: Path, rel: str) -> Path:
    p = PurePosixPath(rel.replace("\\", "/"))
    if p.is_absolute() or ".." in p.parts or not p.parts or p.parts[0] == ".git":
        raise EditError(f"{rel}: not a path inside the target")
    full = (root / p).resolve()
    if not full.is_relative_to(root.resolve()):
        raise EditError(f"{rel}: not a path inside the target")
    return full


def _norm(line: str) -> str:
    return " ".join(line.split())


def _lead(line: str) -> str:
    return line[: len(line) - len(line.lstrip())]


def _fuzzy(content: str, b: Block) -> str | None:
    """Replace the one run of lines equal to SEARCH up to whitespace; None if not exactly one."""
    file_lines = content.splitlines(keepends=True)
    want = [_norm(x) for x in b.search.splitlines()]
    while want and not want[-1]:
        want.pop()
    while want and not want[0]:
        want.pop(0)
    if not want:
        return None
    n = len(want)
    have_norm = [_norm(x) for x in file_lines]
    hits = [i for i in range(len(file_lines) - n + 1) if have_norm[i:i + n] == want]
    if len(hits) != 1:
        return None
    i = hits[0]
    first = next(x for x in b.search.splitlines() if x.strip())
    have, had = _lead(file_lines[i]), _lead(first)
    out = []
    for ln in b.replace.splitlines():
        if ln.strip() and have.startswith(had):
            ln = have[len(had):] + ln
        elif ln.strip() and had.startswith(have) and ln.startswith(had[len(have):]):
            ln = ln[len(had) - len(have):]
        out.append(ln + "\n")
    return "".join(file_lines[:i]) + "".join(out) + "".join(file_lines[i + n:])


def _apply_block(content: str | None, b: Block) -> str:
    first = next((x.strip() for x in b.search.splitlines() if x.strip()), "")
    if not first:
        if content is None or not content:
            return b.replace
        return content + ("" if content.endswith("\n") else "\n") + b.replace
    if content is None:
        raise EditError(f"{b.path}: no such file (SEARCH starts with {first!r})")
    count = content.count(b.search)
    if count > 1:
        raise EditError(f"{b.path}: SEARCH matches {count} places (first line: {first!r})")
    if count == 1:
        return content.replace(b.search, b.replace, 1)
    if content.count(b.search.rstrip("\n")) == 1:  # e.g. the file's last line has no newline
        return content.replace(b.search.rstrip("\n"), b.replace.rstrip("\n"), 1)
    fuzzy = _fuzzy(content, b)
    if fuzzy is None:
        raise EditError(f"{b.path}: SEARCH text not found (first line: {first!r})")
    return fuzzy


def apply_blocks(root: Path, blocks: list[Block]) -> list[str]:
    """Apply all blocks in memory, then write; nothing is written when one fails."""
    state: dict[str, str | None] = {}
    for b in blocks:
        full = _safe(root, b.path)
        if b.path not in state:
            state[b.path] = full.read_text() if full.is_file() else None
        state[b.path] = _apply_block(state[b.path], b)
    for rel, content in state.items():
        full = _safe(root, rel)
        full.parent.mkdir(parents=True, exist_ok=True)
        full.write_text(content or "")
    return list(state)


def _diff_paths(diff: str) -> list[str]:
    out: list[str] = []
    for ln in diff.splitlines():
        if ln.startswith(("+++ ", "--- ")):
            p = ln[4:].split("\t")[0].strip()
            if p != "/dev/null":
                p = re.sub(r"^[ab]/", "", p)
                if p not in out:
                    out.append(p)
    return out


def hunks_as_blocks(diff: str) -> list[Block]:
    """Each hunk as a SEARCH/REPLACE block (old side -> new side), for diffs git refuses."""
    blocks: list[Block] = []
    path, old, new = "", list[str](), list[str]()

    def flush() -> None:
        if path and (old or new):
            blocks.append(Block(path, _joined(old), _joined(new)))
        old.clear()
        new.clear()

    for ln in diff.splitlines():
        if ln.startswith("+++ "):
            flush()
            p = ln[4:].split("\t")[0].strip()
            path = "" if p == "/dev/null" else re.sub(r"^b/", "", p)
        elif _HUNK.match(ln):
            flush()
        elif ln.startswith("\\"):
            continue
        elif ln.startswith(_DIFF_LINE):
            flush()
        elif ln[:1] == "-":
            old.append(ln[1:])
        elif ln[:1] == "+":
            new.append(ln[1:])
        elif ln[:1] == " " or ln == "":
            old.append(ln[1:])
            new.append(ln[1:])
    flush()
    return blocks


def apply_diff(root: Path, diff: str) -> list[str]:
    """`git apply --3way` in `root` (paths relative to it), falling back to hunk matching."""
    heads = [ln for ln in diff.splitlines() if ln.startswith(("--- ", "+++ "))]
    strip = "-p1" if all(h[4:].startswith(("a/", "b/", "/dev/null")) for h in heads) else "-p0"
    paths = _diff_paths(diff)
    saved = {p: (f.read_bytes() if (f := _safe(root, p)).is_file() else None) for p in paths}
    with tempfile.NamedTemporaryFile("w", suffix=".patch", delete=False) as fh:
        fh.write(diff)
    patch = Path(fh.name)
    try:
        gitcli.git(root, "apply", "--3way", "--recount", "--whitespace=nowarn", strip,
                   str(patch))
    except gitcli.GitError as e:
        for p, data in saved.items():  # undo what a failed 3-way merge left behind
            f = _safe(root, p)
            if data is None:
                f.unlink(missing_ok=True)
            else:
                f.write_bytes(data)
        gitcli.git(root, "reset", "-q", "--", *paths, check=False)
        blocks = hunks_as_blocks(diff)
        if not blocks:
            raise EditError(f"the diff does not apply: {str(e)[:300]}") from None
        return apply_blocks(root, blocks)
    finally:
        patch.unlink(missing_ok=True)
    return paths


def apply_edits(worktree: Path, text: str) -> list[str]:
    """Apply the edits in a model's answer under `worktree`; the changed paths."""
    blocks = parse_blocks(text)
    if blocks:
        return apply_blocks(worktree, blocks)
    diff = extract_diff(text)
    if diff is not None:
        return apply_diff(worktree, diff)
    raise EditError("the answer holds no SEARCH/REPLACE block and no unified diff")


@dataclass(frozen=True)
class TargetFiles:
    """The target's files at one commit, read for prompts (the model never sees others)."""

    repo: Path
    rel: str  # the target's directory in the repo ("" at the top)
    commit: str
    scope: tuple[str, ...]  # target-relative globs; empty: everything
    protected: tuple[str, ...]

    def repo_path(self, rel: str) -> str:
        return f"{self.rel}/{rel}" if self.rel else rel

    def target_path(self, repo_path: str) -> str:
        return repo_path.removeprefix(f"{self.rel}/") if self.rel else repo_path

    def allowed(self, rel: str) -> bool:
        return (not self.scope or matches(rel, self.scope)) and not matches(rel, self.protected)

    def show(self, rel: str) -> str | None:
        try:
            return gitcli.git(self.repo, "show", f"{self.commit}:{self.repo_path(rel)}")
        except (gitcli.GitError, UnicodeDecodeError):
            return None

    def scope_files(self) -> list[str]:
        out = gitcli.git(self.repo, "ls-tree", "-r", "--name-only", "-z", self.commit, "--",
                         self.rel or ".")
        return [f for p in out.split("\0") if p and self.allowed(f := self.target_path(p))]

    def windows(self, sites: list[tuple[str, int, int]], budget: int, title: str = "Code") -> str:
        """Lines lo..hi of each file (merged per file), up to `budget` characters."""
        spans: dict[str, list[tuple[int, int]]] = {}
        for path, lo, hi in sites:
            spans.setdefault(path.removeprefix("./"), []).append((max(1, lo), hi))
        parts: list[str] = []
        used = 0
        for path, ranges in spans.items():
            text = self.show(path)
            if text is None:
                continue
            lines = text.splitlines()
            merged: list[list[int]] = []
            for lo, hi in sorted(ranges):
                if merged and lo <= merged[-1][1] + 1:
                    merged[-1][1] = max(merged[-1][1], hi)
                else:
                    merged.append([lo, hi])
            for lo, hi in merged:
                hi = min(hi, len(lines))
                body = "\n".join(lines[lo - 1:hi])
                chunk = f"--- {path} (lines {lo}-{hi})\n```\n{body}\n```\n"
                if used + len(chunk) > budget:
                    break
                parts.append(chunk)
                used += len(chunk)
        return f"## {title}\n\n" + "\n".join(parts) if parts else ""

    def full_files(self, paths: list[str], budget: int = 40_000, cap: int = 20_000) -> str:
        """Whole files in scope (each cut at `cap`), up to `budget` characters."""
        parts: list[str] = []
        used = 0
        for p in dict.fromkeys(paths):
            text = self.show(p) if self.allowed(p) else None
            if text is None:
                continue
            text = text[:cap] + "\n... (truncated)" if len(text) > cap else text
            if used + len(text) > budget:
                break
            parts.append(f"--- {p}\n```\n{text}\n```\n")
            used += len(text)
        return "\n".join(parts)

    def diff_files(self, diff: str) -> dict[str, list[int]]:
        """Target-relative paths a git diff changes, with the old-side line of each hunk."""
        files: dict[str, list[int]] = {}
        path = None
        for ln in diff.splitlines():
            if m := re.match(r"^diff --git a/(\S+) b/(\S+)", ln):
                path = self.target_path(m.group(2))
                files.setdefault(path, [])
            elif (m := re.match(r"^@@ -(\d+)", ln)) and path:
                files[path].append(int(m.group(1)))
        return files
