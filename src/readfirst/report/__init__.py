"""Run reports: `report.md` (+ `progress.svg`, `forest.svg`) and one self-contained
`report.html` with the dashboard's charts (report/charts.py), static.

Everything is derived from the plain run summary dict (`readfirst run --json`), plus the raw
samples per round and the research brief's hypotheses when the journal is at hand. jinja2 is
imported only when a report is written, so `status`/`export` work without it.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any

from readfirst.core.fsutil import atomic_write
from readfirst.report.context import build_context
from readfirst.report.view import charts

__all__ = ["write_report"]


def _md_cell(value: object) -> str:
    """A markdown table cell: no line breaks, pipes and angle brackets escaped."""
    text = " ".join(str(value).split())
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace("|", r"\|")


@lru_cache(maxsize=1)
def _env() -> Any:
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.PackageLoader("readfirst.report", "templates"),
        autoescape=lambda name: name is not None and ".html" in name,
        trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True,
        undefined=jinja2.StrictUndefined,
    )
    env.filters["md"] = _md_cell
    return env


def write_report(summary: dict[str, Any], out_dir: Path,
                 samples: dict[int, dict[str, list[float]]] | None = None,
                 hypotheses: list[dict[str, Any]] | None = None,
                 machine: dict[str, Any] | None = None) -> tuple[Path, Path]:
    """Write report.md (+ progress.svg and forest.svg next to it) and a self-contained
    report.html. `samples` (per experiment seq) and `hypotheses` come from the journal.

    Each file is written to a temporary file in `out_dir` and moved into place. Returns
    (markdown path, html path).
    """
    from markupsafe import Markup

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    ctx = build_context(summary)
    svg = charts(summary, samples or {})
    ctx["hypotheses"] = hypotheses or []
    ctx["kept_any"] = bool(ctx["winners"])
    m = machine or {}
    ctx["machine"] = {"host": m.get("host") or "–", "cpus": m.get("cpus") or "–",
                      "noise": "–" if m.get("base_cv_median") is None else
                      f"median CV of the base side {m['base_cv_median']:.2%} over "
                      f"{m['measured']} experiment(s)"}
    md = _env().get_template("report.md.j2").render(**ctx, plot_file="progress.svg",
                                                    forest_file="forest.svg")
    html = _env().get_template("report.html.j2").render(
        **ctx, plot_svg=Markup(svg["progress"]), forest_svg=Markup(svg["forest"]),
        funnel_svg=Markup(svg["funnel"]), samples_svgs=[Markup(x) for x in svg["samples"]])
    md_path, html_path = out_dir / "report.md", out_dir / "report.html"
    atomic_write(out_dir / "progress.svg", svg["progress"])
    atomic_write(out_dir / "forest.svg", svg["forest"])
    atomic_write(md_path, md)
    atomic_write(html_path, html)
    return md_path, html_path
