"""Credit holds, the settlement writer and its journal, and usage reports (pricing is `runapi.money`)."""

from runapi.accounting.credit import CreditGuard, Hold
from runapi.accounting.credit_redis import create_credit_guard
from runapi.accounting.journal import SettlementJournal, journal_directory
from runapi.accounting.reports import revenue_report, usage_by_mode, usage_csv, usage_line, usage_total
from runapi.accounting.settlement import Closing, SettlementWriter

__all__ = [
    "Closing",
    "CreditGuard",
    "Hold",
    "SettlementJournal",
    "SettlementWriter",
    "create_credit_guard",
    "journal_directory",
    "revenue_report",
    "usage_by_mode",
    "usage_csv",
    "usage_line",
    "usage_total",
]
