"""Monitor definitions: what ``stream-logger monitor add --file monitors.json`` declares for a subscription.

The file (``examples/monitors.json``)::

    {"subscription_id": "german_credit",
     "monitors": [
        {"name": "fairness", "kind": "fairness", "window": "1d", "min_records": 100,
         "favourable": ["No Risk"],
         "attributes": [{"field": "Sex", "reference": ["male"], "monitored": ["female"]},
                        {"field": "Age", "reference": [[26, 120]], "monitored": [[18, 25]]}],
         "thresholds": {"disparate_impact": {"min": 0.8}}},
        {"name": "traffic", "kind": "traffic", "window": "1h", "thresholds": {"error_rate": {"max": 0.05}}}]}

Every monitor has a ``name`` (unique within its subscription), a ``kind``, a ``window`` (a duration, ``1h``; default
``1d``) and ``thresholds``: ``{metric: {"min": x, "max": y}}``, a metric breached when its value is below ``min`` or
above ``max``; a metric of one attribute or feature (``disparate_impact:Sex``) takes its own threshold, else its
family's (``disparate_impact``), else the kind's default (:data:`DEFAULT_THRESHOLDS`). What each kind takes besides:

- ``fairness``: ``attributes`` (each a ``field``, and its ``reference`` and ``monitored`` groups: values, or
  inclusive ``[low, high]`` ranges of a numeric field), ``favourable`` (prediction values), ``prediction_field``
  (default: the subscription's prediction field), ``min_records`` (a group's minimum; default 30).
- ``quality`` (on the labelled rows): ``problem_type`` (``binary``, ``multiclass``, ``regression``),
  ``positive_class`` (binary), ``prediction_field`` and ``probability_field`` (default: the subscription's fields of
  those roles), ``probability_index`` (the positive class's place in an array of probabilities), ``min_records``.
- ``drift``: ``baseline``, ``{"from": T, "to": T}`` (a window of the payload table) or ``{"sample": "x.csv"}`` (a
  training sample: a header of field names; a relative path is read from where ``monitor run`` runs),
  ``features`` (default: every feature), ``bins`` (10), ``psi_threshold`` (0.2: what ``drifted_share`` counts),
  ``min_records``.
- ``traffic``: nothing more.

A definition is validated when added (:func:`parse_monitors`, :class:`~stream_logger.errors.MonitorError` saying
where and why) and stored in the datamart's ``monitors`` table; declaring a monitor again replaces its definition
and counts its version.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

import asyncpg
import orjson

from .config import parse_duration_s
from .errors import ConfigError, MonitorError
from .identifiers import quote_ident, validate_schema_name
from .subscription import Subscription

__all__ = [
    "DEFAULT_THRESHOLDS",
    "DEFAULT_WINDOW_S",
    "KINDS",
    "MonitorDefinition",
    "Threshold",
    "field_column",
    "list_monitors",
    "parse_monitors",
    "prediction_field",
    "store_monitors",
]

KINDS: Final = ("fairness", "quality", "drift", "traffic")
"""The kinds of monitor."""
DEFAULT_WINDOW_S: Final = 86400.0
DEFAULT_MIN_RECORDS: Final = 30


@dataclass(frozen=True, slots=True)
class Threshold:
    """A metric's acceptable range: breached below ``min`` or above ``max`` (either may be None)."""

    min: float | None = None
    max: float | None = None

    def breached(self, value: float | None) -> bool:
        if value is None:
            return False
        return (self.min is not None and value < self.min) or (self.max is not None and value > self.max)


DEFAULT_THRESHOLDS: Final[Mapping[str, Threshold]] = {
    "disparate_impact": Threshold(min=0.8),  # the four-fifths rule
    "statistical_parity_difference": Threshold(min=-0.1, max=0.1),  # TrustyAI's default band
    "psi": Threshold(max=0.2),  # the usual line of a significant shift
}
"""The thresholds a metric family has unless its monitor says otherwise."""


