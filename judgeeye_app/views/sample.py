"""Sample: infer thinking traces by rejection sampling, watch runs live, browse candidates."""

from __future__ import annotations

import zlib

import plotly.graph_objects as go
import streamlit as st
from sqlalchemy import select

from judgeeye.codebook import list_versions
from judgeeye.display import escape_markdown
from judgeeye.engines import EMBEDDED_MODEL, EngineConfig, OpenAIConfig, TransformersConfig
from judgeeye.jobs import log_tail, reconcile, request_cancel
from judgeeye.sampling import (
    ACCEPTANCE_LABELS, PRESETS, RunStats, SamplingSettings, default_preset, preset_settings, run_stats,
)
from judgeeye.sampling.launch import cli_command, item_candidates, item_summaries, latest_job, launch_run, resume_run
from judgeeye.sampling.runs import PRESET_HELP
from judgeeye.store import SamplingRun, session_scope
from judgeeye_app.ui.access import require_page
from judgeeye_app.ui.common import project_picker, store_busy_notice
from judgeeye_app.ui.keys import api_key_field

actor = require_page("sample")  # every page checks the session itself (see pages/access.py)

#: the settings' defaults and help come from the library's models (one source for every setting)
FIELDS = SamplingSettings.model_fields
ENGINES = ["Embedded model (SmolLM2-135M, CPU)", "Hugging Face model", "OpenAI-compatible server"]
#: widget key -> setting it shows (filled from the chosen preset)
PRESET_WIDGETS = {"s_k": "k", "s_temp": "temperature", "s_top_p": "top_p", "s_max_tokens": "max_tokens",
                  "s_limit": "limit", "s_order": "order", "s_acceptance": "acceptance"}
ORDERS = {"import": "as imported", "shortest": "shortest first"}
#: a run's status in words (a run waiting for its worker is "queued")
STATUS_WORDS = {"created": "queued", "running": "running", "completed": "completed", "incomplete": "incomplete",
                "cancelled": "cancelled", "failed": "failed"}

st.title("Sample traces")
st.caption("For each item, a reasoning model writes k candidate traces ending in a rating; the ones whose "
           "rating equals the human label are accepted (Zhang et al., section 3.1).")
project = project_picker()
if project is None:
    st.stop()

new_tab, runs_tab = st.tabs(["New run", "Runs"])


def _apply_preset() -> None:
    """Fill the settings from the chosen preset (on first show and when the preset changes)."""
    settings = preset_settings(st.session_state["s_preset"])
    for key, name in PRESET_WIDGETS.items():
        value = getattr(settings, name)
        st.session_state[key] = (value or 0) if name == "limit" else value


def _engine_changed() -> None:
    """The embedded model starts from its demo preset, any other engine from the paper's protocol
    (:func:`judgeeye.sampling.default_preset`)."""
    embedded = st.session_state["s_engine"] == ENGINES[0]
    st.session_state["s_preset"] = default_preset(EngineConfig(model=EMBEDDED_MODEL if embedded else "other"))
    _apply_preset()


def engine_form(kind: str) -> EngineConfig | None:
    """The engine's own inputs; None (with what is missing said) until they describe an engine.
    It never stops the form early: widgets not drawn in a run lose their state (the preset's)."""
    batch_default = TransformersConfig.model_fields["batch_size"].default
    if kind == ENGINES[0]:
        batch = st.number_input("Batch size", 1, 512, batch_default, key="s_batch",
                                help="Sequences generated together.")
        return EngineConfig(kind="transformers", model=EMBEDDED_MODEL, batch_size=int(batch))
    if kind == ENGINES[1]:
        c1, c2, c3 = st.columns(3)
        model = c1.text_input("Model id or local directory", key="s_hf_model")
        adapter = c2.text_input("LoRA adapter directory (optional)", key="s_hf_adapter")
        batch = c3.number_input("Batch size", 1, 512, batch_default, key="s_hf_batch",
                                help="Sequences generated together.")
        if not model.strip():
            st.info("Enter a model id or directory.")
            return None
        return EngineConfig(kind="transformers", model=model.strip(), adapter=adapter.strip() or None,
                            batch_size=int(batch))
    c1, c2, c3, c4 = st.columns(4)
    url = c1.text_input("Base URL", "http://127.0.0.1:8000/v1", key="s_oa_url")
    model = c2.text_input("Model", key="s_oa_model")
    key_env = c3.text_input("API key variable", "", key="s_oa_key_env",
                            help="The NAME of an environment variable holding the key; the key itself is never stored.")
    conc = c4.number_input("Concurrent requests", 1, 256, OpenAIConfig.model_fields["max_concurrency"].default,
                           key="s_oa_conc", help="Requests in flight at once.")
    usable, key_name = api_key_field(key_env)
    if not usable:
        return None
    if not model.strip():
        st.info("Enter the served model's name.")
        return None
    return EngineConfig(kind="openai", model=model.strip(), base_url=url.strip(), api_key_env=key_name,
                        max_concurrency=int(conc))


