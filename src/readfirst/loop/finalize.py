"""`readfirst finalize [RUN]`: a run's kept winners as independent, reviewable branches.

The loop keeps winners as one stacked branch, each commit measured on top of the previous ones.
A reviewer wants each change on its own: so every winner is re-applied on the run's base, alone.
Winners are grouped when they cannot stand alone:
- a winner whose diff does not apply on the base (it edits lines an earlier winner wrote) joins
  the earlier winners that touch the same files;
- a winner that is not faster on its own joins the earlier group it helps on top of (measured:
  the group with it against the group without it).
Each group's branch is rebuilt from scratch, checked and measured against the base; only groups
that are `improved` alone get a branch. Commits carry the user's git identity, the evidence and
the sources; each branch gets a PR description in Markdown. `--push` and `--pr` (through `gh`)
publish them.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from readfirst.core.config import Spec
from readfirst.core.errors import ConfigError
from readfirst.core.target import Target
from readfirst.measure.compare import Progress, compare
from readfirst.report.status import evidence_str
from readfirst.vcs import gitcli
from readfirst.vcs.workspace import Workspace

SLOTS = ("fin-base", "fin-cand")
Say = Callable[[str], None]


class Winner(BaseModel):
    seq: int  # the confirming experiment's number in the run
    commit: str  # its commit on the run's stacked branch
    parent: str
    title: str
    rationale: str = ""
    provenance: list[str] = []
    files: list[str] = []
    diff: str = Field("", exclude=True)  # binary-safe; not printed with --json
    loop_evidence: str = ""


class Group(BaseModel):
    winners: list[Winner]
    branch: str = ""
    head: str | None = None
    verdict: str | None = None
    evidence: str = ""
    reason: str = ""
    pr_file: str | None = None
    pr_url: str | None = None

    @property
    def title(self) -> str:
        first = self.winners[0].title
        return first if len(self.winners) == 1 else f"{first} (+{len(self.winners) - 1} more)"


class FinalizeResult(BaseModel):
    run_id: str
    base_commit: str
    groups: list[Group]
    dropped: list[Group] = []  # not faster alone, nor on top of any other group
    out_dir: str


def _winners(repo: Path, summary: dict[str, Any]) -> list[Winner]:
    """The kept winners in landing order, read from the stacked branch's own history."""
    base, final = summary["base_commit"], summary["final_commit"]
    commits = gitcli.git(repo, "rev-list", "--reverse", "--first-parent",
                         f"{base}..{final}").split()
    rows = {e["landed_commit"]: e for e in summary["experiments"]
            if e.get("outcome") == "kept" and e.get("landed_commit")
            and e.get("kind") == "confirm"}
    out = []
    for commit in commits:
        e = rows.get(commit)
        if e is None:
            raise ConfigError(f"{summary['branch']}: commit {commit[:12]} is not a kept winner "
                              "of this run (the branch was moved by hand?)")
        parent = gitcli.git(repo, "rev-parse", f"{commit}^")
        out.append(Winner(
            seq=e["seq"], commit=commit, parent=parent, title=e["title"],
            rationale=e.get("rationale") or "", provenance=list(e.get("provenance") or []),
            files=gitcli.changed_files(repo, parent, commit),
            diff=gitcli.git(repo, "diff", "--binary", "--full-index", parent, commit) + "\n",
            loop_evidence=evidence_str(e, summary.get("metric")),
        ))
    return out


def _apply_all(ws: Workspace, base: str, winners: list[Winner]) -> bool:
    """Whether the winners' diffs apply, in order, on the base (in the finalize slot)."""
    path = ws.checkout(SLOTS[1], base)
    patch = path.parent / ".finalize.patch"
    try:
        for w in winners:
            patch.write_text(w.diff)
            try:
                gitcli.git(path, "apply", "--3way", "--whitespace=nowarn", str(patch))
            except gitcli.GitError:
                return False
            gitcli.git(path, "add", "-A")
    finally:
        patch.unlink(missing_ok=True)
        gitcli.worktree_checkout(path, base)
    return True


