"""The quality monitor's metrics, computed in PostgreSQL over a labelled relation and a :class:`~.evaluation.Window`.

:func:`quality_metrics` reads a subscription's ``labelled_<x>`` view (or any relation of that shape): one row per
payload row that has a label, with the prediction, the label (the target's column) and optionally the
probabilities. Every count, sum and rank is computed by PostgreSQL in a few aggregate queries, run in one read-only
snapshot; only the aggregates come back to Python.

**The rows.** A row is *labelled* when ``time_column`` is in ``[window.start, window.end)`` and its target is not
NULL; it is *evaluated* when its prediction is not NULL as well. Every metric is computed over the evaluated rows
(AUC-ROC and log loss over those that also have a probability). Every metric's details hold ``labelled`` and
``records`` (the rows it was computed over).

**Binary classification** (``positive_class`` P; a row is a positive when its target equals P, predicted positive
when its prediction equals P; with tp, fp, fn, tn the four counts):

- ``accuracy`` = (rows with prediction = target) / rows, on the raw labels, as ``accuracy_score``;
- ``precision`` = tp / (tp + fp); ``undefined`` when nothing is predicted positive (scikit-learn returns 0 there,
  with ``zero_division``; a 0 would read as a breach, so it is reported as having no value);
- ``recall`` = tp / (tp + fn); ``undefined`` when no row is a positive;
- ``f1`` = 2 tp / (2 tp + fp + fn), which is scikit-learn's formula (equal to the harmonic mean of precision and
  recall whenever both exist, and 0 when tp = 0 but there are positives); ``undefined`` only when tp + fp + fn = 0;
- ``auc_roc``: the probability of the positive class is ``probability[probability_index + 1]`` (PostgreSQL arrays
  are 1-based), or the column itself when ``probability_index`` is None. AUC is the Mann-Whitney statistic
  U / (n_pos n_neg), U = sum over positives of (negatives with a lower score + half the negatives with an equal
  score), which is the rank-sum form with average ranks for ties and equals the trapezoidal area under the ROC
  curve (``roc_auc_score``). ``single_class`` when the evaluated rows hold no positive or no negative;
- ``log_loss`` = -mean(y ln(q) + (1 - y) ln(1 - q)) with q the probability clipped as scikit-learn clips it:
  ln(clip(p)) for a positive and ln(clip(1 - p)) for a negative, clip(x) = min(max(x, eps), 1 - eps),
  eps = :data:`LOG_LOSS_EPS` (float64 machine epsilon, 2.220446049250313e-16). ``undefined`` when a probability
  lies outside [0, 1] (scikit-learn refuses those);
- without a ``probability`` column, ``auc_roc`` and ``log_loss`` are ``undefined``. Rows whose probability is NULL
  (or NaN, or an index past the array's end) are left out of those two, counted in ``missing_probability``.

**Multiclass**: ``accuracy`` as above; ``macro_f1`` = the mean over the classes of 2 tp_c / (2 tp_c + fp_c + fn_c),
the classes being the union of the targets and predictions of the evaluated rows (``f1_score(average="macro",
zero_division=0)``: every class of the union has a non-zero denominator).

**Regression** (prediction and target numeric, computed in double precision): ``mae`` = mean |p - t|, ``rmse`` =
sqrt(mean (p - t)^2), ``r2`` = 1 - sum (t - p)^2 / sum (t - mean t)^2; ``r2`` is ``undefined`` when the target is
constant (scikit-learn would return 1.0 or 0.0 there).

**States** (:data:`~.evaluation.STATES`): every metric is ``no_labels`` when the window holds no labelled row, and
``too_few_records`` when fewer than ``min_records`` rows are evaluated; a non-finite result (NaN or infinite values
in the columns) is ``undefined``. Details of a metric without a value say why in ``reason``.

**Details**: the classification metrics' details hold ``classes`` (how many); ``accuracy``'s details hold the
confusion matrix ``{"labels": [...], "matrix": [[...]]}`` (rows the target, columns the prediction, labels sorted
as Python and scikit-learn sort them, as ``confusion_matrix``) and, for multiclass, ``macro_f1``'s
hold ``per_class`` (label, f1, support), both only up to :data:`MAX_DETAIL_CLASSES` classes (beyond,
``confusion_matrix`` is None and ``per_class`` absent). The binary metrics
hold ``positive_class`` and ``tp``, ``fp``, ``fn``, ``tn``; ``auc_roc`` and ``log_loss`` hold ``positives``,
``negatives`` and ``missing_probability``. Labels are made JSON-ready (a ``Decimal`` becomes an int or a float,
anything unusual its text).
"""

