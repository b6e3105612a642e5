"""Measured comparison of codebook versions: the same M LLM raters prompted with each version,
rating the held-out test split (paper Tables 2 and 3).

Rater runs, metrics and tests all come from :mod:`judgeeye.evaluate` and :mod:`judgeeye.metrics`;
this module only pairs them: for every rater spec one run per version (an existing run of the
same rater, version and split is reused), then per-rater τ, ICC(3,1) and MSE, inter-rater
ICC(3,1) among the M raters of each version, and the paired tests across raters.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from judgeeye.auth.roles import Actor, require
from judgeeye.codebook import get_version
from judgeeye.evaluate import GroupComparison, RaterSpec, compare_groups, create_rater_run, significance_mark
from judgeeye.store import RaterRun


@dataclass
class ComparisonPlan:
    """Rater i under version A is ``runs_a[i]``; under version B ``runs_b[i]``."""

    project_id: int
    version_a: int
    version_b: int
    split: str
    raters: list[str]
    runs_a: list[int]
    runs_b: list[int]

    @property
    def run_ids(self) -> list[int]:
        return self.runs_a + self.runs_b


def _spec_json(spec: RaterSpec) -> dict[str, Any]:
    return spec.model_dump(mode="json")


def rater_runs_for(session: Session, project_id: int, version: int, spec: RaterSpec, split: str) -> RaterRun:
    """The newest run of this rater on this version and split (completed first), or a new one."""
    codebook = get_version(session, project_id, version)
    wanted = _spec_json(spec)
    existing = [r for r in session.scalars(
        select(RaterRun).where(RaterRun.project_id == project_id, RaterRun.codebook_id == codebook.id,
                               RaterRun.split == split).order_by(RaterRun.id.desc())).all()
        if r.rater == wanted]
    existing.sort(key=lambda r: (r.status != "completed", -r.id))
    if existing:
        return existing[0]
    return create_rater_run(session, project_id, spec, split=split, codebook_version=version)


def plan_comparison(session: Session, project_id: int, version_a: int, version_b: int,
                    raters: Sequence[RaterSpec], *, actor: Actor, split: str = "test") -> ComparisonPlan:
    """One rater run per (rater, version), reusing existing ones; nothing is rated here.
    Comparing codebooks is part of refining them: ``actor`` must hold ``edit_codebook``."""
    require(actor, "edit_codebook")
    if version_a == version_b:
        raise ValueError(f"compare two different codebook versions (got {version_a} twice)")
    if not raters:
        raise ValueError("choose at least one rater (two or more for inter-rater ICC and the tests across raters)")
    labels = [s.label() for s in raters]
    if len(set(map(str, map(_spec_json, raters)))) != len(raters):
        raise ValueError(f"the raters must differ from each other: {labels}")
    runs_a = [rater_runs_for(session, project_id, version_a, s, split).id for s in raters]
    runs_b = [rater_runs_for(session, project_id, version_b, s, split).id for s in raters]
    return ComparisonPlan(project_id, version_a, version_b, split, labels, runs_a, runs_b)


def incomplete_runs(session: Session, plan: ComparisonPlan) -> list[int]:
    return [r.id for r in session.scalars(select(RaterRun).where(RaterRun.id.in_(plan.run_ids))).all()
            if r.status != "completed"]


def rate_inline(run_ids: Sequence[int], log: Callable[[str], None] = print) -> dict[int, str]:
    """Rate the runs one after another in this process (the CLI without --background)."""
    from judgeeye.evaluate.runner import execute_rater_run

    out = {}
    for run_id in run_ids:
        log(f"rating run {run_id}")
        out[run_id] = execute_rater_run(run_id)
    return out


def launch_incomplete(run_ids: Sequence[int], *, actor: Actor) -> list[int]:
    """Start a background evaluation job for each run still incomplete; returns the job ids.
    Only the comparison's own runs are rated here, so ``edit_codebook`` suffices (see above)."""
    from judgeeye.evaluate.launch import requeue_rater_run

    require(actor, "edit_codebook")
    return [requeue_rater_run(run_id) for run_id in run_ids]


@dataclass
class VersionComparison:
    plan: ComparisonPlan
    group: GroupComparison

    def per_rater(self) -> list[dict[str, Any]]:
        """τ, ICC(3,1), MSE of every rater under A and B (Table 2 of the paper, per rater)."""
        out = []
        for name, row in zip(self.plan.raters, self.group.per_rater):
            out.append({"rater": name, "run A": row["run A"], "run B": row["run B"],
                        **{f"{m} {s}": row[f"{m} {s}"] for m in ("tau", "icc3", "mse") for s in ("A", "B")}})
        return out

    def tests(self) -> list[dict[str, Any]]:
        """Mean over raters under A and B and the paired test across raters, per metric."""
        rows = self.group.per_rater
        out = []
        for metric, test in self.group.metric_tests.items():
            mean_a = sum(float(r[f"{metric} A"]) for r in rows) / len(rows)
            mean_b = sum(float(r[f"{metric} B"]) for r in rows) / len(rows)
            out.append({"metric": metric, "mean A": mean_a, "mean B": mean_b, "B - A": mean_b - mean_a,
                        "test": test.name, "p": test.p_value, "mark": significance_mark(test.p_value),
                        "raters": test.n})
        if self.group.icc_a is not None and self.group.icc_b is not None:
            t = self.group.icc_test
            out.append({"metric": "inter-rater icc3", "mean A": self.group.icc_a.icc3,
                        "mean B": self.group.icc_b.icc3, "B - A": self.group.icc_b.icc3 - self.group.icc_a.icc3,
                        "test": t.name if t else "", "p": t.p_value if t else float("nan"),
                        "mark": significance_mark(t.p_value) if t else "", "raters": len(rows)})
        return out


def compare_versions(session: Session, plan: ComparisonPlan, *, n_boot: int = 1000, seed: int = 0) -> VersionComparison:
    """Compare the plan's completed runs (see :func:`judgeeye.evaluate.compare_groups`)."""
    pending = incomplete_runs(session, plan)
    if pending:
        raise ValueError(f"rater run(s) {pending} have not finished rating; rate them first")
    return VersionComparison(plan, compare_groups(session, plan.runs_a, plan.runs_b, n_boot=n_boot, seed=seed))
