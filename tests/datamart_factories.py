"""Scoring records for datamart tests and benchmarks, built directly as dataclasses (no decoding)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from stream_logger.contract import ScoringRecord, Table
from stream_logger.samples import GERMAN_CREDIT_FEATURES

GERMAN_CREDIT_FIELDS = list(GERMAN_CREDIT_FEATURES)


def german_credit_row(i: int = 0) -> list[Any]:
    """One applicant (deterministic in ``i``), in GERMAN_CREDIT_FIELDS order."""
    return [
        ["less_0", "0_to_200", "greater_200", "no_checking"][i % 4],
        4 + i % 60,
        "credits_paid_to_date",
        "car_new",
        250 + (i * 37) % 11000,
        "less_100",
        "1_to_4",
        1 + i % 6,
        ["male", "female"][i % 2],
        "none",
        1 + i % 6,
        "real_estate",
        19 + i % 55,
        "none",
        "own",
        1 + i % 4,
        "skilled",
        1 + i % 2,
        "none",
        "yes",
    ]


def german_credit_record(
    scoring_id: str = "s-1",
    *,
    rows: int = 1,
    subscription_id: str = "german_credit",
    timestamp: datetime | None = None,
    meta: Table | None = None,
    **overrides: Any,
) -> ScoringRecord:
    """A German-credit scoring record with ``rows`` scored rows; the response echoes the request fields and adds
    ``prediction`` and ``probability``."""
    values = [german_credit_row(i) for i in range(rows)]
    response = Table(
        [*GERMAN_CREDIT_FIELDS, "prediction", "probability"],
        [
            [*v, "Risk" if i % 3 == 0 else "No Risk", [0.3, 0.7] if i % 3 == 0 else [0.8, 0.2]]
            for i, v in enumerate(values)
        ],
    )
    return ScoringRecord(
        scoring_id=scoring_id,
        scoring_timestamp=timestamp or datetime(2024, 5, 17, 12, 30, tzinfo=UTC),
        subscription_id=subscription_id,
        request=Table(list(GERMAN_CREDIT_FIELDS), values),
        response=response,
        request_meta=meta,
        response_time_ms=12.5,
        status_code=200,
        user_id="u-1",
        tags={"env": "test"},
        **overrides,
    )


def simple_record(
    scoring_id: str,
    fields: list[str],
    values: list[list[Any]],
    *,
    subscription_id: str = "simple",
    response: Table | None = None,
    timestamp: datetime | None = None,
) -> ScoringRecord:
    """A record with the given request block (and optional response)."""
    return ScoringRecord(
        scoring_id=scoring_id,
        scoring_timestamp=timestamp or datetime(2024, 5, 17, 12, 30, tzinfo=UTC),
        subscription_id=subscription_id,
        request=Table(fields, values),
        response=response,
    )
