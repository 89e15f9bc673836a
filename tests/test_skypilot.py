"""The SkyPilot executor without a cloud: task files SkyPilot itself loads, clean workdirs, the
task's run step executed for real on this machine, the pool driven through a fake SDK."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import BASE_WORK, git, make_target, params, write

from readfirst.core.candidate import Candidate
from readfirst.core.config import load_spec
from readfirst.core.errors import ConfigError
from readfirst.loop.executors.base import Job, JobResult
from readfirst.loop.executors.sky_exec import MANIFEST, SkyPilotExecutor, parse_output
from readfirst.loop.executors.sky_options import hourly_price, sky_clouds_enabled
from readfirst.vcs import gitcli
from readfirst.vcs.workspace import Workspace

sky = pytest.importorskip("sky")

ENVS = ("EXPERIMENT_ID", "EXPERIMENT_DESC", "BUILD_CMD", "BENCH_TIMEOUT", "CHECK_TIMEOUT")


def _diff(target: Path, rel: str, text: str) -> str:
    original = (target / rel).read_text()
    write(target, rel, text)
    diff = git(target, "diff", "--", rel) + "\n"
    write(target, rel, original)
    return diff


def _job(target: Path, exp_id: int, diff: str, title: str = "halve WORK",
         kind: str = "experiment") -> Job:
    cand = Candidate(f"patch:{exp_id}", title, "", diff, "patches")
    return Job(exp_id, str(target), git(target, "rev-parse", "HEAD"), cand.to_dict(),
               load_spec(target).model_dump(), kind=kind)


def _half(target: Path) -> str:
    return _diff(target, "src/params.h", params(BASE_WORK // 2))


def _broken(target: Path) -> str:
    prog = (target / "src/prog.c").read_text()
    return _diff(target, "src/prog.c", prog.replace("s += i;", "s += i + 1;"))


def _executor(target: Path, tmp: Path, options: dict[str, Any] | None = None,
              sdk: Any = None, workers: int = 2) -> SkyPilotExecutor:
    return SkyPilotExecutor(Workspace(target), tmp / "jobs", workers,
                            {"dry_run": sdk is None, **(options or {})}, sdk=sdk)


def _run_on_vm(task: Any, vm: Path) -> str:
    """What a VM does with the task: the workdir synced over the last one (rsync without
    --delete, SkyPilot's pitfall), then the run commands in bash; the job's output."""
    workdir = vm / "sky_workdir"
    shutil.copytree(task.workdir, workdir, symlinks=True, dirs_exist_ok=True)
    env = {**os.environ, **task.envs, "READFIRST_PYTHON": sys.executable,
           "READFIRST_EXP_ROOT": str(vm / "home")}
    proc = subprocess.run(["bash", "-c", task.run], cwd=workdir, env=env, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr  # the template always exits 0
    return proc.stdout


@pytest.fixture
def target(tmp_path: Path) -> Path:
    return make_target(tmp_path / "target")


# --- task files ---------------------------------------------------------------------------
@pytest.mark.parametrize("infra, cloud, region", [
    ("aws", "AWS", None), ("aws/us-west-2", "AWS", "us-west-2"), ("k8s", "Kubernetes", None),
])
def test_task_loads_in_skypilot_with_envs_and_resources(target: Path, tmp_path: Path,
                                                        infra: str, cloud: str,
                                                        region: str | None) -> None:
    ex = _executor(target, tmp_path, {"infra": infra, "cpus": 8, "memory": "16+"})
    job = _job(target, 7, _half(target), title='halve "WORK": x2 faster')
    handle = ex.submit(job, ex.workers[0])
    res = ex.poll(handle)
    assert res is not None and res.status == "dry_run"
    task = sky.Task.from_yaml(str(ex.written[0]))
    assert {k: task.envs[k] for k in ENVS} == {
        "EXPERIMENT_ID": "7", "EXPERIMENT_DESC": 'halve "WORK": x2 faster', "BUILD_CMD": "make",
        "BENCH_TIMEOUT": "20", "CHECK_TIMEOUT": "20"}
    (res_,) = task.resources
    assert (str(res_.cloud), res_.region, res_.cpus, res_.memory) == (cloud, region, "8", "16+")
    assert Path(task.workdir) == tmp_path / "jobs" / "7" / "workdir"
    assert "setup_deps.sh" in task.setup and "readfirst.loop.worker" in task.run


def test_task_defaults_and_arch_hints(target: Path, tmp_path: Path) -> None:
    ex = _executor(target, tmp_path)
    ex.submit(_job(target, 1, _half(target)), ex.workers[0])
    task = sky.Task.from_yaml(str(ex.written[0]))
    (res,) = task.resources
    assert (res.cloud, res.cpus, res.memory) == (None, "4+", "8+")
    assert task.envs["BUILD_CMD"] == "make"
    # arm64: instance types with >= 4 vCPUs and >= 8 GiB on each cloud (any_of)
    ex = _executor(target, tmp_path / "arm", {"arch": "arm64"})
    ex.submit(_job(target, 2, _half(target)), ex.workers[0])
    resources = yaml.safe_load(ex.written[0].read_text())["resources"]
    assert resources == {"any_of": [{"infra": "aws", "instance_type": "c7g.xlarge"},
                                    {"infra": "aws", "instance_type": "m7g.xlarge"},
                                    {"infra": "gcp", "instance_type": "t2a-standard-4"}]}
    ex = _executor(target, tmp_path / "k8s", {"arch": "arm64", "infra": "k8s"})
    ex.submit(_job(target, 3, _half(target)), ex.workers[0])
    (res,) = sky.Task.from_yaml(str(ex.written[0])).resources
    assert res.cluster_config_overrides["kubernetes"]["pod_config"]["spec"]["nodeSelector"] == {
        "kubernetes.io/arch": "arm64"}


def test_bad_options_are_config_errors(target: Path, tmp_path: Path) -> None:
    for opts, words in (({"arch": "sparc"}, "arch"), ({"cluster_prefix": "Bad_Name"}, "prefix"),
                        ({"workers": 0}, "workers"), ({"wheel": "nope.whl"}, "wheel"),
                        ({"arch": "arm64", "infra": "lambda"}, "instance_type")):
        with pytest.raises(ConfigError, match=words):
            _executor(target, tmp_path, opts)


def test_workdir_is_the_baseline_archive_and_nothing_stale(target: Path, tmp_path: Path) -> None:
    write(target, "src/old.h", "/* deleted in the next baseline */\n")
    git(target, "add", "-A")
    git(target, "commit", "-q", "-m", "with old.h")
    ex = _executor(target, tmp_path)
    ex.poll(ex.submit(_job(target, 1, _half(target)), ex.workers[0]))
    git(target, "rm", "-q", "src/old.h")
    git(target, "commit", "-q", "-m", "without old.h")
    job2 = _job(target, 2, _half(target))
    (tmp_path / "jobs/2/workdir").mkdir(parents=True)
    (tmp_path / "jobs/2/workdir/junk.o").write_text("left by an earlier attempt")
    ex.submit(job2, ex.workers[0])
    wd1, wd2 = tmp_path / "jobs/1/workdir", tmp_path / "jobs/2/workdir"
    assert (wd1 / "src/old.h").is_file() and not (wd2 / "src/old.h").exists()
    assert not (wd2 / "junk.o").exists()
    tracked = sorted(git(target, "ls-files").splitlines())
    listed = sorted(n for n in (wd2 / MANIFEST).read_text().split("\0") if n)
    assert listed == tracked
    assert sorted(p.relative_to(wd2).as_posix() for p in wd2.rglob("*") if p.is_file()) == \
        sorted([*tracked, MANIFEST, ".skyignore", "candidate.patch", "job.json"])
    assert os.access(wd2 / "autoresearch.sh", os.X_OK)
    assert (wd2 / "src/params.h").read_text() == params()  # the baseline, not the candidate
    assert "+#define WORK 3000000L" in (wd2 / "candidate.patch").read_text()
    assert Job(**json.loads((wd2 / "job.json").read_text())).exp_id == 2
    # on one VM, exp 2's workdir lands on exp 1's (rsync keeps old.h); the repo it measures
    # is made from the file list, so old.h is not in it
    vm = tmp_path / "vm"
    for path in ex.written:
        out = _run_on_vm(sky.Task.from_yaml(str(path)), vm)
        assert "EXPERIMENT_STATUS: done" in out.splitlines()
    assert (vm / "sky_workdir/src/old.h").is_file()
    assert not (vm / "home/exp-2/src/old.h").exists() and (vm / "home/exp-2/Makefile").is_file()
    assert git(vm / "home/exp-2", "ls-files").splitlines() == tracked


# --- the run step, for real, on this machine ----------------------------------------------
@pytest.mark.parametrize("nested", [False, True])
def test_run_step_measures_the_candidate_and_prints_the_template_lines(
        target: Path, tmp_path: Path, nested: bool) -> None:
    if nested:  # the target is a directory inside a bigger repository
        mono = tmp_path / "mono"
        (mono / "bench").mkdir(parents=True)
        shutil.move(target, mono / "bench" / "tiny")
        shutil.move(mono / "bench" / "tiny" / ".git", mono / ".git")
        write(mono, "README", "a monorepo\n")
        git(mono, "add", "-A")
        git(mono, "commit", "-q", "-m", "move")
        target = mono / "bench" / "tiny"
    ex = _executor(target, tmp_path)
    job = _job(target, 1, _half(target))
    ex.submit(job, ex.workers[0])
    out = _run_on_vm(sky.Task.from_yaml(str(ex.written[0])), tmp_path / "vm")
    lines = out.splitlines()
    assert "EXPERIMENT_STATUS: done" in lines
    assert "CHECKS_STATUS: passed" in lines
    assert "EXPERIMENT_ID: 1" in lines and "EXPERIMENT_DESC: halve WORK" in lines
    assert any(ln.startswith("READFIRST_RESULT_JSON: {") for ln in lines)
    prefixed = "\n".join(f"\x1b[36m(task, pid=4242)\x1b[0m {ln}" for ln in lines)
    res = parse_output(prefixed, 1, "readfirst-x-00")
    assert res is not None and res.worker == "readfirst-x-00"
    assert (res.status, res.verdict) == ("finished", "improved"), res.reason
    assert res.result["cand"]["median"] < res.result["base"]["median"]
    assert ex.written and sky.Task.from_yaml(str(ex.written[0])).envs["READFIRST_TARGET_REL"] == (
        "bench/tiny" if nested else "")


def test_run_step_reports_a_broken_candidate_as_checks_failed(
        target: Path, tmp_path: Path) -> None:
    ex = _executor(target, tmp_path)
    ex.submit(_job(target, 1, _broken(target), title="off by one"), ex.workers[0])
    out = _run_on_vm(sky.Task.from_yaml(str(ex.written[0])), tmp_path / "vm")
    assert "EXPERIMENT_STATUS: checks_failed" in out.splitlines()
    assert "CHECKS_STATUS: failed (exit 1)" in out.splitlines()
    res = parse_output(out, 1, "c")
    assert res is not None and res.verdict == "checks_failed"


def test_dry_run_writes_tasks_and_launches_nothing(target: Path, tmp_path: Path) -> None:
    ex = _executor(target, tmp_path, {"workers": 3})
    assert ex.sdk is None and len(ex.workers) == 3
    handles = [ex.submit(_job(target, i, _half(target)), w) for i, w in enumerate(ex.workers)]
    results = ex.wait_any(handles, timeout=0)
    assert [r.status for r in results] == ["dry_run"] * 3
    assert [r.reason for r in results] == [f"wrote {p}" for p in ex.written]
    assert all(p.is_file() for p in ex.written)
    assert len(set(ex.workers)) == 3 and all(w.startswith("readfirst-") for w in ex.workers)
    ex.close()


# --- the pool, through a fake SDK that "runs" each job on this machine --------------------
class FakeSky:
    """SkyPilot's SDK surface the executor uses; a job runs as `_run_on_vm` would."""

    Task = sky.Task

    def __init__(self, vms: Path, fail_launch: bool = False) -> None:
        self.vms, self.fail_launch = vms, fail_launch
        self.calls: list[tuple[str, str]] = []
        self.jobs: dict[int, tuple[Any, str]] = {}

    def _submit(self, kind: str, task: Any, cluster: str) -> str:
        self.calls.append((kind, cluster))
        if kind == "launch" and self.fail_launch:
            raise RuntimeError("NoCloudAccessError: no cloud credentials\nmore")
        job_id = len(self.jobs) + 1
        self.jobs[job_id] = (task, cluster)
        return f"req-{job_id}"

    def launch(self, task: Any, cluster_name: str, down: bool,
               idle_minutes_to_autostop: int) -> str:
        assert down is False and idle_minutes_to_autostop == 10
        return self._submit("launch", task, cluster_name)

    def exec(self, task: Any, cluster_name: str) -> str:
        return self._submit("exec", task, cluster_name)

    def stream_and_get(self, request_id: str, output_stream: Any = None) -> tuple[int, None]:
        return int(request_id.removeprefix("req-")), None

    def tail_logs(self, cluster: str, job_id: int, follow: bool, output_stream: Any) -> int:
        task, where = self.jobs[job_id]
        assert where == cluster and follow
        for line in _run_on_vm(task, self.vms / cluster).splitlines():
            output_stream.write(f"(task, pid=1) {line}\n")
        return 0

    def down(self, cluster: str) -> str:
        self.calls.append(("down", cluster))
        return f"down-{cluster}"

    def get(self, request_id: str) -> None:
        self.calls.append(("get", request_id))


def test_pool_launches_then_execs_and_parses_results(target: Path, tmp_path: Path) -> None:
    fake = FakeSky(tmp_path / "vms")
    ex = _executor(target, tmp_path, {"infra": "aws"}, sdk=fake, workers=1)
    ex.price = 0.5  # USD/h, as the catalog would say
    (worker,) = ex.workers
    job = _job(target, 1, _half(target))
    (res,) = ex.wait_any([ex.submit(job, worker)])
    assert (res.status, res.verdict, res.worker) == ("finished", "improved", worker), res.reason
    # the VM's commits are mapped to local ones: the candidate commit sits on the baseline
    assert res.result["base_commit"] == job.baseline
    assert gitcli.git(target, "rev-parse", f"{res.cand_commit}^") == job.baseline
    assert res.result["cand_commit"] == res.cand_commit
    assert 0 < res.timings["cost_usd"] <= 0.5 * res.timings["sky_wall"] / 3600 + 1e-6
    assert not (tmp_path / "jobs/1/workdir").exists()  # uploaded, then removed
    noise = _job(target, 2, "", title="worker noise check (A vs A)", kind="noise")
    (res2,) = ex.wait_any([ex.submit(noise, worker)])
    assert res2.status == "finished" and res2.cand_commit is None, res2.reason
    assert [c for c in fake.calls if c[0] in ("launch", "exec")] == [("launch", worker),
                                                                     ("exec", worker)]
    new = ex.replace_worker(worker)
    assert new != worker and ex.workers == [new] and ("down", worker) in fake.calls
    (res3,) = ex.wait_any([ex.submit(_job(target, 3, _broken(target)), new)])
    assert res3.verdict == "checks_failed"
    assert fake.calls[-1] == ("launch", new)  # a fresh cluster is launched, not exec'd onto
    ex.close()
    assert ("down", new) in fake.calls and ("get", f"down-{new}") in fake.calls


def test_sdk_errors_become_worker_died_and_bad_diffs_skip(target: Path, tmp_path: Path) -> None:
    fake = FakeSky(tmp_path / "vms", fail_launch=True)
    ex = _executor(target, tmp_path, sdk=fake, workers=1)
    (worker,) = ex.workers
    (res,) = ex.wait_any([ex.submit(_job(target, 1, _half(target)), worker)])
    assert res.status == "worker_died" and "NoCloudAccessError" in res.reason
    assert "more" not in res.reason
    stale = _diff(target, "src/prog.c", "int main(void) { return 0; }\n").replace(
        "long compute", "long kompute")
    (res2,) = ex.wait_any([ex.submit(_job(target, 2, stale), worker)])
    assert res2.status == "skipped" and res2.reason.startswith("does not apply")
    assert [c[0] for c in fake.calls] == ["launch"]  # nothing launched for the bad diff
    ex.close()


class HangingSky(FakeSky):
    """A job that runs until it is cancelled."""

    def __init__(self, vms: Path) -> None:
        super().__init__(vms)
        self.cancelled = threading.Event()

    def tail_logs(self, cluster: str, job_id: int, follow: bool, output_stream: Any) -> int:
        self.calls.append(("tail", cluster))
        self.cancelled.wait(30)
        return 100

    def cancel(self, cluster: str, job_ids: list[int]) -> str:
        self.calls.append(("cancel", f"{cluster}:{job_ids}"))
        self.cancelled.set()
        return "cancel-req"


def test_cancel_stops_the_remote_job_and_frees_the_worker(target: Path, tmp_path: Path) -> None:
    fake = HangingSky(tmp_path / "vms")
    ex = _executor(target, tmp_path, sdk=fake, workers=1)
    (worker,) = ex.workers
    handle = ex.submit(_job(target, 1, _half(target)), worker)
    assert ex.wait_any([handle], timeout=0.2) == [] and ex.idle_workers() == []
    while ("tail", worker) not in fake.calls:
        time.sleep(0.02)
    ex.cancel(handle)
    assert ("cancel", f"{worker}:[1]") in fake.calls and ex.idle_workers() == [worker]
    assert ex.poll(handle) is None
    ex.close()
    assert ("down", worker) in fake.calls and not ex.errors


def test_parse_output_without_a_result_line() -> None:
    assert parse_output("Traceback: boom\n", 3, "c") is None
    res = parse_output("(task, pid=9) EXPERIMENT_STATUS: crash\n"
                       "(task, pid=9) EXPERIMENT_ERROR: python3 cannot run (exit 127)\n", 3, "c")
    assert res == JobResult(3, "c", "worker_died",
                            reason="EXPERIMENT_STATUS: crash: python3 cannot run (exit 127)")


def test_hourly_price_from_a_local_catalog_only(tmp_path: Path) -> None:
    """No catalog on disk: None (nothing is fetched). A GCP catalog: its price."""
    from sky.skylet import constants

    catalog = tmp_path / ".sky" / "catalogs" / constants.CATALOG_SCHEMA_VERSION / "gcp"
    catalog.mkdir(parents=True)
    (catalog / "vms.csv").write_text(
        "InstanceType,AcceleratorName,AcceleratorCount,vCPUs,MemoryGiB,GpuInfo,Price,SpotPrice,"
        "Region,AvailabilityZone\n"
        "n2-standard-2,,,2,8,,0.1,0.03,us-central1,us-central1-a\n"
        "n2-standard-4,,,4,16,,0.2,0.06,us-central1,us-central1-a\n"
        "n2-standard-4,,,4,16,,0.25,0.07,europe-west1,europe-west1-b\n"
        "t2a-standard-4,,,4,16,,0.15,0.05,us-central1,us-central1-a\n")
    code = ("from readfirst.loop.executors.sky_options import hourly_price as h; "
            "print([h({'infra': 'gcp'}), h({'infra': 'gcp/europe-west1'}), "
            "h({'infra': 'gcp', 'arch': 'arm64'}), h({'infra': 'aws'}), h({'infra': 'k8s'})])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env={**os.environ, "SKY_RUNTIME_DIR": str(tmp_path)}, timeout=120)
    assert out.stdout.strip().splitlines()[-1] == "[0.2, 0.25, 0.15, None, None]", out.stderr
    assert hourly_price({"infra": "k8s"}) is None and hourly_price({}) is None


# --- a real cloud, only where `sky check` finds one -----------------------------------------
@pytest.mark.skipif(not sky_clouds_enabled(), reason="no SkyPilot cloud enabled (sky check)")
def test_live_launch_on_a_real_cluster(target: Path, tmp_path: Path) -> None:
    dist = tmp_path / "dist"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(dist),
                    str(Path(__file__).parents[1])], check=True)
    (wheel,) = dist.glob("readfirst-*.whl")
    ex = SkyPilotExecutor(Workspace(target), tmp_path / "jobs", 1,
                          {"cpus": "2+", "memory": "4+", "wheel": str(wheel),
                           "idle_minutes_to_autostop": 5})
    try:
        (res,) = ex.wait_any([ex.submit(_job(target, 1, _half(target)), ex.workers[0])],
                             timeout=3600)
        assert (res.status, res.verdict) == ("finished", "improved"), res.reason
    finally:
        ex.close()
