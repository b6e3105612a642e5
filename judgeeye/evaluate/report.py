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
from datetime import UTC, datetime

import pandas as pd
from plotly.offline import get_plotlyjs
from sqlalchemy.orm import Session

from judgeeye.evaluate import charts, dashboard
from judgeeye.evaluate.compare import ComparisonRow, GroupComparison, ItemMismatchError, significance_mark
from judgeeye.metrics import TestResult
from judgeeye.review.stats import agreement_rows, progress_view
from judgeeye.sampling import RunStats
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


def num(value: object, digits: int = 3) -> str:
    """A number as shown: fixed decimals, "—" where it is undefined (never "nan", "inf" or
    "None"), and no "-0.000" for a value that rounds to zero (a constant rater's ICC bound)."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "—"
    if isinstance(value, (int, float)):
        shown = f"{value:,.{digits}f}"
        return shown[1:] if shown.startswith("-") and not shown.strip("-0.,") else shown
    return str(value)


def p_text(p: float | None) -> str:
    """A p-value as papers print it."""
    if p is None or not math.isfinite(p):
        return "—"
    return "< 0.001" if p < 0.001 else f"{p:.3f}"


def _table(df: pd.DataFrame) -> str:
    return df.to_html(index=False, escape=True, na_rep="—", float_format=lambda v: f"{v:.3f}", border=0)


def _p(text: str) -> str:
    return f"<p class='note'>{html.escape(text)}</p>"


UNDEFINED = "resamples left out of the CI"
METRICS = ("tau", "icc3", "mse")
#: the test behind each metric of a two-run comparison (judgeeye.evaluate.compare.compare_runs)
TEST_WORDS = {"tau": "one-sided paired bootstrap", "icc3": "one-sided paired bootstrap",
              "mse": "paired t-test on squared errors"}


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


def run_note(row: pd.Series) -> str:
    """Why a row of the run table lacks numbers ("" when it has them all)."""
    predictions, rated = int(row["predictions"]), int(row["n"])
    if predictions == 0:
        return "no predictions yet"
    if rated == 0:
        return f"all {predictions:,} answers unparsed: no rating to compare"
    if rated == 1:
        return "one rated item: τ and ICC(3,1) need two"
    if math.isnan(row["tau"]) or math.isnan(row["icc3"]):
        return "constant ratings: τ and ICC(3,1) are undefined"
    return ""


def run_table_view(table: pd.DataFrame) -> pd.DataFrame:
    """The run table as shown: metrics with their intervals in one column each, why a run has no
    numbers (only when some run lacks them), and how many bootstrap resamples each interval had
    to leave out (only when some run has any)."""
    def ci(row: pd.Series, m: str) -> str:
        if math.isnan(row[m]):
            return "—"
        if math.isnan(row[m + "_lo"]) or math.isnan(row[m + "_hi"]):
            return f"{num(row[m])} (no interval)"
        return f"{num(row[m])} [{num(row[m + '_lo'])}, {num(row[m + '_hi'])}]"

    columns = ["run", "name", "codebook", "readout", "status", "n", "parse failures",
               "τ [95% CI]", "ICC(3,1) [95% CI]", "MSE [95% CI]"]
    if table.empty:
        return pd.DataFrame(columns=columns)
    rows = [r for _, r in table.iterrows()]
    view = pd.DataFrame({
        "run": table["run"], "name": table["name"], "codebook": [f"v{v}" for v in table["codebook"]],
        "readout": table["readout"], "status": table["status"], "n": table["n"],
        "parse failures": table["parse failures"],
        "τ [95% CI]": [ci(r, "tau") for r in rows],
        "ICC(3,1) [95% CI]": [ci(r, "icc3") for r in rows],
        "MSE [95% CI]": [ci(r, "mse") for r in rows],
    })
    notes = [run_note(r) for r in rows]
    if any(notes):
        view["why no numbers"] = notes
    if (table["tau_degenerate"] > 0).any() or (table["icc3_degenerate"] > 0).any():
        view[UNDEFINED] = [undefined_resamples(int(r["tau_degenerate"]), int(r["icc3_degenerate"]),
                                               dashboard.N_BOOT) for r in rows]
    return view


def chartable_runs(table: pd.DataFrame) -> tuple[pd.DataFrame, str]:
    """The runs the agreement chart can draw (some metric defined), and a sentence naming the
    others and why ("" when none is left out)."""
    if table.empty:
        return table, ""
    has = table[list(METRICS)].notna().any(axis=1)
    left = [f"run {int(r['run'])} ({run_note(r)})" for _, r in table[~has].iterrows()]
    note = f"Not in the chart, no metric to draw: {'; '.join(left)}." if left else ""
    return table[has], note


def comparison_view(rows: list[ComparisonRow]) -> pd.DataFrame:
    view = pd.DataFrame([{
        "metric": charts.METRIC_TITLES[r["metric"]], "A": num(r["A"]), "B": num(r["B"]), "B − A": num(r["B - A"]),
        "test": TEST_WORDS.get(str(r["metric"]), str(r["test"])), "p (one-sided)": p_text(r["p"]),
        "significance": r["mark"], "items": r["n"], "left out (no rating)": r["excluded"],
    } for r in rows])
    if any(r.get("degenerate") for r in rows):  # bootstrap resamples where A's or B's metric is undefined
        view[UNDEFINED] = [f"{r['degenerate']:,} of {dashboard.N_BOOT:,}" if r.get("degenerate") else ""
                           for r in rows]
    return view


def comparison_note(rows: list[ComparisonRow]) -> str:
    """A sentence for metrics that are undefined for A or B (no bar in the chart)."""
    missing = [f"{charts.METRIC_TITLES[r['metric']]} for {side}" for r in rows for side in ("A", "B")
               if isinstance(r[side], float) and math.isnan(r[side])]
    return (f"Undefined, so not drawn: {', '.join(missing)} (constant ratings, or too few rated items)."
            if missing else "")


def group_view(group: GroupComparison, raters: list[str]) -> tuple[pd.DataFrame, pd.DataFrame]:
    def side(row: dict, s: str) -> dict[str, object]:
        shown: dict[str, object] = {f"{charts.METRIC_TITLES[m]} {s}": num(row[f"{m} {s}"]) for m in METRICS}
        if f"n {s}" in row:  # items the run rated (compare_groups adds it where it knows it)
            shown[f"rated {s}"] = int(row[f"n {s}"])
        return shown

    per = pd.DataFrame([{"rater": name, "run A": int(row["run A"]), "run B": int(row["run B"]),
                         **side(row, "A"), **side(row, "B")} for name, row in zip(raters, group.per_rater)])
    tests = pd.DataFrame([{"metric": charts.METRIC_TITLES[m], "mean B − A": num(t.estimate), "t": num(t.statistic, 2),
                           "p (one-sided)": p_text(t.p_value), "significance": significance_mark(t.p_value),
                           "raters": t.n}
                          for m, t in group.metric_tests.items()])
    return per, tests


def by_gold_view(by_gold: pd.DataFrame) -> pd.DataFrame:
    """Mean rating per gold level as shown: rounded, "—" where no item of the level was rated."""
    view = by_gold.copy()
    view["gold"] = [f"{g:g}" for g in by_gold["gold"]]
    view["mean rating"] = [num(v, 2) for v in by_gold["mean rating"]]
    view["sd"] = [num(v, 2) for v in by_gold["sd"]]
    return view


def default_choices(runs: list[dashboard.RunInfo]) -> ReportChoices:
    """The page's defaults: the newest run; the newest pair of one rater under two codebook
    versions that can be compared (else the two newest comparable runs: same items, completed,
    with ratings); the two newest codebook versions with runs."""
    choices = ReportChoices(run_id=runs[-1].id if runs else None)
    by_key: dict[str, list[dashboard.RunInfo]] = {}
    for r in runs:
        by_key.setdefault(r.key, []).append(r)
    pair = None
    for members in by_key.values():
        for b in reversed(members):
            older = [a for a in members if a.codebook_version < b.codebook_version and dashboard.comparable(a, b)]
            if older and (pair is None or b.id > pair[1]):
                newest_version = max(a.codebook_version for a in older)
                pair = ([a for a in older if a.codebook_version == newest_version][-1].id, b.id)
    if pair is None:
        pair = next(((a.id, b.id) for b in reversed(runs) for a in reversed(runs)
                     if a.id < b.id and dashboard.comparable(a, b)), None)
    choices.compare = pair
    versions = sorted({r.codebook_version for r in runs})
    if len(versions) >= 2:
        choices.versions = (versions[-2], versions[-1])
    return choices


def partners(runs: list[dashboard.RunInfo]) -> dict[int, list[int]]:
    """For each run, the runs it can be compared with (same items, both complete, with ratings)."""
    return {a.id: [b.id for b in runs if dashboard.comparable(a, b)] for a in runs}


def no_comparison_reason(runs: list[dashboard.RunInfo]) -> str:
    """Why no two runs of the project can be compared, in words."""
    if len(runs) < 2:
        return "Two rater runs are needed for a comparison."
    blocked = [why for r in runs if (why := dashboard.why_not_measurable(r))]
    by_items: dict[tuple[str, int | None], list[int]] = {}
    for r in runs:
        if r.measurable:
            by_items.setdefault(r.items_key, []).append(r.id)
    spread = [f"run{'s' if len(ids) > 1 else ''} {', '.join(map(str, ids))} rated "
              f"{'the first ' + format(limit, ',') + ' items of ' if limit else ''}the {split} split"
              for (split, limit), ids in by_items.items()]
    said = "; ".join([*blocked, *(spread if len(spread) > 1 else [])])
    return ("No two rater runs can be compared: runs are compared on the same items, once both are "
            "complete and have ratings. " + (said[:1].upper() + said[1:] + "." if said else "")).strip()


def sampling_note(stats: RunStats) -> str:
    """Why a sampling run's acceptance chart would be empty ("" when it is not)."""
    if stats.n_candidates == 0:
        return f"Sampling run {stats.run_id} has no candidates yet."
    if not stats.per_level:
        return f"Sampling run {stats.run_id} has no candidates for items with a gold label."
    return ""


