"""Experiments (leads): the paper's protocol on a project as one resumable run: the grid, the plan
before launch, the same CLI command, live progress, and the report (which rater to use?).

The form is generated from the settings models (the experiment's, and the sampling, training and
refinement settings of its stages), the engines come from the shared engine picker and the live
progress from the shared job panel."""

from __future__ import annotations

from typing import Any

import pandas as pd
import streamlit as st
from pydantic import BaseModel

from judgeeye.codebook import list_versions
from judgeeye.display import duration, escape_markdown
from judgeeye.experiments import PRESET_HELP, ExperimentSettings, cli_command
from judgeeye.experiments.grid import raters as grid_raters
from judgeeye.experiments.launch import (
    latest_job,
    launch_experiment,
    list_experiments,
    resume_experiment,
    stage_rows,
)
from judgeeye.experiments.plan import plan_experiment
from judgeeye.experiments.report import (
    STATUS_WORDS,
    build_report,
    comparison_table,
    group_tables,
    inputs_table,
    rater_table,
    render_html,
    stage_table,
)
from judgeeye.experiments.stages import REFINE_PERSONAL, SET_BY_THE_EXPERIMENT
from judgeeye.jobs import reconcile
from judgeeye.refine.settings import RefineSettings
from judgeeye.sampling import SamplingSettings
from judgeeye.settings_fields import (
    SettingField,
    nest,
    setting_field,
    setting_fields,
    value_in,
)
from judgeeye.store import Experiment, session_scope
from judgeeye.training import TrainingConfig
from judgeeye_app.ui.access import require_page
from judgeeye_app.ui.actions import attempt
from judgeeye_app.ui.common import require_project
from judgeeye_app.ui.engine_picker import engine_picker
from judgeeye_app.ui.job_panel import TrackedJob, job_panel
from judgeeye_app.ui.live_select import live_selectbox, set_live_value
from judgeeye_app.ui.settings_form import (
    field_widget,
    fill,
    help_text,
    problem,
    settings_form,
)

actor = require_page("experiments")  # every page checks the session itself

st.title("Experiments")
st.caption("Which rater should we use? One run does the paper's protocol on this project: infer traces by "
           "rejection sampling, fine-tune the base model on them (and on the labels alone, the paper's Table 4), "
           "optionally TRACT, refine the codebook for black-box raters, then rate the same test items with every "
           "rater under one protocol and compare each with the base (Zhang et al.; Chiang et al.). Runs that were "
           "already made with the same settings are reused.")
project = require_project()

new_tab, list_tab = st.tabs(["New experiment", "Experiments"])
FORM = "x_"  # the form's widgets are keyed FORM + the setting's path ("x_protocol.limit", "x_sampling.k")
ACTIONS = {"new": "new run", "reuse": "reuse", "resume": "resume", "done": "done"}
READOUTS = {"argmax": "most probable rating after the trace", "expected": "expected rating after the trace",
            "parsed": "the rating it writes"}
RATERS = ["base_model", "modes"]
PROTOCOL = ["protocol.limit", "protocol.max_tokens", "protocol.readout", "protocol.temperature", "protocol.top_p",
            "protocol.seed"]
#: the stages' own settings models, each with the fields the experiment sets itself left out
SECTIONS: dict[str, tuple[str, type[BaseModel], set[str]]] = {
    "sampling": ("Sampling (train split)", SamplingSettings, set(SET_BY_THE_EXPERIMENT["sampling"])),
    "training": ("Training (every fine-tuned rater)", TrainingConfig,
                 {*SET_BY_THE_EXPERIMENT["training"], "preset", "force", "test_limit", "n_boot"}),
    "refine": ("Refinement (for the black-box raters)", RefineSettings,
               {*SET_BY_THE_EXPERIMENT["refine"], *REFINE_PERSONAL}),
}
MAX_BLACKBOX = 4
FLASH = "x_flash"


def _field(path: str) -> SettingField:
    return setting_field(ExperimentSettings, path)


def _engine_help(name: str) -> str:
    """The help of an engine setting (engines are no plain fields: the picker draws them)."""
    return escape_markdown(str(ExperimentSettings.model_fields[name].description))


def _section_paths(section: str) -> list[str]:
    _, model, taken = SECTIONS[section]
    return [f.path for f in setting_fields(model) if f.path.split(".")[0] not in taken]


def _apply_preset() -> None:
    """The preset changed: it fills the form (the experiment's fields and every section's)."""
    preset = ExperimentSettings.from_preset(st.session_state[FORM + "preset"])
    fill(ExperimentSettings, [*RATERS, *PROTOCOL], FORM, preset, force=True)
    for section, (_, model, _) in SECTIONS.items():
        fill(model, _section_paths(section), f"{FORM}{section}.", getattr(preset, section), force=True)


def _version_box(where: Any, path: str, versions: list[int]) -> int | None:
    """A codebook version picked from the project's versions (None: what the field says None means)."""
    field = _field(path)
    return where.selectbox(field.title, [None, *versions], key=FORM + path, help=help_text(field),
                           format_func=lambda v: field.none if v is None else f"v{v}")


