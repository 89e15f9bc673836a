"""The Ray executor: each experiment is a Ray task on whichever node has a benchmark slot free.

Shipping: the baseline travels as `git archive` bytes (one `ray.put` per baseline, reused),
the candidate as its diff inside the job (plus the diff's preimage blobs, so `git apply --3way`
merges on the node as it would here). On the node the archive becomes a commit of a node-local
repository (`<node_cache>/<hash of the target path>/repo`, ref `refs/readfirst/baseline/<sha>`)
whose worktrees and build outputs persist across tasks, so builds stay incremental. The task
runs the ordinary worker (`readfirst.loop.worker`) in its own process group against that repository
and returns the JobResult as data, with the tails of the step logs in `result["logs"]`
(that side, `run_on_node`, is ray_node.py).

Commits made on a node exist only there: `cand_commit` is node-local and `result["cand_diff"]`
holds the candidate's tree as a diff against the baseline (`result["cand_tree"]` is its tree id,
which equals the tree the same files make anywhere). `result["base_commit"]` is the user's sha.

Scheduling: every task asks for `resources={<resource>: 1}`; nodes advertise `per_node` of it
(default 1: one benchmark per machine). A local instance started here gets `per_node` of it.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import re
import tempfile
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import ray
from ray.exceptions import TaskCancelledError
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from readfirst.core.constants import KILL_GRACE_SECONDS
from readfirst.core.errors import ConfigError
from readfirst.loop.executors.base import Handle, Job, JobResult, warn_unsandboxed
from readfirst.loop.executors.ray_node import node_home, owner_file, run_on_node
from readfirst.measure.proctree import kill_recorded_owner
from readfirst.vcs import gitcli
from readfirst.vcs.workspace import Workspace, target_at

DEFAULT_RESOURCE = "readfirst_bench"
KEEP_ARCHIVES = 4  # baselines kept in the object store
MAX_PREIMAGE_BYTES = 32 << 20


@dataclass
class _Running:
    handle: Handle
    ref: Any  # ray.ObjectRef of the task's result
    target_root: str


class RayExecutor:
    """`[executor] kind = "ray"`: options address, num_cpus, resource, per_node, node_cache,
    runtime_env. Logical workers r0..r{W-1} bound how many experiments are in flight."""

    def __init__(self, workspace: Workspace, jobs_dir: Path, workers: int,
                 options: dict[str, Any]) -> None:
        self.ws = workspace
        self.jobs_dir = Path(jobs_dir)
        self.workers = [f"r{i}" for i in range(workers)]
        self.resource = str(options.get("resource", DEFAULT_RESOURCE))
        num_cpus, per_node = options.get("num_cpus", 1), options.get("per_node", 1)
        task_env = options.get("runtime_env") or None
        if not isinstance(num_cpus, int | float) or num_cpus <= 0:
            raise ConfigError(f"[executor] num_cpus: expected a number > 0, got {num_cpus!r}")
        if not isinstance(per_node, int) or per_node < 1:
            raise ConfigError(f"[executor] per_node: expected an integer >= 1, got {per_node!r}")
        self.node_cache = options.get("node_cache")
        self.target = target_at(workspace.repo)
        self._owns = False
        self._running: dict[int, _Running] = {}
        self._finished: dict[int, JobResult] = {}  # cancelled jobs, handed out once
        self._warned: set[str] = set()  # nodes said to run without the sandbox
        self._archives: OrderedDict[str, Any] = OrderedDict()
        if not ray.is_initialized():  # reuse a connection the caller made
            kw: dict[str, Any] = {"logging_level": logging.WARNING, "log_to_driver": False}
            if options.get("runtime_env"):
                kw["runtime_env"] = options["runtime_env"]
            if options.get("address"):
                ray.init(address=str(options["address"]), **kw)
            else:
                ray.init(num_cpus=max(os.cpu_count() or 1, math.ceil(workers * num_cpus)),
                         resources={self.resource: per_node}, include_dashboard=False, **kw)
            self._owns = True
        if not ray.cluster_resources().get(self.resource):
            self.close()
            raise ConfigError(
                f"[executor] resource: no Ray node offers {self.resource!r}; start nodes with "
                f"`ray start --resources='{{\"{self.resource}\": 1}}'`")
        # the runtime_env also per task: it holds on a cluster this process only connects to
        self._task = _node_task.options(num_cpus=num_cpus, resources={self.resource: 1},
                                        max_retries=0, runtime_env=task_env)

    def idle_workers(self) -> list[str]:
        busy = {r.handle.worker for r in self._running.values()}
        return [w for w in self.workers if w not in busy]

    def submit(self, job: Job, worker: str) -> Handle:
        if worker not in self.idle_workers():
            raise RuntimeError(f"worker {worker} is busy")
        blobs = _preimages(self.target.repo, job.candidate.get("diff", ""), self.jobs_dir)
        ref = self._task.remote(job.to_dict(), worker, self.target.rel,
                                [self._archive(job.baseline)], blobs, self.node_cache)
        handle = Handle(job.exp_id, worker)
        self._running[job.exp_id] = _Running(handle, ref, job.target_root)
        return handle

    def poll(self, handle: Handle) -> JobResult | None:
        if handle.exp_id in self._finished:
            return self._finished.pop(handle.exp_id)
        run = self._running.get(handle.exp_id)
        if run is None or not ray.wait([run.ref], timeout=0)[0]:
            return None
        del self._running[handle.exp_id]
        try:
            res = JobResult.from_dict(ray.get(run.ref))
            warn_unsandboxed(res, self._warned)
            return res
        except TaskCancelledError:
            return _cancelled(handle)
        except Exception as e:  # node died, task raised, worker crashed: a result all the same
            return JobResult(handle.exp_id, handle.worker, "worker_died",
                             reason=f"ray task for {handle.worker} failed: {_describe(e)}",
                             result={"executor": {"kind": "ray", "slot": handle.worker}})

    def wait_any(self, handles: list[Handle], timeout: float | None = None) -> list[JobResult]:
        done = [self._finished.pop(h.exp_id) for h in handles if h.exp_id in self._finished]
        refs = [self._running[h.exp_id].ref for h in handles if h.exp_id in self._running]
        if done or not refs:
            return done
        ray.wait(refs, num_returns=1, timeout=timeout)
        return [r for r in (self.poll(h) for h in handles) if r is not None]

    def cancel(self, handle: Handle) -> None:
        """Interrupt the task (it ends its worker and all below it), force it after a grace
        period, then end the worker it recorded on every node (by ownership: a recorded pid
        and start time, never a directory); the job ends "cancelled"."""
        run = self._running.pop(handle.exp_id, None)
        if run is None:
            return
        ray.cancel(run.ref, force=False)
        if not ray.wait([run.ref], timeout=KILL_GRACE_SECONDS * 3 + 2)[0]:
            with contextlib.suppress(Exception):
                ray.cancel(run.ref, force=True)
            self._sweep(handle.worker, run.target_root)
        self._finished[handle.exp_id] = _cancelled(handle)

    def close(self) -> None:
        for run in list(self._running.values()):
            self.cancel(run.handle)
        self._archives.clear()
        if self._owns and ray.is_initialized():
            ray.shutdown()
        self._owns = False

    def _archive(self, baseline: str) -> Any:
        """The baseline's tree as a tar in the object store (put once, reused)."""
        if baseline in self._archives:
            self._archives.move_to_end(baseline)
            return self._archives[baseline]
        self.jobs_dir.mkdir(parents=True, exist_ok=True)
        path = self.jobs_dir / f".baseline-{baseline[:12]}.tar"
        gitcli.git(self.target.repo, "archive", "--format=tar", "-o", str(path), baseline)
        self._archives[baseline] = ray.put(path.read_bytes())
        path.unlink()
        while len(self._archives) > KEEP_ARCHIVES:
            self._archives.popitem(last=False)
        return self._archives[baseline]

    def _sweep(self, worker: str, target_root: str) -> None:
        """End what a force-killed task left running (its recorded worker), on each node."""
        refs = [_sweep_task.options(num_cpus=0, scheduling_strategy=NodeAffinitySchedulingStrategy(
                    n["NodeID"], soft=False)).remote(self.node_cache, target_root,
                                                     self.target.rel, worker)
                for n in ray.nodes() if n.get("Alive")]
        with contextlib.suppress(Exception):
            ray.wait(refs, num_returns=len(refs), timeout=30)


