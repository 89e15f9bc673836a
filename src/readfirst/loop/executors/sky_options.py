"""SkyPilot's side of `[executor] kind = "skypilot"`: the options (SkyOptions), the instance
types an arch hint asks for, the catalog's hourly price, and which clouds `sky check` enabled.
`sky` is imported only where it is needed.
"""

from __future__ import annotations

import dataclasses
import os
import re
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from readfirst.core.errors import ConfigError

_PREFIX = re.compile(r"^[a-z][-a-z0-9]{0,29}$")
# arch hints: (cloud, arch) -> instance-type families (name format, GiB per vCPU)
_ARCH_TYPES: dict[tuple[str, str], list[tuple[str, float]]] = {
    ("aws", "arm64"): [("c7g.{}", 2.0), ("m7g.{}", 4.0)],
    ("aws", "x86_64"): [("c7i.{}", 2.0), ("m7i.{}", 4.0)],
    ("gcp", "arm64"): [("t2a-standard-{}", 4.0)],
    ("gcp", "x86_64"): [("n2-standard-{}", 4.0)],
}
_VCPUS = (2, 4, 8, 16, 32, 48)
_AWS_SIZE = {2: "large", 4: "xlarge", 8: "2xlarge", 16: "4xlarge", 32: "8xlarge", 48: "12xlarge"}
_NO_PRICE = {"kubernetes", "ssh", "slurm"}


@dataclass(frozen=True)
class SkyOptions:
    """`[executor]` for kind = "skypilot" (unknown keys belong to the loop and are ignored)."""

    infra: str | None = None  # "aws", "aws/us-west-2", "k8s"; None: any enabled cloud
    cpus: str | None = None  # default "4+" unless an instance type is fixed
    memory: str | None = None  # default "8+" likewise
    instance_type: str | None = None
    arch: str | None = None  # "x86_64" | "arm64": instance-type choices, or a k8s node selector
    workers: int | None = None  # pool size; default the loop's W
    idle_minutes_to_autostop: int = 10
    cluster_prefix: str = "readfirst"
    down_at_end: bool = True
    dry_run: bool = False
    wheel: str | None = None  # a readfirst wheel to install on the VMs (else `pip install`)
    python: str | None = None  # the VM's Python (else ~/.readfirst-venv, made by setup)

    @classmethod
    def parse(cls, options: dict[str, Any], base: Path | None = None) -> SkyOptions:
        kw: dict[str, Any] = {}
        for f in fields(cls):
            if options.get(f.name) is not None:
                kind = {"bool": bool, "int": int, "int | None": int}.get(str(f.type), str)
                try:
                    kw[f.name] = kind(options[f.name])
                except (TypeError, ValueError):
                    raise ConfigError(f"[executor] {f.name}: expected {kind.__name__}, "
                                      f"got {options[f.name]!r}") from None
        o = cls(**kw)
        cloud = cloud_region(o.infra)[0]
        wheel = Path(o.wheel or ".").expanduser()
        wheel = wheel if wheel.is_absolute() or base is None else base / wheel
        for bad, why in (
            (o.arch not in (None, "x86_64", "arm64"), f"arch: expected x86_64 or arm64, "
             f"got {o.arch!r}"),
            (o.workers is not None and o.workers < 1, f"workers: expected 1 or more, "
             f"got {o.workers}"),
            (not _PREFIX.match(o.cluster_prefix), "cluster_prefix: expected lowercase letters, "
             f"digits and '-' (a letter first, 30 at most), got {o.cluster_prefix!r}"),
            (o.arch and not o.instance_type and cloud not in (None, "aws", "gcp", "kubernetes"),
             f"arch on {cloud}: set instance_type instead (arch hints cover aws, gcp, k8s)"),
            (o.wheel and (wheel.suffix != ".whl" or not wheel.is_file()),
             f"wheel: {wheel} is not a wheel file (`python -m build --wheel` makes one)"),
        ):
            if bad:
                raise ConfigError(f"[executor] {why}")
        return dataclasses.replace(o, wheel=str(wheel.resolve())) if o.wheel else o


def cloud_region(infra: str | None) -> tuple[str | None, str | None]:
    """"aws/us-west-2" -> ("aws", "us-west-2"); "k8s" -> ("kubernetes", None)."""
    cloud, _, rest = (infra or "").strip().lower().partition("/")
    cloud = {"k8s": "kubernetes", "*": ""}.get(cloud, cloud)
    return cloud or None, rest.split("/")[0] or None


def _least(spec: str, per: float = 1.0) -> float:
    """'4+' / '8' -> 4.0 / 8.0; '2x' -> 2 * per (SkyPilot's memory ratio)."""
    s = spec.strip().rstrip("+")
    return float(s[:-1]) * per if s.endswith("x") else float(s)


def arch_choices(o: SkyOptions) -> list[dict[str, str]]:
    """Instance types of `o.arch` with at least `o.cpus` vCPUs and `o.memory` GiB (any_of)."""
    cloud = cloud_region(o.infra)[0]
    cpus = _least(o.cpus or "4+")
    mem = _least(o.memory or "8+", per=cpus)
    out = []
    for c in [cloud] if cloud else ["aws", "gcp"]:
        for fmt, ratio in _ARCH_TYPES.get((c, o.arch or ""), []):
            n = next((v for v in _VCPUS if v >= cpus and v * ratio >= mem), None)
            if n is not None:
                size = _AWS_SIZE[n] if c == "aws" else str(n)
                out.append({"infra": o.infra or c, "instance_type": fmt.format(size)})
    return out


def hourly_price(options: dict[str, Any]) -> float | None:
    """On-demand USD per hour of the VM `options` ask for, from SkyPilot's catalog when the
    catalog is already on disk (~/.sky/catalogs; never fetched here); None when unknown."""
    try:
        o = SkyOptions.parse({k: v for k, v in options.items() if k != "wheel"})
        cloud, region = cloud_region(o.infra)
        if cloud is None or cloud in _NO_PRICE:
            return None
        from sky import catalog
        from sky.catalog import common

        if not os.path.isfile(common.get_catalog_path(f"{cloud}/vms.csv")):
            return None
        itype = o.instance_type or next(iter(arch_choices(o)), {}).get("instance_type")
        itype = itype or catalog.get_default_instance_type(
            cpus=o.cpus or "4+", memory=o.memory or "8+", region=region, clouds=cloud)
        return float(catalog.get_hourly_cost(itype, False, region, None, clouds=cloud)) \
            if itype else None
    except Exception:  # no catalog, unknown cloud or type, SkyPilot missing: price unknown
        return None


def sky_clouds_enabled(start_server: bool = False) -> list[str]:
    """Clouds `sky check` finds usable for compute; [] on any error or without credentials.
    Without `start_server`, asks only an API server that is already running."""
    try:
        import sky
        from sky.client import sdk
        from sky.server import common as server

        if not start_server and \
                server.get_api_server_status().status != server.ApiServerStatus.HEALTHY:
            return []
        found = sky.get(sdk.check(None, False))
        return sorted({str(cloud) for per_ws in found.values()
                       for cloud, caps in per_ws.items() if "compute" in caps})
    except Exception:
        return []