from __future__ import annotations

import contextlib
import math
import sys
from collections.abc import AsyncIterator, Mapping, Sequence
from decimal import Decimal
from typing import Any, Final, Literal, get_args

import asyncpg

from .errors import ConfigError, DatamartError
from .evaluation import OK, MetricValue, Window
from .identifiers import quote_ident
from .retry import pg_errors

__all__ = [
    "BINARY_METRICS",
    "LOG_LOSS_EPS",
    "MAX_DETAIL_CLASSES",
    "MULTICLASS_METRICS",
    "REGRESSION_METRICS",
    "ProblemType",
    "quality_metrics",
]

ProblemType = Literal["binary", "multiclass", "regression"]

BINARY_METRICS: Final = ("accuracy", "precision", "recall", "f1", "auc_roc", "log_loss")
MULTICLASS_METRICS: Final = ("accuracy", "macro_f1")
REGRESSION_METRICS: Final = ("mae", "rmse", "r2")
"""The metrics :func:`quality_metrics` returns for each problem type, in this order."""

LOG_LOSS_EPS: Final = sys.float_info.epsilon
"""Probabilities are clipped to ``[eps, 1 - eps]`` before their logarithm, as scikit-learn does for float64."""

MAX_DETAIL_CLASSES: Final = 50
"""Above this many classes the confusion matrix and the per-class figures are left out of the details."""

_METRICS: Final[Mapping[str, tuple[str, ...]]] = {
    "binary": BINARY_METRICS,
    "multiclass": MULTICLASS_METRICS,
    "regression": REGRESSION_METRICS,
}

# pg_type.typcategory: what a column's type is
_NUMERIC, _STRING, _BOOLEAN, _DATETIME, _ARRAY = "N", "S", "B", "D", "A"
_CLASS_CATEGORIES: Final = frozenset({_NUMERIC, _STRING, _BOOLEAN})


async def quality_metrics(
    conn: asyncpg.Connection,
    relation: str,
    window: Window,
    *,
    problem_type: ProblemType,
    prediction: str,
    target: str,
    probability: str | None = None,
    positive_class: Any = None,
    probability_index: int | None = None,
    time_column: str = "scoring_timestamp",
    min_records: int = 1,
) -> list[MetricValue]:
    """The quality metrics of the labelled rows of ``relation`` in ``window``, one :class:`MetricValue` per name of
    :data:`BINARY_METRICS`, :data:`MULTICLASS_METRICS` or :data:`REGRESSION_METRICS` (the module's docstring gives
    the formulas, states and details).

    ``relation`` is an already-quoted, qualified name (``"schema"."labelled_x"``); the column names are plain and
    quoted here. Arguments that cannot work (an unknown problem type, a binary problem without ``positive_class``,
    a column that is missing or of the wrong type) raise :class:`ConfigError` before any metric is computed; a
    missing relation raises :class:`DatamartError`.
    """
    _check_arguments(problem_type, prediction, target, probability, positive_class, probability_index, min_records)
    binary = problem_type == "binary"
    # Only the queries run under pg_errors: a failure of the arithmetic after them is not PostgreSQL's.
    with pg_errors(f"computing quality metrics over {relation}"):
        async with _snapshot(conn):
            types = await _column_types(conn, relation)
            _check_columns(types, problem_type, prediction, target, probability, probability_index, time_column)
            if binary:
                _check_positive_class(positive_class, types[target][0], target)
            q = _Query(relation, window, quote_ident(time_column), quote_ident(target), quote_ident(prediction))
            if problem_type == "regression":
                row = await _regression_row(conn, q)
            else:
                scalars, cells = await _classification(conn, q, positive_class if binary else None)
                scores = None
                if binary and probability is not None and scalars["records"] >= min_records:
                    column = quote_ident(probability)
                    score = column if probability_index is None else f"{column}[{probability_index + 1}]"
                    scores = await _scores(conn, q, positive_class, score)
    if problem_type == "regression":
        return _regression_metrics(row, min_records)
    if problem_type == "multiclass":
        return _multiclass_metrics(scalars, cells, min_records)
    return _binary_metrics(scalars, cells, scores, positive_class, min_records)


