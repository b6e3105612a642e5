"""Reproducible train / validation / test splits over the gold items.

The same (ids, labels, ratios, seed) always gives the same split, whatever order the items
come in: ids are sorted first and the random generator is seeded. Splits are stratified by gold
label so every split sees every rating level in proportion; labels with too few items to share
out are pooled and split together (all of them, when no label is large enough: a plain shuffle).
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Sequence

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

DEFAULT_RATIOS = {"train": 0.7, "validation": 0.1, "test": 0.2}


class SplitRule(BaseModel):
    """Split names and ratios (summing to 1), seed, and whether to stratify by gold label.

    ``min_class_size``: a label is its own stratum only with at least this many items; the
    default is the smallest count that lets every split with a positive ratio get one item
    (10 for a 0.1 split).
    """

    model_config = ConfigDict(extra="forbid")

    ratios: dict[str, float] = Field(default_factory=lambda: dict(DEFAULT_RATIOS))
    seed: int = 42
    stratify: bool = True
    min_class_size: int | None = Field(None, ge=1)

    @field_validator("ratios", mode="before")
    @classmethod
    def _from_sequence(cls, value: object) -> object:
        if isinstance(value, (list, tuple)):
            if len(value) != 3:
                raise ValueError("give ratios as {name: ratio} or (train, validation, test)")
            return dict(zip(DEFAULT_RATIOS, value))
        return value

    @model_validator(mode="after")
    def _check(self) -> SplitRule:
        if not self.ratios or any(r < 0 for r in self.ratios.values()):
            raise ValueError("split ratios must be non-negative")
        if not math.isclose(sum(self.ratios.values()), 1.0, abs_tol=1e-6):
            raise ValueError(f"split ratios must sum to 1, not {sum(self.ratios.values()):g}")
        return self

    def class_size_needed(self) -> int:
        if self.min_class_size is not None:
            return self.min_class_size
        smallest = min(r for r in self.ratios.values() if r > 0)
        return max(1, math.ceil(1 / smallest - 1e-9))


def _deal(
    n_before: int, n: int, names: list[str], ratios: np.ndarray, taken: np.ndarray
) -> list[str]:
    """Assign the next ``n`` positions to splits so running totals track the ratios.

    At each position the split furthest below its target count gets it (ties: first split), so
    the whole dataset's counts are within one of exact and each stratum's nearly proportional.
    """
    out = []
    for p in range(n_before, n_before + n):
        deficit = (p + 1) * ratios - taken
        k = int(np.argmax(deficit))
        taken[k] += 1
        out.append(names[k])
    return out


def assign_splits(
    ids: Sequence[str], labels: Sequence[float] | None = None, rule: SplitRule | None = None
) -> dict[str, str]:
    """external id -> split name, for the given gold items (ids must be unique)."""
    rule = rule or SplitRule()
    labels = list(labels) if labels is not None else [0.0] * len(ids)
    if len(labels) != len(ids):
        raise ValueError("ids and labels must have the same length")
    pairs = sorted(zip(map(str, ids), labels), key=lambda p: p[0])
    for a, b in zip(pairs, pairs[1:]):
        if a[0] == b[0]:
            raise ValueError(f"duplicate id '{a[0]}'")
    names = list(rule.ratios)
    ratios = np.array([rule.ratios[n] for n in names], dtype=float)
    strata = _strata(pairs, rule)
    rng = np.random.default_rng(rule.seed)
    taken = np.zeros(len(names))
    result: dict[str, str] = {}
    done = 0
    for members in strata:
        order = rng.permutation(len(members))
        for pos, split in zip(order, _deal(done, len(members), names, ratios, taken)):
            result[members[pos]] = split
        done += len(members)
    return result


def _strata(pairs: list[tuple[str, float]], rule: SplitRule) -> list[list[str]]:
    """Ids grouped by label (sorted labels; ids sorted), small labels pooled at the end."""
    if not rule.stratify:
        return [[i for i, _ in pairs]] if pairs else []
    by_label: dict[float, list[str]] = defaultdict(list)
    for ext, label in pairs:
        by_label[label].append(ext)
    need = rule.class_size_needed()
    strata = [by_label[k] for k in sorted(by_label) if len(by_label[k]) >= need]
    pooled = sorted(i for k in by_label if len(by_label[k]) < need for i in by_label[k])
    if pooled:
        strata.append(pooled)
    return strata


def split_counts(splits: Iterable[str | None]) -> dict[str, int]:
    counts: dict[str, int] = defaultdict(int)
    for s in splits:
        if s is not None:
            counts[s] += 1
    return dict(counts)
