"""The drift monitor: each feature's population stability index (PSI) between a window of a payload table and a
baseline, and the share of features that drifted, computed in PostgreSQL.

PSI = Σ (a_i − e_i)·ln(a_i / e_i) over a feature's bins, ``a_i`` the window's share of the feature's non-null values
in bin ``i``, ``e_i`` the baseline's. The rows never leave the server: one query counts the window, one reads the
baseline's quantiles, one counts both sides per bin; Python adds up at most a few hundred numbers.

The rules:

- **Baseline**: a time window of the same payload table (:class:`WindowBaseline`; it may overlap the evaluated
  window), or a training sample in a CSV file (:class:`SampleBaseline`), loaded for the evaluation into a temporary
  table by COPY. The sample's header names the fields (a feature is matched by its ``name``); other columns are
  ignored. A numeric feature's values are read as ``double precision``, a categorical one's as the type of its payload
  column (so ``True`` in a boolean column is the payload's ``true``); an empty value is null. A missing or oversized
  file, a bad header, a value that does not parse and a NaN or infinite number are refused with
  :class:`~stream_logger.errors.ConfigError` naming the line and field.
- **Nulls** are not values: shares are over a feature's non-null values on each side; the details give the nulls.
- **Numeric bins** are cut at the baseline's quantiles ``1/bins, 2/bins, ..., (bins-1)/bins`` (``percentile_cont``:
  linear interpolation between the two nearest values, numpy's ``method="linear"``). Equal edges (a value that holds
  more than ``1/bins`` of the baseline) are merged into one, so such a feature has fewer bins, never a bin that is
  empty by construction. With the distinct edges ``q_1 < ... < q_k`` there are ``k + 1`` bins, closed below:
  ``(-inf, q_1)``, ``[q_1, q_2)``, ..., ``[q_k, +inf)``; the outer bins are open, so the baseline's maximum (and any
  window value past it) falls in the last bin and a value below the baseline's minimum in the first.
- **Categorical bins** are the distinct values (compared in the column's type, reported as text); a value seen on
  one side only has its own bin. Past ``max_categories`` distinct values, the most frequent ``max_categories - 1``
  (both sides counted together) keep their bins and the rest share one "other" bin, so the work stays bounded.
- **Empty bins**: a share is floored at ``epsilon`` (1e-4, as many PSI implementations do) before the sum, so the
  value is finite; a bin empty on both sides adds exactly 0. The details report the shares before the floor.
- **States**: an empty window gives ``no_data`` for every metric (a sample's file and header are still checked);
  fewer than ``min_records`` rows in the window, ``too_few_records``. Per feature: ``not_in_baseline`` when the
  sample has no such column or the baseline holds no non-null value of it; ``no_data`` when the window holds no
  non-null value (or the payload table has no such column yet); ``too_few_records`` when it holds fewer than
  ``min_records``. ``drifted_share`` is over the features with a value; when none has one it takes their common
  state, or ``undefined`` when their states differ.
"""

from __future__ import annotations

import csv
import math
import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Final, Literal

import asyncpg

from .errors import ConfigError, DatamartError
from .evaluation import OK, MetricValue, Window
from .identifiers import quote_ident
from .retry import pg_errors

__all__ = [
    "DEFAULT_MAX_CATEGORIES",
    "DEFAULT_MAX_SAMPLE_BYTES",
    "DRIFTED_SHARE",
    "EPSILON",
    "KINDS",
    "MAX_BINS",
    "MOST_DRIFTED",
    "Baseline",
    "DriftFeature",
    "SampleBaseline",
    "WindowBaseline",
    "drift_metrics",
    "population_stability_index",
    "psi_metric_name",
    "sample_header",
]

Kind = Literal["numeric", "categorical"]
KINDS: Final = ("numeric", "categorical")
EPSILON: Final = 1e-4
"""The floor of a bin's share in the sum (an empty bin would make PSI infinite)."""
MAX_BINS: Final = 100
DEFAULT_MAX_CATEGORIES: Final = 100
DEFAULT_MAX_SAMPLE_BYTES: Final = 256 * 2**20
MOST_DRIFTED: Final = 10
"""How many features ``drifted_share``'s details list, most drifted first."""
DRIFTED_SHARE: Final = "drifted_share"


def psi_metric_name(feature: str) -> str:
    """The name of a feature's PSI metric: ``psi:<feature>``."""
    return f"psi:{feature}"


