"""An experiment's report: every rater side by side, the paired tests against the base, one
verdict per comparison, what each stage cost, and every input; as data, text and one HTML file.

The numbers come from the functions the Agreement page uses, so both always agree: each rater
run's τ, ICC(3,1), MSE with 95% bootstrap intervals, n and parse failures from
:func:`judgeeye.evaluate.summary.summaries`; the paired tests (one-sided paired bootstraps for τ
and ICC(3,1), a paired t-test on squared errors) from :func:`judgeeye.evaluate.dashboard.comparison`
and, for black-box raters under two codebooks, :func:`judgeeye.evaluate.dashboard.group_comparison`.
"""

from __future__ import annotations

import html
import json
import math
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pandas as pd
import plotly.graph_objects as go
from plotly.offline import get_plotlyjs
from plotly.subplots import make_subplots
from sqlalchemy import select
from sqlalchemy.orm import Session

from judgeeye.display import duration
from judgeeye.evaluate import dashboard
from judgeeye.evaluate.compare import (
    Comparison,
    GroupComparison,
    ItemMismatchError,
    significance_mark,
)
from judgeeye.evaluate.report import STYLE, num
from judgeeye.evaluate.summary import RunSummary, summaries
from judgeeye.experiments import grid
from judgeeye.experiments.launch import experiment_settings, stage_rows
from judgeeye.experiments.settings import cli_command
from judgeeye.metrics import TestResult
from judgeeye.store import Codebook, Experiment, Project, RaterRun

#: a comparison is significant below this p (the paper's p < 0.05)
ALPHA = 0.05
METRICS = ("tau", "icc3", "mse")
METRIC_WORDS = {"tau": "τ", "icc3": "ICC(3,1)", "mse": "MSE"}
STATUS_WORDS = {"pending": "waiting", "running": "running", "done": "done", "failed": "failed",
                "created": "not started", "completed": "completed", "cancelled": "stopped"}


@dataclass
class StageResult:
    """One stage: its run, whether it was reused, and what it cost."""

    key: str
    title: str
    kind: str
    run_id: int | None
    status: str
    reused: bool
    seconds: float | None
    tokens: int | None
    generated_tokens: int | None
    note: str | None = None

    @property
    def done_run(self) -> int | None:
        """The stage's run once the stage is done (a run still working has no numbers yet)."""
        return self.run_id if self.status == "done" else None


@dataclass
class RaterResult:
    """One rater of the grid: its rater run and that run's agreement with the gold labels."""

    key: str
    title: str
    stage: StageResult
    readout: str
    codebook_version: int | None
    summary: RunSummary | None

    @property
    def run_id(self) -> int | None:
        return self.stage.run_id


@dataclass
class ComparisonResult:
    """Candidate against baseline on the same items, and what it means in one line."""

    baseline: RaterResult
    candidate: RaterResult
    comparison: Comparison | None
    verdict: str


@dataclass
class ExperimentReport:
    experiment_id: int
    name: str
    project: str
    project_id: int
    preset: str
    status: str
    created: datetime
    finished: datetime | None
    settings: dict[str, Any]
    inputs: dict[str, Any]
    command: str
    stages: list[StageResult]
    raters: list[RaterResult]
    comparisons: list[ComparisonResult]
    group: GroupComparison | None = None
    group_raters: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def rater(self, key: str) -> RaterResult:
        return next(r for r in self.raters if r.key == key)


# ------------------------------------------------------------------------------ verdicts


def fmt_p(p: float) -> str:
    if p is None or not math.isfinite(p):
        return "undefined"
    return "< 0.001" if p < 0.001 else f"{p:.3f}"


def _p_text(p: float) -> str:
    return f"p {fmt_p(p)}" if fmt_p(p).startswith("<") else f"p = {fmt_p(p)}"


def _delta(metric: str, cmp: Comparison) -> str:
    d = cmp.metrics_b[metric] - cmp.metrics_a[metric]
    return "undefined" if not math.isfinite(d) else f"{d:+.3f}"


def tests_of(cmp: Comparison) -> dict[str, TestResult]:
    return {"tau": cmp.tau_test, "icc3": cmp.icc3_test, "mse": cmp.mse_test}


