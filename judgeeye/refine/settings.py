"""What a refinement run does, stored with its job (and with the version it writes)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from judgeeye.engines import AnyEngineConfig, EngineConfig
from judgeeye.refine.embed import BUILTIN, DEFAULT_EMBEDDER
from judgeeye.refine.project2d import METHODS
from judgeeye.refine.traces import check_splits

Mode = Literal["instruction", "rubric", "both"]
MODES: tuple[str, ...] = ("instruction", "rubric", "both")
MODE_LABELS: dict[str, str] = {"instruction": "instructions", "rubric": "rubric", "both": "both"}
_ADVANCED: dict[str, Any] = {"advanced": True}
ORIGINS: dict[str, str] = {"instruction": "refined_instructions", "rubric": "refined_rubric",
                           "both": "refined_both"}


class RefineSettings(BaseModel):
    """Refinement of one codebook version (paper section 3.2; defaults are the paper's 10/50)."""

    model_config = ConfigDict(extra="forbid")

    mode: Mode = Field("both", title="What to refine", json_schema_extra={"labels": MODE_LABELS},
                       description="instruction, rubric, or both (instructions first, then the rubric).")
    engine: AnyEngineConfig = Field(default_factory=EngineConfig, title="Engine",
                                    description="The model that writes the critiques and the refined codebook.")
    codebook_version: int | None = Field(None, title="Codebook version to refine", json_schema_extra={"none": "current"},
                                         description="The version to refine.")
    n_inst: int = Field(10, ge=1, title="Traces per level (instructions)",
                        description="Traces per rating level for instruction refinement.")
    n_rubric: int = Field(50, ge=1, title="Traces per level (rubric)",
                          description="Traces per rating level for rubric refinement (critiques are extracted from "
                                      "each).")
    clusters: int | None = Field(None, ge=1, title="Clusters per level", json_schema_extra={"none": "by silhouette"},
                                 description="Clusters per rating level (unset: k chosen by silhouette over "
                                             "2..k_max).")
    k_max: int = Field(8, ge=2, title="Most clusters per level", json_schema_extra=_ADVANCED,
                       description="Most clusters per level the silhouette search tries.")
    per_cluster: int = Field(1, ge=1, title="Representatives per cluster", json_schema_extra=_ADVANCED,
                             description="Critiques nearest each centroid shown to the rubric prompt.")
    embedder: str = Field(DEFAULT_EMBEDDER, title="Critique embeddings",
                          json_schema_extra={"suggestions": list(BUILTIN), "labels": BUILTIN},
                          description="The bundled all-MiniLM-L6-v2 as embedded-onnx (int8), embedded-static "
                                      "(model2vec: fastest, clusters differ more) or embedded (PyTorch), or a "
                                      "sentence-transformers model id or folder.")
    projection: str = Field("auto", title="Critique map", json_schema_extra={"suggestions": list(METHODS), **_ADVANCED},
                            description="How the critique map is drawn: auto (UMAP if installed, else t-SNE; both "
                                        "after PCA to 50 dimensions), umap, tsne, pca.")
    splits: list[str] = Field(default_factory=lambda: ["train"], title="Splits",
                              json_schema_extra={"options": ["train", "validation"], **_ADVANCED},
                              description="Splits whose traces are read; the test split is never allowed.")
    runs: list[int] | None = Field(None, title="Sampling runs", json_schema_extra={"none": "every run"},
                                   description="Sampling runs whose settled traces are read (unset: every run of "
                                               "the project); they are recorded with the refined version.")
    temperature: float = Field(0.7, ge=0, title="Temperature", json_schema_extra={"step": 0.1, **_ADVANCED},
                               description="Sampling temperature of the refining model.")
    top_p: float = Field(0.95, gt=0, le=1, title="Top-p", json_schema_extra={"step": 0.05, **_ADVANCED},
                         description="Top-p of the refining model.")
    max_tokens: int = Field(2048, ge=16, title="Max tokens (codebook)", json_schema_extra={"step": 16},
                            description="Tokens for the instruction and rubric answers (a whole codebook).")
    critique_max_tokens: int = Field(512, ge=8, title="Max tokens (critiques)", json_schema_extra={"step": 8},
                                     description="Tokens for one trace's critiques.")
    attempts: int = Field(3, ge=1, title="Attempts per step",
                          description="Answers tried before a step is reported as failed.")
    prefill: bool = Field(True, title="Prefill local models' answers", json_schema_extra=_ADVANCED,
                          description="Start local models' answers inside the expected format (<codebook>); "
                                      "ignored by API engines.")
    trace_chars: int | None = Field(None, ge=100, title="Cut traces at N characters",
                                    json_schema_extra={"none": "whole traces"},
                                    description="Cut each trace to this many characters in prompts.")
    seed: int = Field(0, title="Seed", json_schema_extra=_ADVANCED, description="Seed of the refining model's "
                                                                                 "sampling and of the clustering.")
    make_current: bool = Field(False, title="Make the result current",
                               description="Make the refined version the project's current codebook.")
    author: str | None = Field(None, title="Author", json_schema_extra={"none": "who starts it", **_ADVANCED},
                               description="Author recorded on the new version.")
    note: str | None = Field(None, title="Note for the new version", json_schema_extra={"none": "none"},
                             description="Note recorded on the new version.")

    @field_validator("splits")
    @classmethod
    def _splits(cls, value: list[str]) -> list[str]:
        return check_splits(value)

    @field_validator("runs")
    @classmethod
    def _runs(cls, value: list[int] | None) -> list[int] | None:
        if value is None:
            return None
        if not value:
            raise ValueError("choose at least one sampling run (or leave the runs out to read every run)")
        return sorted(set(value))

    @field_validator("projection")
    @classmethod
    def _projection(cls, value: str) -> str:
        if value not in METHODS:
            raise ValueError(f"unknown projection {value!r}; choose from {', '.join(METHODS)}")
        return value

    @property
    def origin(self) -> str:
        return ORIGINS[self.mode]
