"""Plotly figures of the agreement page, and their export as PNG or standalone HTML.

The page shows these figures and the HTML report embeds the same ones, so both always agree.
Titles and labels carry user text (run names, raters) only as data, never as markup: plotly
renders text, not HTML, for trace names, but its titles accept a few tags, so names are escaped.
"""

from __future__ import annotations

import html
import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from judgeeye.evaluate.compare import Comparison, GroupComparison, significance_mark
from judgeeye.sampling import RunStats

if TYPE_CHECKING:
    from judgeeye.evaluate.dashboard import Reliability

METRIC_TITLES = {"tau": "Kendall τ", "icc3": "ICC(3,1)", "mse": "MSE"}


def _safe(text: object) -> str:
    return html.escape(str(text), quote=False)


def _err(values: pd.Series, lo: pd.Series, hi: pd.Series) -> tuple[list[float], list[float]]:
    up = [max(h - v, 0.0) if not (math.isnan(h) or math.isnan(v)) else 0.0 for v, h in zip(values, hi)]
    down = [max(v - lo_, 0.0) if not (math.isnan(lo_) or math.isnan(v)) else 0.0 for v, lo_ in zip(values, lo)]
    return up, down


def runs_chart(table: pd.DataFrame) -> go.Figure:
    """τ, ICC(3,1) and MSE of every run with its 95% bootstrap interval."""
    fig = make_subplots(rows=1, cols=3, subplot_titles=[METRIC_TITLES[m] for m in ("tau", "icc3", "mse")])
    labels = [f"run {r}" for r in table["run"]]
    for col, metric in enumerate(("tau", "icc3", "mse"), start=1):
        up, down = _err(table[metric], table[f"{metric}_lo"], table[f"{metric}_hi"])
        fig.add_trace(go.Bar(x=labels, y=table[metric], name=METRIC_TITLES[metric], showlegend=False,
                             hovertext=[_safe(n) for n in table["name"]],
                             error_y=dict(type="data", array=up, arrayminus=down)), row=1, col=col)
    fig.update_layout(title="Agreement with the human gold standard (95% bootstrap intervals)", height=380)
    return fig


def comparison_chart(comp: Comparison, label_a: str, label_b: str) -> go.Figure:
    """A vs B per metric, with the paper's significance marks above B."""
    fig = make_subplots(rows=1, cols=3, subplot_titles=[METRIC_TITLES[m] for m in ("tau", "icc3", "mse")])
    tests = {"tau": comp.tau_test, "icc3": comp.icc3_test, "mse": comp.mse_test}
    for col, metric in enumerate(("tau", "icc3", "mse"), start=1):
        a, b = comp.metrics_a[metric], comp.metrics_b[metric]
        fig.add_trace(go.Bar(x=["A", "B"], y=[a, b], marker_color=["#9aa5b1", "#2f6fdf"],
                             text=["", significance_mark(tests[metric].p_value)], textposition="outside",
                             hovertext=[_safe(label_a), _safe(label_b)], showlegend=False), row=1, col=col)
    fig.update_layout(title=f"Before (A) and after (B): {_safe(label_a)} → {_safe(label_b)}", height=380)
    return fig


def group_chart(group: GroupComparison, raters: list[str]) -> go.Figure:
    """Each rater before and after (e.g. original vs refined codebook), per metric."""
    fig = make_subplots(rows=1, cols=3, subplot_titles=[
        f"{METRIC_TITLES[m]} {significance_mark(group.metric_tests[m].p_value)}".strip() for m in ("tau", "icc3", "mse")])
    names = [_safe(r) for r in raters] or [f"rater {i + 1}" for i in range(len(group.per_rater))]
    for col, metric in enumerate(("tau", "icc3", "mse"), start=1):
        for side, color in (("A", "#9aa5b1"), ("B", "#2f6fdf")):
            fig.add_trace(go.Bar(x=names, y=[row[f"{metric} {side}"] for row in group.per_rater], name=side,
                                 marker_color=color, showlegend=col == 1, legendgroup=side), row=1, col=col)
    fig.update_layout(barmode="group", title="The same raters with setting A and B", height=400)
    return fig


def confusion_chart(confusion: np.ndarray, levels: list[int], title: str = "LLM vs human") -> go.Figure:
    """Counts, rows = gold level, columns = the rater's (rounded) level."""
    fig = go.Figure(go.Heatmap(z=confusion, x=[str(v) for v in levels], y=[str(v) for v in levels],
                               colorscale="Blues", text=confusion, texttemplate="%{text}",
                               hovertemplate="gold %{y}, rater %{x}: %{z}<extra></extra>"))
    fig.update_layout(title=_safe(title), xaxis_title="rater's rating", yaxis_title="gold (human)", height=420)
    fig.update_yaxes(autorange="reversed")
    return fig