def _check_arguments(
    problem_type: object,
    prediction: object,
    target: object,
    probability: object,
    positive_class: object,
    probability_index: object,
    min_records: object,
) -> None:
    if problem_type not in _METRICS:
        raise ConfigError(f"problem_type must be one of {', '.join(get_args(ProblemType))}, not {problem_type!r}")
    for what, name in (("prediction", prediction), ("target", target)):
        if not isinstance(name, str) or not name:
            raise ConfigError(f"{what} must name a column, not {name!r}")
    if probability is not None and (not isinstance(probability, str) or not probability):
        raise ConfigError(f"probability must name a column, not {probability!r}")
    if isinstance(min_records, bool) or not isinstance(min_records, int) or min_records < 1:
        raise ConfigError(f"min_records must be a whole number of at least 1, not {min_records!r}")
    if problem_type == "binary":
        if positive_class is None:
            raise ConfigError("binary classification needs positive_class: the label that counts as positive")
        if probability_index is not None:
            if probability is None:
                raise ConfigError("probability_index without probability: name the probability column")
            if isinstance(probability_index, bool) or not isinstance(probability_index, int) or probability_index < 0:
                raise ConfigError(f"probability_index must be a whole number from 0, not {probability_index!r}")
        return
    for what, value in (
        ("positive_class", positive_class),
        ("probability", probability),
        ("probability_index", probability_index),
    ):
        if value is not None:
            raise ConfigError(f"{what} is for binary classification only, not {problem_type}")


@contextlib.asynccontextmanager
async def _snapshot(conn: asyncpg.Connection) -> AsyncIterator[None]:
    """One read-only snapshot for all the queries (inside a caller's transaction, that transaction's)."""
    if conn.is_in_transaction():
        yield
        return
    async with conn.transaction(isolation="repeatable_read", readonly=True):
        yield


async def _column_types(conn: asyncpg.Connection, relation: str) -> dict[str, tuple[str, str | None, str]]:
    """Each column of ``relation``: (type category, element type category of an array, type name)."""
    oid = await conn.fetchval("SELECT to_regclass($1)::oid", relation)
    if oid is None:
        raise DatamartError(f"no relation {relation}: is the subscription's labelled view created (it has a target)?")
    rows = await conn.fetch(
        """
        SELECT a.attname, t.typcategory::text AS category, e.typcategory::text AS element,
               format_type(a.atttypid, a.atttypmod) AS type
        FROM pg_attribute a
        JOIN pg_type t ON t.oid = a.atttypid
        LEFT JOIN pg_type e ON e.oid = t.typelem AND t.typcategory = 'A'
        WHERE a.attrelid = $1 AND a.attnum > 0 AND NOT a.attisdropped
        """,
        oid,
    )
    return {r["attname"]: (r["category"], r["element"], r["type"]) for r in rows}


def _check_columns(
    types: Mapping[str, tuple[str, str | None, str]],
    problem_type: str,
    prediction: str,
    target: str,
    probability: str | None,
    probability_index: int | None,
    time_column: str,
) -> None:
    for what, name in (("time_column", time_column), ("prediction", prediction), ("target", target)):
        if name not in types:
            raise ConfigError(f"{what}: the relation has no column {name!r} (it has {', '.join(sorted(types))})")
    if types[time_column][0] != _DATETIME:
        raise ConfigError(f"time_column {time_column!r} is {types[time_column][2]}, not a timestamp")
    if problem_type == "regression":
        for what, name in (("prediction", prediction), ("target", target)):
            if types[name][0] != _NUMERIC:
                raise ConfigError(f"regression needs a numeric {what}: {name!r} is {types[name][2]}")
        return
    for what, name in (("prediction", prediction), ("target", target)):
        if types[name][0] not in _CLASS_CATEGORIES:
            raise ConfigError(
                f"{problem_type} classification needs {what} classes of text, numbers or booleans:"
                f" {name!r} is {types[name][2]}"
            )
    if types[prediction][2] != types[target][2]:
        raise ConfigError(
            f"prediction {prediction!r} is {types[prediction][2]} but target {target!r} is {types[target][2]}:"
            " classes are compared as they are, so both need one type"
        )
    if probability is None:
        return
    if probability not in types:
        raise ConfigError(f"probability: the relation has no column {probability!r}")
    category, element, type_name = types[probability]
    if probability_index is None and category != _NUMERIC:
        hint = " (an array: give probability_index, the positive class's place in it)" if category == _ARRAY else ""
        raise ConfigError(f"probability {probability!r} is {type_name}, not a number{hint}")
    if probability_index is not None and (category != _ARRAY or element != _NUMERIC):
        raise ConfigError(f"probability_index needs an array of numbers: {probability!r} is {type_name}")