@dataclass(frozen=True, slots=True)
class DriftFeature:
    """A feature watched for drift: its field ``name`` (the metric's name, a sample's header), its payload ``column``
    (unquoted) and its ``kind``."""

    name: str
    column: str
    kind: Kind

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"feature {self.name!r}: kind must be one of {KINDS}, not {self.kind!r}")
        if not self.name or not self.column:
            raise ValueError("a drift feature needs a name and a column")


@dataclass(frozen=True, slots=True)
class WindowBaseline:
    """A baseline that is the time range ``[start, end)`` of the evaluated payload table (timezone-aware)."""

    start: datetime
    end: datetime

    def __post_init__(self) -> None:
        Window(self.start, self.end)  # the same checks


@dataclass(frozen=True, slots=True)
class SampleBaseline:
    """A baseline that is a training sample: a CSV file whose header names the fields, at most ``max_bytes``."""

    path: Path
    max_bytes: int = DEFAULT_MAX_SAMPLE_BYTES

    def __post_init__(self) -> None:
        object.__setattr__(self, "path", Path(self.path))
        if self.max_bytes < 1:
            raise ValueError("max_bytes must be positive")


Baseline = WindowBaseline | SampleBaseline


def sample_header(sample: SampleBaseline) -> list[str]:
    """The field names in the sample's header, checked: the file exists, is within its size bound, is UTF-8, and
    its header names each column once. Raises :class:`ConfigError` saying what is wrong."""
    where = f"baseline sample {str(sample.path)!r}"
    try:
        size = sample.path.stat().st_size
        if not sample.path.is_file():
            raise ConfigError(f"{where} is not a file")
        if size > sample.max_bytes:
            raise ConfigError(f"{where} holds {size} bytes, more than the {sample.max_bytes} allowed")
        with sample.path.open(encoding="utf-8-sig", newline="") as file:
            header = next(csv.reader(file, strict=True), None)
    except FileNotFoundError:
        raise ConfigError(f"{where} does not exist") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{where}: its header is not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except csv.Error as exc:
        raise ConfigError(f"{where}: its header is not CSV ({exc})") from None
    except OSError as exc:
        raise ConfigError(f"{where} cannot be read: {exc.strerror or exc}") from None
    if not header:
        raise ConfigError(f"{where} is empty: its first line must name the fields")
    names = [name.strip() for name in header]
    if "" in names:
        raise ConfigError(f"{where}: header column {names.index('') + 1} has no name")
    seen: set[str] = set()
    for name in names:
        if name in seen:
            raise ConfigError(f"{where}: the header names {name!r} twice")
        seen.add(name)
    return names


def population_stability_index(
    baseline_counts: Sequence[int], window_counts: Sequence[int], epsilon: float = EPSILON
) -> float:
    """PSI of two histograms over the same bins: Σ (a − e)·ln(a / e), shares floored at ``epsilon``."""
    if len(baseline_counts) != len(window_counts):
        raise ValueError("both histograms need the same bins")
    return math.fsum(_terms(baseline_counts, window_counts, epsilon))


def _terms(baseline_counts: Sequence[int], window_counts: Sequence[int], epsilon: float) -> list[float]:
    """Each bin's term (a − e)·ln(a / e) of the sum."""
    baseline_total, window_total = sum(baseline_counts), sum(window_counts)
    if not baseline_total or not window_total:
        raise ValueError("PSI needs values on both sides")
    terms = []
    for expected_n, actual_n in zip(baseline_counts, window_counts, strict=True):
        expected = max(expected_n / baseline_total, epsilon)
        actual = max(actual_n / window_total, epsilon)
        terms.append((actual - expected) * math.log(actual / expected))
    return terms


# ------------------------------------------------------------------------------------------------ the evaluation


class _Params:
    """A query's parameters, numbered as they are added."""

    def __init__(self) -> None:
        self.values: list[Any] = []

    def add(self, value: Any, cast: str = "") -> str:
        self.values.append(value)
        return f"${len(self.values)}{cast}"


