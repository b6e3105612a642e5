"""Rater evaluation (paper section 3.3): rater runs over a split, agreement with the human gold
standard, significance tests, inter-rater reliability, and the data of the agreement page."""

from judgeeye.evaluate.compare import (
    Aligned,
    Comparison,
    GroupComparison,
    ItemMismatchError,
    align_runs,
    compare_groups,
    compare_runs,
    inter_rater,
    significance_mark,
)
from judgeeye.evaluate.raters import READOUTS, RaterSpec, create_rater_run, parse_rater, rater_spec
from judgeeye.evaluate.summary import RunSummary, compute_summary, summaries, summary

__all__ = [
    "READOUTS", "Aligned", "Comparison", "GroupComparison", "ItemMismatchError", "RaterSpec", "RunSummary",
    "align_runs", "compare_groups", "compare_runs", "compute_summary", "create_rater_run", "inter_rater",
    "parse_rater", "rater_spec", "significance_mark", "summaries", "summary",
]
