"""The paper's gold standard: keep items the raters roughly agree on, label them by the median.

Zhang et al. (Appendix B) drop an item when the standard deviation of its raters' ratings
exceeds 1.0 and use the median of the ratings as the gold label. The paper does not say which
standard deviation; we reproduce its HANNA count to find out. On the shared HANNA file
(1,056 stories x 6 criteria x 3 raters = 19,008 annotations), the paper reports "10245
annotations exhibit a standard deviation lower than 1.0 across raters":

===========  ==================  ==========================  =================
ddof         (story, criterion)  annotations (pairs x 3)     std <= 1.0 pairs
             pairs std < 1.0     with std < 1.0 / <= 1.0
===========  ==================  ==========================  =================
0 (pop.)     4,514               13,542 / 13,542             4,514
1 (sample)   2,312               6,936 / **10,245**          3,415
===========  ==================  ==========================  =================

Only the sample standard deviation (ddof=1), keeping std <= 1.0 (dropping std > 1.0, as the
paper's rule says) and counting annotations (3 per pair), gives 10,245 exactly: 3,415 pairs
kept, 2,921 dropped. So ``ddof=1`` is the default; "lower than" in the appendix is loose
wording for "not above". With 3 integer ratings, ddof=1 keeps items whose ratings span at most
one point, or are three consecutive points (2,3,4 has std exactly 1.0 and is kept; 1,3,3 has
1.15 and is dropped).

The median of an even number of ratings can fall between two scale points (e.g. 3.5); it is
kept as a float rather than rounded, so no direction of rounding is imposed; consumers that
need a scale point decide how to treat x.5.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from judgeeye.datasets.model import ParsedDataset

GoldStatus = Literal["gold", "dropped_disagreement", "no_rating"]

#: Each status in words, for pages and tables.
STATUS_TEXT: dict[str, str] = {
    "gold": "gold",
    "dropped_disagreement": "dropped: raters disagree",
    "no_rating": "no rating",
}

#: Float slack so that e.g. a computed std of 1.0000000000000002 counts as 1.0.
_EPS = 1e-9


class GoldRule(BaseModel):
    """How gold labels are derived; stored with the project."""

    model_config = ConfigDict(extra="forbid")

    method: Literal["median"] = "median"
    #: drop an item when the raters' std is above this
    max_std: float = Field(1.0, ge=0)
    #: 1 = sample std (reproduces the paper's HANNA count, see module docstring)
    ddof: int = Field(1, ge=0)


@dataclass(frozen=True, slots=True)
class GoldResult:
    """One item's gold label (None unless status is 'gold') and its raters' std."""

    gold: float | None
    std: float | None
    status: GoldStatus
    n_ratings: int


@dataclass
class GoldStats:
    """Counts for a whole dataset; ``histogram`` maps gold label -> number of items."""

    n_items: int
    n_gold: int
    n_dropped: int
    n_no_rating: int
    histogram: dict[float, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly (labels as text keys: '3', '3.5')."""
        from judgeeye.datasets.values import fmt_number

        return {
            "n_items": self.n_items,
            "n_gold": self.n_gold,
            "n_dropped": self.n_dropped,
            "n_no_rating": self.n_no_rating,
            "histogram": {fmt_number(k): v for k, v in self.histogram.items()},
        }


@dataclass
class GoldOutcome:
    """Per-item results (aligned with ``dataset.items``) and the summary."""

    results: list[GoldResult]
    stats: GoldStats


def rating_std(values: Sequence[float], ddof: int = 1) -> float | None:
    """Standard deviation with ``ddof``; None where undefined (n <= ddof)."""
    n = len(values)
    if n <= ddof or n == 0:
        return None
    mean = math.fsum(values) / n
    return math.sqrt(math.fsum((v - mean) ** 2 for v in values) / (n - ddof))


def median(values: Sequence[float]) -> float:
    s = sorted(values)
    n = len(s)
    mid = n // 2
    return float(s[mid]) if n % 2 else (s[mid - 1] + s[mid]) / 2.0


def compute_gold(
    ratings: Mapping[str, float] | Iterable[float], rule: GoldRule | None = None
) -> GoldResult:
    """Gold label of one item from its ratings (a single aggregated label is used directly)."""
    rule = rule or GoldRule()
    values = [float(v) for v in (ratings.values() if isinstance(ratings, Mapping) else ratings)]
    if not values:
        return GoldResult(None, None, "no_rating", 0)
    std = rating_std(values, rule.ddof)
    if std is not None and std > rule.max_std + _EPS:
        return GoldResult(None, std, "dropped_disagreement", len(values))
    return GoldResult(median(values), std, "gold", len(values))


def apply_gold(dataset: ParsedDataset, rule: GoldRule | None = None) -> GoldOutcome:
    """Gold labels for every item of ``dataset`` plus counts and the label histogram."""
    rule = rule or GoldRule()
    results = [compute_gold(item.ratings, rule) for item in dataset.items]
    return GoldOutcome(results, summarize(results))


def summarize(results: Sequence[GoldResult]) -> GoldStats:
    counts = Counter(r.status for r in results)
    hist = Counter(r.gold for r in results if r.status == "gold" and r.gold is not None)
    return GoldStats(
        n_items=len(results),
        n_gold=counts["gold"],
        n_dropped=counts["dropped_disagreement"],
        n_no_rating=counts["no_rating"],
        histogram=dict(sorted(hist.items())),
    )
