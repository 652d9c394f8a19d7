"""Kafka messages into the datamart, exactly once: decode, map to rows, then one transaction per batch.

Two stages, so the database never waits for decoding and decoding never waits for the database:

1. :meth:`Sink.prepare` (CPU): decode and validate every message, register or evolve subscriptions as needed, map
   each record to typed rows per payload table. A message that fails is turned into a :class:`DeadLetter`.
2. :meth:`Sink.write` (I/O), one transaction:

   - **fence**: for every partition in the batch, move the stored next offset from the batch's start to its end
     (``consumer_offsets``). If another worker moved it first, nothing is written (:class:`FencedError`): the caller
     re-reads the partition from the stored offset. This makes the write exactly once whatever the timing of
     rebalances, restarts and zombie workers.
   - **COPY** the rows of each payload table (binary COPY, the fast path). If a row is already there (a re-delivered
     record), the same rows go through a staging table and ``INSERT ... ON CONFLICT DO NOTHING``: de-duplication is
     paid only when a conflict happens. If PostgreSQL refuses a value (a NUL character, a number out of range),
     the rows are split in halves under savepoints until the records at fault are isolated; they are
     dead-lettered and their neighbours land.
   - the **dead letters** of the batch, with their reasons, in the same transaction.

Transient failures (connection lost, server restarting) roll the transaction back and the whole write is retried
(``retry.py``); nothing is half-written.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any, Protocol

import asyncpg

from . import compiled, records
from .errors import FencedError, RecordError
from .identifiers import quote_ident
from .records import LayoutKey, ScoringRecord
from .retry import pg_error_kind, pg_errors, retrying
from .subscriptions import Registry, Source, Subscription

__all__ = ["DeadLetter", "Message", "PreparedBatch", "Sink", "TableRows", "WriteOutcome"]

log = logging.getLogger(__name__)

_YIELD_EVERY = 256  # decoded records between yields to the event loop, so database I/O keeps flowing


class Message(Protocol):
    """What the sink needs of a Kafka message (aiokafka's ``ConsumerRecord`` has it)."""

    @property
    def topic(self) -> str: ...
    @property
    def partition(self) -> int: ...
    @property
    def offset(self) -> int: ...
    @property
    def key(self) -> bytes | None: ...
    @property
    def value(self) -> bytes | None: ...


@dataclass(slots=True)
class DeadLetter:
    """A message that cannot become datamart rows, kept with its raw bytes so it can be fixed and re-driven."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    code: str
    detail: str
    subscription_id: str | None = None

    @classmethod
    def of(cls, msg: Message, error: RecordError, subscription_id: str | None = None) -> DeadLetter:
        return cls(msg.topic, msg.partition, msg.offset, msg.key, msg.value, error.code, str(error), subscription_id)


@dataclass(slots=True)
class TableRows:
    """The rows of one payload table in a batch; ``starts[i]`` is where record ``i``'s rows begin."""

    sub: Subscription
    rows: list[tuple[Any, ...]] = field(default_factory=list)
    starts: list[int] = field(default_factory=list)
    messages: list[Message] = field(default_factory=list)
    days: set[date] = field(default_factory=set)

    def add(self, msg: Message, rows: list[tuple[Any, ...]], day: date) -> None:
        self.starts.append(len(self.rows))
        self.rows.extend(rows)
        self.messages.append(msg)
        self.days.add(day)

    def rows_of(self, lo: int, hi: int) -> list[tuple[Any, ...]]:
        """The rows of records ``lo`` to ``hi - 1``."""
        end = self.starts[hi] if hi < len(self.starts) else len(self.rows)
        return self.rows[self.starts[lo] : end]


@dataclass(slots=True)
class PreparedBatch:
    """A batch ready to write: rows per table, dead letters, and the offset range of every partition in it.

    ``ranges[(topic, partition)] = (start, end)``: the stored next offset the batch expects to find, and the one
    it leaves (one past its last message).
    """

    ranges: dict[tuple[str, int], tuple[int, int]]
    tables: list[TableRows]
    dead_letters: list[DeadLetter]
    messages: int
    value_bytes: int
    generation: int = 0
    skipped: int = 0

    @property
    def rows(self) -> int:
        return sum(len(t.rows) for t in self.tables)


@dataclass(slots=True)
class WriteOutcome:
    """What one committed batch did."""

    rows_written: int = 0
    duplicates_skipped: int = 0
    dead_letters: dict[str, int] = field(default_factory=dict)

    def count_dead_letter(self, code: str) -> None:
        self.dead_letters[code] = self.dead_letters.get(code, 0) + 1


def _table(tables: dict[int, TableRows], sub: Subscription) -> TableRows:
    """The batch's rows for ``sub``. Keyed by the Subscription object: a batch may hold rows of one table from before
    and after it gained a column, and each set is copied with its own column list."""
    table = tables.get(id(sub))
    if table is None:
        table = tables[id(sub)] = TableRows(sub)
    return table


def _printable(text: str) -> str:
    """Text with NUL characters spelled out: PostgreSQL text cannot hold them, and details must always store."""
    return text.replace("\x00", "\\x00")


class Sink:
    """Prepares and writes batches into one datamart schema for one consumer group (or replay)."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        schema: str,
        group_id: str,
        registry: Registry,
        *,
        max_record_bytes: int = records.DEFAULT_MAX_RECORD_BYTES,
        subscriptions: frozenset[str] | None = None,
        on_retry: Any = None,
    ) -> None:
        self._pool = pool
        self._schema = schema
        self._q_schema = quote_ident(schema)
        self._group_id = group_id
        self._registry = registry
        self._max_record_bytes = max_record_bytes
        self._only = subscriptions
        self._on_retry = on_retry

    # -- stage 1: decode and map ---------------------------------------------------------------------------

    async def prepare(
        self, messages: Sequence[Message], ranges: dict[tuple[str, int], tuple[int, int]], generation: int = 0
    ) -> PreparedBatch:
        """Decode, validate and map a batch of messages to rows; failures become dead letters.

        A record whose subscription and fields the registry already knows is mapped at once (and its decoded form
        freed); the others wait for one registry round trip at the end of the batch.
        """
        dead: list[DeadLetter] = []
        tables: dict[int, TableRows] = {}
        unknown: list[tuple[Message, ScoringRecord]] = []
        value_bytes = skipped = 0
        ingested_at = datetime.now(UTC)
        max_bytes = self._max_record_bytes
        mapper = compiled.Mapper(self._known_layout)
        for i, msg in enumerate(messages):
            if i % _YIELD_EVERY == _YIELD_EVERY - 1:
                await asyncio.sleep(0)
            value = msg.value
            value_bytes += len(value) if value else 0
            if value and len(value) <= max_bytes:
                mapped = mapper.to_rows(value, msg.topic, msg.partition, msg.offset, ingested_at)
                if mapped is not None:
                    _table(tables, mapped.sub).add(msg, mapped.rows, mapped.day)
                    continue
            try:
                rec = records.decode(value, self._max_record_bytes)
            except RecordError as exc:
                dead.append(DeadLetter.of(msg, exc))
                continue
            if self._only is not None and rec.subscription_id not in self._only:
                skipped += 1
                continue
            sub = self._registry.lookup(rec)
            if sub is None:
                unknown.append((msg, rec))
            else:
                self._map(msg, rec, sub, ingested_at, tables, dead)
        if unknown:
            subs = await self._prepare_subscriptions([rec for _, rec in unknown])
            for msg, rec in unknown:
                self._map(msg, rec, subs[rec.subscription_id], ingested_at, tables, dead)
        return PreparedBatch(ranges, list(tables.values()), dead, len(messages), value_bytes, generation, skipped)

    def _known_layout(self, subscription_id: str, layout: LayoutKey) -> Subscription | None:
        """For the compiled path: the subscription, if wanted and already covering ``layout``."""
        if self._only is not None and subscription_id not in self._only:
            return None  # the reference path counts it as skipped
        return self._registry.known_layout(subscription_id, layout)

    @staticmethod
    def _map(
        msg: Message,
        rec: ScoringRecord,
        sub: Subscription | RecordError,
        ingested_at: datetime,
        tables: dict[int, TableRows],
        dead: list[DeadLetter],
    ) -> None:
        if isinstance(sub, RecordError):
            dead.append(DeadLetter.of(msg, sub, rec.subscription_id))
            return
        try:
            rows = sub.rows_for(rec, Source(msg.topic, msg.partition, msg.offset), ingested_at)
        except RecordError as exc:
            dead.append(DeadLetter.of(msg, exc, rec.subscription_id))
            return
        _table(tables, sub).add(msg, rows, rec.scoring_timestamp.astimezone(UTC).date())

    async def _prepare_subscriptions(self, recs: list[ScoringRecord]) -> dict[str, Subscription | RecordError]:
        async for attempt in retrying("registering subscriptions", on_retry=self._on_retry):
            with attempt, pg_errors("registering subscriptions"):
                async with self._pool.acquire() as conn:
                    return await self._registry.prepare(conn, recs)
        raise AssertionError("unreachable")  # pragma: no cover

    # -- stage 2: one transaction ---------------------------------------------------------------------------

    async def write(self, batch: PreparedBatch) -> WriteOutcome:
        """Write a prepared batch exactly once; retried while PostgreSQL is unavailable.

        Raises :class:`FencedError` (nothing written) when another worker already moved a partition's offset,
        and :class:`~stream_logger.errors.FatalError` when PostgreSQL refuses for good (permissions, schema).
        """
        async for attempt in retrying("writing a batch", on_retry=self._on_retry):
            with attempt, pg_errors("writing a batch"):
                async with self._pool.acquire() as conn:
                    for table in batch.tables:
                        await self._registry.ensure_partitions(conn, table.sub, table.days)
                    outcome = WriteOutcome()
                    async with conn.transaction():
                        await self._fence(conn, batch.ranges)
                        dead = list(batch.dead_letters)
                        for table in batch.tables:
                            dead += await self._write_table(conn, table, 0, len(table.messages), False, outcome)
                        await self._insert_dead_letters(conn, dead)
                    for letter in dead:
                        outcome.count_dead_letter(letter.code)
                    return outcome
        raise AssertionError("unreachable")  # pragma: no cover

    async def _fence(self, conn: asyncpg.Connection, ranges: dict[tuple[str, int], tuple[int, int]]) -> None:
        sql = f"""
            INSERT INTO {self._q_schema}.consumer_offsets AS o (group_id, topic, partition, next_offset, updated_at)
            VALUES ($1, $2, $3, $5, now())
            ON CONFLICT (group_id, topic, partition)
            DO UPDATE SET next_offset = EXCLUDED.next_offset, updated_at = EXCLUDED.updated_at
            WHERE o.next_offset = $4
            RETURNING 1"""
        for (topic, partition), (start, end) in sorted(ranges.items()):
            if await conn.fetchval(sql, self._group_id, topic, partition, start, end) is None:
                raise FencedError(f"{topic}[{partition}]: stored offset is no longer {start}; re-reading")

    async def _write_table(
        self, conn: asyncpg.Connection, table: TableRows, lo: int, hi: int, dedupe: bool, outcome: WriteOutcome
    ) -> list[DeadLetter]:
        """Write records ``lo..hi-1`` of a table; returns the dead letters of the records PostgreSQL refused."""
        rows = table.rows_of(lo, hi)
        try:
            async with conn.transaction():  # a savepoint: a failure here leaves the batch's other work intact
                if dedupe:
                    written = await self._insert_skipping_duplicates(conn, table.sub, rows)
                else:
                    await conn.copy_records_to_table(
                        table.sub.table, schema_name=self._schema, columns=list(table.sub.columns), records=rows
                    )
                    written = len(rows)
        except Exception as exc:
            kind = pg_error_kind(exc)
            if kind == "duplicate" and not dedupe:
                return await self._write_table(conn, table, lo, hi, True, outcome)
            if kind not in ("data", "duplicate"):
                raise
            if hi - lo == 1:
                msg = table.messages[lo]
                refused = RecordError("unstorable_value", "", f"PostgreSQL refused a value: {exc}")
                return [DeadLetter.of(msg, refused, table.sub.subscription_id)]
            mid = (lo + hi) // 2
            first = await self._write_table(conn, table, lo, mid, dedupe, outcome)
            return first + await self._write_table(conn, table, mid, hi, dedupe, outcome)
        outcome.rows_written += written
        outcome.duplicates_skipped += len(rows) - written
        return []

    async def _insert_skipping_duplicates(
        self, conn: asyncpg.Connection, sub: Subscription, rows: list[tuple[Any, ...]]
    ) -> int:
        stage_name = f"stage_{sub.table}"[:63]
        stage = quote_ident(stage_name)
        target = f"{self._q_schema}.{quote_ident(sub.table)}"
        cols = ", ".join(quote_ident(c) for c in sub.columns)
        # Dropped and made anew each time: the payload table may have gained columns since the last conflict.
        await conn.execute(
            f"DROP TABLE IF EXISTS pg_temp.{stage}; "
            f"CREATE TEMP TABLE {stage} (LIKE {target} INCLUDING DEFAULTS) ON COMMIT DROP"
        )
        await conn.copy_records_to_table(stage_name, schema_name="pg_temp", columns=list(sub.columns), records=rows)
        status = await conn.execute(
            f"INSERT INTO {target} ({cols}) SELECT {cols} FROM pg_temp.{stage} ON CONFLICT DO NOTHING"
        )
        await conn.execute(f"DROP TABLE pg_temp.{stage}")
        return int(status.rsplit(" ", 1)[-1])

    async def _insert_dead_letters(self, conn: asyncpg.Connection, letters: Iterable[DeadLetter]) -> None:
        args = [
            (d.topic, d.partition, d.offset, d.key, d.value, d.code, _printable(d.detail), _sub_id(d.subscription_id))
            for d in letters
        ]
        if not args:
            return
        await conn.executemany(
            f"""INSERT INTO {self._q_schema}.dead_letters
                    (topic, partition, "offset", key, value, error_code, detail, subscription_id)
                VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
                ON CONFLICT (topic, partition, "offset") DO NOTHING""",
            args,
        )

    # -- offsets --------------------------------------------------------------------------------------------

    async def stored_offsets(self, partitions: Iterable[tuple[str, int]]) -> dict[tuple[str, int], int]:
        """The next offset stored in the datamart for each partition that has one (retried while unavailable)."""
        wanted = list(partitions)
        if not wanted:
            return {}
        async for attempt in retrying("reading stored offsets", on_retry=self._on_retry):
            with attempt, pg_errors("reading stored offsets"):
                rows = await self._pool.fetch(
                    f"""SELECT topic, partition, next_offset FROM {self._q_schema}.consumer_offsets
                        WHERE group_id = $1 AND (topic, partition) IN (SELECT * FROM unnest($2::text[], $3::int[]))""",
                    self._group_id,
                    [t for t, _ in wanted],
                    [p for _, p in wanted],
                )
                return {(r["topic"], r["partition"]): r["next_offset"] for r in rows}
        raise AssertionError("unreachable")  # pragma: no cover


def _sub_id(subscription_id: str | None) -> str | None:
    return None if subscription_id is None else _printable(subscription_id)[: records.MAX_NAME_CHARS]
