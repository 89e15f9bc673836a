"""The sandbox around every build, benchmark and checks step (bubblewrap), and its environment.

Candidate code is untrusted. Each step runs in `bwrap` with the whole filesystem read-only,
its own side's worktree the only writable place, `.readfirst/` (journal, logs, locks, the other
worktrees) hidden, a private /tmp and /run, the home directory's credentials (~/.ssh, ~/.aws,
...) hidden, no network unless `[target] network = true`, its own PID/IPC/UTS namespaces, no
capabilities, and `--die-with-parent`: nothing it starts outlives the step. The environment
is an allow-list; known secret values are scrubbed from everything readfirst writes.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

from readfirst.core import constants as C

INSTALL_HINT = "apt-get install bubblewrap (Debian/Ubuntu) or dnf install bubblewrap (Fedora)"
BWRAP_ENV = "READFIRST_BWRAP"  # the bwrap to use, if not the one on PATH

# Variables builds and benchmarks need; anything else (API keys, tokens, cloud credentials)
# stays out. Names matching SECRET_NAME are dropped even when listed here.
ALLOWED_ENV = frozenset({
    "PATH", "HOME", "USER", "LOGNAME", "SHELL", "LANG", "LANGUAGE", "TZ", "TERM",
    "CC", "CXX", "CPP", "LD", "AR", "AS", "NM", "RANLIB", "STRIP", "FC", "NVCC", "HIPCC",
    "CFLAGS", "CXXFLAGS", "CPPFLAGS", "LDFLAGS", "LDLIBS", "FFLAGS", "CUDAFLAGS",
    "MAKEFLAGS", "MFLAGS", "CMAKE_GENERATOR", "CMAKE_BUILD_TYPE", "CMAKE_PREFIX_PATH",
    "CMAKE_BUILD_PARALLEL_LEVEL", "CMAKE_C_COMPILER_LAUNCHER", "CMAKE_CXX_COMPILER_LAUNCHER",
    "PKG_CONFIG_PATH", "LIBRARY_PATH", "LD_LIBRARY_PATH", "CPATH", "C_INCLUDE_PATH",
    "CPLUS_INCLUDE_PATH", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS",
    "CUDA_HOME", "CUDA_PATH", "CUDA_VISIBLE_DEVICES", "ROCM_PATH", "HIP_VISIBLE_DEVICES",
    "JAVA_HOME", "GOROOT", "GOPATH", "GOFLAGS", "CARGO_HOME", "RUSTUP_HOME", "RUSTFLAGS",
    "VIRTUAL_ENV", "CONDA_PREFIX", "PYTHONHASHSEED", "SOURCE_DATE_EPOCH",
})
ALLOWED_ENV_PREFIXES = ("LC_", "CCACHE_")
SECRET_NAME = re.compile(r"KEY|TOKEN|SECRET|PASSW|CREDENTIAL|AUTH|COOKIE|SESSION|PRIVATE",
                         re.IGNORECASE)

# Places with sockets and other processes' files: an empty private tmpfs over each in the
# sandbox (/run holds e.g. the docker socket, which --unshare-net does not cut off).
HIDDEN_SYSTEM = ("/tmp", "/var/tmp", "/run", "/var/run", "/dev/shm")
# Credentials in the home directory (which stays readable, read-only: toolchains live there):
# directories get an empty tmpfs, files /dev/null.
HOME_CREDENTIALS = (
    ".ssh", ".gnupg", ".aws", ".azure", ".config/gcloud", ".kube", ".docker", ".config/gh",
    ".config/hub", ".netrc", ".git-credentials", ".pypirc", ".npmrc", ".yarnrc",
    ".cargo/credentials", ".cargo/credentials.toml", ".config/openai", ".anthropic",
    ".config/anthropic", ".huggingface", ".cache/huggingface/token", ".sky", ".ray",
    ".config/sky", ".password-store", ".local/share/keyrings",
    ".cache/readfirst/locks",  # readfirst's own timed-runs lock: no candidate may hold it
)


class SandboxUnavailable(Exception):
    """bwrap is missing or cannot create namespaces here; the message says which and how."""


@dataclass(frozen=True)
class Policy:
    """What one step may touch. Paths are absolute; `writable` is the side's worktree."""

    writable: Path
    readonly: tuple[Path, ...]  # re-exposed (read-only) after the hidden places are covered
    hidden: tuple[Path, ...]  # covered with an empty tmpfs (e.g. the target's .readfirst/)
    network: bool = False
    extra_hidden: tuple[str, ...] = field(default=HIDDEN_SYSTEM)
    exposed: tuple[Path, ...] = ()  # read-only even inside a hidden place (e.g. a prompt file)
    # writable besides the worktree, even inside a hidden place (e.g. a profiler's output)
    extra_writable: tuple[Path, ...] = ()

    def bwrap_args(self, cwd: Path) -> list[str]:
        args = [bwrap_exe(), "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc"]
        for place in self.extra_hidden:
            p = Path(place)
            if p.is_dir() and not p.is_symlink():
                args += ["--tmpfs", place]
        for secret in _home_credentials():
            args += ["--tmpfs", str(secret)] if secret.is_dir() else \
                ["--ro-bind", "/dev/null", str(secret)]
        for ro in _outermost(self.readonly):
            args += ["--ro-bind", str(ro), str(ro)]
        for hide in self.hidden:
            args += ["--tmpfs", str(hide)]
        for ro in self.exposed:
            args += ["--ro-bind", str(ro), str(ro)]
        args += ["--bind", str(self.writable), str(self.writable)]
        for rw in self.extra_writable:
            args += ["--bind", str(rw), str(rw)]
        args += ["--unshare-all", *([] if not self.network else ["--share-net"]),
                 "--die-with-parent", "--new-session", "--cap-drop", "ALL",
                 # the step's shell is the namespace's pid 1 (no bwrap init in between): its
                 # exit still ends everything in the namespace, and the CPU time of what it
                 # waited for reaches readfirst's wait4 (bwrap's init does not pass it on)
                 "--as-pid-1",
                 "--chdir", str(cwd), "--"]
        return args