def new_run_form() -> None:
    with session_scope() as session:
        versions = [v.version for v in list_versions(session, project.id)]
    if not versions:
        st.info("This project has no codebook yet.")
        return
    if "s_preset" not in st.session_state:
        st.session_state["s_preset"] = default_preset(EngineConfig())  # the engine radio starts on the embedded model
        _apply_preset()
    c1, c2 = st.columns(2)
    version = c1.selectbox("Codebook version", versions, index=len(versions) - 1, key="s_codebook")
    kind = c2.radio("Engine", ENGINES, key="s_engine", on_change=_engine_changed)
    engine = engine_form(kind)

    preset = st.radio("Preset", list(PRESETS), key="s_preset", horizontal=True, on_change=_apply_preset,
                      format_func=str.capitalize, help="Fills in the settings below; change any of them after.")
    st.caption(PRESET_HELP[preset])
    if preset == "embedded demo" and kind != ENGINES[0]:
        st.caption("The embedded demo is sized for the 135M model on a CPU; a real reasoning model should use "
                   "the paper's protocol.")
    c1, c2, c3, c4 = st.columns(4)
    k = c1.number_input("k (candidates per item)", 1, 256, key="s_k", help=FIELDS["k"].description)
    temperature = c2.number_input("Temperature", 0.0, 2.0, step=0.1, key="s_temp",
                                  help=FIELDS["temperature"].description)
    top_p = c3.number_input("Top-p", 0.05, 1.0, step=0.05, key="s_top_p", help=FIELDS["top_p"].description)
    max_tokens = c4.number_input("Max tokens", 16, 32768, step=16, key="s_max_tokens",
                                 help=FIELDS["max_tokens"].description)
    c1, c2, c3, c4 = st.columns(4)
    splits = c1.multiselect("Splits", ["train", "validation", "test"], FIELDS["splits"].default_factory(),
                            key="s_splits", help=FIELDS["splits"].description)
    limit = c2.number_input("Only the first N items (0 = all)", 0, 10_000_000, key="s_limit",
                            help=FIELDS["limit"].description)
    order = c3.radio("Item order", list(ORDERS), key="s_order", format_func=ORDERS.get, horizontal=True,
                     help=FIELDS["order"].description)
    targets = c4.radio("Verify against", ["gold", "annotators"], key="s_targets", horizontal=True,
                       index=["gold", "annotators"].index(FIELDS["targets"].default),
                       help=FIELDS["targets"].description)
    c1, c2, c3, c4 = st.columns(4)
    acceptance = c1.radio("Acceptance mode", list(ACCEPTANCE_LABELS), key="s_acceptance",
                          format_func=ACCEPTANCE_LABELS.get, help=FIELDS["acceptance"].description)
    adaptive = c2.toggle("Adaptive rounds", key="s_adaptive",
                         help="Sample in rounds and stop an item once it has enough accepted traces.")
    round_size = c3.number_input("Round size", 1, 64, 4, key="s_round", disabled=not adaptive,
                                 help=FIELDS["round_size"].description)
    target = c4.number_input("Stop at accepted", 1, 64, FIELDS["target_accepted"].default, key="s_target",
                             disabled=not adaptive, help=FIELDS["target_accepted"].description)
    if engine is None:
        return
    if acceptance == "forced_cue" and engine.kind != "transformers":
        st.warning("Forced cue reads token probabilities, which an OpenAI-compatible server does not give: "
                   "choose the written acceptance mode for this engine.")
        return
    try:
        settings = SamplingSettings(
            k=int(k), temperature=float(temperature), top_p=float(top_p), max_tokens=int(max_tokens),
            splits=splits, limit=int(limit) or None, order=order, targets=targets, acceptance=acceptance,
            round_size=int(round_size) if adaptive else None, target_accepted=int(target),
        )
    except ValueError as exc:
        st.error(str(exc))
        return
    st.code(cli_command(project.name, engine, settings, version, preset), language="bash")
    if st.button("Start sampling", type="primary", key="s_start"):
        with store_busy_notice():
            run_id, job_id = launch_run(project.id, engine, settings, version, actor=actor)
            st.session_state["s_started"] = (project.id, run_id, job_id)
            st.session_state["s_run"] = run_id  # the Runs tab shows the new run at once
    started = st.session_state.get("s_started")
    if started and started[0] == project.id:
        st.success(f"Run {started[1]} started (job {started[2]}). Its progress shows on the **Runs** tab, "
                   "where it is selected.")


