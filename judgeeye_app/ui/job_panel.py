"""The live panel of long work (sampling, training, refinement, rating): one for every page.

For each piece of work it follows it shows the progress line, the error of a failed job (the
error, never a traceback), the log's tail in an expander, and Cancel or Resume. While a job is
queued or running the panel polls the store every few seconds (``st.fragment(run_every=...)``);
when a job's status changes (it ends, or a resume starts a new one) the whole page reruns, so
its tables, charts and selectors show the work as it is now, and a line says what finished.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import streamlit as st
from sqlalchemy.orm import Session

from judgeeye.auth import Actor
from judgeeye.job_messages import error_message, readable_log
from judgeeye.jobs import ACTIVE, log_tail, reconcile, request_cancel
from judgeeye.store import Job, session_scope
from judgeeye_app.ui.actions import attempt

#: what an active job without a progress report is doing
WAITING = {"queued": "waiting for a worker", "running": "starting"}


@dataclass(frozen=True)
class TrackedJob:
    """One piece of long work a panel follows."""

    key: str  #: unique on the page: its buttons' keys are ``{key}_cancel`` and ``{key}_resume``
    name: str  #: what it is in a sentence: "rater run 5" ("Finished: rater run 5 succeeded.")
    title: str  #: how its progress line starts: "Run 5 · embedded"
    find: Callable[[Session], Job | None]  #: its current job (a resume makes a new one)
    #: starts a new job for the work (None: it cannot be resumed from here)
    resume: Callable[[], Any] | None = None
    resume_label: str = "Resume"
    resume_help: str | None = None
    #: why it cannot be resumed, said in place of the button (a stopped run with nothing saved)
    no_resume: str | None = None
    cancel_label: str = "Cancel"
    #: said once a cancel is asked for
    cancelled: str = "Cancel requested: the job stops at its next safe point and keeps what it wrote."
    #: the work's own status, shown while it has no job
    status: str | None = None
    #: draws the work's live details (counts, curves) under the progress line, on every poll
    body: Callable[[], None] | None = None


def job_panel(tracked: Sequence[TrackedJob], *, key: str, actor: Actor, every: float = 2.0,
              log_bytes: int = 6000) -> None:
    """The live panel of ``tracked``; ``key`` names it on the page (its messages, what it saw);
    ``actor`` is who cancels."""
    if finished := st.session_state.pop(f"{key}__finished", None):
        st.info(finished, icon=":material/done_all:")
    if not tracked:
        st.session_state.pop(f"{key}__seen", None)
        return
    with session_scope() as session:
        reconcile(session)  # a worker that died shows as failed in this very view
        active = any(job is not None and job.status in ACTIVE for job in (t.find(session) for t in tracked))
    # polls only while there is something to watch; a job that ends (or a resume) reruns the page
    st.fragment(_panel, run_every=every if active else None)(list(tracked), key, actor, log_bytes)


def _panel(tracked: list[TrackedJob], key: str, actor: Actor, log_bytes: int) -> None:
    if any([st.session_state.pop(f"{t.key}__resumed", False) for t in tracked]):
        st.rerun(scope="app")  # a resume started a new job: the page shows it (and polls it)
    with session_scope() as session:
        reconcile(session)
        jobs = {t.key: t.find(session) for t in tracked}
        shown = {k: (j.id, j.status, j.progress, j.progress_text, j.error, readable_log(log_tail(j, log_bytes)))
                 if j is not None else None for k, j in jobs.items()}
    _follow(tracked, key, shown)
    for t in tracked:
        _one(t, actor, shown[t.key])


def _follow(tracked: list[TrackedJob], key: str, shown: dict[str, tuple | None]) -> None:
    """Rerun the page when a job it drew has changed (ended, cancelled, resumed as a new job)."""
    now = {k: (v[0], v[1]) if v else None for k, v in shown.items()}
    seen = st.session_state.get(f"{key}__seen") or {}
    st.session_state[f"{key}__seen"] = now
    changed = [t for t in tracked if t.key in seen and seen[t.key] != now[t.key]]
    if not changed:
        return
    ended = []
    for t in changed:
        before, after = seen[t.key], now[t.key]
        if before and before[1] in ACTIVE and after and after[1] not in ACTIVE:
            ended.append(f"{t.name} {after[1]}" + _why(shown[t.key]))
    if ended:
        st.session_state[f"{key}__finished"] = "Finished: " + ", ".join(ended) + "."
    st.rerun(scope="app")


def _why(view: tuple | None) -> str:
    return f" ({error_message(view[4])})" if view and view[1] == "failed" and view[4] else ""


def _one(t: TrackedJob, actor: Actor, view: tuple | None) -> None:
    """One job's progress line, actions, error, details and log."""
    if view is None:
        st.progress(0.0, text=f"{t.title}: {t.status or 'not started'}")
    else:
        job_id, status, progress, text = view[:4]
        st.progress(min(max(progress or 0.0, 0.0), 1.0),
                    text=f"{t.title} · job {job_id}: {status} · {text or WAITING.get(status, '')}".rstrip(" ·"))
    if note := st.session_state.pop(f"{t.key}__note", None):
        (st.error if note[0] == "error" else st.caption)(note[1])
    status = view[1] if view else None
    if view is not None and status in ACTIVE:
        st.button(t.cancel_label, key=f"{t.key}_cancel", on_click=_cancel, args=(t, view[0], actor))
    elif t.resume is not None:
        st.button(t.resume_label, key=f"{t.key}_resume", help=t.resume_help, on_click=_resume, args=(t,))
    elif t.no_resume:
        st.caption(t.no_resume)
    if view is not None and status in ("failed", "cancelled") and view[4]:
        st.error(f"Job {view[0]} {status}: {error_message(view[4])}")
    if t.body is not None:
        t.body()
    if view is not None:
        with st.expander("Log", expanded=status == "failed"):
            st.code(view[5] or "(empty)", language=None)


def _cancel(t: TrackedJob, job_id: int, actor: Actor) -> None:
    """A button's callback: it runs before the panel reads the job again, so a queued job
    cancelled now shows (and the page follows) in the same rerun."""
    error = attempt(request_cancel, job_id, actor=actor)[1]
    st.session_state[f"{t.key}__note"] = ("error", error) if error else ("note", t.cancelled)


def _resume(t: TrackedJob) -> None:
    assert t.resume is not None
    try:
        error = attempt(t.resume)[1]
    except RuntimeError as exc:  # already running again, complete, or nothing saved to resume from
        error = str(exc)
    if error:
        st.session_state[f"{t.key}__note"] = ("error", error)
    else:
        st.session_state[f"{t.key}__resumed"] = True


__all__ = ["WAITING", "TrackedJob", "job_panel"]
