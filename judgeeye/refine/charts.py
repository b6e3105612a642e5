"""The critique map: a plotly scatter of critique embeddings in 2-D.

Colour is the rating level, the marker symbol the cluster within its level, representatives are
drawn larger with a dark outline. Hover shows the critique and its item; each point carries its
critique id in ``customdata`` so a selected point can open the trace it came from. Text from
models is HTML-escaped, since plotly renders some tags in hover labels.
"""

from __future__ import annotations

import html
from collections.abc import Sequence

import plotly.graph_objects as go
from plotly.colors import qualitative

from judgeeye.refine.critiques import MapPoint

#: above this many points the map draws with WebGL (Scattergl), which stays smooth with thousands
WEBGL_FROM = 1500
SYMBOLS = ("circle", "square", "diamond", "triangle-up", "cross", "x", "triangle-down", "star", "pentagon",
           "hexagon", "triangle-left", "triangle-right", "hourglass", "bowtie")


def _wrap(text: str, width: int = 70, lines: int = 8) -> list[str]:
    """Greedy word wrap at spaces (the lines textwrap.wrap gives for 99% of critiques, at a
    fraction of its cost: the map wraps thousands of them)."""
    out: list[str] = []
    line = ""
    for word in text.split():
        if line and len(line) + 1 + len(word) > width:
            out.append(line)
            if len(out) == lines:
                return out
            line = word
        else:
            line = f"{line} {word}" if line else word
    if line:
        out.append(line)
    return out[:lines]


def _hover(p: MapPoint) -> str:
    text = "<br>".join(html.escape(line) for line in _wrap(p.text))
    item = html.escape(str(p.external_id if p.external_id is not None else "—"))
    tag = " · representative" if p.representative else ""
    return f"{text}<br><br>level {p.level} · cluster {p.cluster}{tag} · item {item}"


def critique_map(points: Sequence[MapPoint], title: str | None = None) -> go.Figure:
    """One trace per rating level; symbols per cluster; representatives highlighted."""
    colours = qualitative.Plotly
    levels = sorted({p.level for p in points})
    kind = "scattergl" if len(points) >= WEBGL_FROM else "scatter"
    traces = []
    for i, level in enumerate(levels):
        mine = [p for p in points if p.level == level and p.x is not None and p.y is not None]
        traces.append({
            "type": kind, "x": [p.x for p in mine], "y": [p.y for p in mine], "mode": "markers",
            "name": f"level {level}", "customdata": [[p.critique_id] for p in mine],
            "hovertext": [_hover(p) for p in mine], "hoverinfo": "text",
            "marker": {
                "color": colours[i % len(colours)],
                "symbol": [SYMBOLS[(p.cluster or 0) % len(SYMBOLS)] for p in mine],
                "size": [15 if p.representative else 8 for p in mine],
                "line": {"width": [2.5 if p.representative else 0 for p in mine], "color": "#222"},
                "opacity": 0.85,
            },
        })
    layout = {"title": {"text": title}, "legend": {"title": {"text": "rating level"}}, "height": 560,
              "margin": {"l": 10, "r": 10, "t": 40, "b": 10},
              "xaxis": {"showticklabels": False, "title": {"text": None}},
              "yaxis": {"showticklabels": False, "title": {"text": None}}}
    # built from plain dicts of known-good properties: validating thousands of points costs most
    # of a map's first view and finds nothing
    return go.Figure({"data": traces, "layout": layout}, _validate=False)
