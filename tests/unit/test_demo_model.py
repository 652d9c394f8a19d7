"""The demo's scoring model: deterministic, about one third Risk, and sensible in its main effects."""

from __future__ import annotations

from typing import Any

import pytest

from stream_logger.demo.applicants import FIELDS, ApplicantGenerator
from stream_logger.demo.model import LABELS, NO_RISK, RISK, THRESHOLD, score, score_applicant


@pytest.fixture(scope="module")
def population() -> list[dict[str, Any]]:
    return ApplicantGenerator(seed=21).applicants(5000)


def test_deterministic(population: list[dict[str, Any]]) -> None:
    assert [score_applicant(p) for p in population[:500]] == [score_applicant(p) for p in population[:500]]


def test_about_one_third_risk(population: list[dict[str, Any]]) -> None:
    rate = sum(score_applicant(p).label == RISK for p in population) / len(population)
    assert 0.25 <= rate <= 0.42


def test_probability_pair_is_no_risk_then_risk(population: list[dict[str, Any]]) -> None:
    assert LABELS == (NO_RISK, RISK)
    for person in population[:1000]:
        result = score_applicant(person)
        assert result.probability == [result.p_no_risk, result.p_risk]
        assert abs(sum(result.probability) - 1.0) < 1e-9
        assert 0.0 < result.p_risk < 1.0
        assert result.label == (RISK if result.p_risk >= THRESHOLD else NO_RISK)


def test_longer_loans_are_riskier(population: list[dict[str, Any]]) -> None:
    for person in population[:200]:
        risks = [score_applicant({**person, "LoanDuration": months}).p_risk for months in range(4, 65)]
        assert risks == sorted(risks)
        assert risks[-1] > risks[0]


def test_main_effects_point_the_right_way(population: list[dict[str, Any]]) -> None:
    person = population[0]

    def p(**changes: Any) -> float:
        return score_applicant({**person, **changes}).p_risk

    assert p(CheckingStatus="less_0") > p(CheckingStatus="no_checking")
    assert p(CreditHistory="prior_payments_delayed") > p(CreditHistory="credits_paid_to_date")
    assert p(ExistingSavings="less_100") > p(ExistingSavings="greater_1000")
    # The deliberate, documented bias the fairness view is meant to reveal.
    assert p(Sex="female") > p(Sex="male")
    assert p(Age=22) > p(Age=40)


def test_response_format_and_field_order_independence() -> None:
    request = ApplicantGenerator(seed=4, include_meta=False).request(3)
    response = score(request)
    assert response["fields"] == ["prediction", "probability"]
    assert len(response["values"]) == 3
    for label, probability in response["values"]:
        assert label in (RISK, NO_RISK)
        assert len(probability) == 2
    reversed_request = {
        "fields": list(reversed(FIELDS)),
        "values": [list(reversed(row)) for row in request["values"]],
    }
    assert score(reversed_request) == response