def _check_positive_class(positive_class: Any, category: str, target: str) -> None:
    """A positive class of a Python type that PostgreSQL can compare with the target column's values."""
    fits = {
        _STRING: isinstance(positive_class, str),
        _BOOLEAN: isinstance(positive_class, bool),
        _NUMERIC: isinstance(positive_class, int | float | Decimal) and not isinstance(positive_class, bool),
    }[category]
    if not fits:
        raise ConfigError(
            f"positive_class {positive_class!r} ({type(positive_class).__name__}) cannot be compared with the"
            f" values of {target!r}"
        )


class _Query:
    """The parts every statement shares: the relation, the window's condition (``$1``, ``$2``), the columns."""

    def __init__(self, relation: str, window: Window, time: str, target: str, prediction: str) -> None:
        self.relation = relation
        self.bounds = (window.start, window.end)
        self.target = target
        self.prediction = prediction
        self.labelled = f"{relation} WHERE {time} >= $1 AND {time} < $2 AND {target} IS NOT NULL"


# ---- classification ------------------------------------------------------------------------------------------------


async def _classification(
    conn: asyncpg.Connection, q: _Query, positive_class: Any
) -> tuple[asyncpg.Record, list[asyncpg.Record] | None]:
    """The counts (and for multiclass the macro-F1) of the window's rows, and the confusion matrix's cells
    (``t``, ``p``, ``n``) unless there are too many classes."""
    binary = positive_class is not None
    counts = (
        """,
        count(*) FILTER (WHERE t = $3 AND p = $3) AS tp,
        count(*) FILTER (WHERE t <> $3 AND p = $3) AS fp,
        count(*) FILTER (WHERE t = $3 AND p <> $3) AS fn,
        count(*) FILTER (WHERE t <> $3 AND p <> $3) AS tn"""
        if binary
        else ""
    )
    scalars = await conn.fetchrow(
        f"""
        WITH w AS MATERIALIZED (SELECT {q.target} AS t, {q.prediction} AS p FROM {q.labelled}),
        e AS (SELECT t, p FROM w WHERE p IS NOT NULL),
        k AS (
            SELECT c, sum(tp) AS tp, sum(fp) AS fp, sum(fn) AS fn FROM (
                SELECT t AS c, (t = p)::int AS tp, 0 AS fp, (t <> p)::int AS fn FROM e
                UNION ALL
                SELECT p, 0, (t <> p)::int, 0 FROM e
            ) u GROUP BY c
        ),
        s AS (SELECT count(*) AS records, count(*) FILTER (WHERE t = p) AS correct{counts} FROM e)
        SELECT s.*, (SELECT count(*) FROM w) AS labelled, (SELECT count(*) FROM k) AS classes,
               (SELECT avg(2.0 * tp / (2 * tp + fp + fn)) FROM k)::float8 AS macro_f1
        FROM s
        """,
        *q.bounds,
        *((positive_class,) if binary else ()),
    )
    assert scalars is not None
    if not 0 < scalars["classes"] <= MAX_DETAIL_CLASSES:
        return scalars, None
    cells = await conn.fetch(
        f"""
        SELECT {q.target} AS t, {q.prediction} AS p, count(*) AS n FROM {q.labelled} AND {q.prediction} IS NOT NULL
        GROUP BY 1, 2
        """,
        *q.bounds,
    )
    return scalars, cells


