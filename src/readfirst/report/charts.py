"""The run's charts as inline SVG strings, shared by the static report and the live dashboard.

Pure functions of the run summary (and the raw samples): no plotting library, no script, every
text escaped (titles come from candidates, which are untrusted).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from html import escape
from typing import Any

from readfirst.core.notation import format_result_change
from readfirst.report.status import experiments

# One colour per result; "kept" is drawn as a star. Inconclusive is amber, never green.
COLOURS = {
    "kept": "#006837", "improved": "#1a9850", "regressed": "#d73027", "no_change": "#7f8c9a",
    "inconclusive": "#e6a100", "checks_failed": "#a50026", "crash": "#a50026",
    "refused": "#7b3294", "suspect": "#7b3294", "skipped": "#b0b0b0", "worker_died": "#a50026",
    "cancelled": "#b0b0b0", "running": "#2166ac", "queued": "#b0b0b0",
}
FONT = 'font-family="system-ui, sans-serif" font-size="11"'


def result_of(e: dict[str, Any]) -> str:
    if e.get("outcome") == "kept" and e.get("kind") == "confirm":
        return "kept"
    return str(e.get("verdict") or e.get("status") or "?")


def colour(result: str) -> str:
    return COLOURS.get(result, "#555555")


def _nice_ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    if hi <= lo:
        hi = lo + (abs(lo) or 1.0) * 0.1
    step = (hi - lo) / n
    mag = 10 ** math.floor(math.log10(step))
    step = min((m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= step), default=10 * mag)
    start = math.ceil(lo / step) * step
    return [round(start + i * step, 10) for i in range(int((hi - start) / step) + 1)]


def _fmt(v: float) -> str:
    return f"{v:.4g}"


def _svg(width: int, height: int, body: list[str], label: str, fluid: bool = False) -> str:
    """`fluid` charts fill their container's width (up to 1.6x their drawn size)."""
    size = (f'width="100%" style="max-width: {int(width * 1.6)}px"' if fluid
            else f'width="{width}" height="{height}"')
    return (f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" '
            f'{size} role="img" aria-label="{escape(label)}">' + "".join(body) + "</svg>")


def _empty(width: int, height: int, text: str) -> str:
    return _svg(width, height, [
        f'<text x="{width / 2}" y="{height / 2}" text-anchor="middle" {FONT} '
        f'fill="#666">{escape(text)}</text>'], text)


def _legend(items: list[str], x: float, y: float) -> list[str]:
    out = []
    for i, name in enumerate(items):
        yy = y + i * 15
        shape = (_star(x + 5, yy, 6, colour(name)) if name == "kept" else
                 f'<circle cx="{x + 5}" cy="{yy}" r="4" fill="{colour(name)}"/>')
        out.append(shape + f'<text x="{x + 14}" y="{yy + 4}" {FONT}>{escape(name)}</text>')
    return out


def _star(cx: float, cy: float, r: float, fill: str, title: str = "") -> str:
    pts = []
    for i in range(10):
        rad = r if i % 2 == 0 else r * 0.45
        a = math.pi / 2 + i * math.pi / 5
        pts.append(f"{cx + rad * math.cos(a):.1f},{cy - rad * math.sin(a):.1f}")
    tip = f"<title>{escape(title)}</title>" if title else ""
    return f'<polygon points="{" ".join(pts)}" fill="{fill}" stroke="#003d20">{tip}</polygon>'


@dataclass(frozen=True)
class _Frame:
    """The plot area of a chart: data (x: experiment #, y: metric) to SVG coordinates."""

    x0: float
    x1: float
    lo: float
    hi: float
    left: float
    top: float
    pw: float
    ph: float

    def X(self, s: float) -> float:  # noqa: N802 (the axis' name)
        return self.left + (s - self.x0) / (self.x1 - self.x0) * self.pw

    def Y(self, v: float) -> float:  # noqa: N802
        return self.top + (self.hi - v) / (self.hi - self.lo) * self.ph


