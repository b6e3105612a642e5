"""Experiments: the paper's protocol on a project as one stored, resumable job, and its report.

* :mod:`~judgeeye.experiments.settings`: what an experiment runs, presets "paper" and "quick";
* :mod:`~judgeeye.experiments.grid`: its stages, raters and comparisons;
* :mod:`~judgeeye.experiments.stages`: the one place a stage meets the library (build, reuse, run);
* :mod:`~judgeeye.experiments.plan`: what a launch will do, reuse and cost, before it starts;
* :mod:`~judgeeye.experiments.launch`, :mod:`~judgeeye.experiments.runner`: the job;
* :mod:`~judgeeye.experiments.report`: the report (table, tests, verdicts, costs, inputs; HTML).
"""

from judgeeye.experiments.settings import (
    PRESET_HELP,
    PRESETS,
    ExperimentSettings,
    Protocol,
    cli_command,
)

__all__ = ["PRESETS", "PRESET_HELP", "ExperimentSettings", "Protocol", "cli_command"]
