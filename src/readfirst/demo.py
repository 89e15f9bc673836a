"""The bundled demo: a small C transformer-kernel library made into a real git repository."""

from __future__ import annotations

import shutil
import stat
import tempfile
from importlib import resources
from pathlib import Path

from readfirst.errors import ConfigError
from readfirst.gitcli import git

DEMO_IDENTITY = ("-c", "user.name=readfirst demo", "-c", "user.email=demo@localhost")


def demo_data() -> Path:
    return Path(str(resources.files("readfirst") / "data" / "demo"))


def demo_patches() -> list[Path]:
    return sorted((demo_data() / "patches").glob("*.patch"))


def _copy_target(dest: Path) -> None:
    shutil.copytree(demo_data() / "target", dest, dirs_exist_ok=True)
    for script in dest.rglob("*.sh"):  # installers may drop the executable bit
        script.chmod(script.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)


def commit_all(repo: Path, message: str) -> None:
    git(repo, "add", "-A")
    git(repo, *DEMO_IDENTITY, "commit", "-q", "-m", message)


def make_demo_repo(directory: Path | None = None) -> Path:
    """A git repo: commit 1 the naive kernels, commit 2 the two real fusions applied."""
    if directory is None:
        repo = Path(tempfile.mkdtemp(prefix="readfirst-demo-"))
    else:
        repo = directory.resolve()
        if repo.exists() and any(repo.iterdir()):
            raise ConfigError(f"{repo}: not empty; the demo needs a new or empty directory")
        repo.mkdir(parents=True, exist_ok=True)
    _copy_target(repo)
    git(repo, "init", "-q")
    commit_all(repo, "Naive multi-pass kernels")
    fusions = [p for p in demo_patches() if p.name.startswith(("01-", "02-"))]
    for patch in fusions:
        git(repo, "apply", str(patch))
    commit_all(repo, "Fuse the passes of rmsnorm and softmax")
    return repo
