"""Replay benchmark: a topic pre-filled with German-credit records replayed into a fresh schema.

Run against the dev stack: ``python -m benchmarks.replay [--records 1000000]``. Prints, measured in this run:
records/s of ``stream-logger replay`` (a process of its own, from start to exit, planning included), its peak
memory, and the ceiling: the same rows, already decoded and mapped in memory, binary-COPY'd by asyncpg into the
same kind of table; and the ratio replay / ceiling.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import uuid

import asyncpg

from stream_logger import datamart
from stream_logger.config import Settings
from stream_logger.identifiers import quote_ident
from stream_logger.topics import create_topic, delete_topic

from .ingest import ceiling, fill_topic, message, run_measured


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--records", type=int, default=1_000_000)
    ap.add_argument("--partitions", type=int, default=3)
    args = ap.parse_args()
    settings = Settings.from_env()
    tag = uuid.uuid4().hex[:8]
    topic, s_replay, s_ceiling = f"bench_replay_{tag}", f"bench_r_{tag}", f"bench_rc_{tag}"
    await create_topic(settings.bootstrap_servers, topic, args.partitions)
    print(f"building {args.records:,} German-credit records ...", flush=True)
    values = [message(i) for i in range(args.records)]
    produce_s = await fill_topic(settings, topic, values)
    print(f"topic filled in {produce_s:.1f}s ({args.records / produce_s:,.0f} records/s)", flush=True)

    argv = [sys.executable, "-m", "stream_logger", "--log-level", "WARNING", "replay", "--topic", topic]
    argv += ["--schema", s_replay, "--batch-max-records", "10000"]
    argv += ["--bootstrap-servers", settings.bootstrap_servers, "--dsn", settings.dsn]
    run = await run_measured(argv)
    rate = args.records / run.seconds
    print(f"replay: {args.records:,} records in {run.seconds:.1f}s = {rate:,.0f} records/s, "
          f"peak RSS {run.peak_kib / 1024:.0f} MiB, CPU {run.cpu_s / args.records * 1e6:.1f} us a record "
          f"(rc={run.returncode})", flush=True)  # fmt: skip

    conn = await asyncpg.connect(settings.dsn)
    try:
        await datamart.setup(conn, s_ceiling)
        ceiling_rate = await ceiling(settings, s_ceiling, values)
        print(f"ceiling (bare COPY of the mapped rows): {ceiling_rate:,.0f} rows/s")
        print(f"ratio replay / ceiling: {rate / ceiling_rate:.2f}")
        for schema in (s_replay, s_ceiling):
            await conn.execute(f"DROP SCHEMA IF EXISTS {quote_ident(schema)} CASCADE")
    finally:
        await conn.close()
        await delete_topic(settings.bootstrap_servers, topic)


if __name__ == "__main__":
    asyncio.run(main())