def _home_credentials() -> list[Path]:
    homes = {Path.home(), Path("/root")}
    found = []
    for home in homes:
        for rel in HOME_CREDENTIALS:
            p = home / rel
            if (p.is_dir() or p.is_file()) and not p.is_symlink():
                found.append(p)
    return found


def _outermost(paths: Iterable[Path]) -> list[Path]:
    """Existing directories, outermost first, nested ones dropped (one bind covers them)."""
    found = sorted({p for p in paths if p.exists()}, key=lambda p: len(p.parts))
    out: list[Path] = []
    for p in found:
        if not any(p.is_relative_to(o) for o in out):
            out.append(p)
    return out


def bwrap_exe() -> str:
    """The bwrap to run: `READFIRST_BWRAP` (a path or name) when set, else `bwrap` on PATH."""
    return os.environ.get(BWRAP_ENV) or "bwrap"


@cache
def probe() -> str | None:
    """None when bwrap works here; otherwise a one-line reason with the install command."""
    exe = shutil.which(bwrap_exe())
    if exe is None:
        where = f" ({BWRAP_ENV}={os.environ[BWRAP_ENV]})" if os.environ.get(BWRAP_ENV) else ""
        return f"bubblewrap (bwrap) is not installed{where}: {INSTALL_HINT}"
    try:
        proc = subprocess.run(
            [exe, "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc", "--unshare-all",
             "--die-with-parent", "--cap-drop", "ALL", "--as-pid-1", "--", "/bin/true"],
            capture_output=True, text=True, timeout=C.SANDBOX_PROBE_TIMEOUT,
            stdin=subprocess.DEVNULL,
        )
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"bwrap cannot run here ({e}); {INSTALL_HINT}"
    if proc.returncode != 0:
        why = (proc.stderr.strip().splitlines() or ["no message"])[-1]
        return (f"bwrap cannot create namespaces here ({why}); allow unprivileged user "
                "namespaces (sysctl kernel.unprivileged_userns_clone=1) or run in a VM")
    return None


