"""The experiment tools of `readfirst mcp`: measure the agent's change (`run_experiment`),
`keep` or `discard` it, `status`, `report`; each experiment is a row of the journal table
`mcp_experiments`. Only `keep` and `discard` touch the user's working tree."""

from __future__ import annotations

import json
import sqlite3
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from readfirst.core.candidate import Candidate
from readfirst.core.config import Spec, load_spec
from readfirst.core.notation import format_result_change
from readfirst.measure.compare import compare
from readfirst.report import write_report
from readfirst.report.status import status_rows
from readfirst.research import ResearchContext
from readfirst.store.journal import Journal
from readfirst.store.loop_journal import LoopLog
from readfirst.vcs import gitcli
from readfirst.vcs.apply import ApplyError, apply_candidate
from readfirst.vcs.gitcli import COMMIT_IDENTITY
from readfirst.vcs.workspace import Workspace, target_at

SLOT = "mcp"
REF_PREFIX = "refs/readfirst/mcp/"  # keeps measured patch commits from garbage collection
SCHEMA = """
CREATE TABLE IF NOT EXISTS mcp_experiments (
    id INTEGER PRIMARY KEY,
    ts REAL NOT NULL,
    title TEXT NOT NULL,
    kind TEXT NOT NULL,              -- worktree | patch
    snapshot_commit TEXT NOT NULL,   -- what was measured (WORKTREE snapshot or patch commit)
    tree_sha TEXT NOT NULL,
    verdict TEXT,
    result_json TEXT NOT NULL,       -- the compare verdict (+ patch, outcome details)
    status TEXT NOT NULL             -- measured | kept | discarded
);
"""


class ToolFailure(Exception):
    """An anticipated failure of a tool; the message is what the agent reads."""


def one_line(e: BaseException) -> str:
    text = " ".join(str(e).split()) or type(e).__name__
    return text if len(text) <= 600 else text[:597] + "..."


def _ident_env(repo: Path) -> dict[str, str]:
    """The user's git identity when configured, else readfirst's (commits and stashes need one)."""
    ok = gitcli.git(repo, "var", "GIT_COMMITTER_IDENT", check=False)
    ok = ok and gitcli.git(repo, "var", "GIT_AUTHOR_IDENT", check=False)
    return {} if ok else dict(COMMIT_IDENTITY)


def change_line(result: dict[str, Any]) -> str:
    """`time_ms (lower is better): -49.8 % [-50.1, -49.5] % (99.3 % CI), p = 0.0001, 10 rounds`."""
    metric = result.get("metric") or {}
    p = result.get("p_value")
    p_txt = f", p = {p:.2g}" if isinstance(p, int | float) else ""
    change = format_result_change(result)
    return (f"{metric.get('name') or 'metric'} ({metric.get('direction', '?')} is better): "
            f"{change}{p_txt}, {result.get('rounds') or 0} rounds")


class ExperimentLog:
    """The `mcp_experiments` table of the journal."""

    def __init__(self, journal: Journal) -> None:
        self.journal = journal
        self.db = journal.db
        self.db.executescript(SCHEMA)

    def add(self, title: str, kind: str, commit: str, tree: str, result: dict[str, Any]) -> int:
        cur = self.db.execute(
            "INSERT INTO mcp_experiments (ts, title, kind, snapshot_commit, tree_sha, verdict,"
            " result_json, status) VALUES (?, ?, ?, ?, ?, ?, ?, 'measured')",
            (time.time(), title, kind, commit, tree, result.get("verdict"), json.dumps(result)))
        return int(cur.lastrowid or 0)

    def get(self, exp_id: int) -> dict[str, Any]:
        row = self.db.execute("SELECT * FROM mcp_experiments WHERE id = ?", (exp_id,)).fetchone()
        if row is None:
            raise ToolFailure(f"no experiment {exp_id} (see status for the experiment ids)")
        return self._dict(row)

    def finish(self, exp_id: int, status: str, **details: Any) -> None:
        result = {**self.get(exp_id)["result"], **details}
        self.db.execute("UPDATE mcp_experiments SET status = ?, result_json = ? WHERE id = ?",
                        (status, json.dumps(result), exp_id))

    def all(self) -> list[dict[str, Any]]:
        rows = self.db.execute("SELECT * FROM mcp_experiments ORDER BY id").fetchall()
        return [self._dict(r) for r in rows]

    @staticmethod
    def _dict(row: sqlite3.Row) -> dict[str, Any]:
        d = dict(row)
        d["result"] = json.loads(d.pop("result_json"))
        return d


def summary_row(e: dict[str, Any]) -> dict[str, Any]:
    """One experiment without its raw samples: what status and the report show."""
    r = e["result"]
    return {"id": e["id"], "ts": e["ts"], "title": e["title"], "kind": e["kind"],
            "verdict": e["verdict"], "status": e["status"], "change": change_line(r),
            "reason": r.get("reason", ""), "commit": r.get("kept_commit"),
            "stash": r.get("stash")}


