"""Executors run experiments: submit -> handle -> poll / wait -> result -> cancel.

Jobs and results are plain JSON-serialisable data, so an executor on other machines (Ray,
SkyPilot) can carry them; the local executor runs each job in a worker subprocess. A result is
validated when it is made or comes back (`JobResult` is a pydantic dataclass: a status or
verdict outside the Literal types, or a malformed compare result, raises ValueError).
Executors are plugins: built-ins `local`, `ray`, `skypilot`, others by the entry-point group
`readfirst.executors` (a factory called as `(workspace, jobs_dir, workers, options)`).
"""

from __future__ import annotations

from importlib.metadata import entry_points
from typing import Any

from readfirst.loop.executors.base import Executor

ENTRY_POINT_GROUP = "readfirst.executors"


EXTRA_INSTALL = {
    "ray": "pip install 'readfirst[ray]'",
    "skypilot": "pip install 'readfirst[skypilot]'",
}


def make_executor(kind: str, workspace: Any, jobs_dir: Any, workers: int, *,
                  pin_cpus: bool = False, options: dict[str, Any] | None = None,
                  quiet_timed: bool = False) -> Executor:
    """The executor named by `[executor] kind`: local, ray, skypilot or a plugin's name.
    `quiet_timed` (local): workers' builds and checks pause during others' timed runs."""
    from readfirst.core.errors import ConfigError

    options = options or {}
    if kind == "local":
        from readfirst.loop.executors.local import LocalExecutor

        return LocalExecutor(workspace, jobs_dir, workers, pin_cpus, quiet_timed)
    if kind not in EXTRA_INSTALL:
        for ep in entry_points(group=ENTRY_POINT_GROUP):
            if ep.name == kind:
                return ep.load()(workspace, jobs_dir, workers, options)  # type: ignore[no-any-return]
        names = ["local", *EXTRA_INSTALL, *sorted(ep.name for ep in
                                                   entry_points(group=ENTRY_POINT_GROUP))]
        raise ConfigError(f"[executor] kind: expected {', '.join(names)}, got {kind!r}")
    try:
        if kind == "ray":
            from readfirst.loop.executors.ray_exec import RayExecutor

            return RayExecutor(workspace, jobs_dir, workers, options)
        from readfirst.loop.executors.sky_exec import SkyPilotExecutor

        return SkyPilotExecutor(workspace, jobs_dir, workers, options)
    except ModuleNotFoundError as e:
        if e.name and e.name.split(".")[0] in ("ray", "sky"):
            raise ConfigError(f"the {kind} executor needs its extra: "
                              f"{EXTRA_INSTALL[kind]}") from None
        raise
