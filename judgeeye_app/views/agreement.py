"""Agreement (leads): how well LLM raters agree with people, before and after, and why not."""

from __future__ import annotations

import math

import streamlit as st

from judgeeye.codebook import list_versions
from judgeeye.display import escape_markdown, snippet
from judgeeye.evaluate import RaterSpec, significance_mark
from judgeeye.evaluate import charts, dashboard
from judgeeye.evaluate.compare import ItemMismatchError
from judgeeye.evaluate.launch import active_runs, cli_command, latest_job, launch_rater_run, resume_rater_run
from judgeeye.evaluate.report import (
    RELIABILITY_EMPTY,
    ReportChoices,
    annotators_note,
    build_report,
    by_gold_view,
    chartable_runs,
    comparison_note,
    comparison_view,
    default_choices,
    group_view,
    no_comparison_reason,
    num,
    p_text,
    partners,
    reliability_frame,
    run_table_view,
    sampling_note,
    undefined_note,
    utilization_runs,
)
from judgeeye.jobs import reconcile
from judgeeye.review.stats import agreement_rows, progress_view
from judgeeye.store import session_scope
from judgeeye_app.ui.common import project_picker
from judgeeye_app.ui.access import require_page
from judgeeye_app.ui.actions import attempt
from judgeeye_app.ui.engine_picker import engine_picker
from judgeeye_app.ui.job_panel import TrackedJob, job_panel
from judgeeye_app.ui.live_select import live_selectbox, set_live_value
from judgeeye_app.ui.settings_form import problem, settings_form

actor = require_page("agreement")  # every page checks the session itself (see pages/access.py)

st.title("Agreement")
st.caption("LLM raters against the human gold standard: Kendall τ, ICC(3,1) and MSE with 95% bootstrap "
           "intervals; significance as in the paper (paired t-test on squared errors, one-sided paired "
           "bootstraps for τ and ICC); inter-rater reliability among LLM raters (Table 3).")
project = project_picker()
if project is None:
    st.stop()


def chart(fig, name: str) -> None:  # type: ignore[no-untyped-def]
    """A chart with its PNG and HTML downloads (built only when clicked)."""
    st.plotly_chart(fig, width="stretch", key=f"ag_fig_{name}")
    with st.container(horizontal=True):  # buttons as wide as their labels, whatever the column
        st.download_button("PNG", data=lambda fig=fig: charts.figure_png(fig), file_name=f"{name}.png",
                           mime="image/png", key=f"ag_png_{name}", on_click="ignore", icon=":material/image:")
        st.download_button("HTML", data=lambda fig=fig: charts.figure_html(fig), file_name=f"{name}.html",
                           mime="text/html", key=f"ag_html_{name}", on_click="ignore", icon=":material/code:")


FLASH = "ag_flash"  # (kind, text) of the last action, shown once where it was taken
#: the rater settings the New rater run form asks for (besides the engine)
RATER_FIELDS = ["readout", "limit", "max_tokens", "temperature", "top_p", "seed"]
picked: dict = st.session_state.setdefault("ag_choices", {})


def start_rating(project_id: int, spec: RaterSpec, split: str, version: int) -> None:
    """Runs before the page reads the store (a button callback), so the run the user just started
    is in every table, selector and the progress panel of the same rerun."""
    ids, error = attempt(launch_rater_run, project_id, spec, split=split, codebook_version=version, actor=actor)
    if ids is None:
        st.session_state[FLASH] = ("error", str(error))
        return
    run_id, job_id = ids
    st.session_state[FLASH] = ("success", f"Rater run {run_id} started (job {job_id}); its progress shows at the "
                                          "top of this page.")
    picked["run_id"] = run_id
    set_live_value("ag_run", run_id)  # the One run tab opens on it


def resume(run_id: int) -> None:
    job_id, error = attempt(resume_rater_run, run_id, actor=actor)
    st.session_state[FLASH] = ("error", str(error)) if job_id is None else (
        "success", f"Rater run {run_id} resumed (job {job_id}); its progress shows at the top of this page.")


