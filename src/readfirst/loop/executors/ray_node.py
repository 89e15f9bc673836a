"""The Ray executor's side on a node: the node-local repository a job runs against, the
worker process that runs it, and its JobResult in terms of the user's commits.

`run_on_node` is what the Ray task (`ray_exec._node_task`) calls on whichever node it landed:
the baseline archive becomes a commit of `<node_cache>/<hash of the target path>/repo`
(`materialise`), the worker runs the job in its own process group in the slot
`slots/<worker>/`, and the node's commits are translated back (`base_commit` is the user's sha,
`cand_diff`/`cand_tree` the candidate's tree) with the tails of the step logs in
`result["logs"]`.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import io
import json
import os
import re
import socket
import sqlite3
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from readfirst.core.constants import KILL_GRACE_SECONDS
from readfirst.loop.executors.base import JobResult
from readfirst.measure.process import end_process
from readfirst.measure.proctree import kill_recorded_owner, record_owner
from readfirst.vcs import gitcli
from readfirst.vcs.gitcli import COMMIT_IDENTITY
from readfirst.vcs.workspace import Workspace

DEFAULT_NODE_CACHE = "~/.cache/readfirst/ray"
LOG_TAIL_LINES = 200
FIXED_DATE = {"GIT_AUTHOR_DATE": "@0 +0000", "GIT_COMMITTER_DATE": "@0 +0000"}

# The worker process on the node: dies with the Ray task (PDEATHSIG), then runs one job.
_CHILD = (
    "import os, sys\n"
    "from readfirst.loop.executors.local import _die_with_parent\n"
    "_die_with_parent()\n"
    "if os.getppid() != int(sys.argv[1]):\n    sys.exit(1)\n"
    "from readfirst.loop.worker import main\n"
    "sys.exit(main(sys.argv[2:]))\n"
)


def node_home(node_cache: str | None, target_root: str) -> Path:
    """This node's directory for one target: `repo/`, `slots/<worker>/`, `lock`."""
    base = Path(os.path.expanduser(node_cache or DEFAULT_NODE_CACHE))
    return base / hashlib.sha256(target_root.encode()).hexdigest()[:16]


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        yield


def materialise(repo: Path, label: str, fetch: Callable[[], bytes]) -> str:
    """The node-local commit with the tree of the user's commit `label`, imported from the
    archive `fetch()` on first use (deterministic: same tree, same sha on every node)."""
    if not (repo / ".git").is_dir():
        repo.mkdir(parents=True, exist_ok=True)
        gitcli.git(repo, "init", "-q")
    ref = f"refs/readfirst/baseline/{label}"
    sha = gitcli.git(repo, "rev-parse", "--verify", "--quiet", ref, check=False)
    if sha:
        return sha
    with tempfile.TemporaryDirectory(dir=repo.parent, prefix="import-") as tmp:
        tree_dir = Path(tmp) / "tree"
        tree_dir.mkdir()
        with tarfile.open(fileobj=io.BytesIO(fetch())) as tar:
            tar.extractall(tree_dir, filter="tar")
        env = {"GIT_INDEX_FILE": str(Path(tmp) / "index")}
        gitcli.git(tree_dir, "--git-dir", str(repo / ".git"), "--work-tree", str(tree_dir),
                   "add", "-A", "-f", ".", env=env)
        tree = gitcli.git(repo, "write-tree", env=env)
    commit = gitcli.git(repo, "commit-tree", tree, "-m", f"readfirst baseline {label}",
                        env={**COMMIT_IDENTITY, **FIXED_DATE})
    gitcli.git(repo, "update-ref", ref, commit)
    return commit


def _import_blobs(repo: Path, data: bytes) -> None:
    with tempfile.TemporaryDirectory(dir=repo.parent, prefix="blobs-") as tmp:
        with tarfile.open(fileobj=io.BytesIO(data)) as tar:
            tar.extractall(tmp, filter="tar")
        files = [str(p) for p in Path(tmp).iterdir() if p.is_file()]
        if files:
            gitcli.git(repo, "hash-object", "-w", "--no-filters", "--", *files)


def owner_file(home: Path, worker: str) -> Path:
    """Where a task records its worker process (pid and start time) for a later sweep."""
    return home / "slots" / worker / "owner"


def _tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    with open(path, "rb") as fh:
        fh.seek(max(0, fh.seek(0, os.SEEK_END) - 64 * 1024))
        return "\n".join(fh.read().decode(errors="replace").splitlines()[-lines:])


