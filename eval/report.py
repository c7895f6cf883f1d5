"""Eval reports: ``summary.json`` + a readable ``report.md`` + one PNG bar chart per grouped rate.

Generic on purpose: the math and TextCraft runners build their own ``Section``s (often with
``rate_table`` / ``mean_table``) and call ``write_summary``. All files are written atomically.
"""
from __future__ import annotations

import json
import math
import re
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Sequence

from verl_ext.io import atomic_write


@dataclass(frozen=True)
class Section:
    """A titled table in ``report.md``; ``chart=(label_column, value_column)`` also draws a bar
    chart of that column (values in [0, 1] are drawn on a 0..1 axis)."""

    title: str
    columns: tuple[str, ...]
    rows: tuple[tuple, ...]
    text: str = ""
    chart: tuple[str, str] | None = None


def _group_sort_key(value: Any) -> tuple:
    if value is None:
        return (2, "")
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return (0, float(value), "")
    return (1, str(value))


def _group_of(record: dict, group_field: str) -> Any:
    group = record.get(group_field)
    return tuple(group) if isinstance(group, list) else group


def _groups(records: Iterable[dict], group_field: str, value_field: str) -> dict[Any, list[float]]:
    """Values per group; a group whose values are all missing still appears (empty list)."""
    groups: dict[Any, list[float]] = defaultdict(list)
    for r in records:
        values = groups[_group_of(r, group_field)]
        value = r.get(value_field)
        if value is not None and not (isinstance(value, float) and math.isnan(value)):
            values.append(float(value))
    return dict(sorted(groups.items(), key=lambda kv: _group_sort_key(kv[0])))


def rate(values: Sequence[float]) -> float | None:
    """Mean of 0/1 (or bool) values; None for no values."""
    return sum(values) / len(values) if values else None


Z95 = 1.959963984540054  # two-sided 95% normal quantile


def wilson_interval(successes: float, n: int, z: float = Z95) -> tuple[float, float] | None:
    """95% Wilson score interval for ``successes`` out of ``n`` (None for n = 0). Wilson, not the
    normal approximation: it stays inside [0, 1] and is honest at 0/n and n/n, which is where small
    eval sets (15 TextCraft episodes, 11 depth-4 goals) live."""
    if n <= 0:
        return None
    p = min(max(successes / n, 0.0), 1.0)
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return (round(max(0.0, centre - half), 4), round(min(1.0, centre + half), 4))


def rate_with_interval(successes: float, n: int) -> dict[str, Any]:
    """``{"rate", "n", "ci95"}``: the form every rate takes in summaries."""
    return {"rate": round(successes / n, 4) if n else None, "n": n, "ci95": wilson_interval(successes, n)}


def _total(values: list[float]) -> float | int:
    total = sum(values)
    return int(total) if float(total).is_integer() else total


def rate_table(
    records: Iterable[dict], group_field: str, value_field: str, title: str | None = None, chart: bool = True
) -> Section:
    """Success rate of bool-ish ``value_field`` per ``group_field`` plus an "all" row, each with its
    95% Wilson interval over the ``scored`` records. Records whose value is missing/None count in
    ``n`` but not in ``scored``."""
    records = list(records)
    groups = _groups(records, group_field, value_field)
    counts: dict[Any, int] = defaultdict(int)
    for r in records:
        counts[_group_of(r, group_field)] += 1
    rows = []
    all_values: list[float] = []

    def row(label: Any, n: int, values: list[float]) -> tuple:
        ci = wilson_interval(sum(values), len(values))
        return (label, n, len(values), _total(values), rate(values), *(ci or (None, None)))

    for group, values in groups.items():
        all_values += values
        rows.append(row(group, counts[group], values))
    rows.append(row("all", len(records), all_values))
    return Section(
        title=title or f"{value_field} by {group_field}",
        columns=(group_field, "n", "scored", value_field, "rate", "ci95_low", "ci95_high"),
        rows=tuple(rows),
        chart=(group_field, "rate") if chart else None,
    )


def mean_table(
    records: Iterable[dict], group_field: str, value_field: str, title: str | None = None, chart: bool = False
) -> Section:
    """Mean, median and max of numeric ``value_field`` per ``group_field`` plus an "all" row."""
    groups = _groups(list(records), group_field, value_field)

    def stats(label: Any, values: list[float]) -> tuple:
        if not values:
            return (label, 0, None, None, None)
        ordered = sorted(values)
        mid = len(ordered) // 2
        median = ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2
        return (label, len(values), sum(values) / len(values), median, ordered[-1])

    rows = [stats(g, v) for g, v in groups.items()]
    rows.append(stats("all", [x for v in groups.values() for x in v]))
    return Section(
        title=title or f"{value_field} by {group_field}",
        columns=(group_field, "n", "mean", "median", "max"),
        rows=tuple(rows),
        chart=(group_field, "mean") if chart else None,
    )


