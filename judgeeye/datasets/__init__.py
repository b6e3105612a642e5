"""Importing label-only human rating datasets: read, validate, gold-label, split, store.

Typical use::

    from judgeeye.datasets import load_builtin, import_dataset
    ds = load_builtin("hanna", "hanna_reconstructed_per_annotator.csv", "complexity")
    with session_scope() as s:
        report = import_dataset(s, ds, project_name="HANNA complexity")
"""

from judgeeye.datasets.errors import DatasetError, DatasetValidationError
from judgeeye.datasets.gold import (
    GoldOutcome,
    GoldResult,
    GoldRule,
    GoldStats,
    apply_gold,
    compute_gold,
)
from judgeeye.datasets.importer import ImportReport, import_dataset, preview
from judgeeye.datasets.loaders import LOADERS, Loader, load_builtin
from judgeeye.datasets.model import ColumnMapping, ParsedDataset, ParsedItem
from judgeeye.datasets.readers import read_table
from judgeeye.datasets.sources import read_source
from judgeeye.datasets.splits import SplitRule, assign_splits, groups_across_splits

__all__ = [
    "LOADERS",
    "ColumnMapping",
    "DatasetError",
    "DatasetValidationError",
    "GoldOutcome",
    "GoldResult",
    "GoldRule",
    "GoldStats",
    "ImportReport",
    "Loader",
    "ParsedDataset",
    "ParsedItem",
    "SplitRule",
    "apply_gold",
    "assign_splits",
    "compute_gold",
    "groups_across_splits",
    "import_dataset",
    "load_builtin",
    "preview",
    "read_source",
    "read_table",
]
