"""The synthetic applicants: value sets, ranges, determinism and a few plausible correlations."""

from __future__ import annotations

import statistics
from collections import Counter
from typing import Any

import pytest

from stream_logger.demo.applicants import (
    CATEGORIES,
    FIELDS,
    INTEGER_RANGES,
    META_FIELDS,
    REGIONS,
    ApplicantGenerator,
    request_for,
)


@pytest.fixture(scope="module")
def population() -> list[dict[str, Any]]:
    return ApplicantGenerator(seed=11).applicants(5000)


def test_the_twenty_features_in_reference_order() -> None:
    assert len(FIELDS) == 20
    assert set(FIELDS) == set(CATEGORIES) | set(INTEGER_RANGES)
    assert FIELDS[0] == "CheckingStatus" and FIELDS[-1] == "ForeignWorker"


def test_every_value_is_in_its_set_or_range(population: list[dict[str, Any]]) -> None:
    for person in population:
        assert list(person) == [*FIELDS, *META_FIELDS]
        for name, allowed in CATEGORIES.items():
            assert person[name] in allowed, (name, person[name])
        for name, (low, high) in INTEGER_RANGES.items():
            assert type(person[name]) is int, (name, person[name])
            assert low <= person[name] <= high, (name, person[name])
        assert person["ApplicantRegion"] in REGIONS


def test_every_category_value_occurs(population: list[dict[str, Any]]) -> None:
    for name, allowed in CATEGORIES.items():
        seen = {person[name] for person in population}
        assert seen == set(allowed), name


def test_same_seed_same_applicants_other_seed_others() -> None:
    assert ApplicantGenerator(seed=5).applicants(200) == ApplicantGenerator(seed=5).applicants(200)
    assert ApplicantGenerator(seed=5).applicants(200) != ApplicantGenerator(seed=6).applicants(200)
    first = list(ApplicantGenerator(seed=3).requests(50, max_rows=4))
    again = list(ApplicantGenerator(seed=3).requests(50, max_rows=4))
    assert first == again


def test_requests_have_the_scoring_format() -> None:
    requests = list(ApplicantGenerator(seed=2).requests(300, max_rows=4))
    sizes = Counter(len(request["values"]) for request in requests)
    assert set(sizes) == {1, 2, 3, 4}
    for request in requests:
        assert request["fields"] == list(FIELDS)
        assert all(len(row) == len(FIELDS) for row in request["values"])
        assert request["meta"]["fields"] == list(META_FIELDS)
        assert len(request["meta"]["values"]) == len(request["values"])
    plain = ApplicantGenerator(seed=2, include_meta=False).request(2)
    assert "meta" not in plain and len(plain["values"]) == 2
    with pytest.raises(ValueError):
        ApplicantGenerator().request(0)


def test_request_for_puts_values_in_field_order() -> None:
    person = ApplicantGenerator(seed=9).applicant()
    request = request_for([person])
    assert dict(zip(request["fields"], request["values"][0], strict=True)) == {n: person[n] for n in FIELDS}


def test_plausible_correlations(population: list[dict[str, Any]]) -> None:
    # Nobody has worked longer than they have been adult.
    assert all(p["EmploymentDuration"] != "greater_7" for p in population if p["Age"] <= 24)
    # Longer loans borrow more.
    short = [p["LoanAmount"] for p in population if p["LoanDuration"] <= 12]
    long = [p["LoanAmount"] for p in population if p["LoanDuration"] >= 36]
    assert statistics.median(long) > 2 * statistics.median(short)
    # Business loans run longer than radio/TV purchases.
    business = [p["LoanDuration"] for p in population if p["LoanPurpose"] == "business"]
    radio = [p["LoanDuration"] for p in population if p["LoanPurpose"] == "radio_tv"]
    assert statistics.mean(business) > statistics.mean(radio)

    # A negative checking balance goes with low savings more often than a high one.
    def low_savings_share(status: str) -> float:
        group = [p for p in population if p["CheckingStatus"] == status]
        low = sum(1 for p in group if p["ExistingSavings"] == "less_100")
        return low / len(group)

    assert low_savings_share("less_0") > low_savings_share("no_checking") + 0.1
    # Managers are older than the unskilled.
    managers = [p["Age"] for p in population if p["Job"] == "management_self-employed"]
    unskilled = [p["Age"] for p in population if p["Job"] == "unskilled"]
    assert statistics.mean(managers) > statistics.mean(unskilled)