def group_winners(ws: Workspace, base: str, winners: list[Winner]) -> list[list[Winner]]:
    """Groups by what applies alone: a winner that does not apply on the base joins every
    earlier group that touches one of its files."""
    groups: list[list[Winner]] = []
    for w in winners:
        if _apply_all(ws, base, [w]):
            groups.append([w])
            continue
        mine = [g for g in groups if any(set(o.files) & set(w.files) for o in g)]
        merged = sorted([o for g in mine for o in g] + [w], key=lambda o: winners.index(o))
        groups = [g for g in groups if g not in mine] + [merged]
        if not _apply_all(ws, base, merged):
            raise ConfigError(f"winner #{w.seq} ({w.title}) does not apply on the base even "
                              "with the winners it touches; finalize cannot split this run")
    return sorted(groups, key=lambda g: winners.index(g[0]))


def _identity(repo: Path) -> str:
    try:
        return gitcli.git(repo, "var", "GIT_AUTHOR_IDENT")
    except gitcli.GitError:
        raise ConfigError("no git identity: set it with `git config user.name \"Your Name\"` and "
                          "`git config user.email you@example.com` (finalize commits as you)"
                          ) from None


def _message(w: Winner, run_id: str, evidence: str, last: bool) -> str:
    lines = [w.title, ""]
    if w.rationale.strip():
        lines += [w.rationale.strip(), ""]
    if w.provenance:
        lines += ["Sources:", *[f"- {p}" for p in w.provenance], ""]
    lines.append(f"Kept by readfirst run {run_id}, experiment #{w.seq}: {w.loop_evidence}")
    if last and evidence:
        lines.append(f"Measured on this branch alone against the run's base: {evidence}")
    return "\n".join(lines)


def _commit_group(ws: Workspace, repo: Path, base: str, group: Group, run_id: str) -> str:
    """The group's commits on the base, one per winner, authored by the user."""
    path = ws.checkout(SLOTS[1], base)
    parent = base
    patch = path.parent / ".finalize.patch"
    try:
        for i, w in enumerate(group.winners):
            patch.write_text(w.diff)
            gitcli.git(path, "apply", "--3way", "--whitespace=nowarn", str(patch))
            gitcli.git(path, "add", "-A")
            tree = gitcli.git(path, "write-tree")
            msg = _message(w, run_id, group.evidence, i == len(group.winners) - 1)
            parent = gitcli.git(repo, "commit-tree", tree, "-p", parent, "-m", msg)
    finally:
        patch.unlink(missing_ok=True)
        gitcli.worktree_checkout(path, base)
    return parent


def _measure(target: Target, spec: Spec, base: str, head: str,
             progress: Progress) -> dict[str, Any]:
    """Rebuilt from scratch, checked and measured against `base`."""
    return compare(target, base, head, spec, progress, slots=SLOTS, clean_cand=True)


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:48] or "change"


def finalize(target: Target, spec: Spec, summary: dict[str, Any], *, prefix: str = "perf/",
             force: bool = False, progress: Progress | None = None,
             say: Say = lambda _m: None) -> FinalizeResult:
    """Make one branch per independent winner (or group); see the module docstring."""
    repo, base, run_id = target.repo, summary["base_commit"], summary["run_id"]
    _identity(repo)
    ws = Workspace(target.root)
    ws.ensure()
    winners = _winners(repo, summary)
    if not winners:
        raise ConfigError(f"run {run_id} kept no winner: nothing to finalize")
    quiet: Progress = progress or (lambda _m, _d, _t: None)
    pending = [Group(winners=g) for g in group_winners(ws, base, winners)]
    done: list[Group] = []
    dropped: list[Group] = []
    say(f"{len(winners)} winner(s) in {len(pending)} group(s) on {base[:12]}")
    while pending:
        group = pending.pop(0)
        head = _commit_group(ws, repo, base, group, run_id)
        r = _measure(target, spec, base, head, quiet)
        group.verdict, group.evidence = r["verdict"], evidence_str(r)
        say(f"  {group.title}: {group.verdict} alone ({group.evidence})")
        if group.verdict == "improved":
            done.append(group)
            continue
        host = _helps_on_top(target, spec, ws, base, run_id, group, done + pending, quiet, say)
        if host is None:
            group.reason = f"not faster alone ({group.verdict}) nor on top of another winner"
            dropped.append(group)
            continue
        merged = Group(winners=sorted(host.winners + group.winners,
                                      key=lambda w: winners.index(w)))
        done = [g for g in done if g is not host]
        pending = [g for g in pending if g is not host]
        pending.insert(0, merged)  # re-measured alone, as a whole
    out_dir = ws.state / "finalize" / run_id
    out_dir.mkdir(parents=True, exist_ok=True)
    for group in done:
        _publish_branch(repo, base, group, run_id, prefix, force, out_dir, spec, ws)
    return FinalizeResult(run_id=run_id, base_commit=base, groups=done, dropped=dropped,
                          out_dir=str(out_dir))