@dataclass(frozen=True, slots=True)
class _Side:
    """The rows of one side, ``FROM <source> AS t``, within ``[start, end)`` of ``time_column`` when it has one (a
    sample has none); ``columns`` maps a feature's name to the quoted column that holds it on this side."""

    source: str
    columns: dict[str, str]
    time_column: str | None = None
    start: datetime | None = None
    end: datetime | None = None

    def where(self, params: _Params, *more: str) -> str:
        """The WHERE clause of this side's rows and ``more`` conditions, its bounds added to ``params``."""
        conditions = list(more)
        if self.time_column is not None:
            column = f"t.{self.time_column}"
            conditions[:0] = [f"{column} >= {params.add(self.start)}", f"{column} < {params.add(self.end)}"]
        return f" WHERE {' AND '.join(conditions)}" if conditions else ""


@dataclass(slots=True)
class _Feature:
    """What the evaluation learns of one feature on its way to its metric."""

    spec: DriftFeature
    state: str = OK
    reason: str = ""
    edges: list[float] | None = None
    baseline_rows: int = 0
    baseline_count: int = 0
    window_count: int | None = None
    bins: list[dict[str, Any]] | None = None


async def drift_metrics(
    conn: asyncpg.Connection,
    relation: str,
    window: Window,
    baseline: Baseline,
    features: Sequence[DriftFeature],
    *,
    bins: int = 10,
    threshold: float = 0.2,
    time_column: str = "scoring_timestamp",
    min_records: int = 1,
    epsilon: float = EPSILON,
    max_categories: int = DEFAULT_MAX_CATEGORIES,
) -> list[MetricValue]:
    """The drift metrics of ``features`` over ``window`` of the payload table ``relation`` (quoted and qualified)
    against ``baseline``: ``psi:<name>`` per feature, in the order given, then ``drifted_share``, the share of the
    features with a value whose PSI is at least ``threshold``. The module's docstring gives the rules.

    Raises :class:`ValueError` for invalid arguments, :class:`ConfigError` for a sample that cannot be read or a
    numeric feature whose column holds no numbers, :class:`DatamartError` when ``relation`` does not exist.
    """
    _check_arguments(features, bins, threshold, min_records, epsilon, max_categories)
    header = sample_header(baseline) if isinstance(baseline, SampleBaseline) else []  # refused even on no data
    with pg_errors("drift metrics"):
        columns = await _columns(conn, relation)
        _check_columns(columns, features, time_column)
        in_table = {f.name: quote_ident(f.column) for f in features if f.column in columns}
        window_side = _Side(relation, in_table, quote_ident(time_column), window.start, window.end)
        params = _Params()
        window_rows: int = await conn.fetchval(
            f"SELECT count(*) FROM {relation} AS t{window_side.where(params)}", *params.values
        )
        if window_rows < min_records:
            state = "no_data" if window_rows == 0 else "too_few_records"
            details = {"window_rows": window_rows, "min_records": min_records}
            return [MetricValue(name, None, state, dict(details)) for name in _metric_names(features)]
        if isinstance(baseline, WindowBaseline):
            baseline_side = _Side(relation, in_table, quote_ident(time_column), baseline.start, baseline.end)
            evaluated = await _evaluate(conn, window_side, baseline_side, features, bins, max_categories)
        else:
            async with conn.transaction():  # the sample's table lives as long as the transaction
                baseline_side = await _load_sample(conn, relation, baseline, header, features, columns)
                evaluated = await _evaluate(conn, window_side, baseline_side, features, bins, max_categories)
                await conn.execute(f"DROP TABLE {baseline_side.source}")
    return _metrics(evaluated, window_rows, threshold, min_records, epsilon)


def _metric_names(features: Sequence[DriftFeature]) -> list[str]:
    return [*(psi_metric_name(f.name) for f in features), DRIFTED_SHARE]


def _check_arguments(
    features: Sequence[DriftFeature], bins: int, threshold: float, min_records: int, epsilon: float, max_categories: int
) -> None:
    if not features:
        raise ValueError("drift needs at least one feature")
    names = [f.name for f in features]
    if len(set(names)) != len(names):
        raise ValueError(f"features named twice: {sorted({n for n in names if names.count(n) > 1})}")
    if not 2 <= bins <= MAX_BINS:
        raise ValueError(f"bins must be between 2 and {MAX_BINS}, not {bins}")
    if not (math.isfinite(threshold) and threshold > 0):
        raise ValueError(f"threshold must be a positive number, not {threshold}")
    if min_records < 1:
        raise ValueError(f"min_records must be at least 1, not {min_records}")
    if not 0 < epsilon < 1:
        raise ValueError(f"epsilon must be between 0 and 1, not {epsilon}")
    if max_categories < 2:
        raise ValueError(f"max_categories must be at least 2, not {max_categories}")


