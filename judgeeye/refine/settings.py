"""What a refinement run does, stored with its job (and with the version it writes)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from judgeeye.engines import AnyEngineConfig, EngineConfig
from judgeeye.refine.embed import DEFAULT_EMBEDDER
from judgeeye.refine.project2d import METHODS
from judgeeye.refine.traces import check_splits

Mode = Literal["instruction", "rubric", "both"]
MODES: tuple[str, ...] = ("instruction", "rubric", "both")
ORIGINS: dict[str, str] = {"instruction": "refined_instructions", "rubric": "refined_rubric",
                           "both": "refined_both"}


class RefineSettings(BaseModel):
    """Refinement of one codebook version (paper section 3.2; defaults are the paper's 10/50)."""

    model_config = ConfigDict(extra="forbid")

    mode: Mode = "both"
    engine: AnyEngineConfig = Field(default_factory=EngineConfig)
    #: the version to refine (default: the project's current one)
    codebook_version: int | None = None
    #: traces per rating level for instruction refinement
    n_inst: int = Field(10, ge=1)
    #: traces per rating level for rubric refinement (critiques are extracted from each)
    n_rubric: int = Field(50, ge=1)
    #: clusters per level; None chooses k by silhouette over 2..k_max
    clusters: int | None = Field(None, ge=1)
    k_max: int = Field(8, ge=2)
    #: critiques nearest each centroid shown to the rubric prompt
    per_cluster: int = Field(1, ge=1)
    #: the bundled all-MiniLM-L6-v2 as "embedded-onnx" (int8), "embedded-static" (model2vec) or
    #: "embedded" (PyTorch), or a sentence-transformers model id / directory
    embedder: str = DEFAULT_EMBEDDER
    projection: str = "auto"
    #: splits whose traces are read; the test split is never allowed
    splits: list[str] = Field(default_factory=lambda: ["train"])
    #: sampling runs whose traces are read (None: every run of the project)
    runs: list[int] | None = None
    temperature: float = Field(0.7, ge=0)
    top_p: float = Field(0.95, gt=0, le=1)
    #: tokens for the instruction and rubric answers (a whole codebook)
    max_tokens: int = Field(2048, ge=16)
    #: tokens for each critique list
    critique_max_tokens: int = Field(512, ge=8)
    #: answers tried before a step is reported as failed
    attempts: int = Field(3, ge=1)
    #: start local models' answers inside the expected format (ignored by API engines)
    prefill: bool = True
    #: cut each trace to this many characters in prompts (None: whole traces)
    trace_chars: int | None = Field(None, ge=100)
    seed: int = 0
    make_current: bool = False
    author: str | None = None
    note: str | None = None

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