def progress_chart(summary: dict[str, Any], width: int = 760, height: int = 300) -> str:
    """The baseline's metric over the experiments, stepping where winners landed; each
    candidate's median with its CI, coloured by result; kept winners as stars (once); rows
    without a measurement as crosses on the axis."""
    metric = summary.get("metric") or {}
    name, unit = metric.get("name") or "metric", metric.get("unit") or ""
    direction = "lower" if metric.get("direction") == "lower" else "higher"
    rows = experiments(summary)
    measured = [e for e in rows if (e.get("base") or {}).get("median") is not None
                and (e.get("cand") or {}).get("median") is not None]
    if not rows:
        return _empty(width, height, "no measurements yet")
    ys: list[float] = []
    for e in measured:
        b = e["base"]["median"]
        ys += [b, e["cand"]["median"]]
        if e.get("ci_low") is not None and e.get("ci_high") is not None:
            ys += [b * e["ci_low"], b * e["ci_high"]]
    lo, hi = (min(ys), max(ys)) if ys else (0.0, 1.0)
    pad = (hi - lo) * 0.08 or abs(hi) * 0.05 or 1.0
    left, right, top, bottom = 62, 130, 24, 40
    seqs = [e["seq"] for e in rows]
    f = _Frame(min(seqs) - 0.5, max(seqs) + 0.5, lo - pad, hi + pad, left, top,
               width - left - right, height - top - bottom)
    body = _progress_axes(f, seqs, name, unit, direction, height)
    body += _baseline_steps(f, measured)
    if not measured:
        body.append(f'<text x="{left + f.pw / 2}" y="{top + f.ph / 2}" text-anchor="middle" '
                    f'{FONT} fill="#666">no measurements yet</text>')
    present: list[str] = []
    for e in rows:
        res = result_of(e)
        body += _progress_mark(f, e, res, e in measured)
        if res not in present:
            present.append(res)
    body += [f'<line x1="{left + f.pw + 14}" x2="{left + f.pw + 34}" y1="{top + 6}" '
             f'y2="{top + 6}" stroke="#2166ac" stroke-width="2"/><text x="{left + f.pw + 38}" '
             f'y="{top + 10}" {FONT}>baseline</text>']
    body += _legend(present, left + f.pw + 14, top + 24)
    return _svg(width, height, body, f"progress of {name}", fluid=True)


def _progress_axes(f: _Frame, seqs: list[int], name: str, unit: str, direction: str,
                   height: int) -> list[str]:
    left, top, pw, ph = f.left, f.top, f.pw, f.ph
    body = [f'<rect x="{left}" y="{top}" width="{pw}" height="{ph}" fill="#fff" '
            'stroke="#ccc"/>']
    for t in _nice_ticks(f.lo, f.hi):
        body.append(f'<line x1="{left}" x2="{left + pw}" y1="{f.Y(t):.1f}" y2="{f.Y(t):.1f}" '
                    f'stroke="#eee"/><text x="{left - 6}" y="{f.Y(t) + 4:.1f}" '
                    f'text-anchor="end" {FONT}>{_fmt(t)}</text>')
    every = max(1, math.ceil(len(seqs) / 20))
    for s in seqs[::every]:
        body.append(f'<text x="{f.X(s):.1f}" y="{top + ph + 14}" text-anchor="middle" '
                    f'{FONT}>{s}</text>')
    body.append(f'<text x="{left + pw / 2}" y="{height - 6}" text-anchor="middle" {FONT}>'
                'experiment #</text>')
    body.append(f'<text x="14" y="{top + ph / 2}" text-anchor="middle" {FONT} '
                f'transform="rotate(-90 14 {top + ph / 2})">'
                f'{escape(f"{name} ({unit})" if unit else name)}</text>')
    body.append(f'<text x="{left}" y="14" {FONT} font-weight="bold">'
                f'{escape(name)}: {direction} is better</text>')
    return body