def flash() -> None:
    if shown := st.session_state.pop(FLASH, None):
        (st.success if shown[0] == "success" else st.error)(shown[1])


with session_scope() as session:
    reconcile(session)  # a worker that died shows as failed in this very view, not 2 s later
    runs = dashboard.list_runs(session, project.id)
    table = dashboard.run_table(session, project.id, runs)
    versions = [v.version for v in list_versions(session, project.id)]
    running = active_runs(session, project.id)
labels = {r.id: r.label() for r in runs}
titles = {r.id: r.title() for r in runs}
defaults = default_choices(runs)
ids = [r.id for r in runs]


def _index(options: list, wanted) -> int:  # type: ignore[no-untyped-def]
    return options.index(wanted) if wanted in options else 0


def tracked(run_id: int) -> TrackedJob:
    """A rater run being rated, as the job panel at the top follows it (resuming a stopped run is
    on the Rater runs tab)."""
    return TrackedJob(key=f"ag_{run_id}", name=f"rater run {run_id}", title=f"Run {run_id} · {names.get(run_id, '')}",
                      find=lambda session: latest_job(session, run_id))


names = {r.id: r.name for r in runs}
# polled while runs are rated; when one ends, the whole page reruns, so that its tables, charts and
# selectors show the run as it ended
job_panel([tracked(run_id) for run_id in running], key="ag_panel", actor=actor)

TABS = ["Rater runs", "Before / after", "One run", "Inter-rater reliability", "Sampling", "Annotators",
        "New rater run"]
# Lazy tabs: only the open one runs (each is a few queries and charts; all at once would not stay
# under a second at the paper's scale). The choices made on a tab are kept for the report.
tabs = st.tabs(TABS, key="ag_tab", on_change="rerun", bind="query-params")


def runs_view() -> None:
    flash()
    if table.empty:
        st.info("No rater runs yet: start one on the **New rater run** tab or with `judgeeye evaluate`.")
        return
    st.dataframe(run_table_view(table), hide_index=True, width="stretch", key="ag_runs_table")
    shown, note = chartable_runs(table)
    if not shown.empty:
        chart(charts.runs_chart(shown), "agreement_by_run")
    if note:
        st.caption(note)
    stalled = [r for r in runs if r.status in ("failed", "cancelled", "incomplete") and r.id not in running]
    if stalled:
        c1, c2 = st.columns([3, 1], vertical_alignment="bottom")
        pick = live_selectbox("Resume a stopped run (rates only the items it lacks)", [r.id for r in stalled],
                              format_func=labels.get, key="ag_resume_pick", where=c1)
        c2.button("Resume", key="ag_resume", on_click=resume, args=(pick,))