@st.fragment(run_every=2)
def live_status(run_id: int, shown_status: str) -> None:
    """Polled every 2 s: the run's job, progress, cancel/resume. When the run's status changes,
    the whole page reruns so that the run selector and the charts say so too."""
    with session_scope() as session:
        reconcile(session)
        run = session.get(SamplingRun, run_id)
        job = latest_job(session, run_id)
        stats = run_stats(session, run_id)
        tail = log_tail(job, 4000) if job else ""
    if run.status != shown_status:
        st.rerun()
    status = job.status if job else STATUS_WORDS.get(run.status, run.status)
    progress_text = (job.progress_text if job else "") or ""
    st.progress(job.progress if job else 0.0,
                text=f"Job {job.id}: {status}" + (f" · {progress_text}" if progress_text else "") if job else status)
    m = st.columns(5)
    m[0].metric("Items", stats.n_items)
    m[1].metric("Candidates", stats.n_candidates)
    m[2].metric("Accepted", stats.n_accepted, help=f"{stats.acceptance_rate:.1%} of candidates")
    m[3].metric("Items with a trace", stats.items_with_accepted)
    m[4].metric("No written rating", stats.parse_failures,
                help="Traces that hit the token limit or ended without a valid rating"
                     + (f"; {stats.readout_ratings} of them rated after the forced cue." if stats.acceptance == "forced_cue" else "."))
    c1, c2 = st.columns(2)
    if job is not None and job.status in ("queued", "running"):
        if c1.button("Cancel", key=f"s_cancel_{run_id}"):
            with store_busy_notice():
                request_cancel(job.id, actor=actor)
    elif run.status != "completed":
        if c1.button("Resume", key=f"s_resume_{run_id}", help="Sample only what is missing."):
            with store_busy_notice():
                resume_run(run_id, actor=actor)
    if job is not None and job.status == "failed":
        st.error(f"Job {job.id} failed: {job.error or 'see the log'}")
    with st.expander("Log"):
        st.code(tail[-4000:] or "(empty)", language=None)


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
                    f"{ACCEPTANCE_LABELS.get((r.settings or {}).get('acceptance'), 'written')} · "
                    f"{STATUS_WORDS.get(r.status, r.status)}" for r in runs}
    chosen = st.session_state.get("s_run")
    chosen = chosen if chosen in ids else ids[0]
    # A selectbox keeps showing the label its chosen option had when it was first drawn: when the
    # labels change (a run started, a status moved on), the selector is drawn anew under a new key.
    signature = zlib.crc32(repr(sorted(labels.items())).encode())
    generation = st.session_state.get("s_run_generation", 0)
    if st.session_state.get("s_run_signature", signature) != signature:
        generation += 1
    st.session_state["s_run_signature"], st.session_state["s_run_generation"] = signature, generation
    run_id = st.selectbox("Run", ids, index=ids.index(chosen), format_func=labels.get,
                          key="s_run_pick" if not generation else f"s_run_pick_{generation}")
    st.session_state["s_run"] = run_id
    live_status(run_id, status[run_id])
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
        format_func=lambda i: f"{by_id[i].external_id} · gold {by_id[i].gold if by_id[i].gold is not None else '—'} · "
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