def _baseline_steps(f: _Frame, measured: list[dict[str, Any]]) -> list[str]:
    """The baseline: one level per baseline commit (median of its rows' base medians)."""
    levels: list[tuple[float, float, float]] = []
    for e in measured:
        if levels and e.get("baseline") == levels[-1][2]:
            continue
        same = [r["base"]["median"] for r in measured if r.get("baseline") == e.get("baseline")]
        levels.append((e["seq"], sorted(same)[len(same) // 2], e.get("baseline")))  # type: ignore[arg-type]
    if not levels:
        return []
    pts = []
    for i, (s, v, _b) in enumerate(levels):
        if i:
            pts.append(f"{f.X(s - 0.5):.1f},{f.Y(levels[i - 1][1]):.1f}")
            pts.append(f"{f.X(s - 0.5):.1f},{f.Y(v):.1f}")
        else:
            pts.append(f"{f.X(f.x0 + 0.5 - 0.5):.1f},{f.Y(v):.1f}")
    pts.append(f"{f.X(f.x1):.1f},{f.Y(levels[-1][1]):.1f}")
    return [f'<polyline points="{" ".join(pts)}" fill="none" stroke="#2166ac" '
            'stroke-width="2"><title>baseline</title></polyline>']


def _progress_mark(f: _Frame, e: dict[str, Any], res: str, measured: bool) -> list[str]:
    """One experiment: its CI and median (a star when kept), or a cross on the axis."""
    tip = f"#{e['seq']} {e.get('title') or ''}: {res}"
    if not measured:
        x, y = f.X(e["seq"]), f.top + f.ph - 6
        return [f'<path d="M{x - 4:.1f},{y - 4:.1f}L{x + 4:.1f},{y + 4:.1f}M{x - 4:.1f},'
                f'{y + 4:.1f}L{x + 4:.1f},{y - 4:.1f}" stroke="{colour(res)}" '
                f'stroke-width="2"><title>{escape(tip)}</title></path>']
    b, c = e["base"]["median"], e["cand"]["median"]
    out = []
    if e.get("ci_low") is not None and e.get("ci_high") is not None:
        out.append(f'<line x1="{f.X(e["seq"]):.1f}" x2="{f.X(e["seq"]):.1f}" '
               f'y1="{f.Y(b * e["ci_low"]):.1f}" y2="{f.Y(b * e["ci_high"]):.1f}" '
               f'stroke="{colour(res)}" stroke-width="2"/>')
    if res == "kept":
        return [*out, _star(f.X(e["seq"]), f.Y(c), 8, colour(res), tip)]
    return [*out, f'<circle cx="{f.X(e["seq"]):.1f}" cy="{f.Y(c):.1f}" r="4" '
                  f'fill="{colour(res)}"><title>{escape(tip)}</title></circle>']


def forest_plot(summary: dict[str, Any], width: int = 760) -> str:
    """Every measured experiment's change with its CI, coloured by result."""
    metric = summary.get("metric") or {}
    direction = "lower" if metric.get("direction") == "lower" else "higher"
    rows = [e for e in experiments(summary) if e.get("ratio") is not None]
    if not rows:
        return _empty(width, 60, "no measured experiments yet")
    pct = [(e, (e["ratio"] - 1) * 100,
            None if e.get("ci_low") is None else (e["ci_low"] - 1) * 100,
            None if e.get("ci_high") is None else (e["ci_high"] - 1) * 100) for e in rows]
    vals = [v for _e, m, lo_, hi_ in pct for v in (m, lo_, hi_) if v is not None] + [0.0]
    lo, hi = min(vals), max(vals)
    pad = (hi - lo) * 0.08 or 1.0
    lo, hi = lo - pad, hi + pad
    left, right, top, row_h = 300, 30, 28, 22
    height = top + row_h * len(rows) + 34
    pw = width - left - right

    def X(v: float) -> float:
        return left + (v - lo) / (hi - lo) * pw

    better = "← better" if direction == "lower" else "better →"
    body = [f'<text x="{left}" y="14" {FONT} font-weight="bold">change of each experiment, '
            f'% with its CI ({escape(better)})</text>',
            f'<line x1="{X(0):.1f}" x2="{X(0):.1f}" y1="{top - 4}" '
            f'y2="{top + row_h * len(rows)}" stroke="#333" stroke-dasharray="3,3"/>']
    for t in _nice_ticks(lo, hi):
        body.append(f'<text x="{X(t):.1f}" y="{top + row_h * len(rows) + 16}" '
                    f'text-anchor="middle" {FONT}>{_fmt(t)} %</text>')
    for i, (e, m, l_, h_) in enumerate(pct):
        y = top + i * row_h + row_h / 2
        res = result_of(e)
        label = f"#{e['seq']} {'confirm: ' if e.get('kind') == 'confirm' else ''}" \
                f"{e.get('title') or ''}"
        if len(label) > 46:
            label = label[:45] + "…"
        body.append(f'<text x="{left - 8}" y="{y + 4:.1f}" text-anchor="end" {FONT}>'
                    f'{escape(label)}</text>')
        if l_ is not None and h_ is not None:
            body.append(f'<line x1="{X(l_):.1f}" x2="{X(h_):.1f}" y1="{y:.1f}" y2="{y:.1f}" '
                        f'stroke="{colour(res)}" stroke-width="3"/>')
        tip = f"{label}: {res}, {format_result_change(e)}"
        if res == "kept":
            body.append(_star(X(m), y, 7, colour(res), tip))
        else:
            body.append(f'<circle cx="{X(m):.1f}" cy="{y:.1f}" r="4.5" fill="{colour(res)}">'
                        f'<title>{escape(tip)}</title></circle>')
    return _svg(width, height, body, "forest plot of changes", fluid=True)


def samples_chart(title: str, base: list[float], cand: list[float], result: str,
                  width: int = 240, height: int = 110) -> str:
    """One experiment's samples per round, both sides: drift shows as both lines moving."""
    vals = [v for v in base + cand if v is not None]
    if not vals:
        return _empty(width, height, "no samples")
    lo, hi = min(vals), max(vals)
    pad = (hi - lo) * 0.1 or abs(hi) * 0.05 or 1.0
    lo, hi = lo - pad, hi + pad
    left, top, pw, ph = 8, 20, width - 16, height - 30
    n = max(len(base), len(cand), 2)

    def pts(values: list[float]) -> str:
        return " ".join(f"{left + i / (n - 1) * pw:.1f},{top + (hi - v) / (hi - lo) * ph:.1f}"
                        for i, v in enumerate(values) if v is not None)

    short = title if len(title) <= 36 else title[:35] + "…"
    body = [f'<text x="{left}" y="12" {FONT}>{escape(short)}</text>',
            f'<rect x="{left}" y="{top}" width="{pw}" height="{ph}" fill="#fff" stroke="#ddd"/>',
            f'<polyline points="{pts(base)}" fill="none" stroke="#7f8c9a" stroke-width="1.5">'
            '<title>base</title></polyline>',
            f'<polyline points="{pts(cand)}" fill="none" stroke="{colour(result)}" '
            'stroke-width="1.5"><title>candidate</title></polyline>',
            f'<text x="{left + pw}" y="{height - 2}" text-anchor="end" {FONT} fill="#666">'
            f'{len(base)} rounds</text>']
    return _svg(width, height, body, f"samples of {title}")


def funnel_chart(counts: dict[str, int], width: int = 420) -> str:
    top_n = max(counts.values(), default=0) or 1
    row_h, left = 24, 110
    body = []
    for i, (stage, n) in enumerate(counts.items()):
        y = 6 + i * row_h
        w = (width - left - 50) * n / top_n
        body.append(f'<text x="{left - 8}" y="{y + 15}" text-anchor="end" {FONT}>'
                    f'{escape(stage)}</text><rect x="{left}" y="{y + 3}" width="{w:.1f}" '
                    f'height="16" fill="#4575b4"/><text x="{left + w + 6:.1f}" y="{y + 15}" '
                    f'{FONT}>{n}</text>')
    return _svg(width, 12 + row_h * len(counts), body, "funnel")