def _log_tails(state: Path, pid: int, since: float, worker_log: Path) -> dict[str, str]:
    """Tails of the job's build/checks logs, its last bench round per side, the worker log."""
    run_ids: list[int] = []
    journal = state / "journal.db"
    if journal.is_file():
        with contextlib.closing(sqlite3.connect(f"file:{journal}?mode=ro", uri=True)) as db:
            run_ids = [r[0] for r in db.execute(
                "SELECT id FROM runs WHERE pid = ? AND started >= ?", (pid, since))]
    latest: dict[str, Path] = {}
    for run_id in run_ids:
        run_dir = state / "runs" / str(run_id)
        for f in sorted(run_dir.iterdir()) if run_dir.is_dir() else []:
            latest[re.sub(r"-\d+(\.(?:out|err))$", r"\1", f.name)] = f  # last round wins
    tails = {f.name: _tail(f) for f in [*latest.values(), worker_log] if f.is_file()}
    return {name: text for name, text in tails.items() if text}


def run_on_node(job: dict[str, Any], worker: str, rel: str, fetch: Callable[[], bytes],
                blobs: bytes | None, node_cache: str | None, node: str) -> dict[str, Any]:
    """Run one job on this machine against the node-local repository; the JobResult dict."""
    started = time.perf_counter()
    home = node_home(node_cache, job["target_root"])
    repo = home / "repo"
    with _locked(home / "lock"):
        base = materialise(repo, job["baseline"], fetch)
        if blobs:
            _import_blobs(repo, blobs)
    root = repo / rel if rel else repo
    root.mkdir(parents=True, exist_ok=True)
    ws = Workspace(root)
    ws.ensure()
    owner = owner_file(home, worker)
    kill_recorded_owner(str(owner))  # the worker of a task force-killed earlier, if still there
    owner.parent.mkdir(parents=True, exist_ok=True)
    job_path, result_path, log_path = (owner.parent / n for n in ("job", "result", "worker.log"))
    result_path.unlink(missing_ok=True)
    job_path.write_text(json.dumps({**job, "target_root": str(root), "baseline": base}))
    shipped, since = time.perf_counter() - started, time.time()
    proc = _run_worker(owner, job_path, result_path, log_path, worker)
    res = _worker_result(result_path, log_path, proc.returncode, job["exp_id"], worker, node)
    result = _in_users_commits(dict(res.get("result") or {}), job["baseline"], base, repo,
                               res.get("cand_commit"))
    result["executor"] = {"kind": "ray", "node": node, "slot": worker,
                          "host": socket.gethostname(), "node_repo": str(repo),
                          "node_logs": result.get("logs")}
    result["logs"] = _log_tails(ws.state, proc.pid, since, log_path)
    res["worker"], res["result"] = node[:12], result
    res["timings"] = {**res.get("timings", {}), "ship": shipped}
    for p in (job_path, result_path):
        p.unlink(missing_ok=True)
    return res


def _run_worker(owner: Path, job_path: Path, result_path: Path, log_path: Path,
                worker: str) -> subprocess.Popen[bytes]:
    """The worker process for one job, recorded in `owner`, run to its end (ended with us)."""
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-c", _CHILD, str(os.getpid()), str(job_path), str(result_path),
             worker], cwd=owner.parent, stdout=log, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, start_new_session=True)
    record_owner(str(owner), proc.pid)
    try:
        while proc.poll() is None:  # short sleeps: Ray's cancel interrupts between bytecodes
            time.sleep(0.2)
    finally:
        if proc.returncode is None:  # cancelled, SIGTERM, shutdown: no benchmark outlives us
            end_process(proc, KILL_GRACE_SECONDS * 2)
    return proc


def _worker_result(result_path: Path, log_path: Path, code: int, exp_id: int, worker: str,
                   node: str) -> dict[str, Any]:
    """The JobResult dict the worker wrote, or `worker_died` with how and its log's end."""
    if result_path.is_file():
        res: dict[str, Any] = json.loads(result_path.read_text())
        return res
    how = f"killed by signal {-code}" if code < 0 else f"exit code {code}"
    tail = _tail(log_path, 5).splitlines() if log_path.is_file() else []
    return JobResult(exp_id, worker, "worker_died",
                     reason=f"worker {worker} on node {node[:12]} died ({how})"
                     + (": " + " | ".join(tail) if tail else "")).to_dict()


def _in_users_commits(result: dict[str, Any], baseline: str, base: str, repo: Path,
                      cand: str | None) -> dict[str, Any]:
    """`result` with the user's baseline sha for the node's one (kept alongside), and the
    node-local candidate commit as a diff and tree that mean the same anywhere."""
    if "base_commit" in result:  # compare: the user's sha; the node's one kept alongside
        result["base_commit"], result["node_base_commit"] = baseline, base
    if result.get("commit") == base:  # bench (noise jobs)
        result["commit"], result["node_base_commit"] = baseline, base
    if cand:
        result["cand_diff"] = gitcli.git(repo, "diff", "--binary", base, cand) + "\n"
        result["cand_tree"] = gitcli.tree_of(repo, cand)
    return result
