"""The alert rules and the Grafana dashboard of examples/prometheus/: promtool (Debian's prometheus package)
checks the rules and runs their tests, and every expression reads only series a worker exports."""

from __future__ import annotations

import json
import subprocess
from typing import Any

import pytest

from tests.deploy import PROMETHEUS, exposed_metrics, load_yaml, metrics_in, system_tool

(RULES,) = load_yaml(PROMETHEUS / "alerts.yml")
(RULE_TESTS,) = load_yaml(PROMETHEUS / "alerts_test.yml")
ALERTS = {rule["alert"]: rule for group in RULES["groups"] for rule in group["rules"]}
DASHBOARD: dict[str, Any] = json.loads((PROMETHEUS / "grafana-dashboard.json").read_text(encoding="utf-8"))
SCRAPE_SERIES = {"up"}  # what Prometheus itself records per target


def promtool(*args: str) -> str:
    run = subprocess.run(
        [system_tool("promtool", "prometheus"), *args], cwd=PROMETHEUS, capture_output=True, text=True, check=False
    )
    assert run.returncode == 0, f"promtool {' '.join(args)}:\n{run.stdout}\n{run.stderr}"
    return run.stdout


def test_promtool_checks_the_rules() -> None:
    assert f"SUCCESS: {len(ALERTS)} rules found" in promtool("check", "rules", "alerts.yml")


def test_promtool_runs_the_rule_tests() -> None:
    assert "SUCCESS" in promtool("test", "rules", "alerts_test.yml")


def test_the_alerts_the_issue_asks_for() -> None:
    assert set(ALERTS) == {
        "StreamLoggerWorkerDown",
        "StreamLoggerWorkerNotReady",
        "StreamLoggerLagGrowing",
        "StreamLoggerDeadLetters",
        "StreamLoggerRetriesClimbing",
        "StreamLoggerMonitorBreached",
    }


def test_every_alert_is_tested_firing_and_not_firing() -> None:
    firing: set[str] = set()
    quiet: set[str] = set()
    for case in RULE_TESTS["tests"]:
        for check in case["alert_rule_test"]:
            (firing if check["exp_alerts"] else quiet).add(check["alertname"])
    assert firing == set(ALERTS), set(ALERTS) - firing
    assert quiet == set(ALERTS), set(ALERTS) - quiet


@pytest.mark.parametrize("alert", sorted(ALERTS))
def test_alert_expressions_read_only_series_a_worker_exports(alert: str) -> None:
    names = metrics_in(ALERTS[alert]["expr"])
    assert names and names <= exposed_metrics() | SCRAPE_SERIES, names - exposed_metrics()


def dashboard_expressions() -> list[tuple[str, str]]:
    return [(panel["title"], target["expr"]) for panel in DASHBOARD["panels"] for target in panel["targets"]]


def test_dashboard_expressions_read_only_series_a_worker_exports() -> None:
    read: set[str] = set()
    for title, expr in dashboard_expressions():
        names = metrics_in(expr)
        assert names and names <= exposed_metrics() | SCRAPE_SERIES, f"{title}: {names - exposed_metrics()}"
        read |= names
    # Every panel the issue asks for has its series.
    for series in (
        "stream_logger_rows_written_total",
        "stream_logger_partition_lag",
        "stream_logger_dead_letters_total",
        "stream_logger_retries_total",
        "stream_logger_batch_write_seconds_bucket",
        "stream_logger_ready",
    ):
        assert series in read, series


def test_the_dashboard_is_importable() -> None:
    assert DASHBOARD["uid"] and DASHBOARD["title"] and DASHBOARD["schemaVersion"] >= 36
    ids = [panel["id"] for panel in DASHBOARD["panels"]]
    assert len(ids) == len(set(ids))
    variables = {v["name"] for v in DASHBOARD["templating"]["list"]}
    for panel in DASHBOARD["panels"]:
        assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
        for target in panel["targets"]:
            assert "$job" in target["expr"], panel["title"]
    assert variables == {"datasource", "job"}
