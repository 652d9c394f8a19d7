"""The fairness monitor, computed in PostgreSQL: for each monitored attribute, how often its monitored group gets a
favourable prediction against its reference group.

Over the payload rows of a window, with F the favourable predictions, M the monitored group and R the reference
group of an attribute:

- ``disparate_impact:<field>`` = P(F | M) / P(F | R) (OpenScale's fairness score, as a ratio; the four-fifths rule
  warns below 0.8);
- ``statistical_parity_difference:<field>`` = P(F | M) - P(F | R) (fair around 0).

A group is category values of the field, or inclusive ``[low, high]`` ranges of a numeric field. One query an
attribute counts each group's rows and favourable rows (the details). A group with fewer rows than the monitor's
``min_records`` gives ``too_few_records``; a reference group that is never favoured makes the ratio ``undefined``;
an empty window, ``no_data``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import asyncpg

from .errors import MonitorError
from .evaluation import MetricValue, Window
from .identifiers import quote_ident
from .monitors import field_column, prediction_field
from .subscription import Subscription

__all__ = ["fairness_metrics"]


def _condition(column: str, type_: str, group: Mapping[str, list[Any]], args: list[Any]) -> str:
    """SQL that holds for the rows of ``group``, its values passed in ``args``."""
    q = quote_ident(column)
    if group["ranges"]:
        if type_ not in ("bigint", "float8"):
            raise MonitorError(f"column {column!r} is {type_}: a range needs a numeric field")
        arms = []
        for low, high in group["ranges"]:
            args += [low, high]
            arms.append(f"({q}::float8 BETWEEN ${len(args) - 1}::float8 AND ${len(args)}::float8)")
        return "(" + " OR ".join(arms) + ")"
    args.append([str(v) for v in group["values"]])
    return f"({q}::text = ANY(${len(args)}::text[]))"


async def fairness_metrics(
    conn: asyncpg.Connection, sub: Subscription, spec: Mapping[str, Any], window: Window
) -> list[MetricValue]:
    """The fairness metrics of ``sub``'s payload rows in ``window`` (``spec``: a fairness monitor's, see
    :mod:`stream_logger.monitors`)."""
    pred_column, _ = field_column(sub, prediction_field(sub, spec["prediction_field"]), ("prediction", "response"))
    table = f"{quote_ident(sub.schema)}.{quote_ident(sub.table)}"
    out: list[MetricValue] = []
    for attribute in spec["attributes"]:
        field = attribute["field"]
        column, type_ = field_column(sub, field, ("feature", "meta"))
        args: list[Any] = [window.start, window.end, [str(v) for v in spec["favourable"]]]
        favourable = f"({quote_ident(pred_column)}::text = ANY($3::text[]))"
        monitored = _condition(column, type_, attribute["monitored"], args)
        reference = _condition(column, type_, attribute["reference"], args)
        row = await conn.fetchrow(
            f"""SELECT count(*) AS rows,
                count(*) FILTER (WHERE {monitored}) AS m_rows,
                count(*) FILTER (WHERE {monitored} AND {favourable}) AS m_favourable,
                count(*) FILTER (WHERE {reference}) AS r_rows,
                count(*) FILTER (WHERE {reference} AND {favourable}) AS r_favourable
            FROM {table} WHERE scoring_timestamp >= $1 AND scoring_timestamp < $2""",
            *args,
        )
        assert row is not None
        out += _metrics(field, dict(row), spec["min_records"], attribute)
    return out


def _metrics(field: str, counts: dict[str, int], min_records: int, attribute: Mapping[str, Any]) -> list[MetricValue]:
    details: dict[str, Any] = {
        "monitored": {"group": attribute["monitored"], "rows": counts["m_rows"], "favourable": counts["m_favourable"]},
        "reference": {"group": attribute["reference"], "rows": counts["r_rows"], "favourable": counts["r_favourable"]},
        "min_records": min_records,
    }
    names = (f"disparate_impact:{field}", f"statistical_parity_difference:{field}")
    if counts["rows"] == 0:
        return [MetricValue(n, None, "no_data", details) for n in names]
    if counts["m_rows"] < min_records or counts["r_rows"] < min_records:
        return [MetricValue(n, None, "too_few_records", details) for n in names]
    m_rate = counts["m_favourable"] / counts["m_rows"]
    r_rate = counts["r_favourable"] / counts["r_rows"]
    details["monitored"]["rate"], details["reference"]["rate"] = m_rate, r_rate
    impact = (
        MetricValue(names[0], m_rate / r_rate, details=details)
        if r_rate
        else MetricValue(names[0], None, "undefined", details)
    )
    return [impact, MetricValue(names[1], m_rate - r_rate, details=details)]