def _join(parts: list[str], word: str = "and") -> str:
    return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + f" {word} " + parts[-1]


def verdict(baseline: str, candidate: str, cmp: Comparison) -> str:
    """One line worded by the significance of the paper's one-sided tests (B better than A):
    "SFT on traces beats Base on τ (p = 0.004) and MSE (p = 0.02); no significant improvement on
    ICC(3,1) (+0.010, p = 0.210)", or "no significant improvement over Base (τ −0.020, p = 0.710; …)".
    A metric whose test is undefined (constant ratings, too few items) is said to be."""
    tests = tests_of(cmp)
    undefined = [m for m in METRICS if not math.isfinite(tests[m].p_value)
                 or not math.isfinite(cmp.metrics_b[m] - cmp.metrics_a[m])]
    better = [m for m in METRICS if m not in undefined and tests[m].p_value < ALPHA]
    rest = [m for m in METRICS if m not in better and m not in undefined]
    if better:
        text = f"{candidate} beats {baseline} on " + _join([f"{METRIC_WORDS[m]} ({_p_text(tests[m].p_value)})"
                                                             for m in better])
        if rest:
            text += "; no significant improvement on " + _join(
                [f"{METRIC_WORDS[m]} ({_delta(m, cmp)}, {_p_text(tests[m].p_value)})" for m in rest], "or")
    elif rest:
        text = f"{candidate}: no significant improvement over {baseline} (" + "; ".join(
            f"{METRIC_WORDS[m]} {_delta(m, cmp)}, {_p_text(tests[m].p_value)}" for m in rest) + ")"
    else:
        text = f"{candidate} and {baseline} cannot be compared"
    if undefined:
        text += f"; {_join([METRIC_WORDS[m] for m in undefined])} undefined (constant ratings or too few items)"
    return text + f" [n = {cmp.n_items}]."


# ------------------------------------------------------------------------------ building


def _stage(row: Any, title: str) -> StageResult:
    return StageResult(key=row.key, title=title, kind=row.kind, run_id=row.run_id, status=row.status,
                       reused=bool(row.reused), seconds=row.seconds, tokens=row.tokens,
                       generated_tokens=row.generated_tokens, note=row.note)


def build_report(session: Session, experiment_id: int) -> ExperimentReport:
    """The report of an experiment in whatever state it is: finished raters have numbers,
    comparisons need both of their raters."""
    experiment = session.get(Experiment, experiment_id)
    if experiment is None:
        raise LookupError(f"no experiment {experiment_id}")
    settings = experiment_settings(experiment)
    project = session.get_one(Project, experiment.project_id)
    defs = grid.stage_by_key(settings)
    rows = {r.key: r for r in stage_rows(session, experiment_id)}
    stages = [_stage(rows[key], defs[key].title if key in defs else key) for key in rows]
    by_key = {s.key: s for s in stages}
    finished = [run for r in grid.raters(settings) if (run := by_key[r.stage].done_run) is not None]
    sums = summaries(session, finished) if finished else {}
    versions = dict(session.execute(select(RaterRun.id, Codebook.version).join(Codebook, Codebook.id == RaterRun.codebook_id)
                                    .where(RaterRun.id.in_(finished))).all()) if finished else {}
    raters = []
    for rater in grid.raters(settings):
        stage = by_key[rater.stage]
        run = stage.done_run
        raters.append(RaterResult(key=rater.key, title=rater.title, stage=stage, readout=rater.readout,
                                  codebook_version=versions.get(run) if run is not None else None,
                                  summary=sums.get(run) if run is not None else None))
    results = {r.key: r for r in raters}
    comparisons = []
    for pair in grid.comparisons(settings):
        a, b = results[pair.baseline], results[pair.candidate]
        if a.summary is None or b.summary is None:
            waiting = [r.title for r in (a, b) if r.summary is None]
            comparisons.append(ComparisonResult(a, b, None, f"{b.title} against {a.title}: waiting for "
                                                + _join(waiting) + "."))
            continue
        try:
            cmp = dashboard.comparison(session, a.summary.run_id, b.summary.run_id)
            comparisons.append(ComparisonResult(a, b, cmp, verdict(a.title, b.title, cmp)))
        except (ItemMismatchError, ValueError) as exc:
            comparisons.append(ComparisonResult(a, b, None, f"{b.title} against {a.title}: {exc}"))
    report = ExperimentReport(
        experiment_id=experiment.id, name=experiment.name, project=project.name, project_id=project.id,
        preset=experiment.preset, status=experiment.status, created=experiment.created_at,
        finished=experiment.finished_at, settings=experiment.settings, inputs=experiment.inputs,
        command=cli_command(str(project.id), settings), stages=stages, raters=raters, comparisons=comparisons)
    names, runs_a, runs_b = [], [], []  # the black-box raters with both codebooks rated
    for i, engine in enumerate(settings.blackbox, start=1):
        a_sum, b_sum = results[f"bb{i}:original"].summary, results[f"bb{i}:refined"].summary
        if a_sum is not None and b_sum is not None:
            names.append(engine.model)
            runs_a.append(a_sum.run_id)
            runs_b.append(b_sum.run_id)
    if names:
        try:
            report.group = dashboard.group_comparison(session, runs_a, runs_b)
            report.group_raters = names
        except (ItemMismatchError, ValueError) as exc:
            report.notes.append(str(exc))
    if any(r.readout != "parsed" for r in raters):
        report.notes.append("Local raters are read out by the rating-token distribution after their trace "
                            f"({settings.protocol.readout} for the base and SFT raters, expected for TRACT); "
                            "black-box raters by the rating they write.")
    return report


