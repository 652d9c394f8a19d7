"""The scoring record v1: the Kafka message a model service publishes for every scoring call.

Decode bytes into a validated :class:`ScoringRecord` (or raise :class:`~stream_logger.errors.RecordError`),
and encode one with orjson. No I/O here. The contract is ``schemas/scoring_record.v1.json``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final

__all__ = [
    "DEFAULT_DEPLOYMENT_ID",
    "ERROR_CODES",
    "MAX_FIELDS",
    "MAX_NAME_CHARS",
    "MAX_ROWS",
    "ScoringRecord",
    "Table",
]

DEFAULT_DEPLOYMENT_ID: Final = "generic_deployment"
MAX_FIELDS: Final = 1000
"""At most this many fields in ``request``, ``request.meta`` and ``response`` together (PostgreSQL allows 1600
columns a table)."""
MAX_ROWS: Final = 10_000
"""At most this many scored rows in one record."""
MAX_NAME_CHARS: Final = 256
"""Longest field name, subscription id or deployment id accepted."""

ERROR_CODES: Final = frozenset(
    {
        "empty_message",  # a tombstone (null value) or zero-length value
        "too_large",  # the value exceeds the configured maximum record size
        "malformed_json",  # not UTF-8 JSON, or not an object
        "unsupported_version",  # schema_version is not 1
        "invalid_record",  # valid JSON that breaks the v1 contract (missing field, wrong type, ...)
        "unknown_subscription",  # auto-registration is off and the subscription is not declared
        "type_conflict",  # a value does not fit its column's declared type
        "unstorable_value",  # PostgreSQL refused a value (NUL character, number out of range, ...)
    }
)
"""The dead-letter reasons: the ``error_code`` column of the dead-letter table takes one of these."""


@dataclass(slots=True)
class Table:
    """A ``{"fields": [...], "values": [[...], ...]}`` block: every row as long as ``fields``."""

    fields: list[str]
    values: list[list[Any]]


@dataclass(slots=True)
class ScoringRecord:
    """One scoring call: the request the model saw, and its response (absent for a failed call)."""

    scoring_id: str
    scoring_timestamp: datetime  # always timezone-aware
    subscription_id: str
    request: Table
    response: Table | None = None
    request_meta: Table | None = None
    deployment_id: str = DEFAULT_DEPLOYMENT_ID
    asset_revision: str | None = None
    response_time_ms: float | None = None
    status_code: int | None = None
    error: str | None = None
    sampling_rate: float = 1.0
    user_id: str | None = None
    request_id: str | None = None
    trace_id: str | None = None
    tags: dict[str, str] = field(default_factory=dict)
    schema_version: int = 1

    @property
    def row_count(self) -> int:
        """How many rows this call scored (one datamart row each)."""
        return len(self.request.values)

    @property
    def failed(self) -> bool:
        """Whether the record logs a failed call (``status_code`` >= 400 or ``error`` set)."""
        return self.error is not None or (self.status_code is not None and self.status_code >= 400)
