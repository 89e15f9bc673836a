"""The names of the metric formats: the built-in ones and those plugins add.

A plugin is a callable `(text: str) -> dict[str, float]` registered under the entry-point group
"readfirst.metric_formats" (the entry point's name is the format name); the config checks
`[metric] format` against these names, `measure.metrics` parses with them.
"""

from __future__ import annotations

from importlib.metadata import EntryPoint, entry_points

FORMATS: tuple[str, ...] = (
    "metric-lines",
    "llama-bench-json",
    "hyperfine-json",
    "pytest-benchmark-json",
    "google-benchmark-json",
    "go-bench",
)
ENTRY_POINT_GROUP = "readfirst.metric_formats"


def plugin_formats() -> dict[str, EntryPoint]:
    """Entry points of the plugin group by name; built-in names cannot be overridden."""
    found: dict[str, EntryPoint] = {}
    for entry_point in entry_points(group=ENTRY_POINT_GROUP):
        if entry_point.name not in FORMATS:
            found.setdefault(entry_point.name, entry_point)
    return found


def available_formats() -> tuple[str, ...]:
    """FORMATS, then the names of installed plugin formats (sorted)."""
    return FORMATS + tuple(sorted(plugin_formats()))
