"""Monitors over the real datamart: planted fairness and traffic, every metric checked against numpy in the test;
a window evaluated again replaces its measurements; edge cases give a state, not a number."""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import subprocess
import sys
import time
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import numpy as np
import orjson
import pytest
from sklearn.metrics import accuracy_score, f1_score

from stream_logger import Emitter
from stream_logger.cli import main
from stream_logger.config import Settings
from stream_logger.identifiers import quote_ident
from stream_logger.readback import Datamart
from tests.support import config, free_ports, produce, run_until_caught_up

pytestmark = pytest.mark.integration

SUB = "credit"
NOW = datetime.now(UTC).replace(microsecond=0)
T0 = NOW - timedelta(hours=1)


def _calls(n: int, seed: int = 7) -> list[dict[str, Any]]:
    """Calls with a planted bias: women are favoured ("No Risk") half the time, men 80%; ages 19-70; one call in
    ten fails (no response, status 500)."""
    rng = np.random.default_rng(seed)
    calls = []
    for i in range(n):
        sex = "female" if i % 3 == 0 else "male"
        favoured = rng.random() < (0.5 if sex == "female" else 0.8)
        call: dict[str, Any] = {
            "subscription_id": SUB,
            "scoring_id": f"c-{i}",
            "scoring_timestamp": T0 + timedelta(seconds=5 * i),
            "request": {"fields": ["Sex", "Age"], "values": [[sex, int(19 + i % 52)]]},
            "response": {"fields": ["prediction"], "values": [["No Risk" if favoured else "Risk"]]},
            "response_time_ms": float(rng.uniform(2, 50)),
        }
        if i % 10 == 9:
            call |= {"response": None, "status_code": 500, "error": "timeout"}
        calls.append(call)
    return calls


MONITORS = {
    "subscription_id": SUB,
    "monitors": [
        {
            "name": "fairness",
            "kind": "fairness",
            "window": "2h",
            "favourable": ["No Risk"],
            "min_records": 20,
            "attributes": [
                {"field": "Sex", "reference": ["male"], "monitored": ["female"]},
                {"field": "Age", "reference": [[26, 120]], "monitored": [[19, 25]]},
            ],
        },
        {
            "name": "nobody",
            "kind": "fairness",
            "window": "2h",
            "favourable": ["No Risk"],
            "attributes": [{"field": "Age", "reference": [[26, 120]], "monitored": [[200, 300]]}],
        },
        {"name": "traffic", "kind": "traffic", "window": "2h", "thresholds": {"error_rate": {"max": 0.05}}},
        {
            "name": "quality",
            "kind": "quality",
            "window": "2h",
            "problem_type": "binary",
            "positive_class": "Risk",
            "min_records": 20,
            "thresholds": {"accuracy": {"min": 0.8}},
        },
    ],
}


async def cli(argv: list[str]) -> int:
    """The command line, as a shell runs it (its own event loop, on a thread of its own)."""
    return await asyncio.to_thread(main, argv)


async def _measurements(pg: asyncpg.Connection, schema: str) -> dict[tuple[str, str], asyncpg.Record]:
    rows = await pg.fetch(f"SELECT * FROM {quote_ident(schema)}.measurements")
    return {(r["monitor"], r["metric"]): r for r in rows}


