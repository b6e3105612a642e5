"""Trace inference by rejection sampling (paper section 3.1): runs, execution, statistics."""

from judgeeye.sampling.runs import SamplingSettings, create_run, run_items, run_settings, targets_of
from judgeeye.sampling.stats import LevelStats, RunStats, default_trace, run_stats

__all__ = [
    "LevelStats", "RunStats", "SamplingSettings", "create_run", "default_trace", "run_items",
    "run_settings", "run_stats", "targets_of",
]
