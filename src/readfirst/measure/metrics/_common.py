"""Helpers shared by the format parsers: the error type, JSON location, number checks."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterator, Mapping
from typing import Any


class MetricParseError(ValueError):
    """Benchmark output is malformed; the message says what was expected and where."""


_DECODER = json.JSONDecoder()
# A JSON document starts at the first non-blank character of a line (llama-bench, hyperfine
# and friends print "[" or "{" at the start of a line; log noise rarely does and is skipped).
_JSON_START = re.compile(r"^[ \t]*([\[{])", re.MULTILINE)


def line_of(text: str, offset: int) -> int:
    """1-based line number of a character offset."""
    return text.count("\n", 0, offset) + 1


def snippet(text: str, limit: int = 60) -> str:
    """The first non-blank line of text, shortened, for error messages."""
    for line in text.splitlines():
        if line.strip():
            line = line.strip()
            return repr(line if len(line) <= limit else line[: limit - 3] + "...")
    return "''"


def json_starts(text: str, chars: str) -> Iterator[tuple[int, str]]:
    """Offsets (and the opening character) of lines that start a JSON value in chars."""
    for match in _JSON_START.finditer(text):
        if match.group(1) in chars:
            yield match.start(1), match.group(1)


class DecodeFailure(Exception):
    """A JSON value could not be decoded at an offset; str() says where and why.

    progress is how far decoding got, so the error of the candidate that came closest to
    being the document (not of a log line such as `[info] ...`) can be reported.
    """

    def __init__(self, message: str, progress: int) -> None:
        super().__init__(message)
        self.progress = progress


class Failures:
    """Keeps the most telling reason why no candidate was the JSON document."""

    def __init__(self) -> None:
        self.best: str | None = None
        self._progress = -1

    def note(self, message: str, progress: int) -> None:
        """Remember message if its candidate got further than any before."""
        if progress > self._progress:
            self.best, self._progress = message, progress


def decode_at(text: str, offset: int) -> tuple[Any, int]:
    """Decode one JSON value at offset; returns (value, end offset) or raises DecodeFailure."""
    try:
        return _DECODER.raw_decode(text, offset)
    except json.JSONDecodeError as exc:
        message = f"line {exc.lineno}, column {exc.colno}: {exc.msg}"
        raise DecodeFailure(message, exc.pos - offset) from exc
    except (ValueError, RecursionError) as exc:  # e.g. int too long, nesting too deep
        raise DecodeFailure(f"line {line_of(text, offset)}: {exc}", 0) from exc


def decode_lines_at(text: str, offset: int) -> tuple[Any, int]:
    """Like decode_at, but the value must also end its line (so `[0] loading` is not JSON)."""
    value, end = decode_at(text, offset)
    newline = text.find("\n", end)
    rest = text[end : len(text) if newline < 0 else newline]
    if rest.strip():
        line = line_of(text, end)
        column = end - (text.rfind("\n", 0, end) + 1) + 1
        raise DecodeFailure(
            f"line {line}, column {column}: unexpected text after the JSON value", end - offset
        )
    return value, end


def strip_bom(text: str) -> str:
    """Drop a leading byte-order mark, which json refuses."""
    return text[1:] if text.startswith("\ufeff") else text


def load_json_object(fmt: str, text: str, key: str) -> dict[str, Any]:
    """Find the JSON object holding key in text (log lines around it are tolerated)."""
    text = strip_bom(text)
    expected = f"{fmt}: expected an object with {key!r}"
    failures = Failures()
    for offset, _ in json_starts(text, "{"):
        try:
            value, end = decode_lines_at(text, offset)
        except DecodeFailure as exc:
            failures.note(str(exc), exc.progress)
            continue
        if isinstance(value, dict) and key in value:
            return value
        keys = ", ".join(repr(k) for k in list(value)[:8]) if isinstance(value, dict) else ""
        failures.note(
            f"line {line_of(text, offset)}: found an object with keys [{keys}]", end - offset
        )
    if failures.best is not None:
        raise MetricParseError(f"{expected} ({failures.best})")
    if not text.strip():
        raise MetricParseError(f"{expected} (the output is empty)")
    raise MetricParseError(f"{expected} (no line starts with '{{'; output begins {snippet(text)})")


def require_list(
    fmt: str, container: Mapping[str, Any], key: str, where: str, *, label: str = ""
) -> list[Any]:
    """container[key] as a list, or MetricParseError naming the JSON path (where)."""
    if key not in container:
        raise MetricParseError(f"{fmt}: {where} lacks {key!r}{label}")
    value = container[key]
    if not isinstance(value, list):
        raise MetricParseError(
            f"{fmt}: expected {join_path(where, key)} to be an array, got {type_name(value)}{label}"
        )
    return value


def json_entries(fmt: str, text: str, key: str) -> Iterator[tuple[str, dict[str, Any]]]:
    """Each object of the array `key` of the report's JSON object, with its JSON path."""
    document = load_json_object(fmt, text, key)
    for index, raw in enumerate(require_list(fmt, document, key, ROOT)):
        where = f"{key}[{index}]"
        yield where, require_object(fmt, raw, where)


