"""Sample: infer thinking traces by rejection sampling, watch runs live, browse candidates."""

from __future__ import annotations

import plotly.graph_objects as go
import streamlit as st
from sqlalchemy import select

from judgeeye.codebook import list_versions
from judgeeye.display import escape_markdown
from judgeeye.engines import EMBEDDED_MODEL, EngineConfig, TransformersConfig
from judgeeye.jobs import reconcile
from judgeeye.sampling import (
    ACCEPTANCE_LABELS,
    PRESETS,
    RunStats,
    SamplingSettings,
    default_preset,
    preset_settings,
    run_stats,
)
from judgeeye.sampling.launch import cli_command, item_candidates, item_summaries, latest_job, launch_run, resume_run
from judgeeye.sampling.runs import PRESET_HELP
from judgeeye.store import SamplingRun, session_scope
from judgeeye_app.ui.access import require_page
from judgeeye_app.ui.actions import attempt
from judgeeye_app.ui.common import require_project
from judgeeye_app.ui.engine_picker import engine_picker
from judgeeye_app.ui.job_panel import TrackedJob, job_panel
from judgeeye_app.ui.live_select import live_selectbox, set_live_value
from judgeeye_app.ui.settings_form import fill, problem, settings_form

actor = require_page("sample")  # every page checks the session itself (see pages/access.py)

FORM = "s_"  # the form's widgets are keyed FORM + the setting's name
#: the sampling settings the form asks for (a preset fills them; the advanced ones under "More settings")
SETTINGS = ["k", "temperature", "top_p", "max_tokens", "splits", "limit", "order", "targets", "acceptance",
            "round_size", "target_accepted", "readout", "seed"]
FLASH = "s_flash"
#: a run's status in words (a run waiting for its worker is "queued")
STATUS_WORDS = {"created": "queued", "running": "running", "completed": "completed", "incomplete": "incomplete",
                "cancelled": "cancelled", "failed": "failed"}

st.title("Sample traces")
st.caption("For each item, a reasoning model writes k candidate traces ending in a rating; the ones whose "
           "rating equals the human label are accepted (Zhang et al., section 3.1).")
project = require_project()

new_tab, runs_tab = st.tabs(["New run", "Runs"])


def _apply_preset() -> None:
    """The preset changed: it fills the settings."""
    fill(SamplingSettings, SETTINGS, FORM, preset_settings(st.session_state["s_preset"]), force=True)


def _engine_changed() -> None:
    """The embedded model starts from its demo preset, any other engine from the paper's protocol
    (:func:`judgeeye.sampling.default_preset`)."""
    embedded = st.session_state[FORM + "engine"] == "embedded"
    st.session_state["s_preset"] = default_preset(TransformersConfig(model=EMBEDDED_MODEL if embedded else "other"))
    _apply_preset()


def start_sampling(project_id: int, engine: EngineConfig, settings: SamplingSettings, version: int) -> None:
    """A button's callback: it runs before the page reads the store, so the Runs tab lists and
    opens the new run in the same rerun."""
    ids, error = attempt(launch_run, project_id, engine, settings, version, actor=actor)
    if ids is None:
        st.session_state[FLASH] = (project_id, "error", str(error))
        return
    run_id, job_id = ids
    set_live_value("s_run_pick", run_id)
    st.session_state[FLASH] = (project_id, "success", f"Run {run_id} started (job {job_id}). Its progress shows on "
                                                      "the **Runs** tab, where it is selected.")


def new_run_form() -> None:
    with session_scope() as session:
        versions = [v.version for v in list_versions(session, project.id)]
    if not versions:
        st.info("This project has no codebook yet.")
        return
    if "s_preset" not in st.session_state:
        st.session_state["s_preset"] = default_preset(TransformersConfig())  # the engine radio starts on the embedded model
    version = st.selectbox("Codebook version", versions, index=len(versions) - 1, key="s_codebook")
    engine = engine_picker(FORM, on_change=_engine_changed)
    preset = st.radio("Preset", list(PRESETS), key="s_preset", horizontal=True, on_change=_apply_preset,
                      format_func=str.capitalize, help="Fills in the settings below; change any of them after.")
    st.caption(PRESET_HELP[preset])
    if preset == "embedded demo" and st.session_state[FORM + "engine"] != "embedded":
        st.caption("The embedded demo is sized for the 135M model on a CPU; a real reasoning model should use "
                   "the paper's protocol.")
    values = settings_form(SamplingSettings, SETTINGS, prefix=FORM, values=preset_settings(preset))
    if engine is None:
        return
    if values["acceptance"] == "forced_cue" and engine.kind != "transformers":
        st.warning("Forced cue reads token probabilities, which an OpenAI-compatible server does not give: "
                   "choose the written acceptance mode for this engine.")
        return
    try:
        settings = SamplingSettings(**values)
    except ValueError as exc:
        st.error(problem(exc, SamplingSettings))
        return
    st.code(cli_command(project.name, engine, settings, version, preset), language="bash")
    run_estimate(engine, settings, version)
    st.button("Start sampling", type="primary", key="s_start", on_click=start_sampling,
              args=(project.id, engine, settings, version))
    shown = st.session_state.get(FLASH)
    if shown and shown[0] == project.id:  # said on this project's page only
        (st.success if shown[1] == "success" else st.error)(shown[2])


