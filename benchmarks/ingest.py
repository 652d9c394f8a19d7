"""End-to-end ingest benchmark: a topic pre-filled with German-credit records, drained by one worker.

Run against the dev stack: ``python -m benchmarks.ingest [--records 1000000]``. Prints, all measured in this run:

- **throughput**: time until a ``consume --until-caught-up`` worker process has written every record; records/s;
- **ceiling**: the same rows, already decoded and mapped in memory (tuples), COPY'd by asyncpg (binary COPY)
  into the same kind of table in batches of the same size; rows/s; and the ratio worker / ceiling. For reference,
  also the COPY of the same rows as the CSV lines the worker itself writes (``stream_logger.csvcopy``);
- **peak memory** of the worker process (max RSS) during the throughput run;
- **latency** at a steady production rate (``--rate`` records/s for ``--latency-s`` seconds): produce-to-committed
  p50/p99, by polling the committed offsets every 20 ms;
- **memory during a database outage** (``--outage-s``): worker RSS while PostgreSQL is cut off (through a TCP proxy)
  and records keep arriving.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import asyncpg
import orjson
from aiokafka import AIOKafkaProducer

from stream_logger import datamart
from stream_logger.config import Settings
from stream_logger.identifiers import quote_ident
from stream_logger.registry import Registry
from stream_logger.samples import german_credit_record
from stream_logger.sink import Sink, copy_rows
from stream_logger.topics import create_topic
from tests.support import TcpProxy

SUB = "bench_credit"
BATCH = 10_000


def message(i: int, ts: datetime | None = None) -> bytes:
    rec = german_credit_record(i)
    rec["subscription_id"] = SUB
    rec["scoring_id"] = f"b-{i}"
    if ts is not None:
        rec["scoring_timestamp"] = ts.isoformat()
    return orjson.dumps(rec)


def label(i: int) -> bytes:
    """A label by reference for the record of :func:`message` ``i``: what a labelling job sends."""
    return orjson.dumps(
        {
            "schema_version": 1,
            "kind": "feedback",
            "feedback_id": f"l-{i}",
            "subscription_id": SUB,
            "labelled_at": "2025-06-01T12:00:00Z",
            "scoring_id": f"b-{i}",
            "label": "Risk" if i % 3 == 0 else "No Risk",
        }
    )


async def fill_topic(settings: Settings, topic: str, values: list[bytes]) -> float:
    producer = AIOKafkaProducer(
        bootstrap_servers=settings.bootstrap_servers, acks=1, linger_ms=20, max_batch_size=512 * 1024
    )
    await producer.start()
    began = time.perf_counter()
    try:
        pending = []
        for i, v in enumerate(values):
            pending.append(await producer.send(topic, v, key=str(i).encode()))
            if len(pending) >= 20_000:
                await asyncio.gather(*pending)
                pending.clear()
        await asyncio.gather(*pending)
    finally:
        await producer.stop()
    return time.perf_counter() - began


def worker_cmd(topic: str, schema: str, settings: Settings, *extra: str) -> list[str]:
    return [
        sys.executable, "-m", "stream_logger", "--log-level", "WARNING", "consume", "--topic", topic,
        "--schema", schema, "--group", f"bench-{schema}", "--batch-max-records", str(BATCH), "--max-record-age", "none",
        "--bootstrap-servers", settings.bootstrap_servers, "--dsn", settings.dsn, *extra,
    ]  # fmt: skip


async def ceiling(settings: Settings, schema: str, values: list[bytes], *, csv: bool = False) -> float:
    """Rows/s of bare COPY of the already-mapped rows, in batches of BATCH: asyncpg's binary COPY of the rows in
    tuples (the issue's ceiling), or, with ``csv``, the CSV lines the worker's compiled path makes."""
    pool = await asyncpg.create_pool(settings.dsn, min_size=1, max_size=2)
    try:
        registry = Registry(schema)
        sink = Sink(pool, schema, "ceiling", registry, csv=csv)

        class Msg:
            __slots__ = ("key", "offset", "partition", "topic", "value")

            def __init__(self, i: int, value: bytes) -> None:
                self.topic, self.partition, self.offset, self.key, self.value = "ceiling", 0, i, None, value

        for _ in range(2):  # registers the subscription, then has the registry find it covers the layout
            await sink.prepare([Msg(0, values[0])], {})
        batches = []
        for lo in range(0, len(values), BATCH):
            msgs = [Msg(i, values[i]) for i in range(lo, min(lo + BATCH, len(values)))]
            batches.append(await sink.prepare(msgs, {}))
        assert all(t.csv == csv for b in batches for t in b.tables), "the rows are not in the COPY format wanted"
        async with pool.acquire() as conn:
            for b in batches:
                for t in b.tables:
                    await registry.ensure_partitions(conn, t.sub, t.days)
            began = time.perf_counter()
            n = 0
            for b in batches:
                for t in b.tables:
                    async with conn.transaction():
                        await copy_rows(conn, schema, t.sub.table, t.sub.columns, t.rows, t.csv)
                    n += len(t.rows)
            return n / (time.perf_counter() - began)
    finally:
        await pool.close()


@dataclass(frozen=True)
class Measured:
    """A command run to its end: wall seconds, its peak RSS in KiB, its CPU seconds (user + system), exit code."""

    seconds: float
    peak_kib: int
    cpu_s: float
    returncode: int


async def checkpoint_count(settings: Settings) -> int:
    """Checkpoints PostgreSQL has begun since its statistics were reset (timed and requested)."""
    conn = await asyncpg.connect(settings.dsn)
    try:
        count: int = await conn.fetchval("SELECT checkpoints_timed + checkpoints_req FROM pg_stat_bgwriter")
        return count
    finally:
        await conn.close()


async def run_measured(argv: list[str]) -> Measured:
    """Run a command to its end and measure it.

    The peak is the child's own VmHWM, sampled while it runs: ``ru_maxrss`` of a child would include this process's
    memory, which fork copies into it before exec. CPU time is the child's own, from ``wait4``: steadier than wall
    time on a shared machine.
    """
    began = time.perf_counter()
    proc = subprocess.Popen(argv)
    peak_kib = 0
    while True:
        peak_kib = max(peak_kib, status_kib(proc.pid, "VmHWM"))
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)  # noqa: ASYNC222  (WNOHANG: never blocks)
        if pid:
            break
        await asyncio.sleep(0.2)
    proc.returncode = os.waitstatus_to_exitcode(status)
    cpu_s = usage.ru_utime + usage.ru_stime
    return Measured(time.perf_counter() - began, peak_kib, cpu_s, proc.returncode)


def _record_sent(sent: dict[tuple[int, int], float], at: float) -> Any:
    def done(fut: Any) -> None:
        meta = fut.result()
        sent[(meta.partition, meta.offset)] = at

    return done


def status_kib(pid: int, field: str = "VmRSS") -> int:
    """A memory figure of a live process from /proc (VmRSS: now; VmHWM: its peak so far), in KiB."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(f"{field}:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


async def latency(settings: Settings, schema: str, rate: int, seconds: float, partitions: int) -> tuple[float, float]:
    """Produce at a steady rate; p50/p99 of produce -> committed (polling committed offsets every 20 ms)."""
    topic = f"bench_lat_{uuid.uuid4().hex[:8]}"
    await create_topic(settings.bootstrap_servers, topic, partitions)
    proc = subprocess.Popen(worker_cmd(topic, schema, settings, "--flush-interval-ms", "50"))
    sent: dict[tuple[int, int], float] = {}
    committed_at: dict[tuple[int, int], float] = {}
    producer = AIOKafkaProducer(bootstrap_servers=settings.bootstrap_servers, acks=1, linger_ms=2)
    await producer.start()
    conn = await asyncpg.connect(settings.dsn)
    stop = asyncio.Event()

    async def poll() -> None:
        last: dict[int, int] = {}
        sql = f"SELECT partition, next_offset FROM {quote_ident(schema)}.consumer_offsets WHERE topic = $1"
        while not stop.is_set():
            now = time.perf_counter()
            for r in await conn.fetch(sql, topic):
                p, nxt = r["partition"], r["next_offset"]
                for off in range(last.get(p, 0), nxt):
                    committed_at[(p, off)] = now
                last[p] = nxt
            await asyncio.sleep(0.02)

    poller = asyncio.create_task(poll())
    try:
        await asyncio.sleep(3)  # let the worker join its group
        interval = 1 / rate
        began = time.perf_counter()
        i = 0
        while (now := time.perf_counter()) - began < seconds:
            due = int((now - began) / interval)
            while i < due:
                fut = await producer.send(topic, message(i, datetime.now(UTC)), key=str(i).encode())
                fut.add_done_callback(_record_sent(sent, time.perf_counter()))
                i += 1
            await asyncio.sleep(0.005)
        await producer.flush()
        deadline = time.perf_counter() + 60
        while len(committed_at) < len(sent) and time.perf_counter() < deadline:
            await asyncio.sleep(0.1)
    finally:
        stop.set()
        await poller
        await producer.stop()
        await conn.close()
        proc.terminate()
        proc.wait(60)
    lat = sorted((committed_at[k] - t) * 1000 for k, t in sent.items() if k in committed_at)
    if not lat:
        return float("nan"), float("nan")
    return statistics.median(lat), lat[min(len(lat) - 1, int(len(lat) * 0.99))]


async def outage_memory(settings: Settings, schema: str, rate: int, seconds: float, partitions: int) -> tuple[int, int]:
    """Worker RSS (KiB) before and at peak during a database outage while records keep arriving."""
    topic = f"bench_out_{uuid.uuid4().hex[:8]}"
    await create_topic(settings.bootstrap_servers, topic, partitions)
    dsn = urlsplit(settings.dsn)
    proxy = TcpProxy(dsn.hostname or "127.0.0.1", dsn.port or 5432)
    await proxy.start()
    proxied = Settings(settings.bootstrap_servers, settings.dsn.replace(f":{dsn.port}/", f":{proxy.port}/"))
    proc = subprocess.Popen(worker_cmd(topic, schema, proxied))
    producer = AIOKafkaProducer(bootstrap_servers=settings.bootstrap_servers, acks=1, linger_ms=20)
    await producer.start()
    i = 0

    async def produce_for(s: float) -> None:
        nonlocal i
        end = time.perf_counter() + s
        while time.perf_counter() < end:
            for _ in range(rate // 10):
                await producer.send(topic, message(i), key=str(i).encode())
                i += 1
            await asyncio.sleep(0.1)

    try:
        await produce_for(10)
        before = status_kib(proc.pid)
        await proxy.cut()
        peak = before
        end = time.perf_counter() + seconds
        while time.perf_counter() < end:
            await produce_for(1)
            peak = max(peak, status_kib(proc.pid))
        await proxy.restore()
    finally:
        await producer.stop()
        proc.terminate()
        proc.wait(120)
        await proxy.stop()
    return before, peak


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--records", type=int, default=1_000_000)
    ap.add_argument("--partitions", type=int, default=3)
    ap.add_argument("--rate", type=int, default=5000, help="records/s for the latency and outage runs")
    ap.add_argument("--latency-s", type=float, default=20)
    ap.add_argument("--outage-s", type=float, default=120, help="0 skips the outage run")
    ap.add_argument("--labels", type=int, default=100_000, help="labels by reference to ingest after; 0 skips it")
    args = ap.parse_args()
    settings = Settings.from_env()
    tag = uuid.uuid4().hex[:8]
    topic, s_worker, s_ceiling, s_csv, s_lat, s_out = (f"bench_{x}_{tag}" for x in ("in", "w", "c", "v", "l", "o"))
    conn = await asyncpg.connect(settings.dsn)
    for s in (s_worker, s_ceiling, s_csv, s_lat, s_out):
        await datamart.setup(conn, s)
    await conn.close()
    await create_topic(settings.bootstrap_servers, topic, args.partitions)

    print(f"building {args.records:,} German-credit records ...", flush=True)
    values = [message(i) for i in range(args.records)]
    print(f"  mean value size: {sum(map(len, values)) / len(values):.0f} bytes")
    produce_s = await fill_topic(settings, topic, values)
    print(f"topic filled in {produce_s:.1f}s ({args.records / produce_s:,.0f} records/s)", flush=True)

    checkpoints_before = await checkpoint_count(settings)
    run = await run_measured(worker_cmd(topic, s_worker, settings, "--until-caught-up"))
    worker_rate = args.records / run.seconds
    checkpoints_after_worker = await checkpoint_count(settings)
    print(f"worker: {args.records:,} records in {run.seconds:.1f}s = {worker_rate:,.0f} records/s, "
          f"peak RSS {run.peak_kib / 1024:.0f} MiB, CPU {run.cpu_s:.1f}s = "
          f"{run.cpu_s / args.records * 1e6:.1f} us a record (rc={run.returncode})", flush=True)  # fmt: skip

    ceiling_rate = await ceiling(settings, s_ceiling, values)
    checkpoints_after_ceiling = await checkpoint_count(settings)
    csv_rate = await ceiling(settings, s_csv, values, csv=True)
    print(f"ceiling (asyncpg's binary COPY of the mapped rows): {ceiling_rate:,.0f} rows/s")
    print(f"ratio worker / ceiling: {worker_rate / ceiling_rate:.2f}")
    print(f"for reference, COPY of the same rows as the worker's CSV lines: {csv_rate:,.0f} rows/s "
          f"(worker / that: {worker_rate / csv_rate:.2f})")  # fmt: skip
    print(f"PostgreSQL checkpoints begun during the worker run: {checkpoints_after_worker - checkpoints_before}, "
          f"during the ceiling: {checkpoints_after_ceiling - checkpoints_after_worker}")  # fmt: skip
    del values

    if args.labels:
        labels_topic = f"bench_labels_{tag}"
        await create_topic(settings.bootstrap_servers, labels_topic, args.partitions)
        await fill_topic(settings, labels_topic, [label(i) for i in range(args.labels)])
        labelled = await run_measured(worker_cmd(labels_topic, s_worker, settings, "--until-caught-up"))
        label_rate, label_cpu_us = args.labels / labelled.seconds, labelled.cpu_s / args.labels * 1e6
        print(f"labels: {args.labels:,} labels by reference in {labelled.seconds:.1f}s = {label_rate:,.0f} labels/s "
              f"(labels / worker records: {label_rate / worker_rate:.2f}), CPU {label_cpu_us:.1f} us a label "
              f"(rc={labelled.returncode})", flush=True)  # fmt: skip

    p50, p99 = await latency(settings, s_lat, args.rate, args.latency_s, args.partitions)
    print(f"latency at {args.rate:,} records/s: produce->committed p50 {p50:.0f} ms, p99 {p99:.0f} ms")

    if args.outage_s > 0:
        before, peak = await outage_memory(settings, s_out, args.rate, args.outage_s, args.partitions)
        print(f"database outage {args.outage_s:.0f}s at {args.rate:,} records/s: worker RSS {before / 1024:.0f} MiB "
              f"before, peak {peak / 1024:.0f} MiB during")  # fmt: skip

    conn = await asyncpg.connect(settings.dsn)
    for s in (s_worker, s_ceiling, s_csv, s_lat, s_out):
        await conn.execute(f"DROP SCHEMA {quote_ident(s)} CASCADE")
    await conn.close()


if __name__ == "__main__":
    asyncio.run(main())
