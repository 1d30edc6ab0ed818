"""Recipient and suppression lists: fast normalization, streaming filter, import and export."""

from .filter import BlockedIndex, FilterStats, SendCheck, filter_list
from .normalize import normalize_fast
from .reader import Chunk, ListReader
from .transfer import ImportReport, export_events, export_state, import_optouts

__all__ = [
    "BlockedIndex",
    "Chunk",
    "FilterStats",
    "ImportReport",
    "ListReader",
    "SendCheck",
    "export_events",
    "export_state",
    "filter_list",
    "import_optouts",
    "normalize_fast",
]