async def _scores(conn: asyncpg.Connection, q: _Query, positive_class: Any, score: str) -> asyncpg.Record:
    """AUC's U statistic and the log loss over the evaluated rows whose ``score`` (the probability of the positive
    class, an SQL expression) is a number."""
    row = await conn.fetchrow(
        f"""
        WITH w AS MATERIALIZED (
            SELECT {q.target} = $3 AS y, ({score})::float8 AS s FROM {q.labelled} AND {q.prediction} IS NOT NULL
        ),
        v AS (SELECT y, s FROM w WHERE s IS NOT NULL AND s <> 'NaN'::float8),
        g AS (SELECT s, count(*) FILTER (WHERE y) AS pos, count(*) FILTER (WHERE NOT y) AS neg FROM v GROUP BY s),
        r AS (
            SELECT pos, neg, coalesce(sum(neg) OVER (ORDER BY s ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING), 0)
                AS below
            FROM g
        )
        SELECT count(*) AS records,
               count(*) FILTER (WHERE y) AS positives,
               count(*) FILTER (WHERE NOT y) AS negatives,
               count(*) FILTER (WHERE s < 0 OR s > 1) AS out_of_range,
               (SELECT count(*) FROM w) - count(*) AS missing,
               (SELECT sum(pos * below + pos * neg / 2.0) FROM r) AS u,
               -avg(CASE WHEN y THEN ln(least(greatest(s, $4::float8), 1 - $4))
                         ELSE ln(least(greatest(1 - s, $4), 1 - $4)) END) AS log_loss
        FROM v
        """,
        *q.bounds,
        positive_class,
        LOG_LOSS_EPS,
    )
    assert row is not None
    return row


def _gate(names: Sequence[str], labelled: int, records: int, min_records: int) -> list[MetricValue] | None:
    """Every metric in the state that the window's counts give before any arithmetic, or None to go on."""
    details = {"labelled": labelled, "records": records}
    if labelled == 0:
        return [
            MetricValue(n, None, "no_labels", {**details, "reason": "no labelled row in the window"}) for n in names
        ]
    if records < min_records:
        reason = f"{records} evaluated row(s), fewer than min_records={min_records}"
        return [MetricValue(n, None, "too_few_records", {**details, "reason": reason}) for n in names]
    return None


def _metric(name: str, value: Any, details: dict[str, Any], undefined: str | None = None) -> MetricValue:
    """A metric with its value, or ``undefined`` (with the reason) when it has none or it is not finite."""
    if undefined is None and value is not None and not math.isfinite(float(value)):
        undefined = "not a finite number (NaN or infinite values in the window)"
    if undefined is not None or value is None:
        return MetricValue(name, None, "undefined", {**details, "reason": undefined or "no value"})
    return MetricValue(name, float(value), OK, details)


def _json_ready(value: Any) -> Any:
    if isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    return str(value)


def _confusion(cells: list[asyncpg.Record]) -> tuple[list[Any], list[list[int]]]:
    """The classes sorted as Python (and scikit-learn) sort them, and the matrix (rows the target, columns the
    prediction)."""
    labels = sorted({c["t"] for c in cells} | {c["p"] for c in cells})
    index = {label: i for i, label in enumerate(labels)}
    matrix = [[0] * len(labels) for _ in labels]
    for c in cells:
        matrix[index[c["t"]]][index[c["p"]]] = c["n"]
    return labels, matrix


def _accuracy(scalars: asyncpg.Record, cells: list[asyncpg.Record] | None, base: dict[str, Any]) -> MetricValue:
    details = dict(base)
    if cells is None:
        details["confusion_matrix"] = None
        details["confusion_matrix_omitted"] = f"more than {MAX_DETAIL_CLASSES} classes"
    else:
        labels, matrix = _confusion(cells)
        details["confusion_matrix"] = {"labels": [_json_ready(x) for x in labels], "matrix": matrix}
    return _metric("accuracy", scalars["correct"] / scalars["records"], details)


def _multiclass_metrics(
    scalars: asyncpg.Record, cells: list[asyncpg.Record] | None, min_records: int
) -> list[MetricValue]:
    gated = _gate(MULTICLASS_METRICS, scalars["labelled"], scalars["records"], min_records)
    if gated is not None:
        return gated
    base = {"labelled": scalars["labelled"], "records": scalars["records"], "classes": scalars["classes"]}
    f1_details = dict(base)
    if cells is not None:
        labels, matrix = _confusion(cells)
        per_class = []
        for i, label in enumerate(labels):
            tp = matrix[i][i]
            support = sum(matrix[i])
            fp = sum(row[i] for row in matrix) - tp
            per_class.append(
                {"label": _json_ready(label), "f1": 2 * tp / (2 * tp + fp + support - tp), "support": support}
            )
        f1_details["per_class"] = per_class
    return [_accuracy(scalars, cells, base), _metric("macro_f1", scalars["macro_f1"], f1_details)]


def _ratio(numerator: int, denominator: int) -> float | None:
    return numerator / denominator if denominator else None


