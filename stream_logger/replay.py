"""Replay topics into a fresh datamart schema, through the worker's own pipeline.

A replay reads with manual partition assignment (no consumer group: live workers' offsets and assignments are never
touched), from ``--from`` (earliest, or the first offset at or after a time) up to ``--to`` (the end offsets when the
replay starts, or the first offset at or after a time, exclusive), and writes through the same decode / validate /
COPY / dead-letter path and exactly-once offset bookkeeping as a worker, under the group name ``__replay__`` in the
target schema. The plan (per-partition start and end offsets, filters) is stored in the target schema
(``replay_plan``) when the replay starts, so ``--resume`` continues an interrupted replay towards exactly the same
end, and ends with exactly the same rows as an uninterrupted run.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import asyncpg
from aiokafka import AIOKafkaConsumer, TopicPartition

from . import datamart
from .config import Settings
from .errors import DatamartError
from .identifiers import quote_ident, validate_schema_name
from .kafka_clients import start_client, topic_partitions
from .retry import kafka_errors, pg_errors
from .worker import WorkerConfig

__all__ = ["REPLAY_GROUP", "ReplayPlan", "plan_replay"]

log = logging.getLogger(__name__)

REPLAY_GROUP = "__replay__"


@dataclass(frozen=True, slots=True)
class ReplayPlan:
    """Where each partition's replay starts and ends (exclusive), and which subscriptions it keeps."""

    start: dict[TopicPartition, int]
    end: dict[TopicPartition, int]
    subscriptions: frozenset[str] | None

    @property
    def total(self) -> int:
        return sum(max(0, self.end[tp] - self.start[tp]) for tp in self.start)

    def worker_config(self, schema: str, **overrides: object) -> WorkerConfig:
        """The worker configuration that carries this plan out."""
        topics = tuple(sorted({tp.topic for tp in self.start}))
        kw: dict[str, object] = dict(
            topics=topics,
            group_id=REPLAY_GROUP,
            schema=schema,
            until_caught_up=True,
            assign_manually=True,
            start_offsets=dict(self.start),
            end_offsets=dict(self.end),
            subscriptions=self.subscriptions,
            max_record_age_s=None,  # history is old by nature: a replay stores what the contract allows
            max_record_lead_s=None,
        )
        kw.update(overrides)
        return WorkerConfig(**kw)  # type: ignore[arg-type]


async def _offsets(
    consumer: AIOKafkaConsumer, tps: list[TopicPartition], at: datetime | None, default: dict[TopicPartition, int]
) -> dict[TopicPartition, int]:
    """The first offset at or after ``at`` per partition (``default`` where there is none, or no time given)."""
    if at is None:
        return dict(default)
    found = await consumer.offsets_for_times({tp: int(at.timestamp() * 1000) for tp in tps})
    return {tp: found[tp].offset if found.get(tp) is not None else default[tp] for tp in tps}


async def _plan_from_kafka(
    settings: Settings,
    topics: Sequence[str],
    from_time: datetime | None,
    to_time: datetime | None,
    subscriptions: frozenset[str] | None,
) -> ReplayPlan:
    consumer = AIOKafkaConsumer(**settings.aiokafka_kwargs(enable_auto_commit=False))
    try:
        await start_client(consumer, settings, "reading the topics' offsets")
        with kafka_errors("reading the topics' offsets"):
            tps = await topic_partitions(consumer, topics)
            begin = await consumer.beginning_offsets(tps)
            end_now = await consumer.end_offsets(tps)
            start = await _offsets(consumer, tps, from_time, end_now if from_time else begin)
            end = await _offsets(consumer, tps, to_time, end_now)
    finally:
        await consumer.stop()
    return ReplayPlan(start, {tp: max(end[tp], start[tp]) for tp in tps}, subscriptions)


