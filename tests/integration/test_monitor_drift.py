"""The drift monitor on the real PostgreSQL server: a payload table made by hand with a planted drift, every PSI
checked against a numpy computation of its own (numpy.quantile's linear method for the edges, the same floor for
empty bins), the CSV training sample as a baseline, and the edge cases that give a state instead of a number."""

from __future__ import annotations

import csv
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import numpy as np
import pytest

from stream_logger.errors import ConfigError, DatamartError
from stream_logger.evaluation import MetricValue, Window
from stream_logger.identifiers import quote_ident
from stream_logger.monitor_drift import (
    EPSILON,
    DriftFeature,
    SampleBaseline,
    WindowBaseline,
    drift_metrics,
)

pytestmark = pytest.mark.integration

T0 = datetime(2025, 3, 1, tzinfo=UTC)
BASELINE = WindowBaseline(T0, T0 + timedelta(hours=1))
WINDOW = Window(T0 + timedelta(hours=1), T0 + timedelta(hours=2))
EMPTY_WINDOW = Window(T0 + timedelta(hours=5), T0 + timedelta(hours=6))
# numpy.quantile places a quantile q at n*q - q, PostgreSQL at q*(n-1): the same number, rounded differently in its
# last bit, which moves an edge off a whole value by an ulp when the position is a whole number. With n-1 prime to
# the numbers of bins tested (10 and 4), no quantile falls on a whole position, so the reference's edges are
# PostgreSQL's (checked below to 1e-12) and an integer on an edge lands in the same bin on both.
BASELINE_ROWS = 2000
WINDOW_ROWS = 1500

INCOME = DriftFeature("Income", "income", "numeric")  # shifts by 0.8 standard deviations: PSI about 0.6
AGE = DriftFeature("Age", "age", "numeric")  # integers, a third of them 35 (equal edges merged); does not drift
PURPOSE = DriftFeature("Purpose", "purpose", "categorical")  # its mix changes, and a value appears
HOUSING = DriftFeature("Housing", "housing", "categorical")  # does not drift
OWNER = DriftFeature("Owner", "owner", "categorical")  # a boolean
FEATURES = [INCOME, AGE, PURPOSE, HOUSING, OWNER]


@dataclass
class Side:
    """One side's values by column, as the test generated them (None is null)."""

    columns: dict[str, list[Any]]


