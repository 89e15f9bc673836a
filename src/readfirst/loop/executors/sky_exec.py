"""The SkyPilot executor: a pool of named clusters; each experiment is one SkyPilot job.

A job's task file follows SkyPilot's experiment template (sky_task.yaml.j2). Its workdir is a
clean directory per experiment (`git archive` of the baseline, candidate.patch, job.json) and
its run step is readfirst's own worker, so base and candidate are built and measured on the
same VM in interleaved rounds. The first job on a cluster launches it (setup installs
readfirst); later ones `sky exec` onto it. The job's log ends with the template's status
lines and READFIRST_RESULT_JSON, which become the JobResult. `sky` is imported only to launch.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import importlib
import json
import os
import re
import shlex
import shutil
import tarfile
import tempfile
import threading
import time
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from readfirst.core.candidate import Candidate
from readfirst.core.errors import ConfigError
from readfirst.loop.executors.base import Handle, Job, JobResult, warn_unsandboxed
from readfirst.loop.executors.sky_options import (
    SkyOptions,
    arch_choices,
    cloud_region,
    hourly_price,
)
from readfirst.vcs import gitcli
from readfirst.vcs.apply import ApplyError
from readfirst.vcs.gitcli import COMMIT_IDENTITY

TEMPLATE = "sky_task.yaml.j2"
MANIFEST = ".readfirst-files"  # the archive's file list (NUL-separated), all the VM trusts
WHEEL_DIR = ".readfirst-wheel"
RESERVED = {"candidate.patch", "job.json", MANIFEST, WHEEL_DIR, ".skyignore"}
_LINE = re.compile(r"(?<![A-Z_])(EXPERIMENT_STATUS|EXPERIMENT_ERROR|CHECKS_STATUS|EXPERIMENT_ID"
                   r"|EXPERIMENT_DESC|READFIRST_RESULT_JSON): ?(.*)$")
_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
_SHAS = ("base_rev", "cand_rev", "base_commit", "cand_commit")
_TRUSTED = {"filter": "fully_trusted"} if hasattr(tarfile, "fully_trusted_filter") else {}


def parse_output(text: str, exp_id: int, worker: str) -> JobResult | None:
    """The JobResult in a job's log (READFIRST_RESULT_JSON, else the status lines); None when
    the log has neither. Lines may carry SkyPilot's `(task, pid=N)` prefix and colours."""
    found: dict[str, str] = {}
    for line in text.splitlines():
        if m := _LINE.search(_ANSI.sub("", line)):
            found[m.group(1)] = m.group(2).rstrip()
    with contextlib.suppress(ValueError, TypeError, AttributeError):
        data = json.loads(found.get("READFIRST_RESULT_JSON", ""))
        known = {f.name for f in fields(JobResult)}
        return JobResult(**{**{k: v for k, v in data.items() if k in known},
                            "exp_id": exp_id, "worker": worker})
    if "EXPERIMENT_STATUS" in found:
        why = found.get("EXPERIMENT_ERROR") or "no result line"
        return JobResult(exp_id, worker, "worker_died",
                         reason=f"EXPERIMENT_STATUS: {found['EXPERIMENT_STATUS']}: {why}")
    return None


def candidate_commit(repo: Path, baseline: str, cand: Candidate) -> str:
    """The candidate applied on `baseline` as a local commit, made in a private index (no
    worktree); ApplyError when it does not apply or changes nothing."""
    with tempfile.TemporaryDirectory(prefix="readfirst-sky-") as tmp:
        env = {"GIT_INDEX_FILE": str(Path(tmp) / "index")}
        patch = Path(tmp) / "candidate.patch"
        patch.write_text(cand.diff if cand.diff.endswith("\n") else cand.diff + "\n")
        gitcli.git(repo, "read-tree", baseline, env=env)
        try:
            gitcli.git(repo, "apply", "--cached", "--3way", "--whitespace=nowarn", str(patch),
                       env=env)
            tree = gitcli.git(repo, "write-tree", env=env)
        except gitcli.GitError as e:
            raise ApplyError(str(e).split(": ", 1)[-1]) from None
    if tree == gitcli.tree_of(repo, baseline):
        raise ApplyError("the diff changes nothing on this baseline (already applied?)")
    return gitcli.git(repo, "commit-tree", tree, "-p", baseline, "-m", cand.title or cand.id,
                      env=COMMIT_IDENTITY)


@dataclass
class _Run:
    handle: Handle
    job: Job
    exp_dir: Path
    started: float
    cand_commit: str | None = None
    request_id: Any = None
    job_id: int | None = None
    result: JobResult | None = None
    cancelled: bool = False