@st.cache_data(ttl=30, show_spinner=False)
def _estimate(project_id: int, engine_json: str, settings_json: str, version: int | None) -> tuple[str, bool]:
    import json

    from judgeeye.sampling.estimate import estimate_run

    with session_scope() as session:
        est = estimate_run(session, project_id, EngineConfig.model_validate(json.loads(engine_json)),
                           SamplingSettings.model_validate_json(settings_json), version)
    return est.text(), est.seconds is not None


def run_estimate(engine: EngineConfig, settings: SamplingSettings, version: int | None) -> None:
    """"About N tokens, about M min on this machine", from this engine's measured speed here;
    where none is measured yet, a button measures it (in a separate process)."""
    from judgeeye.sampling.estimate import calibrate_in_subprocess

    text, timed = _estimate(project.id, engine.model_dump_json(), settings.model_dump_json(), version)
    st.caption(f"Estimate: {text}.")
    if not timed and st.button("Measure this machine's speed (about a minute)", key="s_measure"):
        with st.spinner("Measuring one prompt and a few tokens with this engine…"):
            failure = calibrate_in_subprocess(str(project.id), engine, settings, version)
        if failure:
            st.warning(f"Could not measure the speed: {failure}")
        else:
            _estimate.clear()
            st.rerun()


def counts(run_id: int) -> None:
    """The run's counts so far (redrawn on every poll of the job panel)."""
    with session_scope() as session:
        stats = run_stats(session, run_id)
    m = st.columns(5)
    m[0].metric("Items", stats.n_items)
    m[1].metric("Candidates", stats.n_candidates)
    m[2].metric("Accepted", stats.n_accepted, help=f"{stats.acceptance_rate:.1%} of candidates")
    m[3].metric("Items with a trace", stats.items_with_accepted)
    m[4].metric("No written rating", stats.parse_failures,
                help="Traces that hit the token limit or ended without a valid rating"
                     + (f"; {stats.readout_ratings} of them rated after the forced cue."
                        if stats.acceptance == "forced_cue" else "."))


def tracked(run_id: int, status: str) -> TrackedJob:
    """The run as the job panel follows it: Cancel while it samples, Resume once it stopped."""
    return TrackedJob(key=f"s_{run_id}", name=f"sampling run {run_id}", title=f"Run {run_id}",
                      status=STATUS_WORDS.get(status, status), find=lambda session: latest_job(session, run_id),
                      resume=(lambda: resume_run(run_id, actor=actor)) if status != "completed" else None,
                      resume_help="Sample only what is missing.", body=lambda: counts(run_id))


def _nothing_accepted(stats: RunStats) -> str:
    """Why a run has no accepted trace yet, in words."""
    if stats.n_candidates == 0:
        return "No candidates yet: the charts appear once the first traces are written."
    limit = stats.finish_reasons.get("length", 0)
    written = stats.by_mode["written"].rated
    why = (f"None of the {stats.n_candidates} candidates was accepted: {written} wrote a rating (none equal to "
           f"the gold label), {stats.parse_failures} wrote none ({limit} ran out of tokens).")
    if stats.acceptance == "written":
        why += " Small models rarely finish a trace: try more max tokens, a larger k or the forced cue mode."
    return why


