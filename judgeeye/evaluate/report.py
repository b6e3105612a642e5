"""The agreement page as one self-contained HTML report (tables and interactive charts).

The report shows what the page shows for the same choices (the run in focus, the A/B pair, the
codebook versions), from the same library functions and figures. Every piece of user text (run
names, item text, reasoning) is HTML-escaped; plotly.js is embedded once, so the file opens
offline.
"""

from __future__ import annotations

import html
import math
from dataclasses import dataclass
from datetime import datetime, timezone

import pandas as pd
from plotly.offline import get_plotlyjs
from sqlalchemy.orm import Session

from judgeeye.evaluate import charts, dashboard
from judgeeye.evaluate.compare import ItemMismatchError, significance_mark
from judgeeye.metrics import TestResult
from judgeeye.store import Project

STYLE = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2rem auto;max-width:1200px;color:#1d2430}
h1{font-size:1.6rem} h2{font-size:1.25rem;margin-top:2.2rem;border-bottom:1px solid #dde} h3{font-size:1.05rem}
table{border-collapse:collapse;font-size:.85rem;margin:.6rem 0} td,th{border:1px solid #ccd;padding:.25rem .5rem;text-align:right}
th{background:#f2f4f8} td:first-child,th:first-child{text-align:left}
pre{white-space:pre-wrap;background:#f7f7f9;padding:.6rem;border-radius:4px;font-size:.8rem}
.note{color:#555;font-size:.85rem}
"""


@dataclass
class ReportChoices:
    """What the page had in focus; None = the page's default."""

    run_id: int | None = None
    compare: tuple[int, int] | None = None
    versions: tuple[int, int] | None = None


def _fmt(value: object) -> str:
    if isinstance(value, float):
        return "—" if math.isnan(value) else f"{value:.3f}"
    return "" if value is None else str(value)


def _table(df: pd.DataFrame) -> str:
    return df.to_html(index=False, escape=True, na_rep="—", float_format=lambda v: f"{v:.3f}", border=0)


def _p(text: str) -> str:
    return f"<p class='note'>{html.escape(text)}</p>"


UNDEFINED = "resamples left out of the CI"


def undefined_resamples(tau: int, icc3: int, n_boot: int) -> str:
    """Bootstrap resamples where τ / ICC(3,1) is undefined (constant ratings), in words."""
    parts = [f"{name} {n:,}" for name, n in (("τ", tau), ("ICC(3,1)", icc3)) if n]
    return f"{', '.join(parts)} of {n_boot:,} (constant ratings)" if parts else ""


def undefined_note(test: TestResult) -> str:
    """"; 12 of 1,000 resamples left out: ..." for a bootstrap test with undefined resamples."""
    if not test.n_degenerate:
        return ""
    return (f"; {test.n_degenerate:,} of {test.n_boot or 0:,} resamples left out: constant ratings, "
            "where the metric is undefined")


def run_table_view(table: pd.DataFrame) -> pd.DataFrame:
    """The run table as shown: metrics with their intervals in one column each, and (only when
    some run has any) how many bootstrap resamples each interval had to leave out."""
    def ci(row: pd.Series, m: str) -> str:
        return f"{_fmt(row[m])} [{_fmt(row[m + '_lo'])}, {_fmt(row[m + '_hi'])}]"

    if table.empty:
        return pd.DataFrame(columns=["run", "name", "codebook", "readout", "status", "n", "parse failures",
                                     "τ [95% CI]", "ICC(3,1) [95% CI]", "MSE [95% CI]"])
    view = pd.DataFrame({
        "run": table["run"], "name": table["name"], "codebook": [f"v{v}" for v in table["codebook"]],
        "readout": table["readout"], "status": table["status"], "n": table["n"],
        "parse failures": table["parse failures"],
        "τ [95% CI]": [ci(r, "tau") for _, r in table.iterrows()],
        "ICC(3,1) [95% CI]": [ci(r, "icc3") for _, r in table.iterrows()],
        "MSE [95% CI]": [ci(r, "mse") for _, r in table.iterrows()],
    })
    if (table["tau_degenerate"] > 0).any() or (table["icc3_degenerate"] > 0).any():
        view[UNDEFINED] = [undefined_resamples(int(r["tau_degenerate"]), int(r["icc3_degenerate"]),
                                               dashboard.N_BOOT) for _, r in table.iterrows()]
    return view


def comparison_view(rows: list[dict]) -> pd.DataFrame:
    view = pd.DataFrame([{
        "metric": charts.METRIC_TITLES[r["metric"]], "A": r["A"], "B": r["B"], "B − A": r["B - A"],
        "test": r["test"], "p (one-sided)": r["p"], "": r["mark"], "n": r["n"], "excluded": r["excluded"],
    } for r in rows])
    if any(r.get("degenerate") for r in rows):  # bootstrap resamples where A's or B's metric is undefined
        view[UNDEFINED] = [f"{r['degenerate']:,} of {dashboard.N_BOOT:,}" if r.get("degenerate") else ""
                           for r in rows]
    return view


def group_view(group, raters: list[str]) -> tuple[pd.DataFrame, pd.DataFrame]:  # type: ignore[no-untyped-def]
    per = pd.DataFrame([{"rater": name, **{k: v for k, v in row.items()}}
                        for name, row in zip(raters, group.per_rater)])
    tests = pd.DataFrame([{"metric": charts.METRIC_TITLES[m], "mean B − A": t.estimate, "t": t.statistic,
                           "p (one-sided)": t.p_value, "": significance_mark(t.p_value), "raters": t.n}
                          for m, t in group.metric_tests.items()])
    return per, tests


def default_choices(runs: list[dashboard.RunInfo]) -> ReportChoices:
    """The page's defaults: the newest run; the newest pair of one rater under two codebook
    versions (else the two newest runs); the two newest codebook versions with runs."""
    choices = ReportChoices(run_id=runs[-1].id if runs else None)
    by_key: dict[str, list[dashboard.RunInfo]] = {}
    for r in runs:
        by_key.setdefault(r.key, []).append(r)
    pair = None
    for members in by_key.values():
        versions = sorted({m.codebook_version for m in members})
        if len(versions) >= 2:
            a = [m for m in members if m.codebook_version == versions[-2]][-1]
            b = [m for m in members if m.codebook_version == versions[-1]][-1]
            if pair is None or b.id > pair[1]:
                pair = (a.id, b.id)
    if pair is None and len(runs) >= 2:
        pair = (runs[-2].id, runs[-1].id)
    choices.compare = pair
    versions = sorted({r.codebook_version for r in runs})
    if len(versions) >= 2:
        choices.versions = (versions[-2], versions[-1])
    return choices


def build_report(session: Session, project_id: int, choices: ReportChoices | None = None) -> str:
    """The whole agreement page of a project as one HTML document."""
    project = session.get(Project, project_id)
    if project is None:
        raise LookupError(f"no project {project_id}")
    runs = dashboard.list_runs(session, project_id)
    defaults = default_choices(runs)
    choices = choices or defaults
    parts: list[str] = []
    esc = html.escape
    parts.append(f"<h1>Agreement report: {esc(project.name)}</h1>")
    parts.append(_p(f"{project.task} · {project.dimension} · scale {project.scale_min}–{project.scale_max} · "
                    f"generated {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC by JudgeEye"))

    parts.append("<h2>Rater runs</h2>")
    table = dashboard.run_table(session, project_id)
    if table.empty:
        parts.append(_p("No rater runs yet."))
    else:
        parts.append(_table(run_table_view(table)))
        parts.append(charts.figure_html(charts.runs_chart(table), standalone=False))

    parts.append("<h2>Before and after</h2>")
    if choices.compare:
        a, b = choices.compare
        names = {r.id: r.label() for r in runs}
        try:
            comp = dashboard.comparison(session, a, b)
            parts.append(_p(f"A = {names.get(a, a)}; B = {names.get(b, b)}; {comp.n_items} items. "
                            "Paired t-test on squared errors; one-sided paired bootstrap (1,000 resamples) "
                            "for τ and ICC(3,1). * p < .05, ** p < .01, *** p < .001."))
            parts.append(_table(comparison_view(comp.rows())))
            parts.append(charts.figure_html(charts.comparison_chart(comp, str(names.get(a, a)), str(names.get(b, b))),
                                            standalone=False))
        except (ItemMismatchError, ValueError, LookupError) as exc:
            parts.append(_p(str(exc)))
    else:
        parts.append(_p("Two rater runs are needed for a comparison."))
    if choices.versions:
        va, vb = choices.versions
        runs_a, runs_b, raters = dashboard.version_pairs(runs, va, vb)
        parts.append(f"<h3>Codebook v{va} → v{vb}, the same raters</h3>")
        if runs_a:
            group = dashboard.group_comparison(session, runs_a, runs_b)
            per, tests = group_view(group, raters)
            parts.append(_table(per))
            parts.append(_p("One-sided paired t-tests across raters (the paper's codebook analysis)."))
            parts.append(_table(tests))
            if group.icc_test is not None:
                parts.append(_p(f"Inter-rater ICC(3,1): v{va} {_fmt(group.icc_a.icc3)} → v{vb} {_fmt(group.icc_b.icc3)}; "
                                f"one-sided bootstrap p = {_fmt(group.icc_test.p_value)} "
                                f"{significance_mark(group.icc_test.p_value)} ({group.icc_test.n} items"
                                f"{undefined_note(group.icc_test)})."))
            for note in group.notes:
                parts.append(_p(note))
            parts.append(charts.figure_html(charts.group_chart(group, raters), standalone=False))
        else:
            parts.append(_p("No rater has a completed run on the same items under both versions."))

    if choices.run_id is not None:
        names = {r.id: r.label() for r in runs}
        detail = dashboard.run_detail(session, choices.run_id)
        parts.append(f"<h2>{esc(str(names.get(choices.run_id, choices.run_id)))}</h2>")
        parts.append(charts.figure_html(charts.confusion_chart(detail.confusion, detail.levels), standalone=False))
        parts.append(charts.figure_html(charts.by_gold_chart(detail.by_gold, detail.levels), standalone=False))
        parts.append(_table(detail.by_gold))
        parts.append("<h3>Worst disagreements</h3>")
        for _, row in detail.worst.iterrows():
            parts.append(f"<h4>{esc(str(row['item']))}: gold {_fmt(row['gold'])}, rater {_fmt(row['rating'])}</h4>")
            parts.append(f"<pre>{esc(row['text'])}</pre><p class='note'>Reasoning</p><pre>{esc(row['reasoning'] or '—')}</pre>"
                         f"<p class='note'>Answer</p><pre>{esc(row['answer'])}</pre>")

    parts.append("<h2>Inter-rater reliability</h2>")
    rel = reliability_frame(dashboard.reliability_by_version(session, runs))
    if rel.empty:
        parts.append(_p("Needs at least two completed rater runs on the same items under one codebook version."))
    else:
        parts.append(_table(rel))
        parts.append(charts.figure_html(charts.reliability_chart(rel.dropna(subset=["ICC(3,1)"])), standalone=False))

    parts.append("<h2>Sampling</h2>")
    sampling = dashboard.sampling_overview(session, project_id)
    if not sampling:
        parts.append(_p("No sampling runs yet."))
    else:
        for row in sampling:
            parts.append(charts.figure_html(charts.acceptance_chart(row.stats, row.label), standalone=False))
        parts.append(charts.figure_html(charts.utilization_chart([(r.label, r.stats) for r in sampling]),
                                        standalone=False))

    parts.append("<h2>Annotators</h2>")
    view = dashboard.annotator_view(session, project_id)
    if view.progress is None and view.agreement is None:
        parts.append(_p(view.message))
    if view.progress is not None:
        parts.append(_table(view.progress))
        parts.append(charts.figure_html(charts.annotators_chart(view.progress), standalone=False))
    if view.agreement is not None:
        parts.append(_table(agreement_frame(view.agreement)))

    body = "\n".join(parts)
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>{esc(project.name)} · agreement</title>"
            f"<style>{STYLE}</style><script>{get_plotlyjs()}</script></head><body>{body}</body></html>")


def reliability_frame(rows: list[dashboard.Reliability]) -> pd.DataFrame:
    return pd.DataFrame([{
        "codebook": r.codebook_version, "raters": len(r.run_ids), "runs": ", ".join(map(str, r.run_ids)),
        "ICC(3,1)": r.icc.icc3 if r.icc else math.nan, "items": r.icc.n if r.icc else 0,
        "excluded": r.icc.n_excluded if r.icc else 0, "note": r.note,
    } for r in rows], columns=["codebook", "raters", "runs", "ICC(3,1)", "items", "excluded", "note"])


def agreement_frame(agreement: dict) -> pd.DataFrame:
    """The scalar entries of ``choice_agreement`` as a two-column table."""
    keys = ("n_items", "n_reviews", "percent_agreement", "fleiss_kappa", "fleiss_items", "raters_per_item")
    return pd.DataFrame([{"measure": k.replace("_", " "), "value": agreement[k]} for k in keys if k in agreement])