async def _columns(conn: asyncpg.Connection, relation: str) -> dict[str, tuple[str, bool]]:
    """The columns of ``relation``: name -> (its type, whether the type is a number's)."""
    try:
        rows = await conn.fetch(
            "SELECT a.attname, format_type(a.atttypid, a.atttypmod), t.typcategory = 'N'"
            " FROM pg_attribute AS a JOIN pg_type AS t ON t.oid = a.atttypid"
            " WHERE a.attrelid = $1::regclass AND a.attnum > 0 AND NOT a.attisdropped",
            relation,
        )
    except (asyncpg.UndefinedTableError, asyncpg.InvalidSchemaNameError):
        raise DatamartError(f"drift metrics: no table {relation}") from None
    return {name: (type_, numeric) for name, type_, numeric in rows}


def _check_columns(columns: dict[str, tuple[str, bool]], features: Sequence[DriftFeature], time_column: str) -> None:
    if time_column not in columns:
        raise ConfigError(f"drift metrics: the payload table has no time column {time_column!r}")
    for feature in features:
        column = columns.get(feature.column)
        if feature.kind == "numeric" and column is not None and not column[1]:
            raise ConfigError(
                f"drift feature {feature.name!r} is numeric but its column {feature.column!r} holds {column[0]}"
            )


async def _load_sample(
    conn: asyncpg.Connection,
    relation: str,
    sample: SampleBaseline,
    header: list[str],
    features: Sequence[DriftFeature],
    columns: dict[str, tuple[str, bool]],
) -> _Side:
    """The sample in a temporary table dropped at the end of the transaction, its columns ``c0, c1, ...`` in the
    header's order and typed as the module's docstring says: made from the payload table's own columns, so no type
    name is ever spliced into SQL."""
    by_name = {f.name: f for f in features}
    selected = []
    for i, name in enumerate(header):
        feature = by_name.get(name)
        if feature is None:
            expr = "NULL::text"
        elif feature.kind == "numeric":
            expr = f"{quote_ident(feature.column)}::float8" if feature.column in columns else "NULL::float8"
        else:
            expr = quote_ident(feature.column) if feature.column in columns else "NULL::text"
        selected.append(f"{expr} AS c{i}")
    table = f"drift_sample_{uuid.uuid4().hex[:16]}"
    await conn.execute(
        f"CREATE TEMPORARY TABLE {quote_ident(table)} ON COMMIT DROP AS"
        f" SELECT {', '.join(selected)} FROM {relation} WITH NO DATA"
    )
    try:
        await conn.copy_to_table(table, source=sample.path, format="csv", header=True)
    except asyncpg.DataError as exc:
        raise ConfigError(f"baseline sample {str(sample.path)!r}: {_copy_error(exc, header)}") from None
    return _Side(f"pg_temp.{quote_ident(table)}", {name: f"c{i}" for i, name in enumerate(header) if name in by_name})


_COPY_PLACE: Final = re.compile(r"line (\d+)(?:, column c(\d+))?")
_COLUMN: Final = re.compile(r"\bcolumn \"?c(\d+)\b\"?")


def _copy_error(exc: asyncpg.PostgresError, header: list[str]) -> str:
    """COPY's refusal with the file's line and the field's name (COPY names the temporary table's column)."""

    def field(found: re.Match[str]) -> str:
        k = int(found.group(1))
        return f"field {header[k]!r}" if k < len(header) else found.group(0)

    message = _COLUMN.sub(field, str(getattr(exc, "message", None) or exc))
    place = _COPY_PLACE.search(getattr(exc, "context", None) or "")
    if place is None:
        return message
    where = f"line {place.group(1)}"
    if place.group(2) is not None:
        where += ", " + _COLUMN.sub(field, f"column c{place.group(2)}")
    return f"{where}: {message}"


