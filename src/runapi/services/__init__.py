"""The services the edges call: accounts and credit, usage and reports, quality feedback, stored responses.

The edges (http/, web/) never reach a store, an engine or SQL: they call these, and take the
values they need (records, filters) from this face.
"""

from runapi.services.accounts import AccountService
from runapi.services.feedback import FeedbackService
from runapi.services.responses import ResponseService
from runapi.services.usage import UsageService
from runapi.storage import (
    FEEDBACK_CATEGORIES,
    MAX_COMMENT_CHARS,
    MAX_REPORTS_LISTED,
    Account,
    ApiKey,
    Feedback,
    FeedbackReport,
    Generation,
    KeyLimits,
    LedgerEntry,
    StoredResponse,
    UsageFilter,
    UsageRow,
    check_feedback,
    feedback_json,
)

__all__ = [
    "FEEDBACK_CATEGORIES",
    "MAX_COMMENT_CHARS",
    "MAX_REPORTS_LISTED",
    "Account",
    "AccountService",
    "ApiKey",
    "Feedback",
    "FeedbackReport",
    "FeedbackService",
    "Generation",
    "KeyLimits",
    "LedgerEntry",
    "ResponseService",
    "StoredResponse",
    "UsageFilter",
    "UsageRow",
    "UsageService",
    "check_feedback",
    "feedback_json",
]
