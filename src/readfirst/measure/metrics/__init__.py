"""Turn a benchmark's output into named metrics: `parse_metrics(fmt, text) -> {name: value}`.

Built-in formats are listed in `core.formats.FORMATS`; more can be added by a distribution that
registers a callable `(text: str) -> dict[str, float]` under the entry-point group
"readfirst.metric_formats" (the entry point's name is the format name).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from importlib.metadata import EntryPoint

from readfirst.core.formats import FORMATS, available_formats, plugin_formats
from readfirst.measure.metrics import (
    go_bench,
    google_benchmark,
    hyperfine,
    llama_bench,
    metric_lines,
    pytest_benchmark,
)
from readfirst.measure.metrics._common import MetricParseError, as_finite, is_number

__all__ = ["MetricParseError", "parse_metrics"]

MetricParser = Callable[[str], dict[str, float]]


_BUILTIN: dict[str, MetricParser] = {
    metric_lines.FORMAT: metric_lines.parse,
    llama_bench.FORMAT: llama_bench.parse,
    hyperfine.FORMAT: hyperfine.parse,
    pytest_benchmark.FORMAT: pytest_benchmark.parse,
    google_benchmark.FORMAT: google_benchmark.parse,
    go_bench.FORMAT: go_bench.parse,
}
assert tuple(_BUILTIN) == FORMATS


def parse_metrics(fmt: str, text: str) -> dict[str, float]:
    """Metric name -> value, in the order the metrics appear in the output.

    Raises MetricParseError when the output is malformed or fmt is unknown. metric-lines
    output without any METRIC line gives an empty dict (the caller decides what that means).
    """
    parser = _BUILTIN.get(fmt)
    if parser is not None:
        return parser(text)
    entry_point = plugin_formats().get(fmt)
    if entry_point is None:
        raise MetricParseError(
            f"unknown metric format {fmt!r}; expected one of: {', '.join(available_formats())}"
        )
    return _run_plugin(entry_point, text)


def _run_plugin(entry_point: EntryPoint, text: str) -> dict[str, float]:
    """Call a plugin parser and check what it returns; its failures become MetricParseError."""
    where = f"metric format plugin {entry_point.name!r} ({entry_point.value})"
    try:
        parser = entry_point.load()
    except Exception as exc:
        raise MetricParseError(f"{where} failed to load: {exc!r}") from exc
    try:
        result = parser(text)
    except MetricParseError:
        raise
    except Exception as exc:
        raise MetricParseError(f"{where} failed: {exc!r}") from exc
    if not isinstance(result, Mapping):
        raise MetricParseError(f"{where} returned {type(result).__name__}, expected a dict")
    metrics: dict[str, float] = {}
    for name, value in result.items():
        if not isinstance(name, str) or not is_number(value):
            raise MetricParseError(
                f"{where} returned {name!r}: {value!r}; expected metric names mapped to numbers"
            )
        number = as_finite(value)
        if number is not None:
            metrics[name] = number
    return metrics
