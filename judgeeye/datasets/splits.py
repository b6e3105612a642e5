"""Reproducible train / validation / test splits over the gold items.

The same (ids, labels, groups, ratios, seed) always gives the same split, whatever order the
items come in: ids are sorted first and the random generator is seeded. Splits are stratified by
gold label so every split sees every rating level in proportion; labels with too few items to
share out are pooled and split together (all of them, when no label is large enough: a plain
shuffle).

Items that share a source (a SummEval article, a HANNA prompt, an MT-Bench question) are split
by group: the whole group goes to one split, else a rater tuned on one summary of an article is
tested on another summary of the same article. Groups are dealt with scikit-learn's
StratifiedGroupKFold over as many folds as the ratios need (10 for 0.7/0.1/0.2), and whole folds
then make up each split; this keeps the label strata as far as the grouping allows.
"""

from __future__ import annotations

import math
import warnings
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence

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
    ids: Sequence[str],
    labels: Sequence[float] | None = None,
    rule: SplitRule | None = None,
    groups: Sequence[str] | None = None,
) -> dict[str, str]:
    """external id -> split name, for the given gold items (ids must be unique).

    With ``groups`` (one per id), items of one group always share a split.
    """
    rule = rule or SplitRule()
    labels = list(labels) if labels is not None else [0.0] * len(ids)
    if len(labels) != len(ids):
        raise ValueError("ids and labels must have the same length")
    if groups is not None and len(groups) != len(ids):
        raise ValueError("ids and groups must have the same length")
    keys = list(map(str, groups)) if groups is not None else [""] * len(ids)
    triples = sorted(zip(map(str, ids), labels, keys), key=lambda p: p[0])
    for a, b in zip(triples, triples[1:]):
        if a[0] == b[0]:
            raise ValueError(f"duplicate id '{a[0]}'")
    names = list(rule.ratios)
    ratios = np.array([rule.ratios[n] for n in names], dtype=float)
    if groups is not None:
        return _assign_by_group(triples, names, ratios, rule)
    pairs = [(i, label) for i, label, _ in triples]
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


#: Most folds the group split uses: ratios are honoured to 1/20 of the groups.
MAX_FOLDS = 20


def _fold_count(ratios: np.ndarray, n_groups: int) -> int:
    """The fewest folds whose whole numbers give every ratio exactly (else :data:`MAX_FOLDS`),
    and never more folds than groups."""
    for k in range(2, MAX_FOLDS + 1):
        if np.allclose(ratios * k, np.round(ratios * k), atol=1e-6):
            break
    return max(1, min(k, n_groups))


def _folds_per_split(names: list[str], ratios: np.ndarray, k: int) -> list[str]:
    """The split of each of ``k`` folds: ratio * k folds each, remainders to the largest
    fractions (so 3 groups at 0.7/0.1/0.2 make 2 train folds and 1 test fold)."""
    exact = ratios * k
    whole = np.floor(exact + 1e-9).astype(int)
    for i in np.argsort(-(exact - whole), kind="stable")[: k - int(whole.sum())]:
        whole[i] += 1
    return [name for name, n in zip(names, whole) for _ in range(n)]


def _assign_by_group(
    triples: list[tuple[str, float, str]], names: list[str], ratios: np.ndarray, rule: SplitRule
) -> dict[str, str]:
    """Whole groups to splits (``triples``: (id, label, group), sorted by id)."""
    ids = [i for i, _, _ in triples]
    group_codes = np.unique([g for _, _, g in triples], return_inverse=True)[1].ravel()
    n_groups = int(group_codes.max()) + 1 if ids else 0
    k = _fold_count(ratios, n_groups)
    fold_split = _folds_per_split(names, ratios, k)
    if k == 1:
        return dict.fromkeys(ids, fold_split[0])
    classes = np.zeros(len(ids), dtype=int)
    if rule.stratify:
        pos = {ext: n for n, ext in enumerate(ids)}
        for code, members in enumerate(_strata([(i, lab) for i, lab, _ in triples], rule)):
            classes[[pos[m] for m in members]] = code
        if np.bincount(classes).max() < k:  # no label has an item for every fold
            classes[:] = 0
    from sklearn.model_selection import StratifiedGroupKFold  # here: sklearn costs every CLI call ~0.8 s

    folds = StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=rule.seed)
    result: dict[str, str] = {}
    with warnings.catch_warnings():  # small labels are expected; they are shared out as they can
        warnings.filterwarnings("ignore", "The least populated class", UserWarning)
        for fold, (_, members) in enumerate(folds.split(np.zeros(len(ids)), classes, group_codes)):
            for m in members:
                result[ids[m]] = fold_split[fold]
    return result


def groups_across_splits(
    splits: Mapping[str, str], groups: Mapping[str, str]
) -> dict[str, set[str]]:
    """The groups whose items sit in more than one split: group -> the splits it is in."""
    seen: dict[str, set[str]] = defaultdict(set)
    for ext, split in splits.items():
        seen[groups.get(ext, ext)].add(split)
    return {g: s for g, s in seen.items() if len(s) > 1}


def split_counts(splits: Iterable[str | None]) -> dict[str, int]:
    counts: dict[str, int] = defaultdict(int)
    for s in splits:
        if s is not None:
            counts[s] += 1
    return dict(counts)