async def test_fairness_and_traffic_measurements_match_an_independent_computation(
    settings: Settings,
    topic: str,
    datamart_schema: str,
    pg: asyncpg.Connection,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    schema = datamart_schema
    calls = _calls(600)
    truth: dict[str, str] = {}  # labels for the calls c-0 .. c-199: the prediction, flipped for one in four
    async with Emitter(topic, settings.bootstrap_servers, spool_dir=tmp_path / "spool", strict=True) as em:
        for call in calls:
            em.log(**call)
        for call in calls[:200]:
            said = call["response"]["values"][0][0] if call["response"] else "Risk"
            truth[call["scoring_id"]] = (
                said if int(call["scoring_id"][2:]) % 4 else ("Risk" if said != "Risk" else "No Risk")
            )
            em.log_feedback(subscription_id=SUB, scoring_id=call["scoring_id"], label=truth[call["scoring_id"]])
        assert await em.flush(30)
    bad = {"schema_version": 1, "scoring_id": "bad", "scoring_timestamp": T0.isoformat(), "subscription_id": SUB}
    bad |= {"request": {"fields": ["Sex", "Age"], "values": [["male", "old"]]}, "response": calls[0]["response"]}
    await produce(settings, topic, [orjson.dumps(bad)], [b"bad"])
    await run_until_caught_up(settings, config(topic, schema))

    file = tmp_path / "monitors.json"
    file.write_text(json.dumps(MONITORS))
    connection = ["--dsn", settings.dsn]
    assert await cli(["monitor", "add", "--schema", schema, "--file", str(file), *connection]) == 0
    window = ["--from", (T0 - timedelta(minutes=1)).isoformat(), "--to", (NOW + timedelta(hours=1)).isoformat()]
    for _ in range(2):  # the same window twice: replaced, not doubled
        assert await cli(["monitor", "run", "--schema", schema, "--once", *window, *connection]) == 0
    found = await _measurements(pg, schema)
    assert len(found) == len(await pg.fetch(f"SELECT 1 FROM {quote_ident(schema)}.measurements"))

    # Fairness, from the payload rows' planted values (failed calls have no prediction: never favoured).
    scored = [c for c in calls if c["response"] is not None]

    def rate(rows: list[dict[str, Any]]) -> float:
        return float(np.mean([r["response"]["values"][0][0] == "No Risk" for r in rows]))

    def group(test: Any) -> list[dict[str, Any]]:
        return [c for c in calls if test(c["request"]["values"][0])]

    women, men = group(lambda v: v[0] == "female"), group(lambda v: v[0] == "male")
    young, older = group(lambda v: 19 <= v[1] <= 25), group(lambda v: 26 <= v[1] <= 120)
    for name, monitored, reference in (("Sex", women, men), ("Age", young, older)):
        impact = found["fairness", f"disparate_impact:{name}"]
        m_rate = sum(c in scored and c["response"]["values"][0][0] == "No Risk" for c in monitored) / len(monitored)
        r_rate = sum(c in scored and c["response"]["values"][0][0] == "No Risk" for c in reference) / len(reference)
        assert impact["value"] == pytest.approx(m_rate / r_rate, rel=1e-12)
        assert found["fairness", f"statistical_parity_difference:{name}"]["value"] == pytest.approx(m_rate - r_rate)
        details = orjson.loads(impact["details"])
        assert (details["monitored"]["rows"], details["reference"]["rows"]) == (len(monitored), len(reference))
    assert rate([c for c in scored if c in women]) < 0.6 < rate([c for c in scored if c in men])  # planted
    assert found["nobody", "disparate_impact:Age"]["state"] == "too_few_records"  # a group of no one
    sex_impact = found["fairness", "disparate_impact:Sex"]
    assert sex_impact["breached"] and sex_impact["threshold_min"] == 0.8  # the four-fifths rule, by default
    spd = found["fairness", "statistical_parity_difference:Sex"]
    assert spd["breached"] and (spd["threshold_min"], spd["threshold_max"]) == (-0.1, 0.1)

    # Traffic.
    minutes = (NOW + timedelta(hours=1) - (T0 - timedelta(minutes=1))).total_seconds() / 60
    times = np.array([c["response_time_ms"] for c in calls])
    assert found["traffic", "requests_per_minute"]["value"] == pytest.approx(len(calls) / minutes)
    assert found["traffic", "rows_per_minute"]["value"] == pytest.approx(len(calls) / minutes)  # a row a call
    assert found["traffic", "response_time_p50"]["value"] == pytest.approx(np.percentile(times, 50))
    assert found["traffic", "response_time_p99"]["value"] == pytest.approx(np.percentile(times, 99))
    error_rate = found["traffic", "error_rate"]
    assert error_rate["value"] == pytest.approx(0.1) and error_rate["breached"]
    letters = found["traffic", "dead_letters"]
    assert letters["value"] == 1 and orjson.loads(letters["details"])["by_reason"] == {"type_conflict": 1}

    # Quality, on the labelled rows that have a prediction (a failed call has none).
    judged = [c for c in calls[:200] if c["response"] is not None]
    y_true = [truth[c["scoring_id"]] for c in judged]
    y_pred = [c["response"]["values"][0][0] for c in judged]
    accuracy = found["quality", "accuracy"]
    assert accuracy["value"] == pytest.approx(accuracy_score(y_true, y_pred)) and accuracy["breached"]
    assert found["quality", "f1"]["value"] == pytest.approx(f1_score(y_true, y_pred, pos_label="Risk"))
    assert found["quality", "auc_roc"]["state"] == "undefined"  # the model gives no probability here

    # Show: the latest value, its threshold, its state, its history.
    capsys.readouterr()
    assert await cli(["monitor", "show", "--schema", schema, "--json", *connection]) == 0
    shown = {(m["monitor"], m["metric"]): m for m in json.loads(capsys.readouterr().out)}
    assert shown["fairness", "disparate_impact:Sex"]["breached"] and len(shown) == len(found)
    assert await cli(["monitor", "show", "--schema", schema, *connection]) == 0
    assert "breached" in capsys.readouterr().out

    # From a notebook: the measurements as a DataFrame, details as dicts.
    frame = await asyncio.to_thread(Datamart(schema, settings.dsn).measurements, SUB)
    assert len(frame) == len(found) and set(frame["monitor"]) == {"fairness", "nobody", "traffic", "quality"}
    row = frame[frame["metric"] == "disparate_impact:Sex"].iloc[0]
    assert row["value"] == pytest.approx(sex_impact["value"]) and row["details"]["monitored"]["rows"] == len(women)


async def test_edge_cases_give_a_state_not_a_number(
    settings: Settings, topic: str, datamart_schema: str, pg: asyncpg.Connection, tmp_path: Path
) -> None:
    schema = datamart_schema
    async with Emitter(topic, settings.bootstrap_servers, spool_dir=tmp_path / "spool", strict=True) as em:
        for call in _calls(30):
            em.log(**call)
        assert await em.flush(30)
    await run_until_caught_up(settings, config(topic, schema))
    file = tmp_path / "monitors.json"
    file.write_text(json.dumps(MONITORS))
    connection = ["--dsn", settings.dsn]
    assert await cli(["monitor", "add", "--schema", schema, "--file", str(file), *connection]) == 0
    # A window with rows, but groups below min_records (20): too_few_records, never a ratio of a handful.
    window = ["--from", (T0 - timedelta(minutes=1)).isoformat(), "--to", (NOW + timedelta(hours=1)).isoformat()]
    assert await cli(["monitor", "run", "--schema", schema, "--once", *window, *connection]) == 0
    found = await _measurements(pg, schema)
    assert {found["fairness", m]["state"] for m in ("disparate_impact:Sex", "disparate_impact:Age")} == {
        "too_few_records"
    }
    assert (
        found["fairness", "disparate_impact:Sex"]["value"] is None
        and not found["fairness", "disparate_impact:Sex"]["breached"]
    )
    # An empty window: no_data.
    await pg.execute(f"DELETE FROM {quote_ident(schema)}.measurements")
    empty = ["--from", "2020-01-01T00:00:00Z", "--to", "2020-01-02T00:00:00Z"]
    assert await cli(["monitor", "run", "--schema", schema, "--once", *empty, *connection]) == 0
    found = await _measurements(pg, schema)
    assert found["fairness", "disparate_impact:Sex"]["state"] == "no_data"
    assert found["traffic", "error_rate"]["state"] == "no_data"
    assert found["traffic", "requests_per_minute"]["value"] == 0
    assert found["quality", "accuracy"]["state"] == "no_labels"  # none was ever logged here


async def test_every_serves_the_latest_values_as_gauges_and_stops_on_sigterm(
    settings: Settings, topic: str, datamart_schema: str, tmp_path: Path
) -> None:
    schema = datamart_schema
    async with Emitter(topic, settings.bootstrap_servers, spool_dir=tmp_path / "spool", strict=True) as em:
        for call in _calls(300):
            em.log(**{**call, "scoring_timestamp": datetime.now(UTC)})  # within the monitors' own windows
        assert await em.flush(30)
    await run_until_caught_up(settings, config(topic, schema))
    file = tmp_path / "monitors.json"
    file.write_text(json.dumps(MONITORS))
    assert await cli(["monitor", "add", "--schema", schema, "--file", str(file), "--dsn", settings.dsn]) == 0
    (port,) = free_ports(1)
    argv = ["monitor", "run", "--schema", schema, "--every", "1s", "--metrics-port", str(port), "--dsn", settings.dsn]
    proc = subprocess.Popen(
        [sys.executable, "-m", "stream_logger", *argv], stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    try:
        deadline = time.monotonic() + 60
        text = ""
        while "stream_logger_monitor_breached{" not in text:  # a sample, not only the HELP lines
            assert time.monotonic() < deadline and proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            await asyncio.sleep(0.3)
            with contextlib.suppress(OSError):
                text = await asyncio.to_thread(
                    lambda: urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
                )
        labels = 'metric="disparate_impact:Sex",monitor="fairness",subscription="credit"'
        assert f"stream_logger_monitor_breached{{{labels}}} 1.0" in text
        assert f"stream_logger_monitor_value{{{labels}}} 0." in text
        assert 'stream_logger_monitor_value{metric="error_rate",monitor="traffic",subscription="credit"} 0.1' in text
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert b"Traceback" not in err and b"breached" in out


async def test_a_planted_drift_is_measured_against_a_window_and_against_a_sample(
    settings: Settings, topic: str, datamart_schema: str, pg: asyncpg.Connection, tmp_path: Path
) -> None:
    """The population shifts halfway: ages move up by 15 years; the mix of sexes stays. Against the first half (a
    window of the payload table, or the same rows as a CSV training sample), Age drifts and Sex does not."""
    rng = np.random.default_rng(3)
    half = T0 + timedelta(minutes=30)
    rows = []
    async with Emitter(topic, settings.bootstrap_servers, spool_dir=tmp_path / "spool", strict=True) as em:
        for i in range(800):
            later = i >= 400
            age = int(np.clip(rng.normal(45 if later else 30, 5), 19, 74))
            sex = "female" if rng.random() < 0.4 else "male"
            when = (half if later else T0) + timedelta(seconds=4 * (i % 400))
            em.log(
                subscription_id=SUB,
                request={"fields": ["Sex", "Age"], "values": [[sex, age]]},
                response={"fields": ["prediction"], "values": [["No Risk"]]},
                scoring_timestamp=when,
            )
            if not later:
                rows.append(f"{sex},{age}")
        assert await em.flush(30)
    await run_until_caught_up(settings, config(topic, datamart_schema))
    sample = tmp_path / "training.csv"
    sample.write_text("Sex,Age\n" + "\n".join(rows) + "\n")
    drift: dict[str, Any] = {"kind": "drift", "window": "30m", "bins": 5}
    monitors = {
        "subscription_id": SUB,
        "monitors": [
            {**drift, "name": "vs-window", "baseline": {"from": T0.isoformat(), "to": half.isoformat()}},
            {**drift, "name": "vs-sample", "baseline": {"sample": str(sample)}},
        ],
    }
    file = tmp_path / "monitors.json"
    file.write_text(json.dumps(monitors))
    connection = ["--dsn", settings.dsn]
    assert await cli(["monitor", "add", "--schema", datamart_schema, "--file", str(file), *connection]) == 0
    window = ["--from", half.isoformat(), "--to", (half + timedelta(minutes=30)).isoformat()]
    assert await cli(["monitor", "run", "--schema", datamart_schema, "--once", *window, *connection]) == 0
    found = await _measurements(pg, datamart_schema)
    for name in ("vs-window", "vs-sample"):
        age, sex, share = (found[name, m] for m in ("psi:Age", "psi:Sex", "drifted_share"))
        assert age["value"] > 1 and age["breached"] and age["threshold_max"] == 0.2  # a large shift
        assert sex["value"] < 0.1 and not sex["breached"]
        assert share["value"] == 0.5 and orjson.loads(share["details"])["drifted"] == ["Age"]
    assert found["vs-window", "psi:Age"]["value"] == pytest.approx(found["vs-sample", "psi:Age"]["value"])
