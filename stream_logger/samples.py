"""Deterministic German-credit scoring records, for tests and benchmarks (no I/O, no randomness between runs).

The 20 features of the public German credit risk data set, a label ``Risk`` / ``No Risk`` from a tiny fixed
scorecard (longer loans, ``less_0`` checking and delayed payments raise the risk), and the probability pair
``[P(No Risk), P(Risk)]``.
"""

from __future__ import annotations

import math
import random
from datetime import UTC, datetime, timedelta
from typing import Any, Final

__all__ = ["CATEGORIES", "GERMAN_CREDIT_FEATURES", "INTEGER_RANGES", "german_credit_record", "german_credit_row"]

CATEGORIES: Final[dict[str, tuple[str, ...]]] = {
    "CheckingStatus": ("less_0", "0_to_200", "greater_200", "no_checking"),
    "CreditHistory": (
        "no_credits",
        "all_credits_paid_back",
        "credits_paid_to_date",
        "prior_payments_delayed",
        "outstanding_credit",
    ),
    "LoanPurpose": (
        "car_new",
        "car_used",
        "furniture",
        "radio_tv",
        "appliances",
        "repairs",
        "education",
        "vacation",
        "retraining",
        "business",
        "other",
    ),
    "ExistingSavings": ("less_100", "100_to_500", "500_to_1000", "greater_1000", "unknown"),
    "EmploymentDuration": ("unemployed", "less_1", "1_to_4", "4_to_7", "greater_7"),
    "Sex": ("male", "female"),
    "OthersOnLoan": ("none", "co-applicant", "guarantor"),
    "OwnsProperty": ("real_estate", "savings_insurance", "car_other", "unknown"),
    "InstallmentPlans": ("none", "stores", "bank"),
    "Housing": ("own", "rent", "free"),
    "Job": ("unemployed", "unskilled", "skilled", "management_self-employed"),
    "Telephone": ("none", "yes"),
    "ForeignWorker": ("yes", "no"),
}
"""The value set of every text feature of the German credit risk data set."""
INTEGER_RANGES: Final[dict[str, tuple[int, int]]] = {
    "LoanDuration": (4, 64),
    "LoanAmount": (250, 11676),
    "InstallmentPercent": (1, 6),
    "CurrentResidenceDuration": (1, 6),
    "Age": (19, 74),
    "ExistingCreditsCount": (1, 4),
    "Dependents": (1, 2),
}
"""The inclusive range of every integer feature."""
GERMAN_CREDIT_FEATURES: Final = (
    "CheckingStatus",
    "LoanDuration",
    "CreditHistory",
    "LoanPurpose",
    "LoanAmount",
    "ExistingSavings",
    "EmploymentDuration",
    "InstallmentPercent",
    "Sex",
    "OthersOnLoan",
    "CurrentResidenceDuration",
    "OwnsProperty",
    "Age",
    "InstallmentPlans",
    "Housing",
    "ExistingCreditsCount",
    "Job",
    "Dependents",
    "Telephone",
    "ForeignWorker",
)
"""The feature names, in the data set's column order."""

_EPOCH: Final = datetime(2025, 1, 1, tzinfo=UTC)


def german_credit_row(rng: random.Random) -> list[Any]:
    """One applicant: a value for each of :data:`GERMAN_CREDIT_FEATURES`, in order."""
    row: list[Any] = []
    for name in GERMAN_CREDIT_FEATURES:
        if name in INTEGER_RANGES:
            low, high = INTEGER_RANGES[name]
            row.append(rng.randint(low, high))
        else:
            row.append(rng.choice(CATEGORIES[name]))
    return row


def _risk_probability(row: list[Any]) -> float:
    """A fixed scorecard: P(Risk) for one row."""
    value = dict(zip(GERMAN_CREDIT_FEATURES, row, strict=True))
    score = -1.6 + 0.04 * value["LoanDuration"] + 0.00005 * value["LoanAmount"] - 0.015 * (value["Age"] - 19)
    score += {"less_0": 1.0, "0_to_200": 0.4, "greater_200": -0.2, "no_checking": -0.9}[value["CheckingStatus"]]
    score += 0.8 if value["CreditHistory"] in ("prior_payments_delayed", "outstanding_credit") else 0.0
    score -= 0.4 if value["ExistingSavings"] in ("500_to_1000", "greater_1000") else 0.0
    return round(1 / (1 + math.exp(-score)), 4)


def german_credit_record(i: int, *, rows: int = 1, with_meta: bool = False) -> dict[str, Any]:
    """The ``i``-th sample scoring record (the same for the same arguments), as a JSON object.

    ``rows`` applicants scored in one call; ``with_meta`` adds a ``request.meta`` block with a ``CustomerID``.
    """
    rng = random.Random(i)
    features = [german_credit_row(rng) for _ in range(rows)]
    predictions: list[list[Any]] = []
    for row in features:
        risk = _risk_probability(row)
        predictions.append(["Risk" if risk >= 0.5 else "No Risk", [round(1 - risk, 4), risk]])
    request: dict[str, Any] = {"fields": list(GERMAN_CREDIT_FEATURES), "values": features}
    if with_meta:
        request["meta"] = {"fields": ["CustomerID"], "values": [[f"C{i:07d}-{n}"] for n in range(rows)]}
    timestamp = _EPOCH + timedelta(seconds=i, microseconds=rng.randrange(1_000_000))
    return {
        "schema_version": 1,
        "scoring_id": f"gc-{i:010d}",
        "scoring_timestamp": timestamp.isoformat().replace("+00:00", "Z"),
        "subscription_id": "german-credit",
        "deployment_id": "german-credit-v1",
        "asset_revision": "2025-01",
        "request": request,
        "response": {"fields": ["prediction", "probability"], "values": predictions},
        "response_time_ms": round(rng.uniform(2.0, 40.0), 3),
        "status_code": 200,
        "tags": {"env": "demo"},
    }
