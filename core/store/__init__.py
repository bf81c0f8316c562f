"""The SQLite run store: an index of the run folders, rebuilt from them at will."""

from core.store.db import (
    FULL_COLUMNS,
    LIST_COLUMNS,
    LIVENESS_COLUMNS,
    ReindexReport,
    RunList,
    Store,
    read_events,
)
from core.store.events import ACTIVE, FINAL
from core.store.schema import SCHEMA_VERSION

__all__ = [
    "ACTIVE", "FINAL", "FULL_COLUMNS", "LIST_COLUMNS", "LIVENESS_COLUMNS", "SCHEMA_VERSION",
    "ReindexReport", "RunList", "Store", "read_events",
]
