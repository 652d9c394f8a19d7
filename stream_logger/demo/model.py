"""A small deterministic credit-risk model for the demo: a logistic model with hand-set weights.

It stands in for a real trained model so the demo needs no download and no ML library. Risk rises with a longer
loan, a larger amount, a negative checking balance (``less_0``), a history of delayed payments, low savings, a
short employment, and a high installment rate; a guarantor, real estate, and a long employment lower it. Over the
population of :class:`~stream_logger.demo.applicants.ApplicantGenerator` about one applicant in three is predicted
``Risk``, as in the reference data set.

**Deliberate bias, for the demo only.** The model also adds risk for ``Sex=female`` and for young applicants (and a
little for the oldest). This is on purpose, so that the demo's fairness view (the rate of ``Risk`` by sex and age
band, and the disparate impact ratio) has something to show. A real model must not do this. The true outcomes the
demo labels its calls with later (:func:`true_outcome`) come from the same model without that bias, so the model is
also less accurate for those groups, which the demo's quality view shows.

Responses follow the scoring format: ``{"fields": ["prediction", "probability"], "values": [[label, [p_no_risk,
p_risk]], ...]}``; the probability pair is ordered as :data:`LABELS`, that is ``[P(No Risk), P(Risk)]``.
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

__all__ = [
    "LABELS",
    "NO_RISK",
    "RESPONSE_FIELDS",
    "RISK",
    "THRESHOLD",
    "Score",
    "risk_logit",
    "score",
    "score_applicant",
    "true_outcome",
]

RISK: Final = "Risk"
NO_RISK: Final = "No Risk"
LABELS: Final[tuple[str, str]] = (NO_RISK, RISK)
"""The class labels in the order of the probability array: ``probability[0]`` is P(No Risk), ``[1]`` P(Risk)."""
RESPONSE_FIELDS: Final[tuple[str, str]] = ("prediction", "probability")
THRESHOLD: Final = 0.5
"""An applicant is predicted ``Risk`` when P(Risk) is at least this."""

_INTERCEPT: Final = -1.8
_PER_MONTH_OVER_12: Final = 0.035
_PER_1000_OVER_3000: Final = 0.08
_PER_INSTALLMENT_POINT: Final = 0.15

_WEIGHTS: Final[Mapping[str, Mapping[str, float]]] = {
    "CheckingStatus": {"less_0": 1.0, "0_to_200": 0.5, "greater_200": -0.2, "no_checking": -1.0},
    "CreditHistory": {
        "no_credits": 0.8,
        "all_credits_paid_back": 0.7,
        "credits_paid_to_date": 0.0,
        "prior_payments_delayed": 0.9,
        "outstanding_credit": -0.5,
    },
    "LoanPurpose": {
        "car_new": 0.25,
        "car_used": -0.7,
        "furniture": 0.0,
        "radio_tv": -0.25,
        "appliances": 0.1,
        "repairs": 0.2,
        "education": 0.45,
        "vacation": 0.4,
        "retraining": -0.5,
        "business": 0.2,
        "other": 0.1,
    },
    "ExistingSavings": {
        "less_100": 0.45,
        "100_to_500": 0.2,
        "500_to_1000": -0.2,
        "greater_1000": -0.6,
        "unknown": -0.3,
    },
    "EmploymentDuration": {"unemployed": 0.4, "less_1": 0.35, "1_to_4": 0.1, "4_to_7": -0.25, "greater_7": -0.1},
    "OthersOnLoan": {"none": 0.0, "co-applicant": 0.3, "guarantor": -0.6},
    "OwnsProperty": {"real_estate": -0.35, "savings_insurance": 0.0, "car_other": 0.05, "unknown": 0.4},
    "InstallmentPlans": {"none": 0.0, "stores": 0.3, "bank": 0.4},
    "Housing": {"own": 0.0, "rent": 0.25, "free": 0.2},
    "Job": {"unemployed": 0.4, "unskilled": 0.05, "skilled": 0.0, "management_self-employed": 0.1},
    "Telephone": {"none": 0.0, "yes": -0.15},
    "ForeignWorker": {"yes": 0.0, "no": -0.8},
    # Deliberate, documented bias for the demo's fairness view (see the module docstring).
    "Sex": {"male": 0.0, "female": 0.35},
}


def _bias(applicant: Mapping[str, Any]) -> float:
    """The deliberate bias in the log-odds: what the model adds for sex and age that the world does not."""
    return _WEIGHTS["Sex"][applicant["Sex"]] + _age_weight(int(applicant["Age"]))


def _age_weight(age: int) -> float:
    # Deliberate, documented bias for the demo's fairness view (see the module docstring).
    if age <= 25:
        return 0.45
    if age <= 35:
        return 0.1
    if age <= 50:
        return 0.0
    return 0.1


@dataclass(frozen=True, slots=True)
class Score:
    """The model's answer for one applicant."""

    label: str
    p_no_risk: float
    p_risk: float

    @property
    def probability(self) -> list[float]:
        """``[P(No Risk), P(Risk)]``, in the order of :data:`LABELS`."""
        return [self.p_no_risk, self.p_risk]


def risk_logit(applicant: Mapping[str, Any]) -> float:
    """The log-odds of ``Risk`` for one applicant (a mapping from feature name to value)."""
    logit = _INTERCEPT
    for name, weights in _WEIGHTS.items():
        logit += weights[applicant[name]]
    logit += _PER_MONTH_OVER_12 * (int(applicant["LoanDuration"]) - 12)
    logit += _PER_1000_OVER_3000 * (int(applicant["LoanAmount"]) - 3000) / 1000
    logit += _PER_INSTALLMENT_POINT * (int(applicant["InstallmentPercent"]) - 1)
    logit += _age_weight(int(applicant["Age"]))
    return logit


def true_outcome(applicant: Mapping[str, Any], rng: random.Random) -> str:
    """What really became of the loan (``Risk`` or ``No Risk``), drawn from the model's log-odds less its bias."""
    p_risk = 1.0 / (1.0 + math.exp(-(risk_logit(applicant) - _bias(applicant))))
    return RISK if rng.random() < p_risk else NO_RISK


def score_applicant(applicant: Mapping[str, Any]) -> Score:
    """Score one applicant: the label and the probability pair (rounded to 6 decimals, summing to 1)."""
    p_risk = round(1.0 / (1.0 + math.exp(-risk_logit(applicant))), 6)
    p_no_risk = round(1.0 - p_risk, 6)
    return Score(label=RISK if p_risk >= THRESHOLD else NO_RISK, p_no_risk=p_no_risk, p_risk=p_risk)


def score(request: Mapping[str, Any]) -> dict[str, Any]:
    """Score a request ``{"fields": [...], "values": [[...], ...]}``; fields may come in any order.

    Returns ``{"fields": ["prediction", "probability"], "values": [[label, [p_no_risk, p_risk]], ...]}``.
    """
    fields: Sequence[str] = request["fields"]
    values: Sequence[Sequence[Any]] = request["values"]
    rows: list[list[Any]] = []
    for row in values:
        result = score_applicant(dict(zip(fields, row, strict=True)))
        rows.append([result.label, result.probability])
    return {"fields": list(RESPONSE_FIELDS), "values": rows}