def by_gold_chart(by_gold: pd.DataFrame, levels: list[int]) -> go.Figure:
    """Mean predicted rating per gold level (± sd), against the diagonal of perfect agreement."""
    fig = go.Figure()
    fig.add_trace(go.Scatter(x=[levels[0], levels[-1]], y=[levels[0], levels[-1]], mode="lines",
                             line=dict(dash="dot", color="#888"), name="perfect agreement"))
    fig.add_trace(go.Scatter(x=by_gold["gold"], y=by_gold["mean rating"], mode="lines+markers", name="mean rating",
                             error_y=dict(type="data", array=by_gold["sd"].fillna(0).tolist()),
                             customdata=by_gold[["rated"]].to_numpy(),
                             hovertemplate="gold %{x}: mean %{y:.2f} over %{customdata[0]} items<extra></extra>"))
    fig.update_layout(title="Mean predicted rating per gold level", xaxis_title="gold (human)",
                      yaxis_title="rater's mean rating", height=420, yaxis_range=[levels[0] - 0.3, levels[-1] + 0.3])
    return fig


def reliability_chart(rows: Sequence[Reliability]) -> go.Figure:
    """Inter-rater ICC(3,1) among the raters of each codebook version (versions with a value)."""
    fig = go.Figure(go.Bar(x=[f"v{r.codebook_version}" for r in rows],
                           y=[r.icc.icc3 if r.icc else math.nan for r in rows],
                           text=[f"M={len(r.run_ids)}" for r in rows], textposition="outside"))
    fig.update_layout(title="Inter-rater reliability among LLM raters by codebook version",
                      xaxis_title="codebook version", yaxis_title="ICC(3,1)", height=380)
    return fig


def acceptance_chart(stats: RunStats, title: str = "Acceptance rate per gold level") -> go.Figure:
    """Share of candidates accepted per gold level, on a 0–100% axis (callers show a sentence
    instead when the run has no candidates: see ``report.sampling_note``)."""
    levels = pd.DataFrame([{"gold": f"{lv.level:g}", "rate": lv.rate, "items": lv.items} for lv in stats.per_level],
                          columns=["gold", "rate", "items"])
    fig = go.Figure(go.Bar(x=levels["gold"], y=levels["rate"], customdata=levels[["items"]].to_numpy(),
                           hovertemplate="gold %{x}: %{y:.1%} over %{customdata[0]} items<extra></extra>"))
    fig.update_layout(title=_safe(title), xaxis_title="gold label", yaxis_title="acceptance rate",
                      yaxis_tickformat=".0%", yaxis_range=[0, 1], xaxis_type="category", height=360)
    return fig


def utilization_chart(runs: list[tuple[str, RunStats]]) -> go.Figure:
    """Share of items with an accepted trace within their first j samples, per sampling run."""
    fig = go.Figure()
    for label, stats in runs:
        fig.add_trace(go.Scatter(x=list(range(1, len(stats.utilization) + 1)), y=stats.utilization,
                                 mode="lines+markers", name=_safe(label)))
    fig.update_layout(title="Data utilization vs k", xaxis_title="samples per item (j)",
                      yaxis_title="items with an accepted trace", yaxis_range=[0, 1], yaxis_tickformat=".0%",
                      height=360)
    return fig


def annotators_chart(progress: pd.DataFrame) -> go.Figure:
    fig = go.Figure()
    names = [_safe(n) for n in progress["annotator"]]
    for column in ("submitted", "skipped", "none_fits", "edited"):
        if column in progress:
            fig.add_trace(go.Bar(x=names, y=progress[column], name=column.replace("_", " ")))
    fig.update_layout(barmode="group", title="Annotators' progress", yaxis_title="reviews", height=360)
    return fig


# ------------------------------------------------------------------------------- export
def figure_html(fig: go.Figure, *, standalone: bool = True) -> str:
    """A figure as HTML. Standalone pages embed plotly.js (they open offline); fragments for a
    report that loads plotly.js once do not."""
    if standalone:
        return fig.to_html(full_html=True, include_plotlyjs=True)
    return fig.to_html(full_html=False, include_plotlyjs=False)


def figure_png(fig: go.Figure, *, width: int = 1000, height: int | None = None, scale: float = 2.0) -> bytes:
    """A figure as PNG via kaleido (which drives a headless Chrome/Chromium; a few seconds)."""
    try:
        return fig.to_image(format="png", width=width, height=height or fig.layout.height or 450, scale=scale)
    except Exception as exc:  # no kaleido, or no browser for it to drive
        raise RuntimeError(f"PNG export needs kaleido and a Chrome or Chromium browser ({type(exc).__name__}: "
                           f"{exc}); the HTML export works without them") from exc