# ------------------------------------------------------------------------------ tables


def _ci(s: RunSummary, metric: str) -> str:
    return f"{num(getattr(s, metric))} [{num(getattr(s, metric + '_lo'))}, {num(getattr(s, metric + '_hi'))}]"


def _count(value: int | None) -> str:
    return "—" if value is None else f"{int(value):,}"


def rater_table(report: ExperimentReport) -> pd.DataFrame:
    """One row per rater: τ, ICC(3,1), MSE with 95% CIs, n, parse failures, tokens, wall time."""
    rows = []
    for r in report.raters:
        s = r.summary
        rows.append({
            "rater": r.title, "rater run": r.run_id if r.run_id is not None else "—",
            "codebook": f"v{r.codebook_version}" if r.codebook_version else "—", "read-out": r.readout,
            "status": STATUS_WORDS.get(r.stage.status, r.stage.status) + (" (reused)" if r.stage.reused else ""),
            "n": s.n if s else "—", "parse failures": s.parse_failures if s else "—",
            "τ [95% CI]": _ci(s, "tau") if s else "—", "ICC(3,1) [95% CI]": _ci(s, "icc3") if s else "—",
            "MSE [95% CI]": _ci(s, "mse") if s else "—",
            "tokens": _count(r.stage.tokens), "generated": _count(r.stage.generated_tokens),
            "wall time": duration(r.stage.seconds)})
    return pd.DataFrame(rows)


def comparison_table(report: ExperimentReport) -> pd.DataFrame:
    rows = []
    for c in report.comparisons:
        row: dict[str, Any] = {"baseline (A)": c.baseline.title, "candidate (B)": c.candidate.title}
        if c.comparison is None:
            rows.append({**row, "n": "—"})
            continue
        tests = tests_of(c.comparison)
        row["n"] = c.comparison.n_items
        for m in METRICS:
            row[f"{METRIC_WORDS[m]} B − A"] = _delta(m, c.comparison)
            row[f"{METRIC_WORDS[m]} p"] = fmt_p(tests[m].p_value) + significance_mark(tests[m].p_value)
        rows.append(row)
    return pd.DataFrame(rows)


def stage_table(report: ExperimentReport) -> pd.DataFrame:
    return pd.DataFrame([{
        "stage": s.title, "run": s.run_id if s.run_id is not None else "—",
        "status": STATUS_WORDS.get(s.status, s.status), "reused": "yes" if s.reused else "no",
        "wall time": duration(s.seconds) + (" (when it was made)" if s.reused and s.seconds is not None else ""),
        "tokens": _count(s.tokens), "generated": _count(s.generated_tokens), "note": s.note or ""}
        for s in report.stages])