class ToolboxBase:
    """One target, its workspace, and the helpers every tool uses."""

    def __init__(self, directory: Path) -> None:
        self.target = target_at(directory)
        self.ws = Workspace(self.target.root)
        self.lock = threading.Lock()  # one working-tree-changing tool at a time
        load_spec(self.target.root)  # a bad config ends `readfirst mcp` before it serves

    def _spec(self) -> Spec:
        return load_spec(self.target.root)  # read fresh each call: the user may edit it

    @contextmanager
    def _log(self) -> Iterator[ExperimentLog]:
        self.ws.ensure()
        journal = Journal(self.ws.journal_path)
        try:
            yield ExperimentLog(journal)
        finally:
            journal.close()

    def _ctx(self, offline: bool, spec: Spec | None = None) -> ResearchContext:
        self.ws.ensure()
        return ResearchContext(repo=self.target.repo, root=self.target.root, rel=self.target.rel,
                               spec=spec or self._spec(), state_dir=self.ws.state,
                               offline=offline, baseline=self._head())

    def _head(self) -> str:
        return gitcli.resolve_commit(self.target.repo, "HEAD")

    @contextmanager
    def _exclusive(self) -> Iterator[None]:
        """One tool that builds or runs the benchmark at a time, holding the target's run
        lock (the one `readfirst run`/`compare`/`bench` take) only while it works: a run
        already going makes the call fail in one line; the call makes a new run wait for it."""
        with self.lock, self.ws.run_lock():
            yield


