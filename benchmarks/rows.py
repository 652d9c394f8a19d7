"""Row building (Subscription.rows_for) on German-credit records: microseconds per record, no I/O.

Run: ``.venv/bin/python -m benchmarks.rows``. Prints the best and median of several timed runs (the machine is
shared, so the best run is the closest to the code's own cost).
"""

from __future__ import annotations

import statistics
import time
from datetime import UTC, datetime

from stream_logger.registry import Registry
from stream_logger.rows import rows_for
from stream_logger.subscription import Source, Subscription
from tests.support import german_credit_record


def _measure(sub: Subscription, rows: int, records: int, repeats: int) -> list[float]:
    batch = [german_credit_record(f"s-{i}", rows=rows) for i in range(records)]
    source = Source("bench", 0, 0)
    now = datetime.now(UTC)
    per_record_us = []
    for _ in range(repeats):
        start = time.perf_counter()
        for record in batch:
            rows_for(sub, record, source, now)
        per_record_us.append((time.perf_counter() - start) / records * 1e6)
    return per_record_us


def main() -> None:
    sample = german_credit_record(rows=1)
    fields = Registry("bench").fields_to_declare([sample])
    sub = Subscription("german_credit", "bench", "payload_german_credit", fields)
    print(f"rows_for, German credit ({len(sub.fields)} fields, {len(sub.columns)} columns)")
    for rows in (1, 10):
        runs = _measure(sub, rows=rows, records=20_000 // rows, repeats=7)
        best, median = min(runs), statistics.median(runs)
        print(
            f"  {rows:>2} row(s)/record: best {best:6.2f} us/record ({1e6 / best:,.0f} records/s), "
            f"median {median:6.2f} us/record"
        )


if __name__ == "__main__":
    main()