class SkyPilotExecutor:
    """The Executor protocol on SkyPilot clusters `<prefix>-<run hash>-NN`."""

    def __init__(self, workspace: Any, jobs_dir: Path, workers: int, options: dict[str, Any],
                 *, sdk: Any = None) -> None:
        self.ws = workspace
        self.jobs_dir = Path(jobs_dir)
        self.opts = SkyOptions.parse(options or {}, Path(getattr(workspace, "repo", ".")))
        self.tag = hashlib.sha1(str(self.jobs_dir.resolve()).encode()).hexdigest()[:6]
        self._next = self.opts.workers or workers
        self.workers = [self._cluster(i) for i in range(self._next)]
        self.written: list[Path] = []  # task files written (all of them in a dry run)
        self.errors: list[str] = []  # SkyPilot errors outside any job (cancel, teardown)
        self.sdk = sdk
        if sdk is None and not self.opts.dry_run:
            self.sdk = importlib.import_module("sky")  # ModuleNotFoundError: the extra
        self.price = None if self.opts.dry_run else hourly_price(options or {})
        self._runs: dict[int, _Run] = {}
        self._ready: set[str] = set()  # a job has run there: the next one may `sky exec`
        self._touched: set[str] = set()  # launched (or tried): downed at the end
        self._downs: list[tuple[str, Any]] = []
        self._lock = threading.Lock()
        self._warned: set[str] = set()  # clusters said to run without the sandbox
        self._wake = threading.Event()

    def _cluster(self, i: int) -> str:
        return f"{self.opts.cluster_prefix}-{self.tag}-{i:02d}"

    # --- task files -------------------------------------------------------------------------
    def prepare_workdir(self, job: Job) -> tuple[Path, str | None]:
        """Write `<jobs_dir>/<exp_id>/workdir` from scratch; the candidate's local commit
        (None for a noise job). ApplyError when the candidate does not apply."""
        repo = gitcli.repo_root(Path(job.target_root))
        workdir = self.jobs_dir / str(job.exp_id) / "workdir"
        shutil.rmtree(workdir, ignore_errors=True)
        workdir.mkdir(parents=True)
        cand = Candidate.from_dict(job.candidate)
        commit, patch = None, ""
        if job.kind != "noise":
            commit = candidate_commit(repo, job.baseline, cand)
            patch = gitcli.git(repo, "diff", "--binary", job.baseline, commit) + "\n"
        tar = workdir.parent / "baseline.tar"
        gitcli.git(repo, "archive", "--format=tar", f"--output={tar}", job.baseline)
        with tarfile.open(tar) as tf:
            members = tf.getmembers()
            if clash := sorted({m.name.split("/")[0] for m in members} & RESERVED):
                raise ValueError(f"the target's tree has {', '.join(clash)} at its top, a name "
                                 "the SkyPilot workdir reserves")
            tf.extractall(workdir, **_TRUSTED)
        tar.unlink()
        names = [os.fsencode(m.name) + b"\0" for m in members if not m.isdir()]
        (workdir / MANIFEST).write_bytes(b"".join(names))
        (workdir / ".skyignore").write_text("# readfirst: sync every file (no .gitignore)\n")
        (workdir / "candidate.patch").write_text(patch)
        data = {**job.to_dict(), "candidate": {**job.candidate, "diff": patch or cand.diff}}
        (workdir / "job.json").write_text(json.dumps(data))
        if self.opts.wheel:
            (workdir / WHEEL_DIR).mkdir()
            shutil.copy2(self.opts.wheel, workdir / WHEEL_DIR)
        return workdir, commit

    def _resources(self) -> tuple[dict[str, str], list[dict[str, str]], str | None]:
        o = self.opts
        k8s = cloud_region(o.infra)[0] == "kubernetes"
        any_of = arch_choices(o) if o.arch and not o.instance_type and not k8s else []
        fixed = bool(o.instance_type or any_of)  # then cpus/memory only when asked for
        res = {"infra": None if any_of else o.infra,
               "cpus": o.cpus or (None if fixed else "4+"),
               "memory": o.memory or (None if fixed else "8+"),
               "instance_type": o.instance_type}
        k8s_arch = {"x86_64": "amd64", "arm64": "arm64"}[o.arch] if o.arch and k8s else None
        return {k: v for k, v in res.items() if v}, any_of, k8s_arch

    def render_task(self, job: Job, spec: dict[str, Any], cluster: str, workdir: Path) -> Path:
        """Write `<jobs_dir>/<exp_id>/task.yaml` (SkyPilot's experiment template, readfirst's
        run step) for `job` on `cluster`, with `workdir` as the task's workdir."""
        import jinja2

        target = spec.get("target") or {}
        root = Path(job.target_root).resolve()
        rel = root.relative_to(gitcli.repo_root(root).resolve()).as_posix()
        envs = {
            "EXPERIMENT_ID": str(job.exp_id),
            "EXPERIMENT_DESC": str(job.candidate.get("title") or job.candidate.get("id") or ""),
            "BUILD_CMD": target.get("build") or "make -j$(nproc)",
            "BENCH_TIMEOUT": str(int(target.get("bench_timeout") or 300)),
            "CHECK_TIMEOUT": str(int(target.get("checks_timeout") or 300)),
            "READFIRST_JOB": "job.json",
            "READFIRST_WORKER": f"sky-{cluster}",
            "READFIRST_TARGET_REL": "" if rel == "." else rel,
            **({"READFIRST_PYTHON": self.opts.python} if self.opts.python else {}),
        }
        resources, any_of, k8s_arch = self._resources()
        env = jinja2.Environment(loader=jinja2.FileSystemLoader(Path(__file__).parent),
                                 undefined=jinja2.StrictUndefined, keep_trailing_newline=True)
        env.filters.update(q=json.dumps, sh=shlex.quote)  # JSON scalars are YAML scalars
        text = env.get_template(TEMPLATE).render(
            name=f"readfirst-{job.exp_id}", exp_id=job.exp_id, cluster=cluster,
            resources=resources, any_of=any_of, k8s_arch=k8s_arch,
            workdir=str(Path(workdir).resolve()), envs=envs, manifest=MANIFEST,
            wheel_dir=WHEEL_DIR, pip_spec="readfirst")
        path = self.jobs_dir / str(job.exp_id) / "task.yaml"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        self.written.append(path)
        return path

    # --- the Executor protocol --------------------------------------------------------------
    def idle_workers(self) -> list[str]:
        with self._lock:
            busy = {r.handle.worker for r in self._runs.values()}
        return [w for w in self.workers if w not in busy]

    def submit(self, job: Job, worker: str) -> Handle:
        if worker not in self.idle_workers():
            raise RuntimeError(f"worker {worker} is busy")
        run = _Run(Handle(job.exp_id, worker), job, self.jobs_dir / str(job.exp_id),
                   time.monotonic())
        with self._lock:
            self._runs[job.exp_id] = run
        try:
            workdir, run.cand_commit = self.prepare_workdir(job)
            task = self.render_task(job, job.spec, worker, workdir)
        except ApplyError as e:
            res = JobResult(job.exp_id, worker, "skipped",
                            reason=f"does not apply to {job.baseline[:12]}: {e}")
        except (gitcli.GitError, ConfigError, OSError, ValueError, tarfile.TarError) as e:
            res = JobResult(job.exp_id, worker, "worker_died",
                            reason=f"could not write the SkyPilot task: {e}")
        else:
            if not self.opts.dry_run:
                threading.Thread(target=self._remote, args=(run, task), daemon=True,
                                 name=f"sky-{job.exp_id}").start()
                return run.handle
            res = JobResult(job.exp_id, worker, "dry_run", reason=f"wrote {task}")
        self._finish(run, res, cost=False)
        return run.handle

    def poll(self, handle: Handle) -> JobResult | None:
        with self._lock:
            run = self._runs.get(handle.exp_id)
            if run is None or run.result is None:
                return None
            del self._runs[handle.exp_id]
        warn_unsandboxed(run.result, self._warned)
        return run.result

    def wait_any(self, handles: list[Handle], timeout: float | None = None) -> list[JobResult]:
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            self._wake.clear()
            done = [r for r in (self.poll(h) for h in handles) if r is not None]
            left = None if deadline is None else deadline - time.monotonic()
            if done or (left is not None and left <= 0):
                return done
            self._wake.wait(1.0 if left is None else min(1.0, left))

    def cancel(self, handle: Handle) -> None:
        with self._lock:
            run = self._runs.pop(handle.exp_id, None)
        if run is not None and run.result is None:
            run.cancelled = True
            self._cancel_remote(run)

    def replace_worker(self, name: str) -> str:
        """Tear cluster `name` down (in the background) and put a fresh one, under a new name,
        in its place: its next job launches a new VM. Returns the new name."""
        with self._lock:
            if name not in self.workers:
                return name
            new = self._cluster(self._next)
            self._next += 1
            self.workers[self.workers.index(name)] = new
            self._ready.discard(name)
        if name in self._touched:
            self._touched.discard(name)
            self._down(name)
        return new

    def close(self) -> None:
        """Cancel what runs; `sky down` every cluster launched when down_at_end (else they
        stop after idle_minutes_to_autostop) and wait for the teardowns."""
        for run in list(self._runs.values()):
            self.cancel(run.handle)
        for cluster in sorted(self._touched) if self.opts.down_at_end else []:
            self._down(cluster)
        self._touched.clear()
        for cluster, request in self._downs:
            try:
                self.sdk.get(request)
            except Exception as e:
                self.errors.append(f"sky down {cluster}: {_short(e)}")
        self._downs.clear()

    # --- remote side ------------------------------------------------------------------------
    def _remote(self, run: _Run, task_path: Path) -> None:
        """One job, in its own thread: launch or exec, follow the log, parse the result."""
        sky, cluster = self.sdk, run.handle.worker
        try:
            task = sky.Task.from_yaml(str(task_path))
            with open(run.exp_dir / "launch.log", "a") as out:
                if cluster in self._ready:
                    try:
                        run.request_id = sky.exec(task, cluster_name=cluster)
                        run.job_id, _ = sky.stream_and_get(run.request_id, output_stream=out)
                    except Exception as e:  # e.g. stopped by autostop: launching restarts it
                        out.write(f"readfirst: sky exec failed ({_short(e)}); launching\n")
                if run.job_id is None and not run.cancelled:
                    self._touched.add(cluster)
                    run.request_id = sky.launch(
                        task, cluster_name=cluster, down=False,
                        idle_minutes_to_autostop=self.opts.idle_minutes_to_autostop)
                    run.job_id, _ = sky.stream_and_get(run.request_id, output_stream=out)
            if run.cancelled:
                self._cancel_remote(run)
                return
            log = run.exp_dir / "job.log"
            with open(log, "w") as out:
                code = sky.tail_logs(cluster, run.job_id, follow=True, output_stream=out)
            if run.cancelled:
                return
            res, ran = self._collect(run, log.read_text(errors="replace"), code)
        except Exception as e:  # SDK, API server, cloud: the job is lost, the loop goes on
            res, ran = JobResult(run.job.exp_id, cluster, "worker_died",
                                 reason=f"SkyPilot on {cluster}: {_short(e)}"), False
        # the next job execs onto a cluster whose last job ran; else launches (idempotent)
        (self._ready.add if ran else self._ready.discard)(cluster)
        shutil.rmtree(run.exp_dir / "workdir", ignore_errors=True)  # uploaded long ago
        self._finish(run, res)

    def _collect(self, run: _Run, text: str, code: Any) -> tuple[JobResult, bool]:
        """The result in the followed log, else in the log downloaded from the cluster; and
        whether the run step printed one."""
        cluster, exp_id = run.handle.worker, run.job.exp_id
        res = parse_output(text, exp_id, cluster)
        if res is None:  # the stream broke off: fetch the whole log
            with contextlib.suppress(Exception):
                for path in self.sdk.download_logs(cluster, [str(run.job_id)]).values():
                    text = (Path(path) / "run.log").read_text(errors="replace")
                    res = parse_output(text, exp_id, cluster) or res
        if res is not None:
            return res, True
        tail = [ln for ln in _ANSI.sub("", text).splitlines() if ln.strip()][-5:]
        return JobResult(exp_id, cluster, "worker_died",
                         reason=f"job {run.job_id} on {cluster} ended (exit {code}) without a "
                                "result" + (": " + " | ".join(tail) if tail else "")), False

    def _finish(self, run: _Run, res: JobResult, cost: bool = True) -> None:
        """Map the VM's commits to the local ones (same trees), add wall time and cost."""
        timings = dict(res.timings)
        if cost:
            timings["sky_wall"] = wall = time.monotonic() - run.started
            if self.price is not None:
                timings["cost_usd"] = round(self.price * wall / 3600, 6)
        result = res.result
        if isinstance(result, dict):
            local = {result.get("base_commit"): run.job.baseline,
                     res.cand_commit: run.cand_commit or run.job.baseline}
            local.pop(None, None)
            result = {k: local.get(v, v) if k in _SHAS else v for k, v in result.items()}
        run.result = dataclasses.replace(
            res, exp_id=run.job.exp_id, worker=run.handle.worker, result=result,
            cand_commit=run.cand_commit if res.cand_commit else None, timings=timings)
        self._wake.set()

    def _cancel_remote(self, run: _Run) -> None:
        cluster = run.handle.worker
        try:
            if run.job_id is not None:
                self.sdk.get(self.sdk.cancel(cluster, job_ids=[run.job_id]))
            elif run.request_id is not None:
                self._ready.discard(cluster)
                self.sdk.api_cancel(run.request_id, silent=True)
        except Exception as e:
            self.errors.append(f"cancel on {cluster}: {_short(e)}")

    def _down(self, cluster: str) -> None:
        try:
            self._downs.append((cluster, self.sdk.down(cluster)))
        except Exception as e:
            self.errors.append(f"sky down {cluster}: {_short(e)}")


def _short(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0] if text else ''}".rstrip(": ")
