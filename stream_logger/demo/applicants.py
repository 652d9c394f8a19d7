"""Synthetic German-credit loan applicants for the demo: deterministic, seeded, no download.

The 20 features and their value sets follow the public German credit risk teaching data set (as
:mod:`stream_logger.samples` names them). Values are drawn with a seeded :class:`random.Random`, so the same seed
always gives the same applicants, and with plausible correlations between them:

- age drives employment duration (nobody has worked longer than they have been adult), job level, residence
  duration, property, housing, dependents and the number of existing credits;
- the loan purpose drives the loan duration, and duration and purpose drive the loan amount;
- checking status and savings go together, and a negative checking balance makes a delayed payment history and
  an unemployed applicant more likely.

Requests come in the scoring format ``{"fields": [...], "values": [[...], ...], "meta": {...}}``.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, Final, TypeVar

from ..samples import CATEGORIES, GERMAN_CREDIT_FEATURES, INTEGER_RANGES

__all__ = [
    "CATEGORIES",
    "FIELDS",
    "INTEGER_RANGES",
    "META_FIELDS",
    "REGIONS",
    "ApplicantGenerator",
]

FIELDS: Final[tuple[str, ...]] = GERMAN_CREDIT_FEATURES
"""The 20 feature names, in the order of the reference data set (and of every request's ``fields``)."""

META_FIELDS: Final[tuple[str, ...]] = ("ApplicantRegion",)
"""Non-feature columns sent in the request's ``meta`` block (the model never sees them)."""

REGIONS: Final[tuple[str, ...]] = ("north", "south", "east", "west", "capital")
"""The values of the ``ApplicantRegion`` meta field."""

_T = TypeVar("_T")

# Typical duration in months (median of a log-normal draw) and amount per month of duration, by purpose.
_PURPOSE_WEIGHTS: Final = {
    "car_new": 23,
    "car_used": 10,
    "furniture": 18,
    "radio_tv": 28,
    "appliances": 2,
    "repairs": 2,
    "education": 5,
    "vacation": 1,
    "retraining": 1,
    "business": 9,
    "other": 1,
}
_PURPOSE_MODE_MONTHS: Final = {
    "car_new": 20,
    "car_used": 22,
    "furniture": 18,
    "radio_tv": 16,
    "appliances": 12,
    "repairs": 14,
    "education": 20,
    "vacation": 12,
    "retraining": 9,
    "business": 26,
    "other": 28,
}
_PURPOSE_AMOUNT_PER_MONTH: Final = {
    "car_new": 170,
    "car_used": 200,
    "furniture": 120,
    "radio_tv": 110,
    "appliances": 100,
    "repairs": 110,
    "education": 130,
    "vacation": 150,
    "retraining": 90,
    "business": 190,
    "other": 220,
}


def _pick(rng: random.Random, weights: Mapping[_T, float]) -> _T:
    return rng.choices(list(weights), weights=list(weights.values()))[0]


def _clamp(value: float, low: int, high: int) -> int:
    return max(low, min(high, round(value)))


class ApplicantGenerator:
    """A deterministic stream of synthetic applicants and scoring requests.

    ``ApplicantGenerator(seed=7)`` always yields the same applicants in the same order. ``include_meta`` adds the
    ``meta`` block (``ApplicantRegion``) to every request. Setting ``shifted`` changes the population from then on,
    as a new marketing channel would: younger applicants asking for larger loans (the demo's drift monitor sees it).
    """

    def __init__(self, seed: int = 0, *, include_meta: bool = True) -> None:
        self._rng = random.Random(seed)
        self.include_meta = include_meta
        self.shifted = False

    def applicant(self) -> dict[str, Any]:
        """One applicant: a dict with all 20 features (and ``ApplicantRegion``), keys in :data:`FIELDS` order."""
        rng = self._rng
        # Age: most applicants are 25-40, a long tail up to 74.
        age = _clamp(19 + rng.gammavariate(2.2, 4.0 if self.shifted else 7.5), 19, 74)
        sex = "female" if rng.random() < (0.42 if age < 30 else 0.28) else "male"

        # Job and employment duration follow age.
        if age < 25:
            job = _pick(rng, {"unemployed": 4, "unskilled": 35, "skilled": 58, "management_self-employed": 3})
        elif age < 45:
            job = _pick(rng, {"unemployed": 2, "unskilled": 18, "skilled": 64, "management_self-employed": 16})
        else:
            job = _pick(rng, {"unemployed": 4, "unskilled": 22, "skilled": 52, "management_self-employed": 22})
        if job == "unemployed" or rng.random() < 0.03:
            employment = "unemployed"
        else:
            years = rng.uniform(0.0, min(age - 18, 40)) * rng.uniform(0.4, 1.0)
            employment = "less_1" if years < 1 else "1_to_4" if years < 4 else "4_to_7" if years < 7 else "greater_7"

        # Money: checking and savings go together; a young or jobless applicant is more often overdrawn.
        overdrawn_weight = 27 + (10 if age < 25 else 0) + (15 if employment in ("unemployed", "less_1") else 0)
        checking = _pick(rng, {"less_0": overdrawn_weight, "0_to_200": 27, "greater_200": 7, "no_checking": 39})
        if checking in ("greater_200", "no_checking"):
            savings_weights = {"less_100": 45, "100_to_500": 11, "500_to_1000": 8, "greater_1000": 9, "unknown": 27}
        else:
            savings_weights = {"less_100": 70, "100_to_500": 11, "500_to_1000": 5, "greater_1000": 3, "unknown": 11}
        savings = _pick(rng, savings_weights)
        delayed_weight = 14 if checking == "less_0" else 7
        history = _pick(
            rng,
            {
                "no_credits": 4,
                "all_credits_paid_back": 5,
                "credits_paid_to_date": 53,
                "prior_payments_delayed": delayed_weight,
                "outstanding_credit": 29,
            },
        )

        # The loan: duration by purpose, amount by duration and purpose.
        purpose = _pick(rng, _PURPOSE_WEIGHTS)
        mode = _PURPOSE_MODE_MONTHS[purpose]
        duration = _clamp(mode * math.exp(rng.gauss(0.0, 0.45)), 4, 64)
        if rng.random() < 0.6:  # lenders like round terms
            duration = _clamp(6 * round(duration / 6), 4, 64)
        amount_per_month = _PURPOSE_AMOUNT_PER_MONTH[purpose] * math.exp(rng.gauss(0.0, 0.45))
        amount = _clamp(duration * amount_per_month * (1.6 if self.shifted else 1.0), 250, 11676)
        # Small loans carry a higher installment rate relative to disposable income than large ones.
        installment_weights = [10, 18, 16, 40, 10, 6] if amount < 3000 else [22, 28, 16, 24, 6, 4]
        installment = rng.choices(range(1, 7), weights=installment_weights)[0]

        others = _pick(rng, {"none": 90, "co-applicant": 4, "guarantor": 6})
        residence = _clamp(rng.triangular(1, 6, 2 if age < 30 else 4), 1, 6)
        if age < 28:
            owns = _pick(rng, {"real_estate": 18, "savings_insurance": 22, "car_other": 40, "unknown": 20})
        else:
            owns = _pick(rng, {"real_estate": 32, "savings_insurance": 24, "car_other": 32, "unknown": 12})
        if owns == "unknown" and rng.random() < 0.45:
            housing = "free"
        elif owns == "real_estate" or (age >= 30 and rng.random() < 0.75):
            housing = "own"
        else:
            housing = _pick(rng, {"own": 50, "rent": 45, "free": 5})
        plans = _pick(rng, {"none": 81, "stores": 5, "bank": 14})
        credits_weights = [70, 27, 2.5, 0.5] if age < 30 else [56, 36, 6, 2]
        credits = rng.choices(range(1, 5), weights=credits_weights)[0]
        dependents = 2 if rng.random() < (0.22 if 30 <= age <= 55 else 0.08) else 1
        phone_chance = 0.75 if job == "management_self-employed" else 0.4 if job == "skilled" else 0.25
        telephone = "yes" if rng.random() < phone_chance else "none"
        foreign = "yes" if rng.random() < 0.96 else "no"
        region = rng.choices(REGIONS, weights=[20, 25, 20, 15, 20])[0]

        return {
            "CheckingStatus": checking,
            "LoanDuration": duration,
            "CreditHistory": history,
            "LoanPurpose": purpose,
            "LoanAmount": amount,
            "ExistingSavings": savings,
            "EmploymentDuration": employment,
            "InstallmentPercent": installment,
            "Sex": sex,
            "OthersOnLoan": others,
            "CurrentResidenceDuration": residence,
            "OwnsProperty": owns,
            "Age": age,
            "InstallmentPlans": plans,
            "Housing": housing,
            "ExistingCreditsCount": credits,
            "Job": job,
            "Dependents": dependents,
            "Telephone": telephone,
            "ForeignWorker": foreign,
            "ApplicantRegion": region,
        }

    def applicants(self, count: int) -> list[dict[str, Any]]:
        """The next ``count`` applicants."""
        return [self.applicant() for _ in range(count)]

    def request(self, rows: int | None = None, *, max_rows: int = 3) -> dict[str, Any]:
        """One scoring request for ``rows`` applicants (when ``None``, a seeded draw from 1 to ``max_rows``).

        ``{"fields": [20 feature names], "values": [[20 values], ...], "meta": {"fields": ["ApplicantRegion"],
        "values": [[region], ...]}}``; ``meta`` only when ``include_meta``.
        """
        if rows is None:
            rows = self._rng.randint(1, max_rows)
        if rows < 1:
            raise ValueError(f"a request scores at least one row, not {rows}")
        people = self.applicants(rows)
        return request_for(people, include_meta=self.include_meta)

    def requests(self, count: int, *, max_rows: int = 3) -> Iterator[dict[str, Any]]:
        """``count`` requests of 1 to ``max_rows`` rows each."""
        for _ in range(count):
            yield self.request(max_rows=max_rows)


def request_for(applicants: Sequence[Mapping[str, Any]], *, include_meta: bool = True) -> dict[str, Any]:
    """The scoring request for the given applicants (dicts as made by :meth:`ApplicantGenerator.applicant`)."""
    request: dict[str, Any] = {
        "fields": list(FIELDS),
        "values": [[person[name] for name in FIELDS] for person in applicants],
    }
    if include_meta:
        request["meta"] = {
            "fields": list(META_FIELDS),
            "values": [[person[name] for name in META_FIELDS] for person in applicants],
        }
    return request
