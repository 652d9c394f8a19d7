"""Monitor definitions, thresholds, windows and the sparkline (no database)."""

from __future__ import annotations

import copy
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from stream_logger.errors import MonitorError
from stream_logger.evaluation import MetricValue, Window
from stream_logger.measurements import measure, sparkline
from stream_logger.metrics import MonitorMetrics
from stream_logger.monitor_run import window_of
from stream_logger.monitors import Threshold, parse_monitors

GOOD: dict[str, Any] = {
    "subscription_id": "credit",
    "monitors": [
        {
            "name": "fairness",
            "kind": "fairness",
            "window": "1d",
            "favourable": ["No Risk"],
            "attributes": [
                {"field": "Sex", "reference": ["male"], "monitored": ["female"]},
                {"field": "Age", "reference": [[26, 120]], "monitored": [[18, 25]]},
            ],
            "thresholds": {"disparate_impact:Age": {"min": 0.9}},
        },
        {"name": "traffic", "kind": "traffic", "window": "90m", "thresholds": {"error_rate": {"max": 0.05}}},
    ],
}


def test_a_good_file_parses() -> None:
    fairness, traffic = parse_monitors(GOOD)
    assert (fairness.name, fairness.kind, fairness.window_s, traffic.window_s) == ("fairness", "fairness", 86400, 5400)
    assert fairness.spec["min_records"] == 30 and fairness.spec["prediction_field"] is None
    assert fairness.spec["attributes"][1]["monitored"] == {"values": [], "ranges": [[18.0, 25.0]]}
    # its own threshold, else its family's default, else none
    assert fairness.threshold("disparate_impact:Age") == Threshold(min=0.9)
    assert fairness.threshold("disparate_impact:Sex") == Threshold(min=0.8)
    assert fairness.threshold("statistical_parity_difference:Sex") == Threshold(min=-0.1, max=0.1)
    assert (
        traffic.threshold("error_rate") == Threshold(max=0.05) and traffic.threshold("rows_per_minute") == Threshold()
    )


def _with(path: tuple[Any, ...], value: Any) -> dict[str, Any]:
    doc = copy.deepcopy(GOOD)
    target: Any = doc
    for step in path[:-1]:
        target = target[step]
    if value is _DROP:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    return doc


_DROP = object()


@pytest.mark.parametrize(
    ("path", "value", "where"),
    [
        (("monitors",), [], "monitors"),
        (("monitors", 0, "kind"), "vibes", "monitors[0].kind"),
        (("monitors", 0, "window"), "soon", "monitors[0].window"),
        (("monitors", 0, "favourable"), [], "monitors[0].favourable"),
        (("monitors", 0, "attributes", 0, "monitored"), [[3]], "monitors[0].attributes[0].monitored[0]"),
        (("monitors", 0, "attributes", 1, "monitored"), [[30, 20]], "monitors[0].attributes[1].monitored[0]"),
        (("monitors", 0, "attributes", 1, "field"), "Sex", "monitors[0].attributes[1].field"),
        (("monitors", 0, "min_records"), 0, "monitors[0].min_records"),
        (("monitors", 0, "colour"), "red", "monitors[0]"),
        (("monitors", 1, "thresholds", "error_rate"), {"min": 0.5, "max": 0.1}, "monitors[1].thresholds.error_rate"),
        (("monitors", 1, "thresholds", "error_rate"), {"max": float("nan")}, "monitors[1].thresholds.error_rate.max"),
        (("monitors", 1, "name"), "fairness", "monitors[1].name"),
        (("subscription_id",), _DROP, "subscription_id"),
    ],
)
def test_a_bad_file_is_refused_saying_where(path: tuple[Any, ...], value: Any, where: str) -> None:
    with pytest.raises(MonitorError, match=rf"monitors: {where.replace('[', '.').replace(']', '.')}"):
        parse_monitors(_with(path, value))


def test_a_threshold_is_breached_outside_its_range_only_with_a_value() -> None:
    band = Threshold(min=-0.1, max=0.1)
    assert [band.breached(v) for v in (-0.2, -0.1, 0.0, 0.1, 0.2, None)] == [True, False, False, False, True, False]


def test_a_metric_without_a_value_is_never_breached() -> None:
    (fairness, _) = parse_monitors(GOOD)
    window = Window(datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 1, 2, tzinfo=UTC))
    rows = measure(
        fairness,
        window,
        [MetricValue("disparate_impact:Sex", 0.5), MetricValue("disparate_impact:Age", None, "too_few_records")],
    )
    assert [(r.breached, r.status, r.threshold_min) for r in rows] == [
        (True, "breached", 0.8),
        (False, "too_few_records", 0.9),
    ]


