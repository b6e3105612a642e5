"""Select-and-validate (paper section 5): rounds, leased queues, review actions with an event log,
agreement on choices, adjudication, and the reasoning dataset export."""

from judgeeye.review.actions import choose, my_selection, none_fits, save_edit, skip, undo
from judgeeye.review.adjudication import Choice, Disagreement, adjudicate, disagreements, latest_adjudications
from judgeeye.review.errors import ReviewError
from judgeeye.review.export import (
    DEFAULT_FORMATS,
    FORMATS,
    PROVENANCES,
    ExportSummary,
    default_export_dir,
    export_reasoning,
    parse_formats,
    reason_rows,
    spreadsheet_safe,
)
from judgeeye.review.queue import following_item, history, next_item, previous_item
from judgeeye.review.rounds import (
    MAX_SHOWN,
    ReviewableRun,
    RoundProgress,
    display_order,
    get_round,
    list_rounds,
    open_round,
    reviewable_runs,
    round_progress,
    rounds_for,
    set_round_status,
    shown_candidates,
)
from judgeeye.review.stats import MyProgress, annotator_progress, choice_agreement, my_progress
from judgeeye.review.view import ItemView, TraceView, item_view

__all__ = [
    "DEFAULT_FORMATS", "FORMATS", "MAX_SHOWN", "PROVENANCES", "Choice", "Disagreement", "ExportSummary",
    "ItemView", "MyProgress", "ReviewError", "TraceView", "item_view", "ReviewableRun", "RoundProgress", "adjudicate",
    "default_export_dir", "reviewable_runs", "annotator_progress", "choice_agreement",
    "choose", "disagreements", "display_order", "export_reasoning", "following_item", "get_round",
    "history", "latest_adjudications", "list_rounds", "my_progress", "my_selection", "next_item",
    "none_fits", "open_round", "parse_formats", "previous_item", "reason_rows", "round_progress",
    "rounds_for", "save_edit", "set_round_status", "shown_candidates", "skip", "spreadsheet_safe", "undo",
]
