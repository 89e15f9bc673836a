"""Proposers: where candidates come from. Built-ins plus plugins (entry-point group
`readfirst.proposers`, each loading a class that follows `Proposer`)."""

from __future__ import annotations

from importlib.metadata import entry_points

from readfirst.core.errors import ConfigError
from readfirst.proposers.base import Proposer

ENTRY_POINT_GROUP = "readfirst.proposers"


def get_proposer(name: str) -> Proposer:
    from readfirst.proposers.forks import ForksProposer
    from readfirst.proposers.patches import PatchesProposer

    builtin: dict[str, type] = {"forks": ForksProposer, "patches": PatchesProposer}
    if name == "agent":
        from readfirst.proposers.agent import make_agent_proposer

        return make_agent_proposer()
    if name in builtin:
        return builtin[name]()  # type: ignore[no-any-return]
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        if ep.name == name:
            return ep.load()()  # type: ignore[no-any-return]
    names = sorted({*builtin, *(ep.name for ep in entry_points(group=ENTRY_POINT_GROUP))})
    raise ConfigError(f"unknown proposer {name!r}: expected one of {', '.join(names)}")
