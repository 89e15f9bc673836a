"""The Ray executor for real: a local Ray instance (2 CPUs, two benchmark slots on the node)."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import BASE_WORK, commit, diff_for, git, make_target, params, write

from readfirst.core.candidate import Candidate
from readfirst.core.config import load_spec
from readfirst.loop.executors.base import Handle, Job, JobResult
from readfirst.measure.sandbox import probe
from readfirst.vcs.workspace import Workspace

ray = pytest.importorskip("ray")
from readfirst.loop.executors.ray_exec import RayExecutor, _preimages  # noqa: E402
from readfirst.loop.executors.ray_node import _import_blobs, materialise, node_home  # noqa: E402

LOOP_PY = Path(__file__).parents[1] / "src" / "readfirst" / "loop" / "loop.py"


def _job(exp_id: int, target: Path, title: str, diff: str, **spec_changes: float) -> Job:
    spec = load_spec(target).model_dump()
    spec["target"].update(spec_changes)
    cand = Candidate(f"t:{exp_id}", title, "", diff, "test")
    return Job(exp_id, str(target), git(target, "rev-parse", "HEAD"), cand.to_dict(), spec)


def _wait_all(ex: RayExecutor, handles: list[Handle]) -> list[JobResult]:
    done: list[JobResult] = []
    while len(done) < len(handles):
        left = [h for h in handles if h.exp_id not in {r.exp_id for r in done}]
        done += ex.wait_any(left)
    return done


def _has_object(repo: Path, sha: str) -> bool:
    return subprocess.run(["git", "-C", str(repo), "cat-file", "-e", sha],
                          capture_output=True).returncode == 0


def _live_under(root: Path) -> list[str]:
    """Processes (zombies excluded) whose working directory is under `root`."""
    found = []
    for proc_dir in Path("/proc").glob("[0-9]*"):
        try:
            state = (proc_dir / "stat").read_text().rsplit(")", 1)[1].split()[0]
            cwd = (proc_dir / "cwd").readlink()
            cmd = (proc_dir / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except (OSError, IndexError):
            continue
        if state != "Z" and cwd.is_relative_to(root.resolve()):
            found.append(f"{proc_dir.name} {cmd}")
    return found


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, object]]:
    """One local Ray instance for the module, started by a RayExecutor (which owns it)."""
    tmp = tmp_path_factory.mktemp("ray")
    target = make_target(tmp / "target")
    node_cache = tmp / "node-cache"
    if ray.is_initialized():
        pytest.skip("a Ray connection already exists in this process")
    try:
        ex = RayExecutor(Workspace(target), tmp / "jobs", 2,
                         {"per_node": 2, "node_cache": str(node_cache)})
    except Exception as e:  # no Ray here (sandbox, no shared memory, ...): skip, once
        pytest.skip(f"cannot start Ray: {type(e).__name__}: {e}")
    yield {"ex": ex, "target": target, "node_cache": node_cache, "tmp": tmp}
    ex.close()
    assert not ray.is_initialized()


def test_two_jobs_run_on_the_node_with_verdicts_and_logs(cluster: dict[str, object]) -> None:
    ex, target = cluster["ex"], cluster["target"]
    assert isinstance(ex, RayExecutor) and isinstance(target, Path)
    assert ex.workers == ["r0", "r1"] and ex.idle_workers() == ["r0", "r1"]
    half = diff_for(target, "src/params.h", params(BASE_WORK // 2))
    double = diff_for(target, "src/params.h", params(BASE_WORK * 2))
    h1 = ex.submit(_job(1, target, "half", half), "r0")
    h2 = ex.submit(_job(2, target, "double", double), "r1")
    assert ex.idle_workers() == []
    with pytest.raises(RuntimeError):
        ex.submit(_job(3, target, "x", half), "r0")
    results = {r.exp_id: r for r in _wait_all(ex, [h1, h2])}
    assert ex.idle_workers() == ["r0", "r1"]
    node = ray.get_runtime_context().get_node_id()
    for exp_id, verdict, slot in ((1, "improved", "r0"), (2, "regressed", "r1")):
        res = results[exp_id]
        assert res.status == "finished" and res.verdict == verdict, res.reason
        assert res.worker == node[:12]
        r = res.result or {}
        assert r["executor"]["kind"] == "ray" and r["executor"]["node"] == node
        assert r["executor"]["slot"] == slot
        assert r["base_commit"] == git(target, "rev-parse", "HEAD")
        assert "cand-build.out" in r["logs"] and "base-build.out" in r["logs"]
        (bench,) = [name for name in r["logs"] if name.startswith("cand-bench-")
                    and name.endswith(".out")]  # the last round only
        assert "METRIC time_ms=" in r["logs"][bench]
        # the candidate's commit lives on the node; its diff and tree come back as data
        assert res.cand_commit and not _has_object(target, res.cand_commit)
        assert "src/params.h" in r["cand_diff"] and "#define WORK" in r["cand_diff"]
        assert res.timings["ship"] >= 0
    # the worktrees are the node's, per logical worker; the user's checkout is untouched
    assert git(target, "status", "--porcelain") == ""
    assert not (target / ".readfirst" / "worktrees").exists()


def test_cancel_kills_the_benchmark_on_the_node(cluster: dict[str, object]) -> None:
    ex, target, node_cache = cluster["ex"], cluster["target"], cluster["node_cache"]
    assert isinstance(ex, RayExecutor) and isinstance(target, Path)
    assert isinstance(node_cache, Path)
    prog = (target / "src/prog.c").read_text()
    hang = diff_for(target, "src/prog.c", prog.replace(
        '#include "params.h"', '#include "params.h"\n#include <unistd.h>').replace(
        "    struct timespec a, b;", "    sleep(600);\n    struct timespec a, b;"))
    handle = ex.submit(_job(10, target, "hangs", hang, bench_timeout=900), "r1")
    while not any("build/prog" in p for p in _live_under(node_cache)):
        assert ex.wait_any([handle], timeout=0.5) == [], "the job ended on its own"
    ex.cancel(handle)
    (res,) = ex.wait_any([handle])
    assert res.status == "cancelled" and res.exp_id == 10
    assert _live_under(node_cache) == []
    assert "r1" in ex.idle_workers()


def test_a_cluster_without_the_resource_is_a_config_error(cluster: dict[str, object]) -> None:
    from readfirst.core.errors import ConfigError

    target, tmp = cluster["target"], cluster["tmp"]
    assert isinstance(target, Path) and isinstance(tmp, Path)
    with pytest.raises(ConfigError, match="no Ray node offers 'gpu_bench'"):
        RayExecutor(Workspace(target), tmp / "jobs2", 1, {"resource": "gpu_bench"})
    assert ray.is_initialized()  # not started by that executor, so not shut down by it
    with pytest.raises(ConfigError, match="per_node"):
        RayExecutor(Workspace(target), tmp / "jobs2", 1, {"per_node": 0})


def test_noise_job_reports_the_users_baseline(cluster: dict[str, object]) -> None:
    ex, target = cluster["ex"], cluster["target"]
    assert isinstance(ex, RayExecutor) and isinstance(target, Path)
    job = _job(20, target, "noise", "")
    handle = ex.submit(Job(**{**job.to_dict(), "kind": "noise"}), "r0")
    (res,) = _wait_all(ex, [handle])
    assert res.status == "finished", res.reason
    r = res.result or {}
    assert r["cv"] >= 0 and r["n"] >= 5 and r["commit"] == job.baseline
    assert r["node_base_commit"] != job.baseline and r["executor"]["slot"] == "r0"


def test_preimage_blobs_travel_with_the_candidate(tmp_path: Path) -> None:
    """A diff made on another commit (a fork's) brings its preimage blobs, so the node's
    `git apply --3way` can merge it as the user's repository would."""
    target = make_target(tmp_path / "target")
    base = git(target, "rev-parse", "HEAD")
    write(target, "src/params.h", params(123))
    commit(target, "fork 1")
    write(target, "src/params.h", params(456))
    commit(target, "fork 2")
    diff = git(target, "diff", "--full-index", "HEAD~1", "HEAD") + "\n"
    blobs = _preimages(target, diff, tmp_path / "jobs")
    assert blobs is not None
    node_repo = tmp_path / "node" / "repo"
    tar = subprocess.run(["git", "-C", str(target), "archive", "--format=tar", base],
                         capture_output=True, check=True).stdout
    node_base = materialise(node_repo, base, lambda: tar)
    assert materialise(node_repo, base, lambda: b"not used again") == node_base
    assert git(node_repo, "rev-parse", f"{node_base}^{{tree}}") == git(
        target, "rev-parse", f"{base}^{{tree}}")
    pre = git(target, "rev-parse", "HEAD~1:src/params.h")
    assert not _has_object(node_repo, pre)
    _import_blobs(node_repo, blobs)
    assert _has_object(node_repo, pre)


@pytest.mark.skipif("make_executor" not in LOOP_PY.read_text(),
                    reason="the loop does not honour [executor] yet")
def test_demo_on_ray_reaches_the_local_verdicts(cluster: dict[str, object]) -> None:
    from readfirst.frontends.demo import make_demo
    from readfirst.loop.loop import LoopOptions, run_loop
    from readfirst.vcs.workspace import target_at

    tmp = cluster["tmp"]
    assert isinstance(tmp, Path)
    target, _fork = make_demo(tmp / "demo")
    toml = target / "readfirst.toml"
    # noise checks off: the local executor (whose verdicts these are) does not run them
    toml.write_text(toml.read_text() + '\n[executor]\nkind = "ray"\nper_node = 2\n'
                    f'noise_check = false\nnode_cache = "{tmp / "demo-cache"}"\n')
    summary = run_loop(target_at(target), load_spec(target),
                       LoopOptions(proposer="forks", workers=2))
    verdicts = {e["title"]: e["verdict"] for e in summary["experiments"]
                if e["kind"] == "explore" and e["status"] != "skipped"}
    # the fork's edit of the benchmark script never reaches a worker: triaged out of scope
    assert [e for e in summary["experiments"]
            if e["status"] == "skipped" and e["reason"].startswith("out of scope")]
    expected = {"matvec": "regressed", "rmsnorm": "improved", "softmax: fuse": "improved"}

    def verdict(start: str) -> str | None:
        (got,) = [v for t, v in verdicts.items() if t.startswith(start)]
        return got

    assert verdict("matvec") == "regressed", verdicts  # decided on any machine
    # the broken softmax fails its checks once it applies (on top of the fusion it needs)
    assert all(v == "checks_failed" for t, v in verdicts.items()
               if t.startswith("softmax: skip the max pass")), verdicts
    undecided = [s for s in ("rmsnorm", "softmax: fuse") if verdict(s) == "inconclusive"]
    if undecided:  # "no decision" is the noise of a busy machine, never a wrong verdict
        pytest.xfail(f"this machine is too noisy to decide {undecided} today: {verdicts}")
    for start, want in expected.items():
        assert verdict(start) == want, (start, verdicts)
    kept = [e for e in summary["experiments"] if e["outcome"] == "kept"]
    assert kept and all(e["title"].startswith(("rmsnorm", "softmax: fuse")) for e in kept)
    # the tree measured on the node is exactly the tree the loop landed here
    db = sqlite3.connect(target / ".readfirst" / "journal.db")
    landed = db.execute("SELECT result_json, landed_commit FROM experiments WHERE kind ="
                        " 'confirm' AND outcome = 'kept'").fetchall()
    db.close()
    assert len(landed) == len(kept) // 2
    for result_json, commit_sha in landed:
        r = json.loads(result_json)
        assert r["executor"]["kind"] == "ray"
        assert r["cand_tree"] == git(target, "rev-parse", f"{commit_sha}^{{tree}}")
    assert ray.is_initialized()  # the loop's executor reused the module's Ray, left it up


def _sourced(exp_id: int, target: Path, source: str, diff: str, sandbox: bool = True) -> Job:
    spec = load_spec(target).model_dump()
    spec["target"]["sandbox"] = sandbox
    cand = Candidate(f"s:{exp_id}", f"from {source}", "", diff, source)
    return Job(exp_id, str(target), git(target, "rev-parse", "HEAD"), cand.to_dict(), spec)


def test_a_node_that_cannot_sandbox_says_so_and_refuses_model_code(
        cluster: dict[str, object], capsys: pytest.CaptureFixture[str]) -> None:
    ex, target, tmp = cluster["ex"], cluster["target"], cluster["tmp"]
    assert isinstance(ex, RayExecutor) and isinstance(target, Path) and isinstance(tmp, Path)
    half = diff_for(target, "src/params.h", params(BASE_WORK // 2))
    if probe() is None:  # a node with bwrap: its steps ran in the sandbox
        (res,) = _wait_all(ex, [ex.submit(_sourced(30, target, "patches", half), "r0")])
        assert res.sandboxed is True and res.sandbox_note == ""
    # the same cluster, but this executor's tasks find no bwrap on the node
    blind = RayExecutor(Workspace(target), tmp / "jobs-blind", 2, {
        "per_node": 2, "node_cache": str(tmp / "node-cache-blind"),
        "runtime_env": {"env_vars": {"READFIRST_BWRAP": str(tmp / "no-such-bwrap")}}})
    try:
        people = [blind.submit(_sourced(31, target, "patches", half), "r0"),
                  blind.submit(_sourced(32, target, "forks", half), "r1")]
        for res in _wait_all(blind, people):  # run, unconfined, and say so
            assert (res.status, res.verdict) == ("finished", "improved"), res.reason
            assert res.sandboxed is False and "no-such-bwrap" in res.sandbox_note
        (model,) = _wait_all(blind, [blind.submit(_sourced(33, target, "llm", half), "r0")])
        assert model.status == "skipped" and model.sandboxed is False
        assert "only run in the sandbox" in model.reason and "--no-sandbox" in model.reason
        (allowed,) = _wait_all(blind, [blind.submit(
            _sourced(34, target, "llm", half, sandbox=False), "r0")])  # --no-sandbox
        assert allowed.status == "finished" and allowed.sandboxed is False
        assert allowed.sandbox_note == ""
    finally:
        blind.close()
    assert ray.is_initialized()  # the connection was the fixture's
    warnings = [ln for ln in capsys.readouterr().err.splitlines() if "WITHOUT the sandbox" in ln]
    assert len(warnings) == 1 and "no-such-bwrap" in warnings[0]  # one per node


def test_cancel_on_the_node_ends_a_daemon_of_the_benchmark(cluster: dict[str, object]) -> None:
    """Unsandboxed, the candidate's benchmark double-forks a daemon into a new session with
    cwd /; cancel ends it (the keeper's tree), and a bystander in the worktree survives."""
    ex, target, node_cache = cluster["ex"], cluster["target"], cluster["node_cache"]
    assert isinstance(ex, RayExecutor) and isinstance(target, Path)
    assert isinstance(node_cache, Path)
    token = "rf-ray-daemon-" + uuid.uuid4().hex[:10]
    prog = (target / "src/prog.c").read_text()
    daemon = (f"setsid sh -c 'cd / && (while :; do sleep 1; done) & exit 0' {token} "
              "</dev/null >/dev/null 2>&1 &")
    hang = diff_for(target, "src/prog.c", prog.replace(
        '#include "params.h"', '#include "params.h"\n#include <stdlib.h>\n#include <unistd.h>'
    ).replace("    struct timespec a, b;",
              f'    if (system("{daemon}")) {{}}\n    sleep(600);\n    struct timespec a, b;'))
    handle = ex.submit(_job(11, target, "daemon", hang, bench_timeout=900, sandbox=False), "r0")
    while not _marked(token):
        assert ex.wait_any([handle], timeout=0.5) == [], "the job ended on its own"
    # someone else's process in the very worktree on the node (a sweep by directory kills it)
    worktree = node_home(str(node_cache), str(target)) / "repo" / ".readfirst" / "worktrees"
    bystander = subprocess.Popen(["sleep", "600"], cwd=worktree / "r0-cand")
    ex.cancel(handle)
    (res,) = ex.wait_any([handle])
    try:
        assert res.status == "cancelled"
        assert _marked(token) == [], "the daemon outlived the cancel"
        assert bystander.poll() is None, "a process the run did not start was killed"
    finally:
        bystander.kill()
        bystander.wait()


def _marked(token: str) -> list[int]:
    found = []
    for proc_dir in Path("/proc").glob("[0-9]*"):
        try:
            state = (proc_dir / "stat").read_bytes().rsplit(b")", 1)[1].split()[0]
            cmd = (proc_dir / "cmdline").read_bytes()
        except (OSError, IndexError):
            continue
        if state != b"Z" and token.encode() in cmd:
            found.append(int(proc_dir.name))
    return found