@dataclass(frozen=True, slots=True)
class MonitorDefinition:
    """One monitor of one subscription: the validated ``spec`` of its kind, and its definition as given."""

    subscription_id: str
    name: str
    kind: str
    window_s: float
    thresholds: Mapping[str, Threshold]
    spec: Mapping[str, Any]
    definition: Mapping[str, Any]

    def threshold(self, metric: str) -> Threshold:
        """The threshold of ``metric`` (``family:part``): its own, its family's, or the default (none: never
        breached)."""
        family = metric.split(":", 1)[0]
        return self.thresholds.get(metric) or self.thresholds.get(family) or DEFAULT_THRESHOLDS.get(family, Threshold())


_FILE_KEYS: Final = frozenset({"subscription_id", "monitors"})
_COMMON_KEYS: Final = frozenset({"name", "kind", "window", "thresholds"})
_KIND_KEYS: Final[Mapping[str, frozenset[str]]] = {
    "fairness": frozenset({"attributes", "favourable", "prediction_field", "min_records"}),
    "quality": frozenset(
        {"problem_type", "positive_class", "prediction_field", "probability_field", "probability_index", "min_records"}
    ),
    "drift": frozenset({"baseline", "features", "bins", "psi_threshold", "min_records"}),
    "traffic": frozenset(),
}


def _fail(where: str, message: str) -> MonitorError:
    return MonitorError(f"monitors: {where}: {message}")


def _name(value: Any, where: str) -> str:
    if not isinstance(value, str) or not value or len(value) > 256 or "\x00" in value:
        raise _fail(where, "expected a non-empty string of at most 256 characters, no NUL")
    return value


