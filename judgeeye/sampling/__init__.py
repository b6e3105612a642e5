"""Trace inference by rejection sampling (paper section 3.1): runs, execution, statistics."""

from judgeeye.sampling.runs import (
    ACCEPTANCE_LABELS, PRESETS, SamplingSettings, create_run, default_preset, preset_settings, run_items,
    run_settings, targets_of,
)
from judgeeye.sampling.stats import LevelStats, ModeStats, RunStats, default_trace, run_stats

__all__ = [
    "ACCEPTANCE_LABELS", "PRESETS", "LevelStats", "ModeStats", "RunStats", "SamplingSettings", "create_run",
    "default_preset", "default_trace", "preset_settings", "run_items", "run_settings", "run_stats", "targets_of",
]
