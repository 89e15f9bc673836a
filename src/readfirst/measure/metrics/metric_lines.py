"""`METRIC name=value` lines, as printed for pi-autoresearch (autoresearch.sh).

The grammar is pi-autoresearch's `/^METRIC\\s+([\\w.µ]+)=(\\S+)\\s*$/gm`, applied per line:
`\\w` is ASCII (as in JavaScript), values are read like JavaScript's `Number()` and must be
finite, and the names `__proto__`, `constructor` and `prototype` are refused.
"""

from __future__ import annotations

import math
import re

FORMAT = "metric-lines"

METRIC_LINE = re.compile(r"METRIC\s+([A-Za-z0-9_.µ]+)=(\S+)\s*")
DENIED_NAMES = frozenset({"__proto__", "constructor", "prototype"})
# JavaScript's line terminators: ^ and $ of a /m regex match at each of them.
_LINE_BREAK = re.compile("\r\n|[\n\r\u2028\u2029]")
# JavaScript StrNumericLiteral without Infinity (never finite) and without surrounding
# whitespace (\S+ has none): decimal with optional sign, or unsigned 0x / 0o / 0b integers.
_DECIMAL = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
_RADIX = re.compile(r"0(?:[xX](?P<hex>[0-9a-fA-F]+)|[oO](?P<oct>[0-7]+)|[bB](?P<bin>[01]+))")


def parse_number(raw: str) -> float | None:
    """raw read as JavaScript's Number() would, or None when not a finite number."""
    if _DECIMAL.fullmatch(raw):
        value = float(raw)
    elif match := _RADIX.fullmatch(raw):
        digits, base = next(
            (match.group(g), b) for g, b in (("hex", 16), ("oct", 8), ("bin", 2)) if match.group(g)
        )
        try:
            value = float(int(digits, base))
        except (OverflowError, ValueError):  # beyond a double, or too many digits to convert
            return None
    else:
        return None
    return value if math.isfinite(value) else None


def parse(text: str) -> dict[str, float]:
    """Metrics from METRIC lines: last value wins, order is that of first appearance."""
    metrics: dict[str, float] = {}
    for line in _LINE_BREAK.split(text):
        match = METRIC_LINE.fullmatch(line)
        if match is None:
            continue
        name, raw = match.groups()
        if name in DENIED_NAMES:
            continue
        value = parse_number(raw)
        if value is not None:
            metrics[name] = value  # an existing key keeps its position
    return metrics
