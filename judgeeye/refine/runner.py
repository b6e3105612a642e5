"""Refinement as a job: launch, resume, and the worker that runs the whole pipeline.

The job's parameters hold the settings and the resolved base version, so a resume does exactly
the same refinement; a resumed job adopts the critiques its predecessors stored and extracts only
the missing ones. The codebook version is written last, in one transaction: a failed, cancelled
or killed refinement leaves no version behind.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select

from judgeeye.auth import Actor, require
from judgeeye.codebook import current_version, get_version, list_versions, to_spec
from judgeeye.engines import Engine, SamplingParams, make_engine
from judgeeye.jobs import JobContext, create_job, start_job
from judgeeye.refine.critiques import adopt_critiques, extract_critiques
from judgeeye.refine.prompts import CRITIQUE_PROMPT
from judgeeye.refine.refiner import refine_instructions, refine_rubric, write_refined_version
from judgeeye.refine.representatives import group_critiques
from judgeeye.refine.settings import RefineSettings
from judgeeye.refine.traces import TraceSourceError, check_runs, load_trace_set, select_per_level
from judgeeye.store import Codebook, Job, Project, session_scope

KIND = "refine"


def _noop(*_: Any, **__: Any) -> None:
    return None


def launch_refinement(project_id: int, settings: RefineSettings, *, actor: Actor, start: bool = True) -> int:
    """Create a refinement job (base version resolved now) and start its worker; returns the job id.
    ``actor`` must hold ``edit_codebook``; the new version's author is theirs unless set."""
    require(actor, "edit_codebook")
    if settings.author is None:
        settings = settings.model_copy(update={"author": actor.name})
    with session_scope() as session:
        if session.get(Project, project_id) is None:
            raise LookupError(f"no project {project_id}")
        base = (get_version(session, project_id, settings.codebook_version) if settings.codebook_version
                else current_version(session, project_id))
        if base is None:
            raise LookupError(f"project {project_id} has no codebook to refine; import one first")
        check_runs(session, project_id, settings.runs)  # a wrong run is refused now, not in the job
        params = {"settings": settings.model_dump(mode="json"), "base_version": base.version, "resume_from": []}
        job_id = create_job(session, KIND, params, project_id=project_id).id
    if start:
        start_job(job_id)
    return job_id


def resume_refinement(job_id: int, *, actor: Actor, start: bool = True) -> int:
    """A new job that finishes an interrupted refinement (reusing its critiques); returns its id."""
    require(actor, "edit_codebook")
    with session_scope() as session:
        job = session.get(Job, job_id)
        if job is None or job.kind != KIND:
            raise LookupError(f"no refinement job {job_id}")
        if job.status in ("queued", "running"):
            raise RuntimeError(f"refinement job {job_id} is still {job.status}")
        if job.status == "succeeded":
            raise RuntimeError(f"refinement job {job_id} already finished; start a new refinement instead")
        params = dict(job.params)
        params["resume_from"] = [*params.get("resume_from", []), job_id]
        new_id = create_job(session, KIND, params, project_id=job.project_id).id
    if start:
        start_job(new_id)
    return new_id


def refinement_jobs(session, project_id: int) -> list[Job]:  # type: ignore[no-untyped-def]
    return list(session.scalars(select(Job).where(Job.kind == KIND, Job.project_id == project_id)
                                .order_by(Job.id.desc())).all())


def version_of_job(session, project_id: int, job_id: int) -> Codebook | None:  # type: ignore[no-untyped-def]
    """The codebook version a refinement job wrote (None until it has)."""
    for row in reversed(list_versions(session, project_id)):
        if ((row.inputs or {}).get("refinement") or {}).get("job_id") == job_id:
            return row
    return None


@dataclass
class Phase:
    """Maps a step's own 0..1 progress into its share of the job's progress bar."""

    start: float
    end: float
    report: Callable[..., None]

    def __call__(self, fraction: float, text: str) -> None:
        self.report(self.start + (self.end - self.start) * max(0.0, min(1.0, fraction)), text)