def _is_interval(value: Any) -> bool:
    return isinstance(value, (list, tuple)) and len(value) == 2 and all(isinstance(v, float) for v in value)


def format_cell(value: Any) -> str:
    """Markdown-safe cell text: floats to 3 decimals, intervals as ``[lo, hi]``, None as an em
    dash, pipes escaped."""
    if value is None:
        return "—"
    if _is_interval(value):
        return f"[{float(value[0]):.3f}, {float(value[1]):.3f}]"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return f"{value:.3f}" if value == value else "nan"
    if isinstance(value, (dict, list, tuple)):
        value = json.dumps(value, default=str)
    return str(value).replace("|", "\\|").replace("\n", " ")


def markdown_table(columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    head = "| " + " | ".join(format_cell(c) for c in columns) + " |"
    rule = "|" + "|".join("---" for _ in columns) + "|"
    body = ["| " + " | ".join(format_cell(c) for c in row) + " |" for row in rows]
    return "\n".join([head, rule, *body])


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_") or "chart"


def render_chart(section: Section) -> bytes:
    """PNG bytes of ``section``'s bar chart (matplotlib Agg canvas, no pyplot global state)."""
    from io import BytesIO

    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    label_col, value_col = section.chart  # type: ignore[misc]
    li, vi = section.columns.index(label_col), section.columns.index(value_col)
    labels = [format_cell(r[li]) for r in section.rows]
    values = [float(r[vi]) if isinstance(r[vi], (int, float)) else 0.0 for r in section.rows]
    fig = Figure(figsize=(max(4.0, 0.6 * len(labels) + 2), 3.6), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    colors = ["#4c72b0" if label != "all" else "#dd8452" for label in labels]
    bars = ax.bar(range(len(labels)), values, color=colors)
    ax.set_xticks(range(len(labels)), labels, rotation=30 if len(labels) > 6 else 0, ha="right" if len(labels) > 6 else "center")
    ax.set_title(section.title)
    ax.set_xlabel(label_col)
    ax.set_ylabel(value_col)
    if values and 0.0 <= min(values) and max(values) <= 1.0:
        ax.set_ylim(0, 1.05)
    for bar, value in zip(bars, values):
        ax.annotate(f"{value:.2f}", (bar.get_x() + bar.get_width() / 2, bar.get_height()), ha="center", va="bottom", fontsize=8)
    fig.tight_layout()
    buf = BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def _scalars(summary: dict, prefix: str = "") -> list[tuple[str, Any]]:
    out: list[tuple[str, Any]] = []
    for key, value in summary.items():
        if isinstance(value, dict):
            out += _scalars(value, f"{prefix}{key}.")
        elif not isinstance(value, (list, tuple)) or (str(key).endswith("ci95") and _is_interval(value)):
            out.append((f"{prefix}{key}", value))
    return out


def write_summary(out_dir: str | Path, summary: dict, title: str, sections: Sequence[Section] = ()) -> dict[str, Path]:
    """Write ``summary.json``, ``report.md`` and ``<section>.png`` for each charted section into
    ``out_dir``; returns the written paths by name (``summary``, ``report``, chart slugs)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written: dict[str, Path] = {}
    atomic_write(out / "summary.json", json.dumps(summary, indent=2, ensure_ascii=False, default=str) + "\n")
    written["summary"] = out / "summary.json"
    parts = [f"# {title}", ""]
    scalars = _scalars(summary)
    if scalars:
        parts += [markdown_table(("metric", "value"), scalars), ""]
    used: set[str] = set()
    for section in sections:
        parts += [f"## {section.title}", ""]
        if section.text:
            parts += [section.text, ""]
        parts += [markdown_table(section.columns, section.rows), ""]
        if section.chart and section.rows:
            slug = _slug(section.title)
            while slug in used or slug in ("summary", "report"):
                slug += "_"
            used.add(slug)
            atomic_write(out / f"{slug}.png", render_chart(section))
            written[slug] = out / f"{slug}.png"
            parts += [f"![{section.title}]({slug}.png)", ""]
    atomic_write(out / "report.md", "\n".join(parts))
    written["report"] = out / "report.md"
    return written