def inputs_table(report: ExperimentReport) -> pd.DataFrame:
    """The recorded inputs as readable lines (what another machine needs to rerun it)."""
    i = report.inputs
    rows: list[tuple[str, str]] = []
    d = i.get("dataset", {})
    rows.append(("dataset", f"{d.get('items', '—')} items ({d.get('gold_items', '—')} with a gold label) from "
                            f"{d.get('file') or 'an upload'}" + (f" (loader {d['loader']})" if d.get("loader") else "")))
    rows.append(("dataset version", str(d.get("version", "—"))))
    rows.append(("splits", ", ".join(f"{k} {v}" for k, v in sorted(d.get("splits", {}).items())) or "—"))
    rows.append(("split seed", str(i.get("split_seed", "—"))))
    for name, cb in i.get("codebooks", {}).items():
        rows.append((f"{name} codebook", f"v{cb['version']} ({cb['origin']}), content sha256 {cb['sha256'][:16]}"))
    for name, engine in i.get("engines", {}).items():
        engines = engine if isinstance(engine, list) else [engine]
        for n, e in enumerate(engines, start=1):
            label = name if len(engines) == 1 else f"{name} {n}"
            rows.append((f"engine: {label}", _engine_words(e)))
    seeds = i.get("seeds", {})
    rows.append(("seeds", "; ".join(f"{k} {json.dumps(v) if isinstance(v, dict) else v}" for k, v in seeds.items())))
    p = i.get("protocol", {})
    rows.append(("rating protocol", f"{p.get('split')} split, temperature {p.get('temperature')}, top-p {p.get('top_p')}, "
                                    f"{p.get('max_tokens')} tokens, seed {p.get('seed')}, "
                                    + (f"first {p['limit']} items" if p.get("limit") else "all items")))
    rows.append(("software", ", ".join(f"{k} {v}" for k, v in i.get("software", {}).items())))
    return pd.DataFrame(rows, columns=["input", "value"])


def _engine_words(e: dict[str, Any]) -> str:
    if e.get("kind") == "openai":
        return f"OpenAI-compatible server, model {e.get('model')} at {e.get('base_url')}" + (
            f", API key from ${e['api_key_env']}" if e.get("api_key_env") else "")
    if e.get("kind") == "vllm":
        return f"vLLM in-process, model {e.get('model')}, dtype {e.get('dtype')}, batch {e.get('batch_size')}"
    return f"transformers, model {e.get('model')}, device {e.get('device')}, dtype {e.get('dtype')}, batch {e.get('batch_size')}"


def group_tables(report: ExperimentReport) -> tuple[pd.DataFrame, pd.DataFrame] | None:
    """The black-box raters under the original and the refined codebook (paper Tables 2–3)."""
    return _group_tables(report.group, report.group_raters) if report.group is not None else None


def _group_tables(g: GroupComparison, names: list[str]) -> tuple[pd.DataFrame, pd.DataFrame]:
    per = pd.DataFrame([{"rater": name, **{f"{METRIC_WORDS[m]} original": num(row[f'{m} A']) for m in METRICS},
                         **{f"{METRIC_WORDS[m]} refined": num(row[f'{m} B']) for m in METRICS}}
                        for name, row in zip(names, g.per_rater)])
    tests = pd.DataFrame([{"metric": METRIC_WORDS[m], "mean refined − original": num(t.estimate),
                           "p (one-sided, across raters)": fmt_p(t.p_value) + significance_mark(t.p_value),
                           "raters": t.n} for m, t in g.metric_tests.items()])
    return per, tests


# ------------------------------------------------------------------------------ text and HTML


def text_lines(report: ExperimentReport) -> list[str]:
    """The verdicts, one line each (the CLI prints them under the table)."""
    return [c.verdict for c in report.comparisons]


def chart(report: ExperimentReport) -> go.Figure | None:
    """τ, ICC(3,1) and MSE per rater with their 95% intervals."""
    done = [r for r in report.raters if r.summary is not None]
    if not done:
        return None
    titles = {"tau": "Kendall τ", "icc3": "ICC(3,1)", "mse": "MSE"}
    fig = make_subplots(rows=1, cols=3, subplot_titles=[titles[m] for m in METRICS])
    names = [html.escape(r.title, quote=False) for r in done]
    for col, m in enumerate(METRICS, start=1):
        values = [getattr(r.summary, m) for r in done]
        up = [max(getattr(r.summary, m + "_hi") - v, 0) if math.isfinite(getattr(r.summary, m + "_hi")) and math.isfinite(v)
              else 0 for r, v in zip(done, values)]
        down = [max(v - getattr(r.summary, m + "_lo"), 0) if math.isfinite(getattr(r.summary, m + "_lo")) and math.isfinite(v)
                else 0 for r, v in zip(done, values)]
        fig.add_trace(go.Bar(x=names, y=values, showlegend=False,
                             error_y=dict(type="data", array=up, arrayminus=down)), row=1, col=col)
    fig.update_layout(title="Agreement with the human gold standard (95% bootstrap intervals)", height=420)
    return fig


