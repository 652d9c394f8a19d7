"""stream-logger: log every prediction of any ML model through Kafka into a PostgreSQL datamart."""

from __future__ import annotations

from .config import Settings
from .contract import ScoringRecord, Table
from .emitter import Emitter, EmitterStats
from .errors import RecordError, StreamLoggerError
from .openscale import PayloadRecord
from .threaded import ThreadedEmitter

__all__ = [
    "Emitter",
    "EmitterStats",
    "PayloadRecord",
    "RecordError",
    "ScoringRecord",
    "Settings",
    "StreamLoggerError",
    "Table",
    "ThreadedEmitter",
    "__version__",
]

__version__ = "0.1.0"
