"""The quality metrics computed in PostgreSQL, each checked against scikit-learn on the same rows.

Every test builds a table shaped like a subscription's ``labelled_`` view in a fresh schema, fills it with seeded
data whose answer is known (a planted accuracy, probabilities with ties and with 0 and 1, rows outside the window,
rows without a prediction or a probability), and compares every metric with scikit-learn computed here.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import numpy as np
import pytest
from sklearn.metrics import (
    accuracy_score,
    confusion_matrix,
    f1_score,
    log_loss,
    mean_absolute_error,
    mean_squared_error,
    precision_score,
    r2_score,
    recall_score,
    roc_auc_score,
)

from stream_logger.errors import ConfigError, DatamartError
from stream_logger.evaluation import MetricValue, Window
from stream_logger.feedback_tables import create_feedback_table
from stream_logger.identifiers import feedback_names_for, quote_ident
from stream_logger.monitor_quality import (
    BINARY_METRICS,
    MAX_DETAIL_CLASSES,
    MULTICLASS_METRICS,
    REGRESSION_METRICS,
    quality_metrics,
)
from stream_logger.registry import create_partitions, declare

pytestmark = pytest.mark.integration

T0 = datetime(2025, 6, 1, tzinfo=UTC)
WINDOW = Window(T0, T0 + timedelta(hours=1))
TOL = 1e-9
POS, NEG = "Risk", "No Risk"

Row = tuple[datetime, Any, Any, Any]  # scoring_timestamp, prediction, target, probability


async def _table(pg: asyncpg.Connection, schema: str, rows: Sequence[Row], *, kinds: tuple[str, str, str]) -> str:
    """A table shaped like a labelled view (payload columns, the target ``risk``, ``labelled_at``); its quoted
    qualified name. ``kinds``: the SQL types of prediction, risk and probability."""
    prediction, target, probability = kinds
    await pg.execute(f"CREATE SCHEMA IF NOT EXISTS {quote_ident(schema)}")
    relation = f"{quote_ident(schema)}.{quote_ident('labelled_credit')}"
    await pg.execute(
        f"""CREATE TABLE {relation} (
            scoring_id text NOT NULL, row_index integer NOT NULL, scoring_timestamp timestamptz NOT NULL,
            prediction {prediction}, probability {probability}, risk {target}, labelled_at timestamptz NOT NULL)"""
    )
    await pg.copy_records_to_table(
        "labelled_credit",
        schema_name=schema,
        columns=["scoring_id", "row_index", "scoring_timestamp", "prediction", "risk", "probability", "labelled_at"],
        records=[(f"s{i}", 0, ts, p, t, pr, ts + timedelta(days=1)) for i, (ts, p, t, pr) in enumerate(rows)],
    )
    return relation


def _times(rng: np.random.Generator, n: int) -> list[datetime]:
    """``n`` instants inside WINDOW, the first at its very start."""
    seconds = rng.uniform(0, 3600, n)
    seconds[0] = 0.0
    return [WINDOW.start + timedelta(seconds=float(s)) for s in seconds]


def _outside(n: int) -> list[datetime]:
    """Instants just outside WINDOW: before its start, at its end (excluded), after it."""
    edges = [WINDOW.start - timedelta(microseconds=1), WINDOW.end, WINDOW.end + timedelta(minutes=5)]
    return [edges[i % 3] for i in range(n)]


def _by_name(metrics: list[MetricValue]) -> dict[str, MetricValue]:
    return {m.name: m for m in metrics}


def _value(metric: MetricValue) -> float:
    assert metric.state == "ok", (metric.name, metric.state, metric.details)
    assert metric.value is not None
    return metric.value


def _binary_rows(seed: int, n: int, accuracy: float) -> tuple[list[Row], list[Row]]:
    """Rows in the window (labels with a planted accuracy, probabilities in steps of 0.05 so many tie, some 0 and
    1) and rows outside it that would change every figure."""
    rng = np.random.default_rng(seed)
    y = rng.random(n) < 0.35
    correct = rng.random(n) < accuracy
    predicted = np.where(correct, y, ~y)
    p = np.clip(np.round((0.5 + np.where(y, 0.2, -0.2) + rng.normal(0, 0.25, n)) * 20) / 20, 0.0, 1.0)
    inside = [
        (ts, POS if pr else NEG, POS if yy else NEG, [1 - float(pp), float(pp)])
        for ts, pr, yy, pp in zip(_times(rng, n), predicted, y, p, strict=True)
    ]
    outside = [(ts, POS, NEG, [0.0, 1.0]) for ts in _outside(60)]
    return inside, outside


async def test_binary_metrics_agree_with_scikit_learn(pg: asyncpg.Connection, schema: str) -> None:
    inside, outside = _binary_rows(seed=19, n=3000, accuracy=0.8)
    unscored = [(inside[i][0], None, POS, [0.1, 0.9]) for i in range(7)]  # labelled, no prediction: left out
    no_probability = [(ts, pr, t, None) for ts, pr, t, _ in inside[:11]] + [(inside[0][0], NEG, POS, [1.0])]
    rows = inside + outside + unscored + no_probability
    relation = await _table(pg, schema, rows, kinds=("text", "text", "double precision[]"))

    metrics = await quality_metrics(
        pg,
        relation,
        WINDOW,
        problem_type="binary",
        prediction="prediction",
        target="risk",
        probability="probability",
        positive_class=POS,
        probability_index=1,
    )
    assert [m.name for m in metrics] == list(BINARY_METRICS)
    got = _by_name(metrics)

    evaluated = inside + no_probability
    y_true = [t for _, _, t, _ in evaluated]
    y_pred = [p for _, p, _, _ in evaluated]
    assert abs(_value(got["accuracy"]) - 0.8) < 0.03  # the planted accuracy
    assert _value(got["accuracy"]) == pytest.approx(accuracy_score(y_true, y_pred), abs=TOL)
    assert _value(got["precision"]) == pytest.approx(precision_score(y_true, y_pred, pos_label=POS), abs=TOL)
    assert _value(got["recall"]) == pytest.approx(recall_score(y_true, y_pred, pos_label=POS), abs=TOL)
    assert _value(got["f1"]) == pytest.approx(f1_score(y_true, y_pred, pos_label=POS), abs=TOL)

    scored = inside  # the rows with a probability of the positive class
    y01 = [int(t == POS) for _, _, t, _ in scored]
    p_pos = [pr[1] for _, _, _, pr in scored]
    assert len(set(p_pos)) < 30  # ties on purpose
    assert {0.0, 1.0} <= set(p_pos)  # clipped by log loss
    assert _value(got["auc_roc"]) == pytest.approx(roc_auc_score(y01, p_pos), abs=TOL)
    assert _value(got["log_loss"]) == pytest.approx(log_loss(y01, p_pos), abs=TOL)

    accuracy = got["accuracy"].details
    assert accuracy["labelled"] == len(evaluated) + len(unscored)
    assert accuracy["records"] == len(evaluated)
    labels = accuracy["confusion_matrix"]["labels"]
    assert labels == [NEG, POS]
    assert accuracy["confusion_matrix"]["matrix"] == confusion_matrix(y_true, y_pred, labels=labels).tolist()
    tn, fp, fn, tp = confusion_matrix(y_true, y_pred, labels=[NEG, POS]).ravel().tolist()
    assert {k: got["precision"].details[k] for k in ("tp", "fp", "fn", "tn")} == {
        "tp": tp,
        "fp": fp,
        "fn": fn,
        "tn": tn,
    }
    auc = got["auc_roc"].details
    assert (auc["records"], auc["positives"], auc["missing_probability"]) == (len(scored), sum(y01), 12)


async def test_a_probability_column_of_the_positive_class_alone(pg: asyncpg.Connection, schema: str) -> None:
    inside, outside = _binary_rows(seed=7, n=500, accuracy=0.7)
    rows = [(ts, p, t, pr[1]) for ts, p, t, pr in inside + outside]
    relation = await _table(pg, schema, rows, kinds=("text", "text", "double precision"))
    got = _by_name(
        await quality_metrics(
            pg,
            relation,
            WINDOW,
            problem_type="binary",
            prediction="prediction",
            target="risk",
            probability="probability",
            positive_class=POS,
        )
    )
    y01 = [int(t == POS) for _, _, t, _ in inside]
    p_pos = [pr[1] for _, _, _, pr in inside]
    assert _value(got["auc_roc"]) == pytest.approx(roc_auc_score(y01, p_pos), abs=TOL)
    assert _value(got["log_loss"]) == pytest.approx(log_loss(y01, p_pos), abs=TOL)


async def test_multiclass_metrics_agree_with_scikit_learn(pg: asyncpg.Connection, schema: str) -> None:
    rng = np.random.default_rng(3)
    n = 2000
    classes = np.array(["a", "b", "c", "d"])
    y = rng.choice(classes, n, p=[0.5, 0.3, 0.15, 0.05])
    wrong = rng.choice(np.array(["a", "b", "c", "e"]), n)  # "e" is predicted, never a label: in the union
    predicted = np.where(rng.random(n) < 0.6, y, wrong)
    inside = [(ts, str(p), str(t), None) for ts, p, t in zip(_times(rng, n), predicted, y, strict=True)]
    outside = [(ts, "z", "a", None) for ts in _outside(30)]
    relation = await _table(pg, schema, inside + outside, kinds=("text", "text", "double precision[]"))

    metrics = await quality_metrics(
        pg, relation, WINDOW, problem_type="multiclass", prediction="prediction", target="risk"
    )
    assert [m.name for m in metrics] == list(MULTICLASS_METRICS)
    got = _by_name(metrics)
    y_true = [t for _, _, t, _ in inside]
    y_pred = [p for _, p, _, _ in inside]
    assert _value(got["accuracy"]) == pytest.approx(accuracy_score(y_true, y_pred), abs=TOL)
    macro = f1_score(y_true, y_pred, average="macro", zero_division=0)
    assert _value(got["macro_f1"]) == pytest.approx(macro, abs=TOL)

    labels = ["a", "b", "c", "d", "e"]
    cm = got["accuracy"].details["confusion_matrix"]
    assert cm == {"labels": labels, "matrix": confusion_matrix(y_true, y_pred, labels=labels).tolist()}
    per_class = got["macro_f1"].details["per_class"]
    expected = f1_score(y_true, y_pred, labels=labels, average=None, zero_division=0)
    assert [c["label"] for c in per_class] == labels
    assert [c["f1"] for c in per_class] == pytest.approx(expected.tolist(), abs=TOL)
    assert [c["support"] for c in per_class] == [y_true.count(c) for c in labels]
    assert got["macro_f1"].details["classes"] == 5


async def test_integer_classes(pg: asyncpg.Connection, schema: str) -> None:
    rng = np.random.default_rng(5)
    n = 400
    y = rng.integers(0, 3, n)
    predicted = np.where(rng.random(n) < 0.5, y, rng.integers(0, 3, n))
    rows = [(ts, int(p), int(t), None) for ts, p, t in zip(_times(rng, n), predicted, y, strict=True)]
    relation = await _table(pg, schema, rows, kinds=("bigint", "bigint", "double precision"))
    got = _by_name(
        await quality_metrics(pg, relation, WINDOW, problem_type="multiclass", prediction="prediction", target="risk")
    )
    y_true, y_pred = y.tolist(), predicted.tolist()
    assert _value(got["macro_f1"]) == pytest.approx(f1_score(y_true, y_pred, average="macro"), abs=TOL)
    assert got["accuracy"].details["confusion_matrix"]["labels"] == [0, 1, 2]
    binary = _by_name(
        await quality_metrics(
            pg, relation, WINDOW, problem_type="binary", prediction="prediction", target="risk", positive_class=2
        )
    )
    assert _value(binary["recall"]) == pytest.approx(recall_score(y_true, y_pred, labels=[2], average="micro"))


async def test_regression_metrics_agree_with_scikit_learn(pg: asyncpg.Connection, schema: str) -> None:
    rng = np.random.default_rng(11)
    n = 2500
    y = rng.normal(5000, 1500, n)
    predicted = y + rng.normal(0, 400, n)
    inside = [(ts, float(p), float(t), None) for ts, p, t in zip(_times(rng, n), predicted, y, strict=True)]
    outside = [(ts, 1e6, 0.0, None) for ts in _outside(30)]
    unscored = [(inside[0][0], None, 1e9, None)]
    relation = await _table(
        pg, schema, inside + outside + unscored, kinds=("double precision", "numeric", "double precision[]")
    )

    metrics = await quality_metrics(
        pg, relation, WINDOW, problem_type="regression", prediction="prediction", target="risk"
    )
    assert [m.name for m in metrics] == list(REGRESSION_METRICS)
    got = _by_name(metrics)
    y_true = [t for _, _, t, _ in inside]
    y_pred = [p for _, p, _, _ in inside]
    assert _value(got["mae"]) == pytest.approx(mean_absolute_error(y_true, y_pred), rel=TOL)
    assert _value(got["rmse"]) == pytest.approx(math.sqrt(mean_squared_error(y_true, y_pred)), rel=TOL)
    assert _value(got["r2"]) == pytest.approx(r2_score(y_true, y_pred), abs=TOL)
    assert 0.9 < _value(got["r2"]) < 0.95  # 1 - 400² / 1500², planted
    assert (got["r2"].details["labelled"], got["r2"].details["records"]) == (n + 1, n)


async def test_many_classes_leave_the_matrix_out_of_the_details(pg: asyncpg.Connection, schema: str) -> None:
    rng = np.random.default_rng(13)
    n = 3000
    y = rng.integers(0, MAX_DETAIL_CLASSES + 10, n)
    predicted = np.where(rng.random(n) < 0.5, y, rng.integers(0, MAX_DETAIL_CLASSES + 10, n))
    rows = [(ts, f"c{p}", f"c{t}", None) for ts, p, t in zip(_times(rng, n), predicted, y, strict=True)]
    relation = await _table(pg, schema, rows, kinds=("text", "text", "double precision[]"))
    got = _by_name(
        await quality_metrics(pg, relation, WINDOW, problem_type="multiclass", prediction="prediction", target="risk")
    )
    y_true, y_pred = [t for _, _, t, _ in rows], [p for _, p, _, _ in rows]
    assert _value(got["macro_f1"]) == pytest.approx(f1_score(y_true, y_pred, average="macro"), abs=TOL)
    assert got["accuracy"].details["confusion_matrix"] is None
    assert got["accuracy"].details["classes"] == MAX_DETAIL_CLASSES + 10
    assert "per_class" not in got["macro_f1"].details


# ---- edge cases: a state, not a wrong number ---------------------------------------------------------------------


async def _binary(pg: asyncpg.Connection, relation: str, **kwargs: Any) -> dict[str, MetricValue]:
    args: dict[str, Any] = {
        "problem_type": "binary",
        "prediction": "prediction",
        "target": "risk",
        "probability": "probability",
        "positive_class": POS,
        "probability_index": 1,
        **kwargs,
    }
    return _by_name(await quality_metrics(pg, relation, WINDOW, **args))


async def test_no_labelled_rows_in_the_window(pg: asyncpg.Connection, schema: str) -> None:
    _, outside = _binary_rows(seed=1, n=10, accuracy=0.5)
    relation = await _table(pg, schema, outside, kinds=("text", "text", "double precision[]"))
    got = await _binary(pg, relation)
    assert {m.state for m in got.values()} == {"no_labels"}
    assert all(m.value is None and m.details["labelled"] == 0 for m in got.values())
    multiclass = await quality_metrics(
        pg, relation, WINDOW, problem_type="multiclass", prediction="prediction", target="risk"
    )
    assert {m.state for m in multiclass} == {"no_labels"}


async def test_fewer_rows_than_min_records(pg: asyncpg.Connection, schema: str) -> None:
    inside, _ = _binary_rows(seed=2, n=20, accuracy=0.5)
    relation = await _table(pg, schema, inside, kinds=("text", "text", "double precision[]"))
    got = await _binary(pg, relation, min_records=21)
    assert {m.state for m in got.values()} == {"too_few_records"}
    assert got["accuracy"].details["records"] == 20
    assert {m.state for m in (await _binary(pg, relation, min_records=20)).values()} == {"ok"}


async def test_a_single_class_in_the_window(pg: asyncpg.Connection, schema: str) -> None:
    inside, _ = _binary_rows(seed=3, n=50, accuracy=0.6)
    rows = [(ts, p, POS, pr) for ts, p, _, pr in inside]  # every label positive
    relation = await _table(pg, schema, rows, kinds=("text", "text", "double precision[]"))
    got = await _binary(pg, relation)
    assert got["auc_roc"].state == "single_class"
    assert got["auc_roc"].details["negatives"] == 0
    y_pred = [p for _, p, _, _ in rows]
    y01 = [1] * len(rows)
    assert _value(got["recall"]) == pytest.approx(recall_score([POS] * len(rows), y_pred, pos_label=POS), abs=TOL)
    p_pos = [pr[1] for _, _, _, pr in rows]
    assert _value(got["log_loss"]) == pytest.approx(log_loss(y01, p_pos, labels=[0, 1]), abs=TOL)


async def test_no_positive_prediction_leaves_precision_undefined(pg: asyncpg.Connection, schema: str) -> None:
    inside, _ = _binary_rows(seed=4, n=50, accuracy=0.6)
    rows = [(ts, NEG, t, pr) for ts, _, t, pr in inside]
    relation = await _table(pg, schema, rows, kinds=("text", "text", "double precision[]"))
    got = await _binary(pg, relation)
    assert got["precision"].state == "undefined"
    assert got["precision"].details["tp"] + got["precision"].details["fp"] == 0
    # scikit-learn's zero_division=0 answer where a value exists: recall and F1 are 0, not undefined
    assert _value(got["recall"]) == 0.0
    assert _value(got["f1"]) == 0.0
    assert got["auc_roc"].state == "ok"


async def test_no_positive_at_all_leaves_recall_and_f1_undefined(pg: asyncpg.Connection, schema: str) -> None:
    inside, _ = _binary_rows(seed=5, n=30, accuracy=0.6)
    rows = [(ts, NEG, NEG, pr) for ts, _, _, pr in inside]
    relation = await _table(pg, schema, rows, kinds=("text", "text", "double precision[]"))
    got = await _binary(pg, relation)
    assert [got[n].state for n in ("accuracy", "precision", "recall", "f1", "auc_roc")] == [
        "ok",
        "undefined",
        "undefined",
        "undefined",
        "single_class",
    ]
    assert got["accuracy"].value == 1.0


async def test_without_a_probability_auc_and_log_loss_are_undefined(pg: asyncpg.Connection, schema: str) -> None:
    inside, _ = _binary_rows(seed=6, n=30, accuracy=0.6)
    relation = await _table(pg, schema, inside, kinds=("text", "text", "double precision[]"))
    got = await _binary(pg, relation, probability=None, probability_index=None)
    assert (got["auc_roc"].state, got["log_loss"].state) == ("undefined", "undefined")
    assert got["accuracy"].state == "ok"
    past_the_end = await _binary(pg, relation, probability_index=5)  # NULL from PostgreSQL: no probability
    assert past_the_end["auc_roc"].state == "undefined"
    assert past_the_end["auc_roc"].details["missing_probability"] == 30


async def test_a_probability_outside_zero_and_one_leaves_log_loss_undefined(
    pg: asyncpg.Connection, schema: str
) -> None:
    inside, _ = _binary_rows(seed=8, n=30, accuracy=0.6)
    rows = [*inside, (inside[0][0], POS, POS, [-0.5, 1.5])]
    relation = await _table(pg, schema, rows, kinds=("text", "text", "double precision[]"))
    got = await _binary(pg, relation)
    assert got["log_loss"].state == "undefined"
    assert "outside [0, 1]" in got["log_loss"].details["reason"]
    assert got["auc_roc"].state == "ok"


async def test_a_constant_target_leaves_r2_undefined(pg: asyncpg.Connection, schema: str) -> None:
    rng = np.random.default_rng(9)
    rows = [(ts, float(p), 0.1, None) for ts, p in zip(_times(rng, 40), rng.normal(0, 1, 40), strict=True)]
    relation = await _table(pg, schema, rows, kinds=("double precision", "double precision", "double precision[]"))
    got = _by_name(
        await quality_metrics(pg, relation, WINDOW, problem_type="regression", prediction="prediction", target="risk")
    )
    assert got["r2"].state == "undefined"
    y_pred = [p for _, p, _, _ in rows]
    assert _value(got["mae"]) == pytest.approx(mean_absolute_error([0.1] * 40, y_pred), rel=TOL)


async def test_a_non_finite_value_is_undefined(pg: asyncpg.Connection, schema: str) -> None:
    rng = np.random.default_rng(10)
    rows = [(ts, float(p), 1.0, None) for ts, p in zip(_times(rng, 5), rng.normal(0, 1, 5), strict=True)]
    rows.append((rows[0][0], math.inf, 2.0, None))
    relation = await _table(pg, schema, rows, kinds=("double precision", "double precision", "double precision[]"))
    got = _by_name(
        await quality_metrics(pg, relation, WINDOW, problem_type="regression", prediction="prediction", target="risk")
    )
    assert {m.state for m in got.values()} == {"undefined"}


# ---- refusals that need the relation's columns ------------------------------------------------------------------


async def test_columns_that_cannot_work_are_refused_clearly(pg: asyncpg.Connection, schema: str) -> None:
    inside, _ = _binary_rows(seed=12, n=5, accuracy=0.6)
    relation = await _table(pg, schema, inside, kinds=("text", "text", "double precision[]"))
    with pytest.raises(ConfigError, match="no column 'label'"):
        await _binary(pg, relation, target="label")
    with pytest.raises(ConfigError, match="give probability_index"):
        await _binary(pg, relation, probability_index=None)
    with pytest.raises(ConfigError, match="cannot be compared"):
        await _binary(pg, relation, positive_class=1)
    with pytest.raises(ConfigError, match="numeric prediction"):
        await quality_metrics(pg, relation, WINDOW, problem_type="regression", prediction="prediction", target="risk")
    with pytest.raises(ConfigError, match="not a timestamp"):
        await _binary(pg, relation, time_column="scoring_id")
    with pytest.raises(ConfigError, match="one type"):
        await _binary(pg, relation, prediction="row_index", positive_class=1, probability=None, probability_index=None)
    with pytest.raises(DatamartError, match="no relation"):
        await _binary(pg, f"{quote_ident(schema)}.{quote_ident('labelled_nothing')}")


# ---- the real labelled view ----------------------------------------------------------------------------------------


async def test_over_a_subscriptions_labelled_view(pg: asyncpg.Connection, datamart_schema: str) -> None:
    """Payload rows and labels written to a declared subscription's tables: the metrics read its ``labelled_``
    view, where a relabelled row counts with its latest label and an unlabelled row not at all."""
    spec = {
        "subscription_id": "credit-risk",
        "fields": [
            {"name": "prediction", "type": "text", "role": "prediction"},
            {"name": "probability", "type": "float_array", "role": "probability"},
            {"name": "Risk", "type": "text", "role": "target"},
        ],
    }
    sub = await declare(pg, datamart_schema, spec)
    assert sub.target is not None
    await create_feedback_table(pg, sub)
    await create_partitions(pg, sub, [WINDOW.start.date() - timedelta(days=1), WINDOW.start.date()])
    feedback, view = feedback_names_for(sub.table)
    q_schema = quote_ident(datamart_schema)
    columns = {f.name: f.column for f in sub.fields}
    prediction, probability = columns["prediction"], columns["probability"]

    inside, outside = _binary_rows(seed=21, n=400, accuracy=0.75)
    rows = inside + outside
    await pg.copy_records_to_table(
        sub.table,
        schema_name=datamart_schema,
        columns=["scoring_id", "row_index", "scoring_timestamp", prediction, probability],
        records=[(f"s{i}", 0, ts, p, pr) for i, (ts, p, _, pr) in enumerate(rows)],
    )
    unlabelled = 50  # the last 50 rows in the window get no label
    labels = [(f"s{i}", ts + timedelta(days=1), t) for i, (ts, _, t, _) in enumerate(rows) if i >= unlabelled]
    relabelled = [(f"s{i}", ts + timedelta(days=2), POS) for i, (ts, _, _, _) in enumerate(rows[:200]) if i >= 100]
    await pg.copy_records_to_table(
        feedback,
        schema_name=datamart_schema,
        columns=["feedback_id", "feedback_row", "scoring_id", "labelled_at", sub.target.column],
        records=[(f"f{j}", 0, sid, at, t) for j, (sid, at, t) in enumerate(labels + relabelled)],
    )

    got = _by_name(
        await quality_metrics(
            pg,
            f"{q_schema}.{quote_ident(view)}",
            WINDOW,
            problem_type="binary",
            prediction=prediction,
            target=sub.target.column,
            probability=probability,
            positive_class=POS,
            probability_index=1,
        )
    )
    latest = {sid: t for sid, _, t in labels + relabelled}  # the relabels come last
    evaluated = [(latest[f"s{i}"], p, pr[1]) for i, (_, p, _, pr) in enumerate(inside) if f"s{i}" in latest]
    assert got["accuracy"].details["labelled"] == len(evaluated) == 350
    y_true, y_pred, p_pos = (list(c) for c in zip(*evaluated, strict=True))
    assert _value(got["accuracy"]) == pytest.approx(accuracy_score(y_true, y_pred), abs=TOL)
    assert _value(got["f1"]) == pytest.approx(f1_score(y_true, y_pred, pos_label=POS), abs=TOL)
    y01 = [int(t == POS) for t in y_true]
    assert _value(got["auc_roc"]) == pytest.approx(roc_auc_score(y01, p_pos), abs=TOL)
    assert _value(got["log_loss"]) == pytest.approx(log_loss(y01, p_pos), abs=TOL)
