"""Deliberately malformed Kafka messages, mixed into the demo's traffic to show the dead-letter table at work.

Each :class:`MalformedMessage` carries the raw message value (``bytes``, or ``None`` for a tombstone), its key, a
short human label the demo prints next to it, and the dead-letter ``error_code`` it is expected to get (one of
:data:`stream_logger.contract.ERROR_CODES`). All but the first two start from a valid scoring record v1 for the
demo's subscription and break exactly one thing.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson

from .applicants import FIELDS, ApplicantGenerator
from .model import score
from .subscription import DEPLOYMENT_ID, SUBSCRIPTION_ID

__all__ = ["MalformedMessage", "malformed_messages", "valid_record"]


@dataclass(frozen=True, slots=True)
class MalformedMessage:
    """One deliberately broken message: what to produce, and what the demo says about it."""

    label: str
    """A short description for the demo's output, unique within the set."""
    key: bytes | None
    value: bytes | None
    expected_error_code: str
    """The dead-letter reason the consumer is expected to give (see ``contract.ERROR_CODES``)."""


def valid_record(
    scoring_id: str,
    *,
    subscription_id: str = SUBSCRIPTION_ID,
    deployment_id: str = DEPLOYMENT_ID,
    scoring_timestamp: datetime | None = None,
    seed: int = 0,
    rows: int = 1,
) -> dict[str, Any]:
    """A valid scoring record v1 (as a dict) for the demo subscription: ``rows`` applicants and their scores."""
    request = ApplicantGenerator(seed).request(rows)
    when = scoring_timestamp or datetime.now(UTC)
    return {
        "schema_version": 1,
        "scoring_id": scoring_id,
        "scoring_timestamp": when.isoformat(),
        "subscription_id": subscription_id,
        "deployment_id": deployment_id,
        "request": request,
        "response": score(request),
        "response_time_ms": 2.5,
    }


def _encode(record: Any) -> bytes:
    return orjson.dumps(record)


def malformed_messages(
    *,
    subscription_id: str = SUBSCRIPTION_ID,
    deployment_id: str = DEPLOYMENT_ID,
    scoring_timestamp: datetime | None = None,
    seed: int = 0,
) -> list[MalformedMessage]:
    """The demo's eight malformed messages, in a fixed order.

    Scoring ids are ``malformed-<n>-<8 hex digits drawn from seed>``, so the same seed gives the same messages.
    """
    rng = random.Random(seed)
    when = scoring_timestamp or datetime.now(UTC)
    messages: list[MalformedMessage] = []

    def base(n: int) -> tuple[str, dict[str, Any]]:
        scoring_id = f"malformed-{n}-{rng.getrandbits(32):08x}"
        record = valid_record(
            scoring_id,
            subscription_id=subscription_id,
            deployment_id=deployment_id,
            scoring_timestamp=when,
            seed=seed + n,
        )
        return scoring_id, record

    def add(label: str, scoring_id: str, value: bytes | None, code: str) -> None:
        messages.append(MalformedMessage(label, scoring_id.encode(), value, code))

    scoring_id, record = base(1)
    add("not JSON (truncated)", scoring_id, _encode(record)[:60], "malformed_json")

    scoring_id, record = base(2)
    add("a JSON array, not an object", scoring_id, _encode([record]), "malformed_json")

    scoring_id, record = base(3)
    del record["scoring_timestamp"]
    add("required field scoring_timestamp missing", scoring_id, _encode(record), "invalid_record")

    scoring_id, record = base(4)
    record["request"]["values"][0].pop()
    add(f"a row with {len(FIELDS) - 1} values for {len(FIELDS)} fields", scoring_id, _encode(record), "invalid_record")

    scoring_id, record = base(5)
    record["response_time_ms"] = "fast"
    add('response_time_ms is a string ("fast")', scoring_id, _encode(record), "invalid_record")

    scoring_id, _ = base(6)
    add("a tombstone (null value)", scoring_id, None, "empty_message")

    scoring_id, record = base(7)
    row = record["request"]["values"][0]
    purpose = FIELDS.index("LoanPurpose")
    row[purpose] = row[purpose][:3] + "\x00" + row[purpose][3:]
    add("a NUL character inside LoanPurpose", scoring_id, _encode(record), "unstorable_value")

    scoring_id, record = base(8)
    record["request"]["values"][0][FIELDS.index("LoanDuration")] = "twelve"
    add('LoanDuration "twelve" for an integer column', scoring_id, _encode(record), "type_conflict")

    return messages