def _side(rng: np.random.Generator, n: int, *, shifted: bool) -> Side:
    income: list[Any] = [float(x) for x in rng.normal(58.0 if shifted else 50.0, 10.0, n)]
    for i in rng.choice(n, n // 20, replace=False):  # some nulls, which are not values
        income[i] = None
    age = np.where(rng.random(n) < 0.35, 35, rng.integers(18, 71, n))
    purposes = ["car", "education", "furniture", "repairs"] if shifted else ["car", "education", "furniture"]
    mix = [0.2, 0.3, 0.35, 0.15] if shifted else [0.5, 0.3, 0.2]
    return Side(
        {
            "income": income,
            "age": [int(a) for a in age],
            "purpose": [str(x) for x in rng.choice(purposes, n, p=mix)],
            "housing": [str(x) for x in rng.choice(["own", "rent", "free"], n, p=[0.6, 0.3, 0.1])],
            "owner": [bool(b) for b in rng.random(n) < 0.4],
        }
    )


@dataclass
class Payload:
    relation: str
    baseline: Side
    window: Side


@pytest.fixture
async def payload(pg: asyncpg.Connection, schema: str) -> AsyncIterator[Payload]:
    """A payload table in a fresh schema: the baseline hour, then the hour with the planted drift."""
    rng = np.random.default_rng(19)
    baseline, window = _side(rng, BASELINE_ROWS, shifted=False), _side(rng, WINDOW_ROWS, shifted=True)
    await pg.execute(f"CREATE SCHEMA {quote_ident(schema)}")
    relation = f"{quote_ident(schema)}.{quote_ident('payload_credit')}"
    await pg.execute(
        f"CREATE TABLE {relation} (scoring_id text, scoring_timestamp timestamptz NOT NULL, income double precision,"
        " age bigint, purpose text, housing text, owner boolean, note text)"
    )
    for side, start, n in ((baseline, BASELINE.start, BASELINE_ROWS), (window, WINDOW.start, WINDOW_ROWS)):
        step = timedelta(hours=1) / n
        records = [
            (
                f"id{i}",
                start + i * step,
                *(side.columns[c][i] for c in ("income", "age", "purpose", "housing", "owner")),
            )
            for i in range(n)
        ]
        await pg.copy_records_to_table(
            "payload_credit",
            schema_name=schema,
            columns=["scoring_id", "scoring_timestamp", "income", "age", "purpose", "housing", "owner"],
            records=records,
        )
    yield Payload(relation, baseline, window)


# ---------------------------------------------------------------------------------------- the reference, in numpy


def text(value: Any) -> str:
    """A value as PostgreSQL writes it as text (``true`` for a boolean)."""
    return str(value).lower() if isinstance(value, bool) else str(value)


def _shares(counts: np.ndarray) -> np.ndarray:
    shares: np.ndarray = np.maximum(counts / counts.sum(), EPSILON)
    return shares


def _psi(expected_counts: np.ndarray, actual_counts: np.ndarray) -> float:
    e, a = _shares(expected_counts), _shares(actual_counts)
    return float(np.sum((a - e) * np.log(a / e)))


def reference_numeric(baseline: Sequence[Any], window: Sequence[Any], bins: int) -> tuple[float, np.ndarray]:
    """PSI on the baseline's quantile bins, closed below, the outer ones open; equal edges merged."""
    b = np.array([v for v in baseline if v is not None], dtype=float)
    w = np.array([v for v in window if v is not None], dtype=float)
    edges = np.unique(np.quantile(b, np.arange(1, bins) / bins, method="linear"))

    def count(x: np.ndarray) -> np.ndarray:
        counts: np.ndarray = np.bincount(np.searchsorted(edges, x, side="right"), minlength=len(edges) + 1)
        return counts

    return _psi(count(b), count(w)), edges


def reference_categorical(baseline: Sequence[Any], window: Sequence[Any]) -> tuple[float, list[str]]:
    """PSI with one bin per value seen on either side."""
    b = [text(v) for v in baseline if v is not None]
    w = [text(v) for v in window if v is not None]
    values = sorted(set(b) | set(w))
    return _psi(np.array([b.count(v) for v in values]), np.array([w.count(v) for v in values])), values


def reference(payload: Payload, feature: DriftFeature, bins: int = 10) -> float:
    b, w = payload.baseline.columns[feature.column], payload.window.columns[feature.column]
    return reference_numeric(b, w, bins)[0] if feature.kind == "numeric" else reference_categorical(b, w)[0]


def by_name(metrics: list[MetricValue]) -> dict[str, MetricValue]:
    return {m.name: m for m in metrics}


# ------------------------------------------------------------------------------------------------------ the tests


@pytest.mark.parametrize("bins", [10, 4])
async def test_psi_against_a_window_baseline_matches_numpy(pg: asyncpg.Connection, payload: Payload, bins: int) -> None:
    metrics = await drift_metrics(pg, payload.relation, WINDOW, BASELINE, FEATURES, bins=bins)
    assert [m.name for m in metrics] == [*(f"psi:{f.name}" for f in FEATURES), "drifted_share"]
    found = by_name(metrics)
    for feature in FEATURES:
        metric = found[f"psi:{feature.name}"]
        assert metric.state == "ok"
        assert metric.value == pytest.approx(reference(payload, feature, bins), abs=1e-9), feature.name
        bins_ = metric.details["bins"]
        assert sum(b["baseline_count"] for b in bins_) == metric.details["baseline_count"]
        assert sum(b["window_count"] for b in bins_) == metric.details["window_count"]
        assert sum(b["term"] for b in bins_) == pytest.approx(metric.value, abs=1e-12)

    income = found["psi:Income"]
    _, expected_edges = reference_numeric(payload.baseline.columns["income"], payload.window.columns["income"], bins)
    assert np.allclose(income.details["edges"], expected_edges, rtol=1e-12, atol=0)
    assert [b["lower"] for b in income.details["bins"]] == [None, *income.details["edges"]]
    assert [b["upper"] for b in income.details["bins"]] == [*income.details["edges"], None]
    nulls = sum(v is None for v in payload.window.columns["income"])
    assert income.details["window_count"] == WINDOW_ROWS - nulls and income.details["window_rows"] == WINDOW_ROWS

    # the planted drift shows, and only where it was planted
    psi = {name: m.value or 0.0 for name, m in found.items()}
    assert psi["psi:Income"] > 0.2 and psi["psi:Purpose"] > 0.2
    for stable in ("psi:Age", "psi:Housing", "psi:Owner"):
        assert psi[stable] < 0.05, stable

    age = found["psi:Age"]
    assert len(age.details["edges"]) < bins - 1  # a third of the ages are 35: its equal edges were merged
    purpose = {b["value"]: b for b in found["psi:Purpose"].details["bins"]}
    assert purpose["repairs"]["baseline_count"] == 0 and purpose["repairs"]["window_count"] > 0
    assert {b["value"] for b in found["psi:Owner"].details["bins"]} == {"true", "false"}

    share = found["drifted_share"]
    psis = {f.name: reference(payload, f, bins) for f in FEATURES}
    drifted = sorted((n for n, v in psis.items() if v >= 0.2), key=lambda n: -psis[n])
    assert share.value == pytest.approx(len(drifted) / len(FEATURES))
    assert share.details["drifted"] == drifted
    assert [d["feature"] for d in share.details["most_drifted"]] == sorted(psis, key=lambda n: -psis[n])
    assert share.details["without_value"] == {}


async def test_a_lower_threshold_counts_more_features_as_drifted(pg: asyncpg.Connection, payload: Payload) -> None:
    metrics = by_name(await drift_metrics(pg, payload.relation, WINDOW, BASELINE, FEATURES, threshold=1e-9))
    assert metrics["drifted_share"].value == 1.0


def write_sample(path: Path, side: Side, features: Sequence[DriftFeature], extra: bool = True) -> None:
    """The baseline's rows as a training sample would be written: a header of field names, nulls as empty values,
    booleans as pandas writes them (``True``), and a column the monitor ignores."""
    with path.open("w", newline="", encoding="utf-8") as file:
        writer = csv.writer(file)
        writer.writerow([*(f.name for f in features), *(["comment"] if extra else [])])
        n = len(side.columns[features[0].column])
        for i in range(n):
            values = [side.columns[f.column][i] for f in features]
            writer.writerow([*(_csv_value(v) for v in values), *(['a, "quoted" note'] if extra else [])])


def _csv_value(value: Any) -> str:
    if value is None:
        return ""
    return repr(value) if isinstance(value, float) else str(value)  # repr: a float read back exactly


async def test_a_csv_sample_baseline_gives_what_the_same_rows_in_a_window_give(
    pg: asyncpg.Connection, payload: Payload, tmp_path: Path
) -> None:
    path = tmp_path / "training.csv"
    write_sample(path, payload.baseline, FEATURES)
    from_sample = by_name(await drift_metrics(pg, payload.relation, WINDOW, SampleBaseline(path), FEATURES))
    for feature in FEATURES:
        metric = from_sample[f"psi:{feature.name}"]
        assert metric.state == "ok"
        assert metric.value == pytest.approx(reference(payload, feature), abs=1e-9), feature.name
        assert metric.details["baseline_rows"] == BASELINE_ROWS
    from_window = by_name(await drift_metrics(pg, payload.relation, WINDOW, BASELINE, FEATURES))
    assert from_sample["drifted_share"].value == from_window["drifted_share"].value
    leftover = await pg.fetchval("SELECT count(*) FROM pg_class WHERE relname LIKE 'drift_sample_%'")
    assert leftover == 0  # the temporary table went with its transaction


async def test_a_feature_the_baseline_lacks_is_not_in_baseline(
    pg: asyncpg.Connection, payload: Payload, tmp_path: Path
) -> None:
    path = tmp_path / "training.csv"
    write_sample(path, payload.baseline, [INCOME, AGE], extra=False)  # no Purpose column
    await pg.execute(f"UPDATE {payload.relation} SET note = 'late' WHERE scoring_timestamp >= $1", WINDOW.start)
    note = DriftFeature("Note", "note", "categorical")  # null throughout the baseline window
    absent = DriftFeature("Missing", "no_such_column", "numeric")
    metrics = by_name(await drift_metrics(pg, payload.relation, WINDOW, SampleBaseline(path), [INCOME, PURPOSE]))
    assert metrics["psi:Purpose"].state == "not_in_baseline" and metrics["psi:Purpose"].value is None
    assert metrics["psi:Income"].value == pytest.approx(reference(payload, INCOME), abs=1e-9)
    assert metrics["drifted_share"].value == 1.0
    assert metrics["drifted_share"].details["without_value"] == {"Purpose": "not_in_baseline"}
    unlogged = DriftFeature("Age", "age_not_logged_yet", "numeric")  # in the sample, not (yet) in the payload table
    metrics = by_name(await drift_metrics(pg, payload.relation, WINDOW, SampleBaseline(path), [unlogged]))
    assert metrics["psi:Age"].state == "no_data"
    assert metrics["psi:Age"].details["baseline_count"] == BASELINE_ROWS

    metrics = by_name(await drift_metrics(pg, payload.relation, WINDOW, BASELINE, [note, absent, HOUSING]))
    assert metrics["psi:Note"].state == "not_in_baseline"
    assert metrics["psi:Note"].details["baseline_count"] == 0
    assert metrics["psi:Missing"].state == "not_in_baseline"
    assert metrics["drifted_share"].state == "ok" and metrics["drifted_share"].details["features"] == 1

    metrics = by_name(await drift_metrics(pg, payload.relation, WINDOW, BASELINE, [note, absent]))
    assert metrics["drifted_share"].state == "not_in_baseline" and metrics["drifted_share"].value is None


async def test_an_empty_window_and_too_few_records_give_a_state(pg: asyncpg.Connection, payload: Payload) -> None:
    listed = await drift_metrics(pg, payload.relation, EMPTY_WINDOW, BASELINE, FEATURES)
    assert [(m.state, m.value) for m in listed] == [("no_data", None)] * (len(FEATURES) + 1)

    listed = await drift_metrics(pg, payload.relation, WINDOW, BASELINE, FEATURES, min_records=WINDOW_ROWS + 1)
    assert {m.state for m in listed} == {"too_few_records"}
    assert listed[0].details == {"window_rows": WINDOW_ROWS, "min_records": WINDOW_ROWS + 1}

    # a feature with fewer values than the minimum in the window, while the window has enough rows
    await pg.execute(
        f"UPDATE {payload.relation} SET income = CASE scoring_id WHEN 'id7' THEN 1.0 END WHERE scoring_timestamp >= $1",
        WINDOW.start,
    )
    metrics = by_name(await drift_metrics(pg, payload.relation, WINDOW, BASELINE, [INCOME, HOUSING], min_records=2))
    assert metrics["psi:Income"].state == "too_few_records"
    assert metrics["psi:Housing"].state == "ok"
    await pg.execute(f"UPDATE {payload.relation} SET income = NULL WHERE scoring_timestamp >= $1", WINDOW.start)
    metrics = by_name(await drift_metrics(pg, payload.relation, WINDOW, BASELINE, [INCOME]))
    assert metrics["psi:Income"].state == "no_data"
    assert metrics["drifted_share"].state == "no_data"


async def test_categories_past_the_limit_share_one_bin(pg: asyncpg.Connection, payload: Payload) -> None:
    metrics = by_name(await drift_metrics(pg, payload.relation, WINDOW, BASELINE, [PURPOSE], max_categories=3))
    bins = metrics["psi:Purpose"].details["bins"]
    b, w = payload.baseline.columns["purpose"], payload.window.columns["purpose"]
    totals = {v: b.count(v) + w.count(v) for v in set(b) | set(w)}
    kept = sorted(totals, key=lambda v: (-totals[v], v))[:2]
    assert [x["value"] for x in bins] == [*sorted(kept), None]
    assert bins[-1]["other_values"] == 2

    def merge(values: list[Any]) -> list[Any]:
        return [v if v in kept else "other" for v in values]

    assert metrics["psi:Purpose"].value == pytest.approx(reference_categorical(merge(b), merge(w))[0], abs=1e-9)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("Income,Age\n51.5,abc\n", "line 2, field 'Age': invalid input syntax for type double precision"),
        ("Income,Owner\n51.5,maybe\n", "line 2, field 'Owner': invalid input syntax for type boolean"),
        ("Income,Age\n51.5,40\n52\n", "line 3: missing data for field 'Age'"),
        ("Income,Age\n51.5,40,7\n", "line 2: extra data after last expected column"),
        ("Income,Income\n1,2\n", "the header names 'Income' twice"),
        ("Income,Age\nNaN,40\n", "feature 'Income' holds 1 NaN or infinite values"),
        ("", "is empty"),
    ],
)
async def test_a_sample_that_cannot_be_read_is_refused_clearly(
    pg: asyncpg.Connection, payload: Payload, tmp_path: Path, text: str, message: str
) -> None:
    path = tmp_path / "training.csv"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
        await drift_metrics(pg, payload.relation, WINDOW, SampleBaseline(path), [INCOME, AGE, OWNER])
    assert await pg.fetchval("SELECT count(*) FROM pg_class WHERE relname LIKE 'drift_sample_%'") == 0
    assert not pg.is_in_transaction()


async def test_a_missing_sample_table_or_column_is_refused(
    pg: asyncpg.Connection, payload: Payload, tmp_path: Path
) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        await drift_metrics(pg, payload.relation, WINDOW, SampleBaseline(tmp_path / "nope.csv"), [INCOME])
    with pytest.raises(ConfigError, match="does not exist"):  # even when the window is empty
        await drift_metrics(pg, payload.relation, EMPTY_WINDOW, SampleBaseline(tmp_path / "nope.csv"), [INCOME])
    with pytest.raises(DatamartError, match="no table"):
        await drift_metrics(pg, f'{payload.relation[:-1]}_nope"', WINDOW, BASELINE, [INCOME])
    with pytest.raises(ConfigError, match="is numeric but its column 'purpose' holds text"):
        await drift_metrics(pg, payload.relation, WINDOW, BASELINE, [DriftFeature("P", "purpose", "numeric")])
    with pytest.raises(ConfigError, match="no time column 'ts'"):
        await drift_metrics(pg, payload.relation, WINDOW, BASELINE, [INCOME], time_column="ts")