async def _evaluate(
    conn: asyncpg.Connection,
    window_side: _Side,
    baseline_side: _Side,
    features: Sequence[DriftFeature],
    bins: int,
    max_categories: int,
) -> list[_Feature]:
    """Each feature's state; for those with a value, the baseline's edges, then both sides' counts per bin."""
    evaluated = [_Feature(f) for f in features]
    present = []
    for e in evaluated:
        if e.spec.name in baseline_side.columns:
            present.append(e)
        else:
            e.state, e.reason = "not_in_baseline", "the baseline has no such column"
    params = _Params()
    quantiles = [k / bins for k in range(1, bins)]
    aggregates = ["count(*)"]
    for e in present:
        column = f"t.{baseline_side.columns[e.spec.name]}"
        aggregates.append(f"count({column})")
        if e.spec.kind == "numeric":
            fractions = params.add(quantiles, "::float8[]")
            aggregates.append(f"percentile_cont({fractions}) WITHIN GROUP (ORDER BY {column}::float8)")
            aggregates.append(f"count(*) FILTER (WHERE {column}::float8 IN ('NaN', 'Infinity', '-Infinity'))")
    where = baseline_side.where(params)
    row = await conn.fetchrow(f"SELECT {', '.join(aggregates)} FROM {baseline_side.source} AS t{where}", *params.values)
    values = iter(row)
    baseline_rows = next(values)
    for e in present:
        e.baseline_rows, e.baseline_count = baseline_rows, next(values)
        if e.spec.kind == "numeric":
            edges, non_finite = next(values), next(values)
            if non_finite:
                raise ConfigError(f"drift baseline: feature {e.spec.name!r} holds {non_finite} NaN or infinite values")
            e.edges = sorted(set(edges)) if edges is not None else None
        if e.baseline_count == 0:
            e.state, e.reason = "not_in_baseline", "the baseline holds no value of it"
        elif e.spec.name not in window_side.columns:
            e.state, e.reason = "no_data", f"the payload table has no column {e.spec.column!r}"
    for e in evaluated:
        e.baseline_rows = baseline_rows
    binned = [e for e in present if e.state == OK]
    if binned:
        await _count_bins(conn, window_side, baseline_side, binned, max_categories)
    return evaluated


async def _count_bins(
    conn: asyncpg.Connection, window_side: _Side, baseline_side: _Side, features: list[_Feature], max_categories: int
) -> None:
    """Both sides' counts per bin of each feature, in one query. Past ``max_categories`` values, a categorical
    feature's rarest values share one bin (whose ``bin`` is null)."""
    params = _Params()
    counts = []
    for side in (baseline_side, window_side):
        pairs = []
        for i, e in enumerate(features):
            column = f"t.{side.columns[e.spec.name]}"
            if e.spec.kind == "numeric":
                pairs.append(f"({i}, width_bucket({column}::float8, {params.add(e.edges, '::float8[]')})::text)")
            else:
                pairs.append(f"({i}, ({column})::text)")
        counts.append(
            f"SELECT v.feature, v.bin, count(*) AS n FROM {side.source} AS t"
            f" CROSS JOIN LATERAL (VALUES {', '.join(pairs)}) AS v(feature, bin)"
            f"{side.where(params, 'v.bin IS NOT NULL')} GROUP BY v.feature, v.bin"
        )
    numeric = params.add([i for i, e in enumerate(features) if e.spec.kind == "numeric"], "::int[]")
    limit = params.add(max_categories, "::int")
    rows = await conn.fetch(
        f"WITH baseline_counts AS ({counts[0]}), window_counts AS ({counts[1]}),"
        " joined AS (SELECT feature, bin, coalesce(b.n, 0) AS baseline_n, coalesce(w.n, 0) AS window_n"
        " FROM baseline_counts AS b FULL JOIN window_counts AS w USING (feature, bin)),"
        " ranked AS (SELECT *, row_number() OVER (PARTITION BY feature ORDER BY baseline_n + window_n DESC, bin)"
        " AS rank, count(*) OVER (PARTITION BY feature) AS distinct_values FROM joined)"
        f" SELECT feature, CASE WHEN feature = ANY({numeric}) OR distinct_values <= {limit} OR rank < {limit}"
        " THEN bin END AS bin, sum(baseline_n)::bigint, sum(window_n)::bigint, count(*)::bigint"
        " FROM ranked GROUP BY 1, 2",
        *params.values,
    )
    found: list[list[tuple[str | None, int, int, int]]] = [[] for _ in features]
    for feature, bin_, baseline_n, window_n, merged in rows:
        found[feature].append((bin_, baseline_n, window_n, merged))
    for e, bin_counts in zip(features, found, strict=True):
        e.bins = _numeric_bins(e.edges or [], bin_counts) if e.spec.kind == "numeric" else _value_bins(bin_counts)
        e.baseline_count = sum(b["baseline_count"] for b in e.bins)
        e.window_count = sum(b["window_count"] for b in e.bins)