def require_numbers(fmt: str, values: Any, where: str, label: str = "") -> list[float]:
    """values as a non-empty list of numbers (a result's samples), or MetricParseError."""
    if not isinstance(values, list) or not values:
        raise MetricParseError(f"{fmt}: expected {where} to be a non-empty array of numbers, "
                               f"got {type_name(values)}{label}")
    out = []
    for i, v in enumerate(values):
        if isinstance(v, bool) or not isinstance(v, int | float):
            raise MetricParseError(
                f"{fmt}: expected {where}[{i}] to be a number, got {type_name(v)}{label}")
        out.append(float(v))
    return out


def require_object(fmt: str, value: Any, where: str, *, label: str = "") -> dict[str, Any]:
    """value itself as a dict, or MetricParseError naming the JSON path (where)."""
    if not isinstance(value, dict):
        raise MetricParseError(
            f"{fmt}: expected {where} to be an object, got {type_name(value)}{label}"
        )
    return value


def require_str(fmt: str, obj: Mapping[str, Any], key: str, where: str, *, label: str = "") -> str:
    """obj[key] as a string, or MetricParseError naming the JSON path (where)."""
    if key not in obj:
        raise MetricParseError(f"{fmt}: {where} lacks {key!r}{label}")
    value = obj[key]
    if not isinstance(value, str):
        raise MetricParseError(
            f"{fmt}: expected {join_path(where, key)} to be a string, got {type_name(value)}{label}"
        )
    return value


def join_path(where: str, key: str) -> str:
    """The JSON path of key inside where ("the top-level object" is the root)."""
    return key if where == ROOT else f"{where}.{key}"


ROOT = "the top-level object"


def is_number(value: Any) -> bool:
    """True for JSON numbers (int or float, not bool)."""
    return isinstance(value, int | float) and not isinstance(value, bool)


def as_finite(value: int | float) -> float | None:
    """value as a float, or None when it is NaN, infinite or too large for a float."""
    try:
        result = float(value)
    except OverflowError:
        return None
    return result if math.isfinite(result) else None


def require_number(
    fmt: str,
    obj: Mapping[str, Any],
    key: str,
    where: str,
    *,
    nullable: bool = False,
    label: str = "",
) -> float | None:
    """obj[key] as a finite float; None when non-finite (or null and nullable).

    Raises MetricParseError when the key is missing or the value is not a number.
    """
    if key not in obj:
        raise MetricParseError(f"{fmt}: {where} lacks {key!r}{label}")
    value = obj[key]
    if value is None and nullable:
        return None
    if not is_number(value):
        raise MetricParseError(
            f"{fmt}: expected {join_path(where, key)} to be a number, got {type_name(value)}{label}"
        )
    return as_finite(value)


def type_name(value: Any) -> str:
    """JSON name of a decoded value's type, for error messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return f"the number {value!r}"
    if isinstance(value, str):
        return f"the string {snippet(value, 40)}"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


class UniqueNames:
    """Hands out metric names, suffixing repeats with #2, #3, ... in order of appearance."""

    def __init__(self) -> None:
        self._taken: set[str] = set()
        self._count: dict[str, int] = {}

    def allocate(self, base: str) -> str:
        """base the first time, then base#2, base#3, ... (never a name already handed out)."""
        n = self._count.get(base, 0) + 1
        name = base if n == 1 else f"{base}#{n}"
        while name in self._taken:
            n += 1
            name = f"{base}#{n}"
        self._count[base] = n
        self._taken.add(name)
        return name


def put(metrics: dict[str, float], name: str, value: float | None) -> None:
    """Record a metric unless its value was skipped as non-finite."""
    if value is not None:
        metrics[name] = value