def _section(section: str, preset: ExperimentSettings) -> dict[str, Any]:
    """A stage's settings form; returns the fields that differ from what the preset gives."""
    _, model, _ = SECTIONS[section]
    given = getattr(preset, section)
    values = settings_form(model, _section_paths(section), prefix=f"{FORM}{section}.", values=given)
    return nest({path: value for path, value in values.items()
                 if value != value_in(setting_field(model, path), given)})


def _engines(versions: list[int]) -> dict[str, Any] | None:
    """The sampler, the black-box raters, the refined codebook and the refiner (None: one is
    incomplete). Every picker is drawn either way, so nothing typed in the others is lost."""
    out: dict[str, Any] = {}
    complete = True
    if st.checkbox("Infer the traces with another engine", key=FORM + "own_sampler", help=_engine_help("sampler")):
        out["sampler"] = engine_picker(FORM + "sampler_", adapter=False)
        complete = out["sampler"] is not None
    n = int(st.number_input(str(ExperimentSettings.model_fields["blackbox"].title), 0, MAX_BLACKBOX,
                            key=FORM + "n_blackbox", help=_engine_help("blackbox")))
    out["blackbox"] = []
    for index in range(1, n + 1):
        st.caption(f"Black-box rater {index}")
        engine = engine_picker(f"{FORM}bb{index}_", adapter=False, kinds=["openai"])
        complete = complete and engine is not None
        out["blackbox"].append(engine)
    if n:
        out["refined_codebook"] = _version_box(st, "refined_codebook", versions)
        if out["refined_codebook"] is None and st.checkbox(
                "Refine with another engine", key=FORM + "own_refiner", help=_engine_help("refine_engine")):
            out["refine_engine"] = engine_picker(FORM + "refiner_", adapter=False)
            complete = complete and out["refine_engine"] is not None
    return out if complete else None


def experiment_form() -> ExperimentSettings | None:
    """The settings the form gives (None while an engine is incomplete or a value is refused).
    The whole form is drawn either way, so nothing typed is lost."""
    with session_scope() as session:
        versions = [v.version for v in list_versions(session, project.id)]
    if not versions:
        st.info("This project has no codebook yet.")
        return None
    fill(ExperimentSettings, ["preset"], FORM)
    name = field_widget(_field("preset"), FORM, on_change=_apply_preset)
    st.caption(PRESET_HELP[name])
    preset = ExperimentSettings.from_preset(name)
    st.subheader("Raters")
    values = settings_form(ExperimentSettings, RATERS, prefix=FORM, values=preset, columns=2)
    c1, _ = st.columns(2)
    codebook = _version_box(c1, "codebook_version", versions)
    engines = _engines(versions)
    st.subheader("Rating protocol (test split, every rater)")
    values |= settings_form(ExperimentSettings, PROTOCOL, prefix=FORM, values=preset, columns=3)
    st.subheader("Stage settings")
    sections: dict[str, Any] = {}
    for tab, section in zip(st.tabs([title for title, _, _ in SECTIONS.values()]), SECTIONS):
        with tab:
            sections[section] = _section(section, preset)
    if engines is None:
        return None
    try:
        return ExperimentSettings.from_preset(name, **nest(values), **engines, **sections, codebook_version=codebook)
    except ValueError as exc:
        st.error(problem(exc, ExperimentSettings))
        return None


def start_experiment(project_id: int, settings: ExperimentSettings) -> None:
    """A button's callback: it runs before the page reads the store, so the Experiments tab lists
    and opens the new experiment in the same rerun."""
    ids, error = attempt(launch_experiment, project_id, settings, actor=actor)
    if ids is None:
        st.session_state[FLASH] = ("error", str(error))
        return
    set_live_value("x_pick", ids[0])
    st.session_state[FLASH] = ("success", f"Experiment {ids[0]} started. Follow it on the **Experiments** tab.")


def new_experiment() -> None:
    settings = experiment_form()
    if settings is None:
        return
    st.subheader("Grid")
    st.dataframe(pd.DataFrame([{
        "rater": r.title,
        "model": {"base": "the base model", "train": "the base model + its LoRA adapter"}.get(
            r.source.split(":")[0], "black-box server"),
        "codebook": r.codebook, "read-out": READOUTS[r.readout]} for r in grid_raters(settings)]),
        hide_index=True, width="stretch")
    with session_scope() as session:
        try:
            plan = plan_experiment(session, project.id, settings)
        except (LookupError, ValueError) as exc:
            st.error(str(exc))
            return
    st.subheader("Plan")
    st.dataframe(pd.DataFrame([{
        "stage": s.title, "does": ACTIONS[s.action] + (f" (run {s.run_id})" if s.run_id is not None else ""),
        "items": s.items if s.items is not None else "—",
        "tokens generated (at most)": f"{s.tokens:,}" if s.tokens is not None else "—",
        "time": "about " + duration(s.seconds) if s.seconds is not None else "—",
        "estimated from": s.basis if s.runs_work else ""} for s in plan.stages]), hide_index=True, width="stretch")
    st.info(plan.summary())
    for warning in plan.warnings():
        st.warning(warning)
    st.caption("The same experiment from a terminal (add `--background` to return at once):")
    st.code(cli_command(str(project.id), settings), language="bash")
    st.button("Start the experiment", type="primary", key=FORM + "start", on_click=start_experiment,
              args=(project.id, settings))
    if shown := st.session_state.pop(FLASH, None):
        (st.success if shown[0] == "success" else st.error)(shown[1])


