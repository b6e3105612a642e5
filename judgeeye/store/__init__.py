"""The store: every JudgeEye record, in a per-user SQLite file by default or any SQLAlchemy database."""

from judgeeye.store.db import (
    StoreNotFound,
    data_dir,
    database_url,
    dispose_engines,
    get_engine,
    read_scope,
    redact_url,
    session_scope,
    store_exists,
    store_location,
    upgrade_schema,
)
from judgeeye.store.retry import StoreBusyError, insert_or_ignore, is_transient, write_with_retry
from judgeeye.store.models import (
    Adjudication,
    Annotator,
    Base,
    Candidate,
    Codebook,
    Critique,
    CritiqueMap,
    Item,
    Job,
    Prediction,
    Project,
    RaterRun,
    ReviewAssignment,
    ReviewRound,
    ReviewTask,
    SamplingRun,
    Selection,
    SelectionEvent,
    StatsCache,
    TrainingMetric,
    TrainingRun,
)

__all__ = [
    "Adjudication", "ReviewAssignment", "ReviewRound", "ReviewTask",
    "Annotator", "Base", "Candidate", "Codebook", "Critique", "CritiqueMap", "Item", "Job", "Prediction",
    "Project", "RaterRun", "SamplingRun", "Selection", "SelectionEvent", "StatsCache", "TrainingMetric",
    "TrainingRun", "data_dir", "database_url", "dispose_engines", "get_engine", "read_scope", "redact_url",
    "session_scope", "upgrade_schema", "StoreNotFound", "store_exists", "store_location",
    "StoreBusyError", "insert_or_ignore", "is_transient", "write_with_retry",
]