def _table(df: pd.DataFrame) -> str:
    return df.to_html(index=False, escape=True, na_rep="—", border=0)


def render_html(report: ExperimentReport) -> str:
    """The report as one self-contained HTML file (plotly.js embedded; every text escaped)."""
    esc = html.escape
    parts = [f"<h1>Experiment {report.experiment_id}: {esc(report.name)}</h1>",
             f"<p class='note'>{esc(report.project)} · preset {esc(report.preset)} · "
             f"{esc(STATUS_WORDS.get(report.status, report.status))} · created {report.created:%Y-%m-%d %H:%M} UTC"
             + (f" · finished {report.finished:%Y-%m-%d %H:%M} UTC" if report.finished else "")
             + f" · report generated {datetime.now(UTC):%Y-%m-%d %H:%M} UTC by JudgeEye</p>"]
    parts.append("<h2>Verdicts</h2><ul>" + "".join(f"<li>{esc(v)}</li>" for v in text_lines(report)) + "</ul>"
                 if report.comparisons else "<h2>Verdicts</h2><p class='note'>No comparisons in this grid.</p>")
    parts.append("<h2>Raters on the test split</h2>")
    parts.append(_table(rater_table(report)))
    fig = chart(report)
    if fig is not None:
        parts.append(fig.to_html(full_html=False, include_plotlyjs=False))
    parts.append("<h2>Paired tests against the baseline</h2>")
    parts.append("<p class='note'>One-sided tests that B is better than A, on the same items (the paper's): "
                 "paired bootstrap (1,000 resamples) for τ and ICC(3,1), paired t-test on squared errors for MSE. "
                 "* p &lt; .05, ** p &lt; .01, *** p &lt; .001.</p>")
    parts.append(_table(comparison_table(report)))
    g = report.group
    if g is not None:
        per, tests = _group_tables(g, report.group_raters)
        parts.append("<h3>Black-box raters: original → refined codebook (paper Tables 2–3)</h3>")
        parts.append(_table(per))
        parts.append(_table(tests))
        if g.icc_test is not None and g.icc_a is not None and g.icc_b is not None:
            parts.append(f"<p class='note'>Inter-rater ICC(3,1): original {num(g.icc_a.icc3)} → refined "
                         f"{num(g.icc_b.icc3)}; one-sided bootstrap p = {fmt_p(g.icc_test.p_value)}.</p>")
        for note in g.notes:
            parts.append(f"<p class='note'>{esc(note)}</p>")
    for note in report.notes:
        parts.append(f"<p class='note'>{esc(note)}</p>")
    parts.append("<h2>Stages and what they cost</h2>")
    parts.append(_table(stage_table(report)))
    parts.append("<h2>Inputs</h2>")
    parts.append(_table(inputs_table(report)))
    parts.append("<p class='note'>The same experiment from a terminal:</p>")
    parts.append(f"<pre>{esc(report.command)}</pre>")
    parts.append("<details><summary>Settings (as stored)</summary>"
                 f"<pre>{esc(json.dumps(report.settings, indent=2, sort_keys=True))}</pre></details>")
    body = "\n".join(parts)
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>{esc(report.project)} · experiment "
            f"{report.experiment_id}</title><style>{STYLE}</style><script>{get_plotlyjs()}</script></head>"
            f"<body>{body}</body></html>")


__all__ = ["ALPHA", "ComparisonResult", "ExperimentReport", "RaterResult", "StageResult", "build_report",
           "comparison_table", "fmt_p", "group_tables", "inputs_table", "rater_table", "render_html",
           "stage_table", "text_lines", "verdict"]