def _cancelled(handle: Handle) -> JobResult:
    return JobResult(handle.exp_id, handle.worker, "cancelled", reason="cancelled",
                     result={"executor": {"kind": "ray", "slot": handle.worker}})


def _describe(e: BaseException) -> str:
    """`RayTaskError(GitError): <the last line of the message>`, short."""
    lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
    return f"{type(e).__name__}: {lines[-1] if lines else ''}"[:500]


def _preimages(repo: Path, diff: str, tmp_dir: Path) -> bytes | None:
    """The blobs a diff applies to (its `index a..b` lines) that this repo holds, as a tar."""
    ids = {i for i in re.findall(r"^index ([0-9a-f]{7,})\.\.", diff, re.M) if i.strip("0")}
    shas = [s for s in (gitcli.git(repo, "rev-parse", "--verify", "--quiet", f"{i}^{{blob}}",
                                   check=False) for i in sorted(ids)) if s]
    if not shas:
        return None
    tmp_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=tmp_dir, prefix=".blobs-") as tmp:
        env = {"GIT_INDEX_FILE": str(Path(tmp) / "index")}
        for sha in shas:
            gitcli.git(repo, "update-index", "--add", "--cacheinfo", f"100644,{sha},{sha}",
                       env=env)
        tree = gitcli.git(repo, "write-tree", env=env)
        out = Path(tmp) / "blobs.tar"
        gitcli.git(repo, "archive", "--format=tar", "-o", str(out), tree)
        data = out.read_bytes()
    return data if len(data) <= MAX_PREIMAGE_BYTES else None


@ray.remote
def _node_task(job: dict[str, Any], worker: str, rel: str, archive: list[Any],
               blobs: bytes | None, node_cache: str | None) -> dict[str, Any]:
    """The Ray task; `archive` is [ref] so the bytes travel only if the node lacks them."""
    node = ray.get_runtime_context().get_node_id()
    return run_on_node(job, worker, rel, lambda: ray.get(archive[0]), blobs, node_cache, node)


@ray.remote
def _sweep_task(node_cache: str | None, target_root: str, rel: str, worker: str) -> int:
    return len(kill_recorded_owner(str(owner_file(node_home(node_cache, target_root), worker))))
