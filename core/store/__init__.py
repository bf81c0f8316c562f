"""The run's record: events (schema, the one writer, status transitions) and the SQLite store, an
index of the run folders rebuilt from them at will (schema and migrations, one handler per event,
queries, recovery)."""

from core.store.db import ReindexReport, Store, read_events
from core.store.events import ACTIVE, FINAL
from core.store.queries import FULL_COLUMNS, LIST_COLUMNS, LIVENESS_COLUMNS, RunList
from core.store.schema import SCHEMA_VERSION

__all__ = [
    "ACTIVE", "FINAL", "FULL_COLUMNS", "LIST_COLUMNS", "LIVENESS_COLUMNS", "SCHEMA_VERSION",
    "ReindexReport", "RunList", "Store", "read_events",
]
