"""stream-logger: log every prediction of any ML model through Kafka into a PostgreSQL datamart."""

from __future__ import annotations

from .config import Settings
from .errors import RecordError, StreamLoggerError
from .records import ScoringRecord, Table

__all__ = ["RecordError", "ScoringRecord", "Settings", "StreamLoggerError", "Table", "__version__"]

__version__ = "0.1.0"