def compare_view() -> None:
    st.subheader("Two runs")
    pairs = partners(runs)
    firsts = [r for r in ids if pairs[r]]
    if defaults.compare is None:  # the default is a comparable pair whenever there is one
        st.info(no_comparison_reason(runs))
    else:
        a0, b0 = picked.get("compare") or defaults.compare
        if a0 not in firsts:
            a0, b0 = defaults.compare
        c1, c2 = st.columns(2)
        run_a = live_selectbox("A (before: original codebook, base model)", firsts, default=a0,
                               format_func=labels.get, key="ag_cmp_a", where=c1)
        # only runs over the same items, complete and with ratings, can be B
        run_b = live_selectbox("B (after: refined codebook, fine-tuned model)", pairs[run_a], default=b0,
                               format_func=labels.get, key="ag_cmp_b", where=c2)
        picked["compare"] = (run_a, run_b)
        try:
            with session_scope() as session:
                comp = dashboard.comparison(session, run_a, run_b)
            rows = comp.rows()
            st.dataframe(comparison_view(rows), hide_index=True, width="stretch", key="ag_cmp_table")
            st.caption(f"{comp.n_items} items. Paired t-test on squared errors; one-sided paired bootstrap "
                       "(1,000 resamples) for τ and ICC(3,1); p is for B better than A. "
                       "\\* p < .05, \\*\\* p < .01, \\*\\*\\* p < .001.")
            chart(charts.comparison_chart(comp, titles[run_a], titles[run_b]), "before_after")
            if note := comparison_note(rows):
                st.caption(note)
        except (ItemMismatchError, ValueError, LookupError) as exc:
            st.error(str(exc))
    if len(versions) < 2:
        return
    st.subheader("Codebook versions, the same raters")
    va0, vb0 = picked.get("versions") or defaults.versions or (versions[-2], versions[-1])
    c1, c2 = st.columns(2)
    va = c1.selectbox("Codebook A", versions, index=_index(versions, va0), format_func=lambda v: f"v{v}",
                      key="ag_ver_a")
    vb = c2.selectbox("Codebook B", versions, index=_index(versions, vb0), format_func=lambda v: f"v{v}",
                      key="ag_ver_b")
    picked["versions"] = (va, vb)
    runs_a, runs_b, raters = dashboard.version_pairs(runs, va, vb)
    if va == vb:
        st.warning("Choose two different versions.")
        return
    if not runs_a:
        st.info(f"No rater has a completed run with ratings on the same items under both v{va} and v{vb}.")
        return
    try:
        with session_scope() as session:
            group = dashboard.group_comparison(session, runs_a, runs_b)
    except (ItemMismatchError, ValueError, LookupError) as exc:
        st.error(str(exc))
        return
    per, tests = group_view(group, raters)
    st.dataframe(per, hide_index=True, width="stretch", key="ag_grp_per")
    st.dataframe(tests, hide_index=True, width="stretch", key="ag_grp_tests")
    st.caption("One-sided paired t-tests across raters (B better than A), as in the paper's codebook analysis.")
    if group.icc_test is not None:
        st.markdown(f"Inter-rater ICC(3,1): v{va} **{num(group.icc_a.icc3)}** → v{vb} **{num(group.icc_b.icc3)}**, "
                    f"one-sided bootstrap p = {escape_markdown(p_text(group.icc_test.p_value))} "
                    f"{escape_markdown(significance_mark(group.icc_test.p_value))} ({group.icc_test.n} items"
                    f"{undefined_note(group.icc_test)}).")
    for note in group.notes:
        st.caption(note)
    chart(charts.group_chart(group, raters), "codebook_versions")


def run_view() -> None:
    if not ids:
        st.info("No rater runs yet.")
        return
    run_id = live_selectbox("Rater run", ids, default=picked.get("run_id") or defaults.run_id,
                            format_func=labels.get, key="ag_run")
    picked["run_id"] = run_id
    with session_scope() as session:
        detail = dashboard.run_detail(session, run_id, worst=int(st.session_state.get("ag_worst_n", 10)))
    if detail.note:
        st.info(detail.note)
        for _, row in detail.unparsed.iterrows():
            with st.expander(f"Unparsed answer to item {escape_markdown(row['item'])}: "
                             f"“{escape_markdown(snippet(row['answer'] or '(empty)', 8))}”"):
                st.text(row["answer"] or "(empty)")
    else:
        c1, c2 = st.columns(2)
        with c1:
            chart(charts.confusion_chart(detail.confusion, detail.levels), f"confusion_run_{run_id}")
        with c2:
            chart(charts.by_gold_chart(detail.by_gold, detail.levels), f"mean_by_gold_run_{run_id}")
        if detail.gold_rounded:
            st.caption(f"{detail.gold_rounded} gold labels between two levels were rounded up for the heatmap.")
    if not detail.by_gold.empty:
        st.dataframe(by_gold_view(detail.by_gold), hide_index=True, width="stretch", key="ag_by_gold")
    if detail.worst.empty:
        return
    st.subheader("Worst disagreements")
    st.number_input("Worst disagreements to show", 1, 100, 10, key="ag_worst_n")
    for i, row in detail.worst.iterrows():
        with st.expander(f"“{escape_markdown(row['title'])}” · gold {row['gold']:g} · rater {row['rating']:g} · "
                         f"off by {row['error']:g}", expanded=i == 0):
            st.caption(f"Item (id {escape_markdown(row['item'])})")
            st.text(row["text"])
            st.caption("Reasoning")
            st.text(row["reasoning"] or "—")
            st.caption("Answer")
            st.text(row["answer"])


