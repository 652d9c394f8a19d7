"""The summary's pure parts: bucket width choice, the text chart, identifier quoting and the final text."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from stream_logger.demo.summary import (
    Bucket,
    GroupRate,
    Query,
    Summary,
    choose_bucket_width_s,
    columns_from_fields,
    quote_ident,
    quote_literal,
    render,
    render_chart,
)

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def _buckets(counts: list[int], width_s: int = 60) -> list[Bucket]:
    return [Bucket(T0 + timedelta(seconds=i * width_s), width_s, n, 2 * n) for i, n in enumerate(counts)]


def test_chart_bars_scale_and_stay_within_width() -> None:
    chart = render_chart(_buckets([10, 0, 5, 1, 200]), width=50)
    lines = chart.splitlines()
    assert len(lines) == 5
    assert all(len(line) <= 50 for line in lines)
    bars = [line.split("|", 1)[1].count("#") for line in lines]
    assert bars[1] == 0  # an empty minute shows no bar
    assert bars[3] >= 1  # any request shows at least one mark
    assert bars[4] == max(bars) and bars[0] == pytest.approx(bars[4] / 20, abs=1)
    assert lines[0].startswith("12:00 |") and lines[0].endswith("10.0/min")
    assert lines[4].endswith(" 200/min")


def test_chart_reports_requests_per_minute_for_other_widths() -> None:
    lines = render_chart(_buckets([30, 60], width_s=300), width=60).splitlines()
    assert lines[0].endswith("6.0/min") and lines[1].endswith("12.0/min")
    lines = render_chart(_buckets([5], width_s=10), width=60).splitlines()
    assert lines[0].startswith("12:00:00") and lines[0].endswith("30.0/min")


def test_chart_labels_carry_the_date_across_days_and_handle_nothing() -> None:
    lines = render_chart(_buckets([1] * 9, width_s=3 * 3600), width=60).splitlines()
    assert lines[0].startswith("03-01 12:00") and lines[-1].startswith("03-02 12:00")
    assert lines[0].endswith(" 0.0056/min")  # one request in three hours
    assert render_chart([]) == "(no requests)"
    assert render_chart(_buckets([0, 0]), width=40).count("#") == 0


def test_bucket_width_is_the_narrowest_that_fits() -> None:
    assert choose_bucket_width_s(T0, T0) == 10
    assert choose_bucket_width_s(T0, T0 + timedelta(minutes=3)) == 10
    assert choose_bucket_width_s(T0, T0 + timedelta(minutes=10)) == 30
    assert choose_bucket_width_s(T0, T0 + timedelta(minutes=20)) == 60
    assert choose_bucket_width_s(T0, T0 + timedelta(days=2)) == 3 * 3600
    assert choose_bucket_width_s(T0, T0 + timedelta(days=3)) == 6 * 3600
    assert choose_bucket_width_s(T0, T0 + timedelta(days=400)) == 86400


def test_quoting() -> None:
    assert quote_ident("sex") == '"sex"'
    assert quote_ident('we"ird') == '"we""ird"'
    assert quote_literal("No Risk") == "'No Risk'"
    assert quote_literal("it's") == "'it''s'"
    with pytest.raises(ValueError):
        quote_ident("")
    with pytest.raises(ValueError):
        quote_ident("a\x00b")


def _summary(female_no_risk: int, male_no_risk: int) -> Summary:
    return Summary(
        schema="demo",
        table="payload_GermanCreditRiskModel",
        total_rows=300,
        total_requests=150,
        first_timestamp=T0,
        last_timestamp=T0 + timedelta(minutes=2),
        dead_letters={"invalid_record": 3, "malformed_json": 2},
        buckets=_buckets([50, 70, 30]),
        prediction_mix={"No Risk": 200, "Risk": 100},
        by_sex=[
            GroupRate("female", 100, 100 - female_no_risk, female_no_risk),
            GroupRate("male", 200, 200 - male_no_risk, male_no_risk),
        ],
        by_age_band=[GroupRate("19-25", 60, 30, 30), GroupRate("51+", 0, 0, 0)],
        queries=[Query("prediction mix", 'SELECT 1 FROM "demo"."t";')],
    )


def test_disparate_impact_and_render() -> None:
    summary = _summary(female_no_risk=60, male_no_risk=160)
    assert summary.disparate_impact == pytest.approx(0.6 / 0.8)
    assert summary.dead_letters_total == 5
    text = render(summary)
    assert '"demo"."payload_GermanCreditRiskModel"' in text
    assert "rows: 300 from 150 requests" in text
    assert "dead letters: 5" in text and "invalid_record" in text
    assert "P(No Risk | female) / P(No Risk | male) = 0.75" in text
    assert "four-fifths" in text and "BELOW the line, a warning" in text
    assert "female" in text and " 40.0%" in text  # female Risk rate
    assert "n/a" in text  # the empty 51+ band
    assert "12:01 |" in text and "70.0/min" in text
    assert 'SELECT 1 FROM "demo"."t";' in text
    assert all(len(line) <= 78 for line in text.split("The SQL behind")[0].splitlines())

    fair = _summary(female_no_risk=78, male_no_risk=160)
    assert "above the line" in render(fair)
    assert _summary(female_no_risk=50, male_no_risk=0).disparate_impact is None


def test_columns_from_the_subscription_fields() -> None:
    fields = [
        {"name": "Sex", "column": "sex", "role": "feature", "type": "text"},
        {"name": "LoanDuration", "column": "loan_duration", "role": "feature", "type": "integer"},
    ]
    assert columns_from_fields(fields) == {"Sex": "sex", "LoanDuration": "loan_duration"}
    assert columns_from_fields(json.dumps(fields)) == columns_from_fields(fields)