def acceptance_charts(stats: RunStats) -> None:
    """Acceptance per gold level and utilization vs k (paper Fig. 5), one series per acceptance mode."""
    if stats.n_accepted == 0:
        st.info(_nothing_accepted(stats))
        return
    names = {m: ACCEPTANCE_LABELS[m] for m in stats.by_mode}
    levels = go.Figure()
    for mode, ms in stats.by_mode.items():
        levels.add_trace(go.Bar(
            x=[f"{lv.level:g}" for lv in ms.per_level], y=[lv.rate for lv in ms.per_level], name=names[mode],
            customdata=[[lv.accepted, lv.candidates, lv.items_with_accepted, lv.items] for lv in ms.per_level],
            hovertemplate=("gold %{x}: %{y:.0%} (%{customdata[0]} of %{customdata[1]} candidates; "
                           "%{customdata[2]} of %{customdata[3]} items)<extra>" + names[mode] + "</extra>")))
    levels.update_layout(barmode="stack", title="Acceptance by gold level", xaxis_title="gold label",
                         yaxis_title="accepted candidates", yaxis_range=[0, 1], yaxis_tickformat=".0%",
                         height=360, legend_title_text="rating")
    curve = go.Figure()
    js = list(range(1, stats.k + 1))
    for mode, ms in stats.by_mode.items():
        curve.add_trace(go.Scatter(x=js, y=ms.utilization, mode="lines+markers", name=f"{names[mode]} only"))
    if len(stats.by_mode) > 1:
        curve.add_trace(go.Scatter(x=js, y=stats.utilization, mode="lines+markers", name="either"))
    curve.update_layout(title="Data utilization vs k", xaxis_title="samples per item (j)",
                        yaxis_title="items with an accepted trace", yaxis_range=[0, 1], yaxis_tickformat=".0%",
                        height=360, legend_title_text="rating")
    c1, c2 = st.columns(2)
    c1.plotly_chart(levels, width="stretch")
    c2.plotly_chart(curve, width="stretch")


def _rating_source(c: object) -> str:
    mode = getattr(c, "acceptance_mode", None)
    if mode is not None:
        return ACCEPTANCE_LABELS.get(mode, mode)
    return "no rating: ran out of tokens" if getattr(c, "finish_reason", None) == "length" else "no rating written"


def run_view() -> None:
    with session_scope() as session:
        reconcile(session)  # a run whose worker died is listed as failed, not running
        runs = session.scalars(select(SamplingRun).where(SamplingRun.project_id == project.id)
                               .order_by(SamplingRun.id.desc())).all()
    if not runs:
        st.info("No sampling runs yet: start one on the **New run** tab.")
        return
    ids = [r.id for r in runs]
    status = {r.id: r.status for r in runs}
    labels = {r.id: f"Run {r.id} · {EngineConfig.model_validate(r.engine).label()} · k={r.k} · "
                    f"{ACCEPTANCE_LABELS.get((r.settings or {}).get('acceptance') or 'written', 'written')} · "
                    f"{STATUS_WORDS.get(r.status, r.status)}" for r in runs}
    run_id = live_selectbox("Run", ids, format_func=labels.__getitem__, key="s_run_pick")
    job_panel([tracked(run_id, status[run_id])], key="s_panel", actor=actor)
    with session_scope() as session:
        stats = run_stats(session, run_id)
        summaries = item_summaries(session, run_id)
    st.caption(f"Seed {stats.seed} · acceptance mode: {ACCEPTANCE_LABELS[stats.acceptance]}"
               + (" (the paper's protocol)" if stats.acceptance == "written" else
                  " (budget forcing: traces without a rating are rated after the answer cue)"))
    acceptance_charts(stats)
    if stats.n_candidates == 0:
        return
    if stats.adaptive:
        st.caption(f"Adaptive: {stats.completion_tokens:,} completion tokens against ~{stats.fixed_k_tokens:,.0f} "
                   f"for fixed k={stats.k} (saved ~{stats.tokens_saved:,.0f}).")
    for name, (n, matched) in stats.per_annotator.items():
        st.caption(f"Annotator {escape_markdown(name)}: {matched}/{n} items have a trace matching their rating.")

    st.subheader("Candidates")
    by_id = {s.item_id: s for s in summaries}
    item_id = st.selectbox(
        "Item", list(by_id), key="s_item",
        format_func=lambda i: f"{by_id[i].external_id} · gold {'—' if by_id[i].gold is None else f'{by_id[i].gold:g}'} · "
                              f"{by_id[i].accepted}/{by_id[i].candidates} accepted")
    with session_scope() as session:
        candidates = item_candidates(session, run_id, item_id)
    for c in candidates:
        mark = "✅ accepted" if c.accepted else "✖ rejected"
        rating = f"{c.predicted:g}" if c.predicted is not None else "none"
        with st.container(border=True):
            st.markdown(f"**Sample {c.sample_index}** · {mark} · rating **{rating}** ({_rating_source(c)}) · "
                        f"{c.completion_tokens} tokens · {'ran out of tokens' if c.finish_reason == 'length' else 'finished'}")
            if c.reasoning:
                st.caption("Reasoning")
                st.text(c.reasoning)
            st.caption("Answer")
            st.text(c.answer)
            if c.score_dist:
                st.caption("Rating-token probabilities after the answer cue: "
                           + ", ".join(f"{k}: {v:.2f}" for k, v in c.score_dist.items()))


with new_tab:
    new_run_form()
with runs_tab:
    run_view()
