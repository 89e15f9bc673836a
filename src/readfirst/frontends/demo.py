"""The bundled demo: a small C transformer-kernel library made into a real git repository."""

from __future__ import annotations

import shutil
import stat
import tempfile
from importlib import resources
from pathlib import Path

from readfirst.core.errors import ConfigError
from readfirst.vcs.gitcli import git

DEMO_IDENTITY = ("-c", "user.name=readfirst demo", "-c", "user.email=demo@localhost")


def demo_data() -> Path:
    return Path(str(resources.files("readfirst.frontends") / "data" / "demo"))


def demo_patches() -> list[Path]:
    return sorted((demo_data() / "patches").glob("*.patch"))


def _copy_target(dest: Path) -> None:
    shutil.copytree(demo_data() / "target", dest, dirs_exist_ok=True)
    # Wheels drop dotfiles from package data, so the target's .gitignore ships under this name.
    (dest / "dot-gitignore").rename(dest / ".gitignore")
    for script in dest.rglob("*.sh"):  # installers may drop the executable bit
        script.chmod(script.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)


def commit_all(repo: Path, message: str) -> None:
    git(repo, "add", "-A")
    git(repo, *DEMO_IDENTITY, "commit", "-q", "-m", message)


def make_demo(directory: Path | None = None) -> tuple[Path, Path]:
    """`<dir>/target`: the naive kernels, one commit. `<dir>/fastfork`: a competing fork with
    one commit per bundled patch (two real fusions, a slowdown, a broken kernel, a neutral
    rename, and a benchmark edit that must be refused)."""
    if directory is None:
        root = Path(tempfile.mkdtemp(prefix="readfirst-demo-"))
    else:
        root = directory.resolve()
        if root.exists() and any(root.iterdir()):
            raise ConfigError(f"{root}: not empty; the demo needs a new or empty directory")
        root.mkdir(parents=True, exist_ok=True)
    target, fork = root / "target", root / "fastfork"
    _copy_target(target)
    git(target, "init", "-q")
    commit_all(target, "Naive multi-pass kernels")
    git(root, "clone", "-q", str(target), str(fork))
    for patch in demo_patches():
        git(fork, *DEMO_IDENTITY, "am", "-q", "--committer-date-is-author-date", str(patch))
    return target, fork