def _helps_on_top(target: Target, spec: Spec, ws: Workspace, base: str, run_id: str,
                  group: Group, others: list[Group], progress: Progress,
                  say: Say) -> Group | None:
    """The other group this one is faster on top of (latest landed first), or None."""
    order = sorted(others, key=lambda g: max(w.seq for w in g.winners), reverse=True)
    for host in order:
        if not _apply_all(ws, base, host.winners + group.winners):
            continue
        host_head = _commit_group(ws, target.repo, base, host, run_id)
        both = Group(winners=host.winners + group.winners)
        both_head = _commit_group(ws, target.repo, base, both, run_id)
        r = _measure(target, spec, host_head, both_head, progress)
        say(f"  {group.title} on top of {host.title}: {r['verdict']}")
        if r["verdict"] == "improved":
            return host
    return None


def _publish_branch(repo: Path, base: str, group: Group, run_id: str, prefix: str,
                    force: bool, out_dir: Path, spec: Spec, ws: Workspace) -> None:
    group.branch = f"{prefix}{_slug(group.winners[0].title)}"
    if gitcli.branches(repo, group.branch).get(group.branch) and not force:
        raise ConfigError(f"branch {group.branch} exists (use --force to replace it, or "
                          "--prefix for other names)")
    group.head = _commit_group(ws, repo, base, group, run_id)  # messages with the evidence
    gitcli.git(repo, "update-ref", f"refs/heads/{group.branch}", group.head)
    pr = out_dir / f"{_slug(group.branch)}.md"
    pr.write_text(pr_description(group, run_id, base, spec), encoding="utf-8")
    group.pr_file = str(pr)


def pr_description(group: Group, run_id: str, base: str, spec: Spec) -> str:
    """The pull request's body: what changed, the measurement, the sources, how to re-check."""
    checks = f"`{spec.target.checks}` passed on this branch." if spec.target.checks else \
        "No checks are configured ([target] checks)."
    lines = [
        f"# {group.title}", "",
        f"Found by readfirst (run `{run_id}`) and "
        f"re-measured on this branch alone, rebuilt from scratch, against `{base[:12]}`:", "",
        f"**{group.evidence}**", "", checks, "", "## Changes", "",
    ]
    for w in group.winners:
        lines += [f"### {w.title} (experiment #{w.seq})", ""]
        if w.rationale.strip():
            lines += [w.rationale.strip(), ""]
        if w.provenance:
            lines += ["Sources:", "", *[f"- {p}" for p in w.provenance], ""]
        lines += [f"Files: {', '.join(f'`{f}`' for f in w.files)}", "",
                  f"In the run: {w.loop_evidence}", ""]
    lines += ["## Reproduce", "", "```sh", f"readfirst compare {base[:12]} {group.branch}",
              "```", ""]
    return "\n".join(lines)


def push(repo: Path, remote: str, groups: list[Group]) -> None:
    for g in groups:
        try:
            gitcli.git(repo, "push", "--quiet", remote, f"{g.head}:refs/heads/{g.branch}")
        except gitcli.GitError as e:
            raise ConfigError(f"push of {g.branch} to {remote} failed: {e}") from None


def require_gh() -> str:
    gh = shutil.which("gh")
    if gh is None:
        raise ConfigError("--pr needs GitHub's `gh` CLI, which is not installed (without --pr, "
                          "finalize writes each PR description next to its branch)")
    return gh


def open_prs(repo: Path, groups: list[Group], base_branch: str | None) -> None:
    """`gh pr create` per branch (gh prints the new pull request's URL)."""
    gh = require_gh()
    for g in groups:
        cmd = [gh, "pr", "create", "--head", g.branch, "--title", g.title,
               "--body-file", str(g.pr_file)]
        if base_branch:
            cmd += ["--base", base_branch]
        proc = subprocess.run(cmd, cwd=repo, capture_output=True, text=True,
                              stdin=subprocess.DEVNULL)
        if proc.returncode != 0:
            said = (proc.stderr or proc.stdout).strip().splitlines()
            raise ConfigError(f"gh pr create for {g.branch} failed (exit {proc.returncode}): "
                              f"{said[-1] if said else 'no output'}")
        urls = re.findall(r"https?://\S+", proc.stdout)
        g.pr_url = urls[-1] if urls else proc.stdout.strip()
