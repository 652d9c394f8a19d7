"""The records v1, declared once: their limits, their error codes, the records, and the calls that build them.

``schemas/scoring_record.v1.json`` is the specification. This module declares what the code shares: the limits,
the dead-letter reasons, :class:`ScoringRecord` and its :class:`Table` blocks, the :data:`Layout` of a record's field
names, and :class:`ScoringCall`, the keywords of ``Emitter.log()``. :mod:`stream_logger.records` is the reference
validator, :mod:`stream_logger.envelope` the fast path both the emitter's check and the worker's decode take, and
:mod:`stream_logger.encoding` writes a record.

The feedback record v1 (``schemas/feedback_record.v1.json``), a ground-truth label that arrives later on the same
topic, is declared here too: :class:`FeedbackRecord` and :class:`FeedbackCall`, the keywords of
``Emitter.log_feedback()``; :mod:`stream_logger.feedback` is its reference validator and writes it. No I/O here.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final, Required, TypedDict

__all__ = [
    "DEFAULT_DEPLOYMENT_ID",
    "DEFAULT_MAX_RECORD_BYTES",
    "ERROR_CODES",
    "FEEDBACK_KEYS",
    "FEEDBACK_KIND",
    "ID_FIELDS",
    "INVISIBLE_CHARACTERS",
    "MAX_CALL_ROWS",
    "MAX_FIELDS",
    "MAX_NAME_CHARS",
    "MAX_ROWS",
    "MAX_SCORING_ID_CHARS",
    "MAX_TAGS",
    "MAX_VALUE_DEPTH",
    "NULLABLE_FIELDS",
    "OPTIONAL_FIELDS",
    "RECORD_KEYS",
    "SUBSCRIPTION_ID_PATTERN",
    "TIMESTAMP_PATTERN",
    "FeedbackCall",
    "FeedbackRecord",
    "Layout",
    "ScoringCall",
    "ScoringRecord",
    "Table",
]

Layout = tuple[tuple[str, ...], tuple[str, ...] | None, tuple[str, ...] | None]
"""A record's field layout: the field names of its request, meta and response blocks (None for an absent block).
Records of one layout share a row plan and a fast decoder."""

DEFAULT_DEPLOYMENT_ID: Final = "generic_deployment"
MAX_FIELDS: Final = 1000
"""At most this many fields in ``request``, ``request.meta`` and ``response`` together (PostgreSQL allows 1600
columns a table)."""
MAX_ROWS: Final = 10_000
"""At most this many scored rows in one record."""
MAX_CALL_ROWS: Final = 1_000_000
"""At most this many rows in one scoring call: ``log()`` sends a call of more than :data:`MAX_ROWS` rows as several
records of one ``scoring_id``, each naming the index of its ``first_row``."""
MAX_NAME_CHARS: Final = 256
"""Longest field name, subscription id or deployment id accepted (also asset revision, user, request and trace
ids, and tag names)."""
MAX_TAGS: Final = 100
"""At most this many ``tags``."""
MAX_SCORING_ID_CHARS: Final = 128
"""Longest ``scoring_id``."""
MAX_VALUE_DEPTH: Final = 64
"""How deep a value in a ``values`` row may nest arrays and objects (orjson writes at most 254 levels)."""
DEFAULT_MAX_RECORD_BYTES: Final = 8 * 1024 * 1024
"""The default largest message value :func:`decode` accepts (Kafka's own default limit is 1 MiB)."""

TIMESTAMP_PATTERN: Final = (
    r"^(?!0000)(?:[0-9]{4}-(?:(?:0[13578]|1[02])-(?:0[1-9]|[12][0-9]|3[01])"
    r"|(?:0[469]|11)-(?:0[1-9]|[12][0-9]|30)|02-(?:0[1-9]|1[0-9]|2[0-8]))"
    r"|(?:[0-9]{2}(?:0[48]|[2468][048]|[13579][26])|(?:[02468][048]|[13579][26])00)-02-29)"
    r"[Tt](?:[01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](?:\.[0-9]+)?"
    r"(?:[Zz]|[+-](?:[01][0-9]|2[0-3]):[0-5][0-9])$(?!\n)"
)
"""RFC 3339 date-time with an offset, as a regular expression that means the same in ECMA 262 (JSON Schema) and
Python: real calendar dates only (leap years included), year 0001-9999, no leap second. ``$(?!\\n)`` because
Python's ``$`` also matches before a final newline."""

INVISIBLE_CHARACTERS: Final = (
    r"\u0000-\u001f\u007f-\u009f\u00ad\u034f\u061c\u115f\u1160\u17b4\u17b5\u180b-\u180f\u200b-\u200f"
    r"\u2028-\u202e\u2060-\u206f\u3164\ufe00-\ufe0f\ufeff\uffa0\ufff0-\ufffb"
)
"""The characters (as a regular-expression class body) a ``subscription_id`` may not hold in the Basic Multilingual
Plane: controls, format characters such as zero-width spaces and bidirectional overrides, and other default-ignorable
code points. The tag characters U+E0000-U+E0FFF are refused too (the schema's description says so)."""

SUBSCRIPTION_ID_PATTERN: Final = f"^[^{INVISIBLE_CHARACTERS}]*$"
"""The schema's pattern for ``subscription_id``."""

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
        "subscription_limit",  # a new subscription past the worker's limit on auto-registered ones
        "timestamp_out_of_window",  # scoring_timestamp too far before or after the worker's clock
        "internal_error",  # storing it raised an unexpected error (a bug, a refused statement): it costs only itself
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
    user_id: str | None = None
    request_id: str | None = None
    trace_id: str | None = None
    sampling_rate: float = 1.0
    tags: dict[str, str] = field(default_factory=dict)
    first_row: int = 0
    """The ``row_index`` of its first row: 0, but for the further records of a call split because it scored more
    than :data:`MAX_ROWS` rows (``log()`` does that)."""
    schema_version: int = 1

    @property
    def row_count(self) -> int:
        """How many rows this call scored (one datamart row each)."""
        return len(self.request.values)

    @property
    def layout(self) -> Layout:
        """The field names of its request, meta and response blocks (None for an absent block)."""
        meta, response = self.request_meta, self.response
        return (
            tuple(self.request.fields),
            None if meta is None else tuple(meta.fields),
            None if response is None else tuple(response.fields),
        )

    @property
    def failed(self) -> bool:
        """Whether the record logs a failed call (``status_code`` >= 400 or ``error`` set)."""
        return self.error is not None or (self.status_code is not None and self.status_code >= 400)


class ScoringCall(TypedDict, total=False):
    """The keywords of ``Emitter.log()``: one scoring call as serving code has it at hand.

    ``request``, ``response`` and ``meta`` may be a :class:`Table`, a ``{"fields", "values"}`` mapping (``values``
    may be a numpy 2-D array), a pandas DataFrame or a list of rows as dicts; ``response`` is None for a failed
    call. A missing ``scoring_id`` is generated, a missing ``scoring_timestamp`` is now (UTC). Every other key is the
    :class:`ScoringRecord` field of that name.
    """

    request: Required[Any]
    response: Required[Any]
    subscription_id: Required[str]
    deployment_id: str | None
    scoring_id: str | None
    scoring_timestamp: datetime | str | None
    response_time_ms: float | None
    asset_revision: str | None
    status_code: int | None
    error: str | None
    user_id: str | None
    request_id: str | None
    trace_id: str | None
    tags: Mapping[str, str] | None
    meta: Any
    sampling_rate: float | None


_ALWAYS_WRITTEN: Final = frozenset(
    {"schema_version", "scoring_id", "scoring_timestamp", "subscription_id", "deployment_id"}
)
_BLOCKS: Final = frozenset({"request", "request_meta", "response"})
_PLACE: Final = frozenset({"first_row"})  # where the record's rows go among its call's: not a column of its own

OPTIONAL_FIELDS: Final = tuple(
    f.name for f in dataclasses.fields(ScoringRecord) if f.name not in _ALWAYS_WRITTEN | _BLOCKS | _PLACE
)
"""The optional fields of a record besides its blocks, in declaration order: ``asset_revision`` to ``tags``. Written
only when set (and ``sampling_rate`` when not 1.0, ``tags`` when not empty); stored in the payload table's system
columns of the same names, in the same order."""

ID_FIELDS: Final = ("asset_revision", "user_id", "request_id", "trace_id")
"""The optional fields that are ids: when set, a non-empty string of at most :data:`MAX_NAME_CHARS` characters
without a NUL character (``tests/unit/test_contract.py`` checks the schema says so of these and no other)."""

NULLABLE_FIELDS: Final = tuple(
    f.name for f in dataclasses.fields(ScoringRecord) if f.name in OPTIONAL_FIELDS and f.default is None
)
"""The optional fields whose absence is None: all but ``sampling_rate`` and ``tags``, which have defaults and come
after them (``tests/unit/test_contract.py``). They are stored as they are, in the system columns of their names."""

RECORD_KEYS: Final = frozenset(f.name for f in dataclasses.fields(ScoringRecord) if f.name != "request_meta")
"""The keys a v1 record's JSON object may hold (the meta block is inside ``request``)."""


FEEDBACK_KIND: Final = "feedback"
"""The ``kind`` of a feedback record; a scoring record has no ``kind``."""


@dataclass(slots=True)
class FeedbackRecord:
    """A ground-truth label for a subscription, in one of two forms.

    - **By reference**: ``scoring_id`` names a logged scoring call (its payload row may arrive before or after the
      label), ``row_index`` one of its rows (None: every row of that call), ``label`` the true outcome.
    - **Standalone**: ``data`` holds rows of feature values and the label (OpenScale's feedback rows), the label in
      the column ``label_field`` (None: the subscription's target field); the model's prediction and probability
      may be among them.
    """

    feedback_id: str
    subscription_id: str
    labelled_at: datetime  # always timezone-aware
    scoring_id: str | None = None
    row_index: int | None = None
    label: Any = None
    data: Table | None = None
    label_field: str | None = None
    user_id: str | None = None
    schema_version: int = 1

    @property
    def by_reference(self) -> bool:
        return self.scoring_id is not None

    @property
    def row_count(self) -> int:
        """How many feedback rows this record gives (one feedback table row each)."""
        return 1 if self.data is None else len(self.data.values)


FEEDBACK_KEYS: Final = frozenset(f.name for f in dataclasses.fields(FeedbackRecord)) | {"kind"}
"""The keys a feedback record's JSON object may hold."""


class FeedbackCall(TypedDict, total=False):
    """The keywords of ``Emitter.log_feedback()``: a label by reference (``scoring_id``, ``row_index``, ``label``)
    or standalone rows (``data``: ``{"fields", "values"}``, a DataFrame or a list of dicts, and ``label_field``). A
    missing ``feedback_id`` is generated, a missing ``labelled_at`` is now (UTC)."""

    subscription_id: Required[str]
    scoring_id: str | None
    row_index: int | None
    label: Any
    data: Any
    label_field: str | None
    feedback_id: str | None
    labelled_at: datetime | str | None
    user_id: str | None