def test_a_value_goes_with_the_state_ok_only() -> None:
    with pytest.raises(ValueError):
        MetricValue("x", None)
    with pytest.raises(ValueError):
        MetricValue("x", 1.0, "no_data")
    with pytest.raises(ValueError):
        MetricValue("x", None, "vibes")


def test_a_monitors_own_window_ends_at_the_end_of_the_minute() -> None:
    (fairness, _) = parse_monitors(GOOD)
    now = datetime(2026, 3, 1, 12, 34, 56, 789, tzinfo=UTC)
    assert window_of(fairness, now) == Window(
        datetime(2026, 2, 28, 12, 35, tzinfo=UTC), datetime(2026, 3, 1, 12, 35, tzinfo=UTC)
    )
    with pytest.raises(ValueError):
        Window(now, now - timedelta(seconds=1))


def test_the_sparkline_scales_from_least_to_greatest() -> None:
    assert sparkline([0, 1, 2, 3, 4, 5, 6, 7]) == "▁▂▃▄▅▆▇█"
    assert sparkline([1.0, None, 1.0]) == "▁ ▁"
    assert sparkline([None, None]) == "  "


def test_the_gauges_hold_each_metrics_latest_value_and_breach() -> None:
    (fairness, _) = parse_monitors(GOOD)
    window = Window(datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 1, 2, tzinfo=UTC))
    metrics = MonitorMetrics()
    metrics.update(measure(fairness, window, [MetricValue("disparate_impact:Sex", 0.5)]))
    metrics.update(measure(fairness, window, [MetricValue("disparate_impact:Sex", None, "too_few_records")]))
    text = metrics.render().decode()
    labels = 'metric="disparate_impact:Sex",monitor="fairness",subscription="credit"'
    assert f"stream_logger_monitor_value{{{labels}}} NaN" in text
    assert f"stream_logger_monitor_breached{{{labels}}} 0.0" in text


QUALITY: dict[str, Any] = {"name": "q", "kind": "quality", "problem_type": "binary", "positive_class": "Risk"}
DRIFT: dict[str, Any] = {
    "name": "d",
    "kind": "drift",
    "baseline": {"from": "2026-01-01T00:00:00Z", "to": "2026-01-02T00:00:00Z"},
}


def test_quality_and_drift_definitions_parse_with_their_defaults() -> None:
    quality, drift = parse_monitors({"subscription_id": "credit", "monitors": [QUALITY, DRIFT]})
    assert quality.spec == {
        "problem_type": "binary",
        "positive_class": "Risk",
        "prediction_field": None,
        "probability_field": None,
        "probability_index": None,
        "min_records": 30,
    }
    assert drift.spec["baseline"] == {"from": datetime(2026, 1, 1, tzinfo=UTC), "to": datetime(2026, 1, 2, tzinfo=UTC)}
    assert (drift.spec["bins"], drift.spec["psi_threshold"], drift.spec["features"]) == (10, 0.2, None)
    assert drift.threshold("psi:Age") == Threshold(max=0.2)


@pytest.mark.parametrize(
    ("monitor", "where"),
    [
        ({**QUALITY, "problem_type": "ranking"}, "monitors[0].problem_type"),
        ({**QUALITY, "positive_class": None}, "monitors[0].positive_class"),
        ({**QUALITY, "probability_index": -1}, "monitors[0].probability_index"),
        ({**DRIFT, "baseline": {"from": "2026-01-02T00:00:00Z", "to": "2026-01-01T00:00:00Z"}}, "monitors[0].baseline"),
        ({**DRIFT, "baseline": {"from": "yesterday", "to": "2026-01-01T00:00:00Z"}}, "monitors[0].baseline.from"),
        ({**DRIFT, "baseline": "last week"}, "monitors[0].baseline"),
        ({**DRIFT, "bins": 1}, "monitors[0].bins"),
        ({**DRIFT, "features": []}, "monitors[0].features"),
    ],
)
def test_a_bad_quality_or_drift_definition_is_refused_saying_where(monitor: dict[str, Any], where: str) -> None:
    with pytest.raises(MonitorError, match=rf"monitors: {where.replace('[', '.').replace(']', '.')}"):
        parse_monitors({"subscription_id": "credit", "monitors": [monitor]})
