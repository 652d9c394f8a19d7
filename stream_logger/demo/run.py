"""The demo, end to end: a synthetic German-credit model service logs every call through the emitter, consumer
workers ingest the topic into a fresh datamart, and a summary is read back with SQL.

Everything goes through the real components (Kafka, the emitter, the worker, PostgreSQL); nothing is simulated but
the applicants and the model.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TextIO

import asyncpg
from aiokafka import AIOKafkaProducer

from .. import datamart, registry
from ..config import Settings, default_home
from ..emitter import Emitter
from ..identifiers import feedback_names_for, quote_ident
from ..kafka_clients import start_client
from ..retry import kafka_errors, pg_errors
from ..topics import create_topic
from ..worker import DEFAULT_MAX_RECORD_AGE_S, Worker, WorkerConfig
from .applicants import ApplicantGenerator
from .labels import DEFAULT_LABEL_SHARE, Labeller
from .malformed import MalformedMessage, malformed_messages
from .model import score
from .monitoring import Timeline, evaluate_demo_monitors
from .subscription import subscription_declaration
from .summary import Summary, columns_from_fields, render, summarize

__all__ = ["DemoOptions", "DemoResult", "run_demo"]


@dataclass(frozen=True, slots=True)
class DemoOptions:
    """What the demo does; the defaults take about half a minute on the dev stack."""

    records: int = 2000
    rate_per_s: float = 400.0
    history_days: int = 0
    workers: int = 2
    schema: str = "demo"
    topic: str | None = None
    seed: int = 0
    partitions: int = 3
    live: bool = True
    label_share: float = DEFAULT_LABEL_SHARE
    """The share of calls whose true outcome is logged later, as labels."""


@dataclass(slots=True)
class DemoResult:
    """What the demo did, and the summary it read back."""

    topic: str
    emitted: int
    malformed: list[tuple[MalformedMessage, str | None]]
    summary: Summary
    ingested_messages: int = 0
    labels: int = 0
    labelled_calls: int = 0
    monitors: str = ""
    """``stream-logger monitor show``'s table of the demo's monitors."""
    elapsed_s: float = 0.0
    worker_messages: list[int] = field(default_factory=list)


async def _produce_raw(settings: Settings, topic: str, messages: Sequence[MalformedMessage]) -> None:
    """Malformed messages cannot go through the emitter (it refuses invalid records): a plain producer sends them."""
    producer = AIOKafkaProducer(**settings.aiokafka_kwargs(acks="all"))
    try:
        await start_client(producer, settings, "sending the malformed messages")
        with kafka_errors("sending the malformed messages"):
            for m in messages:
                await producer.send_and_wait(topic, m.value, key=m.key)
    finally:
        await producer.stop()


class _Display:
    """One live status line on a terminal; a plain line every few seconds otherwise."""

    def __init__(self, out: TextIO, live: bool) -> None:
        self.out = out
        self.tty = live and out.isatty()
        self.began = time.monotonic()
        self._last_plain = 0.0

    def show(self, emitted: int, ingested: int, rows: int, dead: int, lag: int) -> None:
        elapsed = max(time.monotonic() - self.began, 1e-9)
        line = (
            f"emitted {emitted:,} | ingested {ingested:,} messages, {rows:,} rows ({ingested / elapsed:,.0f}/s) | "
            f"dead-lettered {dead} | lag {lag:,}"
        )
        if self.tty:
            self.out.write("\r\x1b[2K" + line)
            self.out.flush()
        elif time.monotonic() - self._last_plain >= 5:
            self._last_plain = time.monotonic()
            print(line, file=self.out, flush=True)

    def done(self) -> None:
        if self.tty:
            self.out.write("\n")


async def run_demo(options: DemoOptions, settings: Settings, out: TextIO) -> DemoResult:
    """Run the whole demo and print its progress and summary to ``out``."""
    opts = options
    topic = opts.topic or f"stream_logger_demo_{datetime.now(UTC):%Y%m%d%H%M%S}"
    declaration = subscription_declaration()
    sub_id = str(declaration["subscription_id"])
    began = time.monotonic()
    print(f"demo: topic {topic} ({opts.partitions} partitions) -> datamart schema {opts.schema!r}", file=out)
    await create_topic(settings, topic, opts.partitions)
    with pg_errors("setting up the demo datamart"):
        conn = await asyncpg.connect(settings.dsn)
    try:
        with pg_errors("setting up the demo datamart"):
            await datamart.setup(conn, opts.schema, drop_existing=True)
            sub = await registry.declare(conn, opts.schema, declaration)
        print(f"demo: subscription {sub_id} declared -> table {opts.schema}.{sub.table}", file=out)

        cfg = WorkerConfig(
            topics=(topic,),
            group_id=f"demo-{opts.schema}",
            schema=opts.schema,
            flush_interval_ms=200,
            max_record_age_s=max(DEFAULT_MAX_RECORD_AGE_S, (opts.history_days + 1) * 86400.0),  # a backfill
        )
        workers = [Worker(cfg, settings) for _ in range(max(1, opts.workers))]
        for w in workers:
            await w.start()
        tasks = [asyncio.create_task(w.run()) for w in workers]
        display = _Display(out, opts.live)
        malformed = malformed_messages(subscription_id=sub_id, seed=opts.seed)
        labeller = Labeller(sub_id, opts.label_share, seed=opts.seed + 1)
        emitted = labels = 0
        try:
            spool_dir = default_home() / "demo-spool"
            async with Emitter(
                topic, settings.bootstrap_servers, spool_dir=spool_dir, kafka_config=settings.kafka
            ) as em:
                timeline = await _serve(em, opts, sub_id, settings, topic, malformed, workers, display, labeller)
                emitted = opts.records
                await em.flush()
            labels = labeller.handed_out
            expected = emitted + labels + len(malformed)
            deadline = time.monotonic() + 120
            while sum(w.summary.messages for w in workers) < expected and time.monotonic() < deadline:
                if any(t.done() for t in tasks):
                    break
                _refresh(display, emitted, workers)
                await asyncio.sleep(0.2)
            _refresh(display, emitted, workers)
            display.done()
        finally:
            for w in workers:
                w.request_stop()
            results = await asyncio.gather(*tasks, return_exceptions=True)
            for w in workers:
                await w.stop()
        for r in results:
            if isinstance(r, BaseException):
                raise r
        with pg_errors("reading the demo summary"):
            fields = await conn.fetchval(
                f"SELECT fields FROM {quote_ident(opts.schema)}.subscriptions WHERE subscription_id = $1", sub_id
            )
            summary = await summarize(
                conn, opts.schema, sub.table, columns_from_fields(fields), labelled=feedback_names_for(sub.table)[1]
            )
            outcome = await _malformed_outcomes(conn, opts.schema, malformed)
            monitors = await evaluate_demo_monitors(conn, opts.schema, sub_id, timeline)
    finally:
        await conn.close()
    result = DemoResult(
        topic=topic,
        emitted=emitted,
        malformed=outcome,
        summary=summary,
        ingested_messages=sum(w.summary.messages for w in workers),
        labels=labels,
        labelled_calls=labeller.labelled_calls,
        monitors=monitors,
        elapsed_s=time.monotonic() - began,
        worker_messages=[w.summary.messages for w in workers],
    )
    _print_result(result, out)
    return result


def _refresh(display: _Display, emitted: int, workers: Sequence[Worker]) -> None:
    display.show(
        emitted,
        sum(w.summary.messages for w in workers),
        sum(w.summary.rows for w in workers),
        sum(w.summary.dead_lettered for w in workers),
        sum(sum(w.lag().values()) for w in workers),
    )


async def _serve(
    em: Emitter,
    opts: DemoOptions,
    sub_id: str,
    settings: Settings,
    topic: str,
    malformed: Sequence[MalformedMessage],
    workers: Sequence[Worker],
    display: _Display,
    labeller: Labeller,
) -> Timeline:
    """The synthetic model service: score requests at ``rate_per_s`` and log each call, and the labels of some calls
    later; halfway through, its population shifts. Returns when the calls began, shifted and ended."""
    gen = ApplicantGenerator(opts.seed)
    now = datetime.now(UTC)
    history = timedelta(days=opts.history_days)
    started = time.monotonic()
    marks: list[datetime] = []
    for i in range(opts.records):
        if i == opts.records // 2:
            gen.shifted = True
        request = gen.request(max_rows=3)
        t0 = time.perf_counter()
        response = score(request)
        elapsed_ms = (time.perf_counter() - t0) * 1000
        # with --history-days, timestamps spread evenly from that many days ago up to now (a backfill)
        when = now - history * (1 - i / max(opts.records, 1)) if opts.history_days else None
        scoring_id = em.log(
            request=request,
            response=response,
            subscription_id=sub_id,
            deployment_id="german-credit-risk-demo",
            scoring_timestamp=when,
            response_time_ms=round(elapsed_ms, 3),
        )
        if i in (0, opts.records // 2, opts.records - 1):
            marks.append(when or datetime.now(UTC))
        labeller.observe(i, scoring_id, request, when)
        for label in labeller.due(i):
            em.log_feedback(**label)
        if i == opts.records // 2:
            await _produce_raw(settings, topic, malformed)
        if opts.rate_per_s > 0:
            ahead = (i + 1) / opts.rate_per_s - (time.monotonic() - started)
            if ahead > 0:
                await asyncio.sleep(ahead)
        if i % 50 == 0:
            _refresh(display, i + 1, workers)
            if opts.rate_per_s <= 0:
                await asyncio.sleep(0)
    for label in labeller.rest():  # the outcomes learnt after the last call
        em.log_feedback(**label)
    while len(marks) < 3:  # fewer than three calls
        marks.append(marks[-1] if marks else now)
    return Timeline(*marks[:3])


async def _malformed_outcomes(
    conn: asyncpg.Connection, schema: str, malformed: Sequence[MalformedMessage]
) -> list[tuple[MalformedMessage, str | None]]:
    """Each malformed message with the dead-letter reason it got (found by its key), or None if not found."""
    rows = await conn.fetch(f"SELECT key, error_code FROM {quote_ident(schema)}.dead_letters")
    by_key = {bytes(r["key"]): r["error_code"] for r in rows if r["key"] is not None}
    return [(m, by_key.get(m.key) if m.key is not None else _tombstone(rows)) for m in malformed]


def _tombstone(rows: Sequence[asyncpg.Record]) -> str | None:
    return next((r["error_code"] for r in rows if r["key"] is None and r["error_code"] == "empty_message"), None)


def _print_result(result: DemoResult, out: TextIO) -> None:
    print("", file=out)
    print(
        f"{result.emitted:,} scoring calls logged, {result.ingested_messages:,} messages ingested by "
        f"{len(result.worker_messages)} workers ({' + '.join(map(str, result.worker_messages))}) "
        f"in {result.elapsed_s:.1f}s",
        file=out,
    )
    print(
        f"{result.labels:,} delayed labels (true outcomes) logged for {result.labelled_calls:,} of the calls",
        file=out,
    )
    print("\nDeliberately malformed messages (flagged), and what the datamart did with them:", file=out)
    for m, code in result.malformed:
        mark = "ok " if code == m.expected_error_code else "!! "
        print(f"  {mark}{m.label:<52} -> {code or 'NOT FOUND'}", file=out)
    print("", file=out)
    print(render(result.summary), file=out)
    print("\nMonitors (the population shifts halfway: the drift monitor compares the halves), as", file=out)
    print(f"'stream-logger monitor show --schema {result.summary.schema}' prints them:", file=out)
    print(result.monitors, file=out)
    with contextlib.suppress(Exception):
        out.flush()