def _number(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise _fail(where, f"expected a finite number, not {value!r}")
    return float(value)


def _object(value: Any, where: str, allowed: frozenset[str]) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _fail(where, "expected a JSON object")
    unknown = sorted(set(value) - allowed)
    if unknown:
        raise _fail(where, f"unknown keys {unknown}; allowed: {sorted(allowed)}")
    return value


def parse_monitors(obj: Any) -> list[MonitorDefinition]:
    """Validate a monitors file's JSON object; raises :class:`MonitorError` saying what is wrong and where."""
    top = _object(obj, "top level", _FILE_KEYS)
    subscription_id = _name(top.get("subscription_id"), "subscription_id")
    monitors = top.get("monitors")
    if not isinstance(monitors, list) or not monitors:
        raise _fail("monitors", "expected a non-empty list of monitor objects")
    out: list[MonitorDefinition] = []
    for i, raw in enumerate(monitors):
        where = f"monitors[{i}]"
        kind = raw.get("kind") if isinstance(raw, dict) else None
        if kind not in KINDS:
            raise _fail(f"{where}.kind", f"unknown kind {kind!r}; use one of {list(KINDS)}")
        m = _object(raw, where, _COMMON_KEYS | _KIND_KEYS[kind])
        name = _name(m.get("name"), f"{where}.name")
        if any(d.name == name for d in out):
            raise _fail(f"{where}.name", f"monitor {name!r} is declared twice")
        window = m.get("window", "1d")
        try:
            window_s = parse_duration_s(window)
        except ConfigError as exc:
            raise _fail(f"{where}.window", str(exc)) from None
        if window_s <= 0:
            raise _fail(f"{where}.window", "must be longer than 0")
        thresholds = _thresholds(m.get("thresholds", {}), f"{where}.thresholds")
        spec = _SPECS[kind](m, where)
        out.append(MonitorDefinition(subscription_id, name, kind, window_s, thresholds, spec, m))
    return out


def _thresholds(value: Any, where: str) -> dict[str, Threshold]:
    if not isinstance(value, dict):
        raise _fail(where, 'expected {metric: {"min": x, "max": y}}')
    out: dict[str, Threshold] = {}
    for metric, bounds in value.items():
        here = f"{where}.{metric}"
        bounds = _object(bounds, here, frozenset({"min", "max"}))
        low = None if bounds.get("min") is None else _number(bounds["min"], f"{here}.min")
        high = None if bounds.get("max") is None else _number(bounds["max"], f"{here}.max")
        if low is None and high is None:
            raise _fail(here, "give min, max or both")
        if low is not None and high is not None and low > high:
            raise _fail(here, f"min {low} is above max {high}")
        out[_name(metric, here)] = Threshold(low, high)
    return out


def _fairness(m: Mapping[str, Any], where: str) -> dict[str, Any]:
    favourable = m.get("favourable")
    if (
        not isinstance(favourable, list)
        or not favourable
        or not all(isinstance(v, str | int | float) for v in favourable)
    ):
        raise _fail(f"{where}.favourable", "expected a non-empty list of the favourable prediction values")
    min_records = _min_records(m, where)
    prediction = m.get("prediction_field")
    if prediction is not None:
        _name(prediction, f"{where}.prediction_field")
    attributes = m.get("attributes")
    if not isinstance(attributes, list) or not attributes:
        raise _fail(f"{where}.attributes", "expected a non-empty list of {field, reference, monitored}")
    parsed: list[dict[str, Any]] = []
    for j, a in enumerate(attributes):
        here = f"{where}.attributes[{j}]"
        a = _object(a, here, frozenset({"field", "reference", "monitored"}))
        field = _name(a.get("field"), f"{here}.field")
        if any(p["field"] == field for p in parsed):  # its metrics are named by it
            raise _fail(f"{here}.field", f"{field!r} is monitored twice: give the second grouping a monitor of its own")
        groups = {side: _group(a.get(side), f"{here}.{side}") for side in ("reference", "monitored")}
        parsed.append({"field": field, **groups})
    return {"attributes": parsed, "favourable": favourable, "prediction_field": prediction, "min_records": min_records}


def _min_records(m: Mapping[str, Any], where: str) -> int:
    value = m.get("min_records", DEFAULT_MIN_RECORDS)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise _fail(f"{where}.min_records", "expected a whole number >= 1")
    return value


def _quality(m: Mapping[str, Any], where: str) -> dict[str, Any]:
    problem_type = m.get("problem_type")
    if problem_type not in ("binary", "multiclass", "regression"):
        raise _fail(f"{where}.problem_type", f"expected binary, multiclass or regression, not {problem_type!r}")
    positive = m.get("positive_class")
    if problem_type == "binary" and (positive is None or not isinstance(positive, str | int | float)):
        raise _fail(f"{where}.positive_class", "a binary classifier's monitor names its positive class")
    index = m.get("probability_index")
    if index is not None and (isinstance(index, bool) or not isinstance(index, int) or index < 0):
        raise _fail(f"{where}.probability_index", "expected the index (from 0) of the positive class's probability")
    for key in ("prediction_field", "probability_field"):
        if m.get(key) is not None:
            _name(m[key], f"{where}.{key}")
    return {
        "problem_type": problem_type,
        "positive_class": positive,
        "prediction_field": m.get("prediction_field"),
        "probability_field": m.get("probability_field"),
        "probability_index": index,
        "min_records": _min_records(m, where),
    }


def _drift(m: Mapping[str, Any], where: str) -> dict[str, Any]:
    baseline = m.get("baseline")
    if isinstance(baseline, dict) and "sample" in baseline:
        _object(baseline, f"{where}.baseline", frozenset({"sample"}))
        parsed: dict[str, Any] = {"sample": _name(baseline["sample"], f"{where}.baseline.sample")}
    elif isinstance(baseline, dict):
        _object(baseline, f"{where}.baseline", frozenset({"from", "to"}))
        bounds = [_timestamp(baseline.get(k), f"{where}.baseline.{k}") for k in ("from", "to")]
        if not bounds[0] < bounds[1]:
            raise _fail(f"{where}.baseline", "from must be before to")
        parsed = {"from": bounds[0], "to": bounds[1]}
    else:
        raise _fail(
            f"{where}.baseline", 'expected {"from": T, "to": T} (a window of the payload) or {"sample": "x.csv"}'
        )
    features = m.get("features")
    if features is not None and (not isinstance(features, list) or not features):
        raise _fail(f"{where}.features", "expected a non-empty list of field names (default: every feature)")
    bins = m.get("bins", 10)
    if isinstance(bins, bool) or not isinstance(bins, int) or not 2 <= bins <= 100:
        raise _fail(f"{where}.bins", "expected a whole number from 2 to 100")
    psi = _number(m.get("psi_threshold", 0.2), f"{where}.psi_threshold")
    if psi <= 0:
        raise _fail(f"{where}.psi_threshold", "must be above 0")
    names = None if features is None else [_name(f, f"{where}.features[{i}]") for i, f in enumerate(features)]
    return {
        "baseline": parsed,
        "features": names,
        "bins": bins,
        "psi_threshold": psi,
        "min_records": _min_records(m, where),
    }


def _timestamp(value: Any, where: str) -> datetime:
    try:
        parsed = datetime.fromisoformat(value) if isinstance(value, str) else None
    except ValueError:
        parsed = None
    if parsed is None or parsed.tzinfo is None:
        raise _fail(where, f"expected an ISO 8601 timestamp with a timezone, not {value!r}")
    return parsed


def _traffic(m: Mapping[str, Any], where: str) -> dict[str, Any]:
    return {}


_SPECS: Final[Mapping[str, Callable[[Mapping[str, Any], str], dict[str, Any]]]] = {
    "fairness": _fairness,
    "quality": _quality,
    "drift": _drift,
    "traffic": _traffic,
}
"""Each kind's own keys, validated into its ``spec``."""


def _group(value: Any, where: str) -> dict[str, list[Any]]:
    """A group: ``{"values": [...]}`` (category values) and ``{"ranges": [[low, high], ...]}`` (inclusive)."""
    if not isinstance(value, list) or not value:
        raise _fail(where, "expected a non-empty list of values, or of [low, high] ranges")
    values: list[Any] = []
    ranges: list[list[float]] = []
    for k, item in enumerate(value):
        if isinstance(item, list):
            if len(item) != 2:
                raise _fail(f"{where}[{k}]", "a range is [low, high]")
            low, high = _number(item[0], f"{where}[{k}][0]"), _number(item[1], f"{where}[{k}][1]")
            if low > high:
                raise _fail(f"{where}[{k}]", f"low {low} is above high {high}")
            ranges.append([low, high])
        elif isinstance(item, str | int | float) and not isinstance(item, bool):
            values.append(item)
        else:
            raise _fail(f"{where}[{k}]", f"expected a value or a [low, high] range, not {item!r}")
    if values and ranges:
        raise _fail(where, "give values or ranges, not both")
    return {"values": values, "ranges": ranges}


def field_column(sub: Subscription, name: str, roles: tuple[str, ...]) -> tuple[str, str]:
    """The column and type of the field ``name`` (of one of ``roles``), or MonitorError."""
    f = sub.field_of(name, roles)
    if f is None:
        raise MonitorError(f"subscription {sub.subscription_id!r} has no field {name!r} ({' or '.join(roles)})")
    return f.column, f.type


def prediction_field(sub: Subscription, name: str | None) -> str:
    """The field named, else the subscription's prediction field (MonitorError when it has none)."""
    if name is not None:
        return name
    found = next((f for f in sub.fields if f.role == "prediction"), None)
    if found is None:
        raise MonitorError(f"subscription {sub.subscription_id!r} has no prediction field: give prediction_field")
    return found.name


async def store_monitors(conn: asyncpg.Connection, schema: str, monitors: Sequence[MonitorDefinition]) -> None:
    """Store (or replace, counting its version) each monitor's definition, in one transaction."""
    q = quote_ident(validate_schema_name(schema))
    async with conn.transaction():
        for m in monitors:
            await conn.execute(
                f"""INSERT INTO {q}.monitors (subscription_id, name, kind, definition)
                    VALUES ($1, $2, $3, $4::jsonb)
                    ON CONFLICT (subscription_id, name) DO UPDATE SET kind = EXCLUDED.kind,
                        definition = EXCLUDED.definition, version = monitors.version + 1, updated_at = now()""",
                m.subscription_id,
                m.name,
                m.kind,
                orjson.dumps(m.definition).decode(),
            )


async def list_monitors(
    conn: asyncpg.Connection, schema: str, subscription_id: str | None = None
) -> list[tuple[MonitorDefinition, int]]:
    """The stored monitors (of one subscription, or all), each with its version, by subscription and name."""
    q = quote_ident(validate_schema_name(schema))
    rows = await conn.fetch(
        f"SELECT subscription_id, definition::text AS definition, version FROM {q}.monitors "
        "WHERE $1::text IS NULL OR subscription_id = $1 ORDER BY subscription_id, name",
        subscription_id,
    )
    out = []
    for r in rows:
        (m,) = parse_monitors({"subscription_id": r["subscription_id"], "monitors": [orjson.loads(r["definition"])]})
        out.append((m, r["version"]))
    return out
