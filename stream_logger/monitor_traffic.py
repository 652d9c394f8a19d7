"""The traffic monitor, computed in PostgreSQL over a window of a subscription's payload rows and dead letters.

- ``requests_per_minute``: scoring calls (distinct ``scoring_id``) a minute of the window; ``rows_per_minute``:
  scored rows a minute;
- ``response_time_p50``, ``response_time_p99``: percentiles (``percentile_cont``) of ``response_time_ms`` over the
  calls that give one (a call's rows share its time: its first row counts);
- ``error_rate``: the share of calls that failed (``status_code`` >= 400 or ``error`` set);
- ``dead_letters``: the subscription's dead letters of the window (by ``failed_at``), by reason in the details.

A window without calls gives 0 calls and rows a minute, and ``no_data`` for the percentiles and the error rate.
"""

from __future__ import annotations

import asyncpg

from .evaluation import MetricValue, Window
from .identifiers import quote_ident
from .subscription import Subscription

__all__ = ["traffic_metrics"]


async def traffic_metrics(conn: asyncpg.Connection, sub: Subscription, window: Window) -> list[MetricValue]:
    """The traffic metrics of ``sub`` in ``window``."""
    q_schema = quote_ident(sub.schema)
    row = await conn.fetchrow(
        f"""SELECT count(*) AS rows, count(DISTINCT scoring_id) AS requests,
                count(*) FILTER (WHERE row_index = 0) AS calls,
                count(*) FILTER (WHERE row_index = 0 AND (status_code >= 400 OR error IS NOT NULL)) AS failed,
                count(response_time_ms) FILTER (WHERE row_index = 0) AS timed,
                percentile_cont(0.5) WITHIN GROUP (ORDER BY response_time_ms) FILTER (WHERE row_index = 0) AS p50,
                percentile_cont(0.99) WITHIN GROUP (ORDER BY response_time_ms) FILTER (WHERE row_index = 0) AS p99
            FROM {q_schema}.{quote_ident(sub.table)} WHERE scoring_timestamp >= $1 AND scoring_timestamp < $2""",
        window.start,
        window.end,
    )
    assert row is not None
    letters = await conn.fetch(
        f"""SELECT error_code, count(*) AS n FROM {q_schema}.dead_letters
            WHERE subscription_id = $1 AND failed_at >= $2 AND failed_at < $3 GROUP BY 1 ORDER BY 1""",
        sub.subscription_id,
        window.start,
        window.end,
    )
    minutes = (window.end - window.start).total_seconds() / 60
    counts = {"rows": row["rows"], "requests": row["requests"], "minutes": minutes}
    out = [
        MetricValue("requests_per_minute", row["requests"] / minutes, details=counts),
        MetricValue("rows_per_minute", row["rows"] / minutes, details=counts),
    ]
    timed = {"calls with a response time": row["timed"]}
    for name, value in (("response_time_p50", row["p50"]), ("response_time_p99", row["p99"])):
        out.append(MetricValue(name, value, details=timed) if value is not None else MetricValue(name, None, "no_data"))
    calls = row["calls"]
    failed = {"calls": calls, "failed": row["failed"]}
    out.append(
        MetricValue("error_rate", row["failed"] / calls, details=failed)
        if calls
        else MetricValue("error_rate", None, "no_data", failed)
    )
    by_reason = {r["error_code"]: r["n"] for r in letters}
    out.append(MetricValue("dead_letters", float(sum(by_reason.values())), details={"by_reason": by_reason}))
    return out
