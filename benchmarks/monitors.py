"""A monitor run over N payload rows (default 1M), against a plain ``SELECT count(*)`` over the same window.

The rows are COPYed straight into a declared subscription's payload table (one day's partition), 30% of them
labelled in its feedback table; then the four kinds of monitor (fairness by sex and age, binary quality with
probabilities, drift of three features against the first half, traffic) are evaluated once over the whole window
with ``monitor_run.run_monitors``, and the same window is counted. The figure is the ratio of the two times, each
the best of ``--rounds``.

    .venv/bin/python -m benchmarks.monitors [--rows N] [--rounds R]   (needs the dev stack's PostgreSQL)
"""

from __future__ import annotations

import argparse
import asyncio
import time
import uuid
from datetime import UTC, datetime, timedelta

import asyncpg
import numpy as np

from stream_logger import datamart, registry
from stream_logger.config import Settings
from stream_logger.evaluation import Window
from stream_logger.identifiers import feedback_names_for, quote_ident
from stream_logger.monitor_run import run_monitors
from stream_logger.monitors import parse_monitors, store_monitors

SUB = "bench_monitors"
T0 = datetime(2026, 6, 1, tzinfo=UTC)
SPAN = timedelta(hours=20)  # within one day: one partition


async def fill(conn: asyncpg.Connection, schema: str, rows: int) -> None:
    fields = [
        {"name": "Sex", "type": "text"},
        {"name": "Age", "type": "integer"},
        {"name": "LoanAmount", "type": "integer"},
        {"name": "prediction", "type": "text", "role": "prediction"},
        {"name": "probability", "type": "float_array", "role": "probability"},
        {"name": "Risk", "type": "text", "role": "target"},
    ]
    sub = await registry.declare(conn, schema, {"subscription_id": SUB, "fields": fields})
    await registry.create_partitions(conn, sub, [T0.date()])
    sub = await registry.Registry(schema).ready_for_feedback(conn, sub)
    rng = np.random.default_rng(0)
    later = np.arange(rows) >= rows // 2
    age = np.clip(rng.gamma(2.2, np.where(later, 4.0, 7.5)) + 19, 19, 74).astype(int)
    amount = np.clip(rng.lognormal(7.8, 0.6, rows) * np.where(later, 1.6, 1.0), 250, 11676).astype(int)
    female = rng.random(rows) < 0.35
    p_risk = 1 / (1 + np.exp(-(-1.5 + 0.0002 * amount - 0.02 * (age - 35) + 0.35 * female)))
    truth = rng.random(rows) < p_risk
    seconds = np.sort(rng.uniform(0, SPAN.total_seconds(), rows))
    records = [
        (
            f"s-{i}",
            0,
            T0 + timedelta(seconds=float(seconds[i])),
            float(rng.uniform(2, 40)),
            500 if i % 200 == 0 else 200,
            "female" if female[i] else "male",
            int(age[i]),
            int(amount[i]),
            "Risk" if p_risk[i] >= 0.5 else "No Risk",
            [float(1 - p_risk[i]), float(p_risk[i])],
        )
        for i in range(rows)
    ]
    columns = ["scoring_id", "row_index", "scoring_timestamp", "response_time_ms", "status_code"]
    columns += [f.column for f in sub.fields]
    await conn.copy_records_to_table(sub.table, schema_name=schema, columns=columns, records=records)
    labels = [
        (f"l-{i}", 0, f"s-{i}", T0 + SPAN, "Risk" if truth[i] else "No Risk") for i in range(0, rows, 3)
    ]  # a third of the rows labelled
    assert sub.target is not None
    await conn.copy_records_to_table(
        feedback_names_for(sub.table)[0],
        schema_name=schema,
        columns=["feedback_id", "feedback_row", "scoring_id", "labelled_at", sub.target.column],
        records=labels,
    )
    await conn.execute(f"ANALYZE {quote_ident(schema)}.{quote_ident(sub.table)}")
    await conn.execute(f"ANALYZE {quote_ident(schema)}.{quote_ident(feedback_names_for(sub.table)[0])}")


MONITORS = {
    "subscription_id": SUB,
    "monitors": [
        {
            "name": "fairness",
            "kind": "fairness",
            "favourable": ["No Risk"],
            "attributes": [
                {"field": "Sex", "reference": ["male"], "monitored": ["female"]},
                {"field": "Age", "reference": [[26, 120]], "monitored": [[18, 25]]},
            ],
        },
        {"name": "quality", "kind": "quality", "problem_type": "binary", "positive_class": "Risk"},
        {
            "name": "drift",
            "kind": "drift",
            "baseline": {"from": T0.isoformat(), "to": (T0 + SPAN / 2).isoformat()},
            "features": ["Age", "LoanAmount", "Sex"],
        },
        {"name": "traffic", "kind": "traffic"},
    ],
}


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    settings = Settings.from_env()
    schema = f"bench_m_{uuid.uuid4().hex[:8]}"
    conn = await asyncpg.connect(settings.dsn)
    try:
        await datamart.setup(conn, schema)
        began = time.perf_counter()
        await fill(conn, schema, args.rows)
        print(f"{args.rows:,} payload rows (and a third labelled) written in {time.perf_counter() - began:.1f}s")
        await store_monitors(conn, schema, parse_monitors(MONITORS))
        window = Window(T0, T0 + SPAN + timedelta(seconds=1))
        table = f"{quote_ident(schema)}.payload_{SUB}"
        counts, runs = [], []
        for _ in range(args.rounds):
            t = time.perf_counter()
            await conn.fetchval(
                f"SELECT count(*) FROM {table} WHERE scoring_timestamp >= $1 AND scoring_timestamp < $2",
                window.start,
                window.end,
            )
            counts.append(time.perf_counter() - t)
            t = time.perf_counter()
            summary = await run_monitors(conn, schema, window=window)
            runs.append(time.perf_counter() - t)
        assert not summary.skipped, summary.skipped
        print(f"count(*) over the window: best {min(counts):.3f}s of {args.rounds}")
        print(
            f"monitor run (4 monitors, {len(summary.measurements)} measurements): best {min(runs):.3f}s of "
            f"{args.rounds}; ratio to count(*): {min(runs) / min(counts):.1f}"
        )
        for m in summary.measurements:
            if m.monitor in ("drift", "quality") and m.value is not None:
                print(f"  {m.monitor} {m.metric} = {m.value:.4g}")
    finally:
        await conn.execute(f"DROP SCHEMA IF EXISTS {quote_ident(schema)} CASCADE")
        await conn.close()


if __name__ == "__main__":
    asyncio.run(main())