class ExperimentTools(ToolboxBase):
    """Measure a change, keep or discard it, and report on the experiments."""

    def run_experiment(self, patch: str | None = None, title: str = "") -> dict[str, Any]:
        """Measure a change against HEAD: your uncommitted working-tree diff (no patch), or
        the given unified diff applied on HEAD in a scratch worktree (your files untouched).
        Randomised interleaved rounds until the statistics decide; returns the verdict
        (improved / regressed / no_change / inconclusive / refused / checks_failed / crash /
        suspect) with ratio, CI and an experiment_id for keep or discard."""
        with self._exclusive():
            head = self._head()
            spec = self._spec()
            if patch is None or not patch.strip():
                kind, cand = "worktree", gitcli.snapshot_worktree(self.target.repo)
                if cand == head:
                    raise ToolFailure("no uncommitted changes to measure (edit the code first, "
                                      "or pass a patch)")
            else:
                kind, cand = "patch", self._apply_patch(head, patch, title)
            result = compare(self.target, head, cand, spec, slots=(f"{SLOT}-base", SLOT))
            stored = {**result, "patch": patch} if kind == "patch" else result
            tree = gitcli.tree_of(self.target.repo, cand)
            with self._log() as log:
                exp_id = log.add(title or f"{kind} experiment", kind, cand, tree, stored)
            if kind == "patch":
                gitcli.git(self.target.repo, "update-ref", f"{REF_PREFIX}{exp_id}", cand)
        return {**result, "experiment_id": exp_id, "kind": kind}

    def _apply_patch(self, head: str, patch: str, title: str) -> str:
        with self.ws.lock_slot(SLOT):
            tree = self.ws.checkout(SLOT, head)
            cand = Candidate(id="mcp:patch", title=title or "readfirst mcp patch", rationale="",
                             diff=patch, source="mcp")
            try:
                return apply_candidate(tree, head, cand)
            except ApplyError as e:
                raise ToolFailure(f"the patch does not apply on HEAD: {one_line(e)}") from None

    def _keepable(self, log: ExperimentLog, experiment_id: int) -> dict[str, Any]:
        e = log.get(experiment_id)
        if e["status"] != "measured":
            raise ToolFailure(f"experiment {experiment_id} is already {e['status']}")
        if e["verdict"] != "improved":
            why = e["result"].get("reason") or ""
            raise ToolFailure(f"experiment {experiment_id} is {e['verdict']!r}, not 'improved': "
                              f"only improvements are kept{f' ({why})' if why else ''}")
        base = e["result"].get("base_commit")
        if base and base != self._head():
            raise ToolFailure(f"HEAD moved since experiment {experiment_id} was measured "
                              f"(was {base[:12]}); run_experiment again")
        return e

    def keep(self, experiment_id: int) -> dict[str, Any]:
        """Commit an 'improved' experiment on the current branch (message: title, metric
        change with CI, experiment id). A worktree experiment is committed only if the
        working tree still holds exactly what was measured; a patch experiment is applied to
        a clean working tree and committed. Returns the commit sha."""
        repo = self.target.repo
        with self.lock, self._log() as log:
            e = self._keepable(log, experiment_id)
            if e["kind"] == "worktree":
                now = gitcli.tree_of(repo, gitcli.snapshot_worktree(repo))
                if now != e["tree_sha"]:
                    raise ToolFailure("the working tree changed since it was measured; "
                                      "run_experiment again")
            else:
                if not gitcli.is_clean(repo):
                    raise ToolFailure("the working tree has uncommitted changes: commit or "
                                      "stash them before keeping a patch experiment")
                self._apply_to_user_tree(e["result"]["patch"])
            message = (f"{e['title']}\n\n{change_line(e['result'])}\n\n"
                       f"readfirst experiment {experiment_id}")
            gitcli.git(repo, "add", "-A")
            gitcli.git(repo, "commit", "-q", "-m", message, env=_ident_env(repo))
            sha = gitcli.git(repo, "rev-parse", "HEAD")
            log.finish(experiment_id, "kept", kept_commit=sha)
        branch = gitcli.git(repo, "branch", "--show-current", check=False) or "(detached HEAD)"
        out = {"experiment_id": experiment_id, "commit": sha, "branch": branch,
               "message": message}
        if gitcli.tree_of(repo, sha) != e["tree_sha"]:
            out["warning"] = "the committed tree differs from the measured one (a commit hook?)"
        return out

    def _apply_to_user_tree(self, patch: str) -> None:
        repo = self.target.repo
        with tempfile.NamedTemporaryFile("w", suffix=".patch", delete=False) as fh:
            fh.write(patch if patch.endswith("\n") else patch + "\n")
        try:
            gitcli.git(repo, "apply", "--3way", "--whitespace=nowarn", fh.name)
        except gitcli.GitError as e:
            gitcli.git(repo, "reset", "-q", "--hard", "HEAD")  # it was clean: back to clean
            raise ToolFailure(f"the patch no longer applies: {one_line(e)}") from None
        finally:
            Path(fh.name).unlink(missing_ok=True)

    def discard(self, experiment_id: int) -> dict[str, Any]:
        """Drop an experiment. For a worktree experiment your uncommitted changes are
        stashed, recoverably (`git stash push --include-untracked`; `git stash pop` brings
        them back); a patch experiment is only marked discarded."""
        repo = self.target.repo
        with self.lock, self._log() as log:
            e = log.get(experiment_id)
            if e["status"] != "measured":
                raise ToolFailure(f"experiment {experiment_id} is already {e['status']}")
            if e["kind"] == "patch" or gitcli.is_clean(repo):
                message = ("marked discarded; your working tree was not touched"
                           if e["kind"] == "patch" else
                           "marked discarded; nothing to stash: the working tree is clean")
                log.finish(experiment_id, "discarded")
                return {"experiment_id": experiment_id, "message": message}
            changed = gitcli.tree_of(repo, gitcli.snapshot_worktree(repo)) != e["tree_sha"]
            gitcli.git(repo, "stash", "push", "--include-untracked", "-q", "-m",
                       f"readfirst discard {experiment_id}", env=_ident_env(repo))
            ref = gitcli.git(repo, "stash", "list", "-n", "1", "--format=%gd")
            sha = gitcli.git(repo, "rev-parse", "refs/stash")
            log.finish(experiment_id, "discarded", stash=sha)
        message = f"stashed as {ref} ({sha[:12]}); `git stash pop` restores it"
        if changed:
            message += ("; note: the working tree had changed since it was measured, and all "
                        "of it was stashed")
        return {"experiment_id": experiment_id, "message": message, "stash": ref,
                "stash_commit": sha}

    def _loop_summary(self, journal: Journal) -> dict[str, Any] | None:
        log = LoopLog(journal)
        row = log.get()
        return log.summary(row["id"]) if row is not None else None

    def status(self) -> dict[str, Any]:
        """The experiments so far: this server's (id, verdict, change with CI, kept or
        discarded) and the latest `readfirst run` loop's, if any."""
        with self._log() as log:
            mine = [summary_row(e) for e in log.all()]
            summary = self._loop_summary(log.journal)
        loop = None
        if summary is not None:
            loop = {**{k: v for k, v in summary.items() if k != "experiments"},
                    "experiments": status_rows(summary)}
        return {"mcp_experiments": mine, "loop_run": loop}

    def report(self) -> dict[str, Any]:
        """Write the reports: the latest loop run's (Markdown + HTML) and a Markdown list of
        this server's experiments under .readfirst/reports/mcp/. Returns the paths."""
        with self._log() as log:
            rows = [summary_row(e) for e in log.all()]
            summary = self._loop_summary(log.journal)
        paths: list[str] = []
        if summary is not None:
            md, html = write_report(summary, self.ws.state / "reports" / summary["run_id"])
            paths += [str(md), str(html)]
        if rows:
            paths.append(str(self._write_mcp_report(rows)))
        if not paths:
            raise ToolFailure("nothing to report yet: no experiments and no loop runs")
        return {"paths": paths}

    def _write_mcp_report(self, rows: list[dict[str, Any]]) -> Path:
        lines = [f"# readfirst experiments (agent-driven): {self.target.root}", ""]
        for r in rows:
            when = time.strftime("%Y-%m-%d %H:%M", time.localtime(r["ts"]))
            extra = f", commit {r['commit'][:12]}" if r["commit"] else ""
            lines.append(f"- #{r['id']} {when} **{r['title']}** ({r['kind']}): "
                         f"`{r['verdict']}`, {r['status']}{extra}; {r['change']}")
            if r["reason"]:
                lines.append(f"  - {r['reason']}")
        path = self.ws.state / "reports" / "mcp" / "report.md"
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text("\n".join(lines) + "\n")
        tmp.replace(path)
        return path