def reliability_view() -> None:
    with session_scope() as session:
        rel = dashboard.reliability_by_version(session, runs)
    if not rel:
        st.info(RELIABILITY_EMPTY)
        return
    st.dataframe(reliability_frame(rel), hide_index=True, width="stretch", key="ag_rel_table")
    if drawable := [r for r in rel if r.icc is not None and not math.isnan(r.icc.icc3)]:
        chart(charts.reliability_chart(drawable), "inter_rater_by_codebook")
    st.caption("ICC(3,1) among the completed runs of each codebook version over the same items; how it moves "
               "between versions is tested on the **Before / after** tab.")


def sampling_view() -> None:
    with session_scope() as session:
        sampling = dashboard.sampling_overview(session, project.id)
    if not sampling:
        st.info("No sampling runs yet.")
        return
    pick = live_selectbox("Sampling run", [r.run_id for r in sampling], default=sampling[-1].run_id,
                          format_func={r.run_id: r.label for r in sampling}.get, key="ag_sampling_run")
    row = next(r for r in sampling if r.run_id == pick)
    c1, c2 = st.columns(2)
    with c1:
        if note := sampling_note(row.stats):
            st.info(note)
        else:
            chart(charts.acceptance_chart(row.stats), f"acceptance_sampling_{pick}")
    with c2:
        if curves := utilization_runs(sampling):
            chart(charts.utilization_chart(curves), "utilization_vs_k")
        else:
            st.info("No sampling run has candidates yet: nothing to draw for utilization.")


def annotators_view() -> None:
    with session_scope() as session:
        view = dashboard.annotator_view(session, project.id)
    if view.progress is None and view.agreement is None:
        st.info(view.message.capitalize() + ".")
    if view.progress is not None:
        st.dataframe(progress_view(view.progress), hide_index=True, width="stretch", key="ag_annotators")
        if note := annotators_note(view.progress):
            st.info(note)
        else:
            chart(charts.annotators_chart(view.progress), "annotators_progress")
    if view.agreement is not None:
        st.dataframe(agreement_rows(view.agreement), hide_index=True, key="ag_choice_agreement")
        if view.agreement.get("note"):
            st.caption(escape_markdown(str(view.agreement["note"])))


def new_run_view() -> None:
    if not versions:
        st.info("This project has no codebook yet.")
    else:
        c1, c2 = st.columns(2)
        version = c1.selectbox("Codebook version", versions, index=len(versions) - 1, key="ag_new_codebook",
                               format_func=lambda v: f"v{v}")
        split = c2.selectbox("Split", ["test", "validation", "train"], key="ag_new_split")
        engine = engine_picker("ag_new_")
        values = settings_form(RaterSpec, RATER_FIELDS, prefix="ag_new_")
        if engine is not None:
            try:
                spec = RaterSpec(engine=engine, **values)
                spec.check()
            except ValueError as exc:
                st.error(problem(exc, RaterSpec))
            else:
                st.code(cli_command(project.name, spec, split, version), language="bash")
                st.button("Start rating", type="primary", key="ag_new_start", on_click=start_rating,
                          args=(project.id, spec, split, version))
                flash()


views = [runs_view, compare_view, run_view, reliability_view, sampling_view, annotators_view, new_run_view]
for tab, view in zip(tabs, views):
    if tab.open is not False:  # None: no state tracking (then every tab renders)
        with tab:
            view()
compare = picked.get("compare") or defaults.compare
report_choices = ReportChoices(run_id=picked.get("run_id") or defaults.run_id,
                               compare=compare if compare and compare[0] != compare[1] else None,
                               versions=picked.get("versions") or defaults.versions)


def _report(project_id: int = project.id, picked: ReportChoices = report_choices) -> str:
    with session_scope() as s:
        return build_report(s, project_id, picked)


st.download_button("Download this page as an HTML report", data=_report, file_name="agreement-report.html",
                   mime="text/html", key="ag_report", on_click="ignore", icon=":material/download:")