def _binary_metrics(
    scalars: asyncpg.Record,
    cells: list[asyncpg.Record] | None,
    scores: asyncpg.Record | None,
    positive_class: Any,
    min_records: int,
) -> list[MetricValue]:
    labelled, records = scalars["labelled"], scalars["records"]
    gated = _gate(BINARY_METRICS, labelled, records, min_records)
    if gated is not None:
        return gated
    tp, fp, fn, tn = (scalars[k] for k in ("tp", "fp", "fn", "tn"))
    base = {"labelled": labelled, "records": records, "classes": scalars["classes"]}
    counts = {**base, "positive_class": _json_ready(positive_class), "tp": tp, "fp": fp, "fn": fn, "tn": tn}
    metrics = [
        _accuracy(scalars, cells, counts),
        _metric("precision", _ratio(tp, tp + fp), counts, None if tp + fp else "no row is predicted positive"),
        _metric("recall", _ratio(tp, tp + fn), counts, None if tp + fn else "no row is labelled positive"),
        _metric("f1", _ratio(2 * tp, 2 * tp + fp + fn), counts, None if tp + fp + fn else "no positive at all"),
    ]
    return metrics + _probability_metrics(scores, labelled, min_records)


def _probability_metrics(scores: asyncpg.Record | None, labelled: int, min_records: int) -> list[MetricValue]:
    names = ("auc_roc", "log_loss")
    if scores is None:
        details = {"labelled": labelled, "records": 0, "reason": "no probability column"}
        return [MetricValue(n, None, "undefined", details) for n in names]
    records, positives, negatives = scores["records"], scores["positives"], scores["negatives"]
    details = {
        "labelled": labelled,
        "records": records,
        "positives": positives,
        "negatives": negatives,
        "missing_probability": scores["missing"],
    }
    if records == 0:
        return [MetricValue(n, None, "undefined", {**details, "reason": "no row has a probability"}) for n in names]
    if records < min_records:
        reason = f"{records} row(s) with a probability, fewer than min_records={min_records}"
        return [MetricValue(n, None, "too_few_records", {**details, "reason": reason}) for n in names]
    if positives == 0 or negatives == 0:
        auc = MetricValue("auc_roc", None, "single_class", {**details, "reason": "AUC needs both classes"})
    else:
        auc = _metric("auc_roc", scores["u"] / (positives * negatives), details)
    out = scores["out_of_range"]
    log_loss = _metric("log_loss", scores["log_loss"], details, f"{out} probabilities outside [0, 1]" if out else None)
    return [auc, log_loss]


# ---- regression ----------------------------------------------------------------------------------------------------


async def _regression_row(conn: asyncpg.Connection, q: _Query) -> asyncpg.Record:
    """The counts and sums the regression metrics need, in double precision (R²'s total sum of squares in two
    passes, around the mean)."""
    row = await conn.fetchrow(
        f"""
        WITH w AS MATERIALIZED (SELECT {q.target}::float8 AS t, {q.prediction}::float8 AS p FROM {q.labelled}),
        e AS (SELECT t, p FROM w WHERE p IS NOT NULL),
        m AS (SELECT avg(t) AS mean FROM e)
        SELECT (SELECT count(*) FROM w) AS labelled, count(*) AS records,
               avg(abs(p - t)) AS mae, avg((p - t) * (p - t)) AS mse,
               sum((t - p) * (t - p)) AS ss_res, sum((t - m.mean) * (t - m.mean)) AS ss_tot,
               min(t) = max(t) AS constant
        FROM e, m
        """,
        *q.bounds,
    )
    assert row is not None
    return row


def _regression_metrics(row: asyncpg.Record, min_records: int) -> list[MetricValue]:
    gated = _gate(REGRESSION_METRICS, row["labelled"], row["records"], min_records)
    if gated is not None:
        return gated
    details = {"labelled": row["labelled"], "records": row["records"]}
    mse = row["mse"]
    rmse = math.sqrt(mse) if math.isfinite(mse) and mse >= 0 else math.nan
    constant = row["constant"] or row["ss_tot"] == 0
    r2_undefined = "the target is constant in the window" if constant else None
    r2 = None if r2_undefined else 1 - row["ss_res"] / row["ss_tot"]
    return [
        _metric("mae", row["mae"], details),
        _metric("rmse", rmse, details),
        _metric("r2", r2, details, r2_undefined),
    ]