def refine(project_id: int, settings: RefineSettings, *, job_id: int, base_version: int,
           resume_from: list[int] | None = None, engine: Engine | None = None,
           progress: Callable[..., None] = _noop, check_cancel: Callable[[], None] = _noop,
           log: Callable[[str], None] = print) -> Codebook:
    """Run one refinement and write its version; returns the new row (detached)."""
    with session_scope() as session:
        project = session.get(Project, project_id)
        if project is None:
            raise LookupError(f"no project {project_id}")
        base_row = get_version(session, project_id, base_version)
        base = to_spec(base_row, project)
        base_id = base_row.id
        traces = load_trace_set(session, project_id, settings.splits, settings.runs)
        if resume_from:
            moved = adopt_critiques(session, resume_from, job_id)
            if moved:
                log(f"resuming: adopted {moved} critiques from job(s) {resume_from}")
    if not traces.rows:
        raise TraceSourceError(
            f"project {project_id} has no traces to refine from in the {', '.join(traces.splits)} split(s) "
            f"({traces.source}); sample traces first (judgeeye sample)")
    log(f"refining codebook v{base_version} ({settings.mode}) from {len(traces.rows)} traces: {traces.source}")
    record: dict[str, Any] = {
        "job_id": job_id, "mode": settings.mode, "base_version": base_version,
        "engine": settings.engine.model_dump(mode="json"),
        "settings": settings.model_dump(mode="json", exclude={"engine"}), "dataset": traces.describe(),
        # the sampling runs the traces were read from (asked for, and those that gave a trace)
        "runs": settings.runs, "runs_used": sorted({t.run_id for t in traces.rows if t.run_id is not None}),
    }
    # a resumed refinement samples afresh (the same seeds would give back the answers refused before)
    seed = settings.seed + 1000 * len(resume_from or [])
    record["seed"] = seed
    params = SamplingParams(settings.temperature, settings.top_p, settings.max_tokens, seed)
    do_inst = settings.mode in ("instruction", "both")
    do_rub = settings.mode in ("rubric", "both")
    inst_end = 0.25 if do_rub else 0.95
    own_engine = engine is None
    engine = engine or make_engine(settings.engine)
    try:
        spec = base
        if do_inst:
            progress(0.02, "instruction refinement: asking the model", force=True)
            chosen = select_per_level(traces.rows, settings.n_inst, seed=settings.seed, purpose="instruction")
            step = refine_instructions(engine, base, chosen, params=params, attempts=settings.attempts,
                                       prefill=settings.prefill, max_chars=settings.trace_chars, log=log)
            spec = step.spec
            record["instruction"] = step.record()
            log(f"instruction refinement: accepted attempt {len(step.attempts)} "
                f"({sum(len(v) for v in chosen.values())} traces)")
            progress(inst_end, "instructions refined", force=True)
            check_cancel()
        if do_rub:
            start = inst_end if do_inst else 0.02
            phase = Phase(start, 0.8, progress)
            chosen = select_per_level(traces.rows, settings.n_rubric, seed=settings.seed, purpose="rubric")
            rubric_traces = [t for level in sorted(chosen) for t in chosen[level]]
            crit_params = SamplingParams(settings.temperature, settings.top_p, settings.critique_max_tokens, seed)
            stats = extract_critiques(
                engine, spec, rubric_traces, job_id=job_id, codebook_id=base_id, params=crit_params,
                attempts=settings.attempts, max_chars=settings.trace_chars, check_cancel=check_cancel, log=log,
                progress=lambda done, total: phase(done / max(total, 1), f"critiques: {done}/{total} traces"))
            log(f"critiques: {stats.critiques} new from {stats.extracted} traces ({stats.done_before} done before)"
                + (f"; no critique from items {stats.empty}" if stats.empty else ""))
            check_cancel()
            progress(0.82, "embedding and clustering critiques", force=True)
            grouping = group_critiques(job_id, embedder=settings.embedder, clusters=settings.clusters,
                                       k_max=settings.k_max, per_cluster=settings.per_cluster,
                                       projection=settings.projection, seed=settings.seed, log=log)
            check_cancel()
            progress(0.86, "rubric refinement: asking the model", force=True)
            step = refine_rubric(engine, spec, grouping.representative_critiques(), params=params,
                                 attempts=settings.attempts, prefill=settings.prefill, log=log)
            spec = step.spec
            record["rubric"] = {
                **step.record(), "trace_ids": [t.candidate_id for t in rubric_traces],
                "item_ids": [t.item_id for t in rubric_traces],
                "per_level": {str(lv): len(ts) for lv, ts in sorted(chosen.items())},
                "critique_ids": grouping.critique_ids, "representative_ids": grouping.representative_ids(),
                "clusters": grouping.to_dict(), "extraction": stats.to_dict(),
                "critique_prompt": CRITIQUE_PROMPT,
            }
        check_cancel()
    finally:
        if own_engine:
            engine.close()
    with session_scope() as session:
        base_row = get_version(session, project_id, base_version)
        row = write_refined_version(session, project_id, base_row, spec, origin=settings.origin,
                                    inputs={"refinement": record}, author=settings.author, note=settings.note,
                                    make_current=settings.make_current)
        session.flush()
        session.expunge(row)
    log(f"wrote codebook version {row.version} ({settings.origin}, parent v{base_version})")
    return row


def run_refine_job(ctx: JobContext) -> None:
    """Job handler for kind 'refine': params {"settings", "base_version", "resume_from"}."""
    settings = RefineSettings.model_validate(ctx.params["settings"])
    if ctx.project_id is None:
        raise ValueError(f"refinement job {ctx.job_id} has no project")
    row = refine(ctx.project_id, settings, job_id=ctx.job_id, base_version=int(ctx.params["base_version"]),
                 resume_from=[int(j) for j in ctx.params.get("resume_from", [])], progress=ctx.progress,
                 check_cancel=ctx.check_cancel, log=ctx.log)
    ctx.progress(1.0, f"wrote codebook version {row.version}", force=True)