async def _holds_data(conn: asyncpg.Connection, schema: str) -> str | None:
    """A description of what the schema holds, or None when it is absent or empty."""
    tables = await conn.fetchval("SELECT count(*) FROM pg_tables WHERE schemaname = $1", schema)
    if not tables:  # absent, or holding no table
        return None
    try:
        summary = await datamart.info(conn, schema)
    except DatamartError:
        return f"{tables} tables that are not a stream-logger datamart"
    rows, dead = summary["payload_rows"], summary["dead_letters"]
    if rows or dead or summary["offsets"]:
        return f"{rows} payload rows and {dead} dead letters"
    return None


async def _store_plan(conn: asyncpg.Connection, schema: str, plan: ReplayPlan) -> None:
    q = quote_ident(schema)
    await conn.execute(
        f"""CREATE TABLE IF NOT EXISTS {q}.replay_plan (
                topic text NOT NULL, partition integer NOT NULL, start_offset bigint NOT NULL,
                end_offset bigint NOT NULL, subscriptions text[], created_at timestamptz NOT NULL DEFAULT now(),
                PRIMARY KEY (topic, partition))"""
    )
    subs = sorted(plan.subscriptions) if plan.subscriptions is not None else None
    await conn.executemany(
        f"INSERT INTO {q}.replay_plan (topic, partition, start_offset, end_offset, subscriptions) "
        "VALUES ($1, $2, $3, $4, $5)",
        [(tp.topic, tp.partition, plan.start[tp], plan.end[tp], subs) for tp in sorted(plan.start)],
    )


async def _load_plan(conn: asyncpg.Connection, schema: str) -> ReplayPlan | None:
    q = quote_ident(schema)
    if not await conn.fetchval("SELECT to_regclass($1)", f"{q}.replay_plan"):
        return None
    rows = await conn.fetch(f"SELECT * FROM {q}.replay_plan ORDER BY topic, partition")
    if not rows:
        return None
    start = {TopicPartition(r["topic"], r["partition"]): r["start_offset"] for r in rows}
    end = {TopicPartition(r["topic"], r["partition"]): r["end_offset"] for r in rows}
    subs = rows[0]["subscriptions"]
    return ReplayPlan(start, end, frozenset(subs) if subs is not None else None)


async def plan_replay(
    settings: Settings,
    topics: Sequence[str],
    schema: str,
    *,
    from_time: datetime | None = None,
    to_time: datetime | None = None,
    subscriptions: Sequence[str] | None = None,
    drop_existing: bool = False,
    resume: bool = False,
) -> ReplayPlan:
    """Prepare the target schema and decide the offsets; refuses a schema that holds data without a flag.

    With ``resume``, the plan stored by the interrupted replay is used (``topics`` must match it), and the worker
    continues from the offsets stored in the schema.
    """
    validate_schema_name(schema)
    if drop_existing and resume:
        raise DatamartError("--drop-existing and --resume contradict each other: choose one")
    conn = await _connect(settings)
    try:
        with pg_errors("preparing the replay's schema"):
            if resume:
                stored = await _load_plan(conn, schema)  # None for an absent schema too (to_regclass)
                if stored is None:
                    raise DatamartError(f"schema {schema!r} holds no interrupted replay to resume")
                if sorted({tp.topic for tp in stored.start}) != sorted(set(topics)):
                    raise DatamartError(
                        f"schema {schema!r} holds a replay of {sorted({tp.topic for tp in stored.start})}, "
                        f"not of {sorted(set(topics))}"
                    )
                await datamart.setup(conn, schema)
                return stored
            held = await _holds_data(conn, schema)
            if held is not None and not drop_existing:
                raise DatamartError(
                    f"schema {schema!r} already holds {held}; nothing was touched. Use --drop-existing to recreate "
                    "it, or --resume to continue an interrupted replay into it"
                )
            plan = await _plan_from_kafka(
                settings, topics, from_time, to_time, frozenset(subscriptions) if subscriptions else None
            )
            await datamart.setup(conn, schema, drop_existing=drop_existing)
            await _store_plan(conn, schema, plan)
            return plan
    finally:
        await conn.close()


async def _connect(settings: Settings) -> asyncpg.Connection:
    with pg_errors(f"connecting to {settings.redacted_dsn}"):
        return await asyncpg.connect(settings.dsn)