def stages_line(experiment_id: int) -> None:
    """The experiment's status and its stages done (redrawn on every poll of the job panel)."""
    with session_scope() as session:
        status = session.get_one(Experiment, experiment_id).status
        rows = [(r.status, r.reused) for r in stage_rows(session, experiment_id)]
    st.caption(f"{STATUS_WORDS.get(status, status).capitalize()} · {sum(s == 'done' for s, _ in rows)} of "
               f"{len(rows)} stages done, {sum(bool(r) for _, r in rows)} reused")


def tracked(experiment_id: int, status: str) -> TrackedJob:
    """The experiment as the job panel follows it: Stop while it runs, Resume until it completes."""
    return TrackedJob(
        key=f"x_{experiment_id}", name=f"experiment {experiment_id}", title=f"Experiment {experiment_id}",
        find=lambda session: latest_job(session, experiment_id), status=STATUS_WORDS.get(status, status),
        resume=(lambda: resume_experiment(experiment_id, actor=actor)) if status != "completed" else None,
        resume_help="Continues where it stopped: stages that are done stay done, a stage's run resumes.",
        cancel_label="Stop (resumable)",
        cancelled="Stop requested: the current step finishes, then the experiment stops; Resume continues it.",
        body=lambda: stages_line(experiment_id))


def report_view(experiment_id: int) -> None:
    with session_scope() as session:
        report = build_report(session, experiment_id)
    st.subheader("Verdicts")
    for comparison in report.comparisons:
        st.markdown(f"- {escape_markdown(comparison.verdict)}")
    if not report.comparisons:
        st.caption("No comparisons in this grid.")
    st.subheader("Raters on the test split")
    st.dataframe(rater_table(report), hide_index=True, width="stretch")
    st.subheader("Paired tests against the baseline")
    st.caption("One-sided tests that B is better than A on the same items: paired bootstrap (1,000 resamples) for "
               "τ and ICC(3,1), paired t-test on squared errors for MSE. * p < .05, ** p < .01, *** p < .001.")
    st.dataframe(comparison_table(report), hide_index=True, width="stretch")
    groups = group_tables(report)
    if groups is not None:
        st.caption("Black-box raters: original → refined codebook (the paper's Tables 2–3)")
        st.dataframe(groups[0], hide_index=True, width="stretch")
        st.dataframe(groups[1], hide_index=True, width="stretch")
    for note in report.notes:
        st.caption(escape_markdown(note))
    with st.expander("Stages and what they cost"):
        st.dataframe(stage_table(report), hide_index=True, width="stretch")
    with st.expander("Inputs (what reruns it exactly)"):
        st.dataframe(inputs_table(report), hide_index=True, width="stretch")
        st.code(report.command, language="bash")
    st.download_button("Download the HTML report", data=lambda: render_html(report),
                       file_name=f"experiment-{experiment_id}-report.html", mime="text/html",
                       key=f"x_download_{experiment_id}", on_click="ignore", icon=":material/download:")


def experiments_view() -> None:
    with session_scope() as session:
        reconcile(session)
        items = [(e.id, e.name, e.preset, e.status, e.created_at, stage_rows(session, e.id))
                 for e in list_experiments(session, project.id)]
    if not items:
        st.info("No experiments yet: plan and start one on the **New experiment** tab.")
        return
    st.dataframe(pd.DataFrame([{
        "experiment": i, "name": name, "preset": preset, "status": STATUS_WORDS.get(status, status),
        "stages done": f"{sum(r.status == 'done' for r in rows)} of {len(rows)}",
        "reused": sum(bool(r.reused) for r in rows), "created": f"{created:%Y-%m-%d %H:%M}"}
        for i, name, preset, status, created, rows in items]), hide_index=True, width="stretch")
    names = {i: f"Experiment {i} · {name} · {STATUS_WORDS.get(status, status)}" for i, name, _, status, *_ in items}
    experiment_id = live_selectbox("Experiment", list(names), format_func=names.__getitem__, key="x_pick")
    status = next(status for i, _, _, status, *_ in items if i == experiment_id)
    job_panel([tracked(experiment_id, status)], key="x_panel", actor=actor)
    report_view(experiment_id)


with new_tab:
    new_experiment()
with list_tab:
    experiments_view()