def policy_for(worktree: Path, repo: Path, state_dir: Path, network: bool,
               commands: Iterable[str] = ()) -> Policy:
    """The policy of one side: its worktree writable; the repository (and its git dir, the
    toolchains on PATH, and absolute paths the config's commands name, e.g. a benchmark
    script kept outside the repository) visible read-only; readfirst's state hidden."""
    readonly = [repo.resolve(), *_named_paths(commands)]
    git_common = _git_common_dir(repo)
    if git_common is not None:
        readonly.append(git_common)
    hidden_roots = [Path(p) for p in HIDDEN_SYSTEM]
    for entry in os.environ.get("PATH", "").split(os.pathsep):
        p = Path(entry)
        if entry and p.is_absolute() and any(p.is_relative_to(h) for h in hidden_roots):
            readonly.append(p.resolve())
    return Policy(writable=worktree.resolve(), readonly=tuple(readonly),
                  hidden=(state_dir.resolve(),), network=network)


def _named_paths(commands: Iterable[str]) -> list[Path]:
    """Existing absolute paths named as words of the (user's, trusted) commands."""
    found = []
    for cmd in commands:
        try:
            words = shlex.split(cmd)
        except ValueError:
            continue
        found += [Path(w).resolve() for w in words if w.startswith("/") and Path(w).exists()]
    return found


def _git_common_dir(repo: Path) -> Path | None:
    """Where the repository's objects live, when `.git` is a file (the repo is a worktree)."""
    dot_git = repo / ".git"
    if dot_git.is_file():
        text = dot_git.read_text(errors="replace").strip()
        if text.startswith("gitdir:"):
            gitdir = (repo / text.removeprefix("gitdir:").strip()).resolve()
            common = gitdir / "commondir"
            if common.is_file():
                return (gitdir / common.read_text().strip()).resolve()
            return gitdir
    return None


def step_env(extra: Mapping[str, str] | None = None,
             passthrough: Iterable[str] = ()) -> dict[str, str]:
    """The environment of a step: the allow-list from readfirst's own environment, names the
    config passes through, then the config's own values."""
    passed = set(passthrough)
    env = {
        k: v for k, v in os.environ.items()
        if k in passed or ((k in ALLOWED_ENV or k.startswith(ALLOWED_ENV_PREFIXES))
                           and not SECRET_NAME.search(k))
    }
    env.setdefault("PATH", os.defpath)
    env["TMPDIR"] = "/tmp"
    env.update(extra or {})
    return env


def target_step_env(config_env: Mapping[str, str] | Iterable[str]) -> dict[str, str]:
    """`step_env` for `[target] env`: a table of values to set, or a list of names to pass."""
    if isinstance(config_env, Mapping):
        return step_env(config_env)
    return step_env(None, config_env)


def known_secrets() -> list[bytes]:
    """Values readfirst knows to be secret: its environment's variables whose names look like
    keys or tokens (long enough not to match ordinary words)."""
    values = {v for k, v in os.environ.items()
              if SECRET_NAME.search(k) and len(v) >= C.MIN_SECRET_LENGTH}
    return sorted((v.encode() for v in values), key=len, reverse=True)


def scrub(data: bytes, secrets: list[bytes]) -> bytes:
    for s in secrets:
        if s in data:
            data = data.replace(s, b"[secret]")
    return data


def scrub_text(text: str) -> str:
    return scrub(text.encode(errors="surrogateescape"), known_secrets()).decode(
        errors="surrogateescape")