def utilization_runs(rows: list[dashboard.SamplingRow]) -> list[tuple[str, RunStats]]:
    """The sampling runs the utilization chart can draw (those with candidates)."""
    return [(r.label, r.stats) for r in rows if r.stats.n_items]


def annotators_note(progress: pd.DataFrame) -> str:
    """Why the annotators' chart would show only zeros ("" when someone has reviewed)."""
    done = progress[[c for c in ("submitted", "skipped", "none_fits", "edited") if c in progress]].to_numpy().sum()
    n = len(progress)
    return "" if done else (f"Nobody has reviewed yet: {n:,} {'person is' if n == 1 else 'people are'} assigned "
                            "to review rounds.")


def build_report(session: Session, project_id: int, choices: ReportChoices | None = None) -> str:
    """The whole agreement page of a project as one HTML document."""
    project = session.get(Project, project_id)
    if project is None:
        raise LookupError(f"no project {project_id}")
    runs = dashboard.list_runs(session, project_id)
    defaults, given = default_choices(runs), choices or ReportChoices()
    choices = ReportChoices(run_id=given.run_id if given.run_id is not None else defaults.run_id,
                            compare=given.compare or defaults.compare, versions=given.versions or defaults.versions)
    names = {r.id: r.title() for r in runs}
    parts: list[str] = []
    esc = html.escape
    parts.append(f"<h1>Agreement report: {esc(project.name)}</h1>")
    parts.append(_p(f"{project.task} · {project.dimension} · scale {project.scale_min}–{project.scale_max} · "
                    f"generated {datetime.now(UTC):%Y-%m-%d %H:%M} UTC by JudgeEye"))

    parts.append("<h2>Rater runs</h2>")
    table = dashboard.run_table(session, project_id, runs)
    if table.empty:
        parts.append(_p("No rater runs yet."))
    else:
        parts.append(_table(run_table_view(table)))
        shown, note = chartable_runs(table)
        if not shown.empty:
            parts.append(charts.figure_html(charts.runs_chart(shown), standalone=False))
        if note:
            parts.append(_p(note))

    parts.append("<h2>Before and after</h2>")
    if choices.compare:
        a, b = choices.compare
        try:
            comp = dashboard.comparison(session, a, b)
            parts.append(_p(f"A = {names.get(a, a)}; B = {names.get(b, b)}; {comp.n_items} items. "
                            "Paired t-test on squared errors; one-sided paired bootstrap (1,000 resamples) "
                            "for τ and ICC(3,1). * p < .05, ** p < .01, *** p < .001."))
            parts.append(_table(comparison_view(comp.rows())))
            parts.append(charts.figure_html(charts.comparison_chart(comp, str(names.get(a, a)), str(names.get(b, b))),
                                            standalone=False))
            if note := comparison_note(comp.rows()):
                parts.append(_p(note))
        except (ItemMismatchError, ValueError, LookupError) as exc:
            parts.append(_p(str(exc)))
    else:
        parts.append(_p(no_comparison_reason(runs)))
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
            if group.icc_test is not None and group.icc_a is not None and group.icc_b is not None:
                parts.append(_p(f"Inter-rater ICC(3,1): v{va} {num(group.icc_a.icc3)} → "
                                f"v{vb} {num(group.icc_b.icc3)}; "
                                f"one-sided bootstrap p = {p_text(group.icc_test.p_value)} "
                                f"{significance_mark(group.icc_test.p_value)} ({group.icc_test.n} items"
                                f"{undefined_note(group.icc_test)})."))
            for note in group.notes:
                parts.append(_p(note))
            parts.append(charts.figure_html(charts.group_chart(group, raters), standalone=False))
        else:
            parts.append(_p("No rater has a completed run with ratings on the same items under both versions."))

    if choices.run_id is not None:
        detail = dashboard.run_detail(session, choices.run_id)
        parts.append(f"<h2>{esc(str(names.get(choices.run_id, choices.run_id)))}</h2>")
        if detail.note:
            parts.append(_p(detail.note))
            for _, row in detail.unparsed.iterrows():
                parts.append(f"<p class='note'>{esc(str(row['item']))}</p><pre>{esc(row['answer'] or '(empty)')}</pre>")
        else:
            parts.append(charts.figure_html(charts.confusion_chart(detail.confusion, detail.levels), standalone=False))
            parts.append(charts.figure_html(charts.by_gold_chart(detail.by_gold, detail.levels), standalone=False))
        if not detail.by_gold.empty:
            parts.append(_table(by_gold_view(detail.by_gold)))
        if not detail.worst.empty:
            parts.append("<h3>Worst disagreements</h3>")
        for _, row in detail.worst.iterrows():
            parts.append(f"<h4>“{esc(row['title'])}” (item id {esc(str(row['item']))}): gold {row['gold']:g}, "
                         f"rater {row['rating']:g}</h4>")
            parts.append(f"<pre>{esc(row['text'])}</pre><p class='note'>Reasoning</p><pre>{esc(row['reasoning'] or '—')}</pre>"
                         f"<p class='note'>Answer</p><pre>{esc(row['answer'])}</pre>")

    parts.append("<h2>Inter-rater reliability</h2>")
    rel = dashboard.reliability_by_version(session, runs)
    if not rel:
        parts.append(_p(RELIABILITY_EMPTY))
    else:
        parts.append(_table(reliability_frame(rel)))
        if drawable := [r for r in rel if r.icc is not None and not math.isnan(r.icc.icc3)]:
            parts.append(charts.figure_html(charts.reliability_chart(drawable), standalone=False))

    parts.append("<h2>Sampling</h2>")
    sampling = dashboard.sampling_overview(session, project_id)
    if not sampling:
        parts.append(_p("No sampling runs yet."))
    else:
        for row in sampling:
            if note := sampling_note(row.stats):
                parts.append(_p(note))
            else:
                parts.append(charts.figure_html(charts.acceptance_chart(row.stats, row.label), standalone=False))
        if curves := utilization_runs(sampling):
            parts.append(charts.figure_html(charts.utilization_chart(curves), standalone=False))

    parts.append("<h2>Annotators</h2>")
    view = dashboard.annotator_view(session, project_id)
    if view.progress is None and view.agreement is None:
        parts.append(_p(view.message.capitalize() + "."))
    if view.progress is not None:
        parts.append(_table(progress_view(view.progress)))
        if note := annotators_note(view.progress):
            parts.append(_p(note))
        else:
            parts.append(charts.figure_html(charts.annotators_chart(view.progress), standalone=False))
    if view.agreement is not None:
        parts.append(_table(agreement_rows(view.agreement)))

    body = "\n".join(parts)
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>{esc(project.name)} · agreement</title>"
            f"<style>{STYLE}</style><script>{get_plotlyjs()}</script></head><body>{body}</body></html>")


RELIABILITY_EMPTY = ("Needs at least two completed rater runs with ratings on the same items under one codebook "
                     "version.")


def reliability_frame(rows: list[dashboard.Reliability]) -> pd.DataFrame:
    return pd.DataFrame([{
        "codebook": f"v{r.codebook_version}", "raters": len(r.run_ids), "runs": ", ".join(map(str, r.run_ids)),
        "ICC(3,1)": num(r.icc.icc3) if r.icc else "—", "items": r.icc.n if r.icc else 0,
        "items left out (a rating missing)": r.icc.n_excluded if r.icc else 0, "note": r.note,
    } for r in rows], columns=["codebook", "raters", "runs", "ICC(3,1)", "items", "items left out (a rating missing)",
                               "note"])