def _numeric_bins(edges: list[float], found: list[tuple[str | None, int, int, int]]) -> list[dict[str, Any]]:
    """Every bin between the edges (``lower`` <= x < ``upper``, None for an open end), with its counts."""
    by_index = {int(bin_): (baseline_n, window_n) for bin_, baseline_n, window_n, _ in found if bin_ is not None}
    bounds: list[float | None] = [None, *edges, None]
    return [
        {"lower": bounds[j], "upper": bounds[j + 1], **_counts(*by_index.get(j, (0, 0)))} for j in range(len(edges) + 1)
    ]


def _value_bins(found: list[tuple[str | None, int, int, int]]) -> list[dict[str, Any]]:
    """A bin per value (ordered by value), then the "other" bin of the values past the limit, if any."""
    bins: list[dict[str, Any]] = [
        {"value": bin_, **_counts(baseline_n, window_n)}
        for bin_, baseline_n, window_n, _ in sorted((f for f in found if f[0] is not None), key=lambda f: str(f[0]))
    ]
    bins += [
        {"value": None, "other_values": merged, **_counts(baseline_n, window_n)}
        for bin_, baseline_n, window_n, merged in found
        if bin_ is None
    ]
    return bins


def _counts(baseline_n: int, window_n: int) -> dict[str, Any]:
    return {"baseline_count": baseline_n, "window_count": window_n}


def _metrics(
    evaluated: list[_Feature], window_rows: int, threshold: float, min_records: int, epsilon: float
) -> list[MetricValue]:
    """The metrics of the evaluated features: a PSI each, then the drifted share."""
    metrics = []
    for e in evaluated:
        details: dict[str, Any] = {
            "kind": e.spec.kind,
            "column": e.spec.column,
            "baseline_rows": e.baseline_rows,
            "baseline_count": e.baseline_count,
            "window_rows": window_rows,
        }
        if e.window_count is not None:
            details["window_count"] = e.window_count
        window_count = e.window_count or 0
        if e.state == OK and window_count == 0:
            e.state, e.reason = "no_data", "the window holds no value of it"
        elif e.state == OK and window_count < min_records:
            e.state, e.reason = "too_few_records", f"the window holds {window_count} values, fewer than {min_records}"
        if e.state != OK:
            metrics.append(MetricValue(psi_metric_name(e.spec.name), None, e.state, {**details, "reason": e.reason}))
            continue
        assert e.bins is not None
        terms = _terms([b["baseline_count"] for b in e.bins], [b["window_count"] for b in e.bins], epsilon)
        for b, term in zip(e.bins, terms, strict=True):
            b["baseline_share"] = b["baseline_count"] / e.baseline_count
            b["window_share"] = b["window_count"] / window_count
            b["term"] = term
        if e.edges is not None:
            details["edges"] = e.edges
        details |= {"epsilon": epsilon, "bins": e.bins}
        metrics.append(MetricValue(psi_metric_name(e.spec.name), math.fsum(terms), OK, details))
    metrics.append(_drifted_share(evaluated, metrics, threshold))
    return metrics


def _drifted_share(evaluated: list[_Feature], metrics: list[MetricValue], threshold: float) -> MetricValue:
    valued = sorted(
        ((m.value, e.spec.name) for e, m in zip(evaluated, metrics, strict=True) if m.value is not None),
        key=lambda pair: (-pair[0], pair[1]),
    )
    without = {e.spec.name: e.state for e in evaluated if e.state != OK}
    drifted = [name for psi, name in valued if psi >= threshold]
    details: dict[str, Any] = {
        "threshold": threshold,
        "features": len(valued),
        "drifted": drifted,
        "most_drifted": [{"feature": name, "psi": psi} for psi, name in valued[:MOST_DRIFTED]],
        "without_value": without,
    }
    if not valued:
        states = set(without.values())
        return MetricValue(DRIFTED_SHARE, None, states.pop() if len(states) == 1 else "undefined", details)
    return MetricValue(DRIFTED_SHARE, len(drifted) / len(valued), OK, details)
