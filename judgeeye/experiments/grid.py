"""An experiment's grid: its stages in the order they run, its raters, and the comparisons the
report makes. Pure functions of the settings: the page shows the same grid the job runs."""

from __future__ import annotations

from dataclasses import dataclass

from judgeeye.experiments.settings import MODE_TITLES, ExperimentSettings


@dataclass(frozen=True)
class RaterDef:
    """One rater of the grid: which model rates (the base, a fine-tuned adapter, a black-box
    server), with which codebook, read out how."""

    key: str  # "base", "sft", "labels_only", "tract", "bb1:original", "bb1:refined"
    title: str
    #: "base", "train:<mode>" (the adapter of that training stage), "blackbox:<index>"
    source: str
    codebook: str  # "original" | "refined"
    readout: str

    @property
    def stage(self) -> str:
        return f"rate:{self.key}"


@dataclass(frozen=True)
class StageDef:
    """One stage: a run of the library (sampling run, refinement, training run, rater run)."""

    key: str
    kind: str  # sample | refine | train | rate
    title: str
    needs: tuple[str, ...] = ()
    rater: RaterDef | None = None
    mode: str | None = None  # training stages


@dataclass(frozen=True)
class ComparisonDef:
    """Is ``candidate`` better than ``baseline``? (paired tests on the same items)"""

    baseline: str  # rater keys
    candidate: str


def readout_of(settings: ExperimentSettings, mode: str | None) -> str:
    """The read-out a local rater is rated (and, fine-tuned, validated) with: TRACT's own
    CoT-RAIL expected score, else the protocol's."""
    return "expected" if mode == "tract" else settings.protocol.readout


def raters(settings: ExperimentSettings) -> list[RaterDef]:
    out = [RaterDef("base", f"Base model ({settings.base_model})", "base", "original", readout_of(settings, None))]
    for mode in settings.modes:
        out.append(RaterDef(mode, MODE_TITLES[mode], f"train:{mode}", "original", readout_of(settings, mode)))
    for index, engine in enumerate(settings.blackbox, start=1):
        name = engine.model
        out.append(RaterDef(f"bb{index}:original", f"{name} · original codebook", f"blackbox:{index}", "original", "parsed"))
        out.append(RaterDef(f"bb{index}:refined", f"{name} · refined codebook", f"blackbox:{index}", "refined", "parsed"))
    return out


def stages(settings: ExperimentSettings) -> list[StageDef]:
    """Every stage in running order: sampling, training, refinement, then one rater run each."""
    out = [StageDef("sample", "sample", "Infer traces (rejection sampling)")]
    for mode in settings.modes:
        out.append(StageDef(f"train:{mode}", "train", f"Train: {MODE_TITLES[mode]}", ("sample",), mode=mode))
    if settings.refines():
        out.append(StageDef("refine", "refine", "Refine the codebook from the traces", ("sample",)))
    for rater in raters(settings):
        needs: tuple[str, ...] = ()
        if rater.source.startswith("train:"):
            needs = (rater.source,)
        elif rater.codebook == "refined" and settings.refines():
            needs = ("refine",)
        out.append(StageDef(rater.stage, "rate", f"Rate: {rater.title}", needs, rater=rater))
    return out


def comparisons(settings: ExperimentSettings) -> list[ComparisonDef]:
    """Every rater against the base model; each black-box rater's refined codebook against its
    original (the paper's Table 2 pairing)."""
    out = [ComparisonDef("base", r.key) for r in raters(settings) if r.key != "base"]
    for index in range(1, len(settings.blackbox) + 1):
        out.append(ComparisonDef(f"bb{index}:original", f"bb{index}:refined"))
    return out


def stage_by_key(settings: ExperimentSettings) -> dict[str, StageDef]:
    return {s.key: s for s in stages(settings)}


__all__ = ["ComparisonDef", "RaterDef", "StageDef", "comparisons", "raters", "readout_of", "stage_by_key", "stages"]
