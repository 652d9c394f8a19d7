"""Kafka messages into the datamart, exactly once: decode, map to rows, then one transaction per batch.

Two stages, so the database never waits for decoding and decoding never waits for the database:

1. :meth:`Sink.prepare` (CPU): decode and validate every message, register or evolve subscriptions as needed, map
   each record to typed rows per payload table. A message that fails is turned into a :class:`DeadLetter`.
2. :meth:`Sink.write` (I/O), one transaction:

   - **fence**: for every partition in the batch, move the stored next offset from the batch's start to its end
     (``consumer_offsets``). If another worker moved it first, nothing is written (:class:`FencedError`): the caller
     re-reads the partition from the stored offset. This makes the write exactly once whatever the timing of
     rebalances, restarts and zombie workers.
   - **COPY** the rows of each payload table, one plain COPY a table: as CSV lines when the compiled path encoded
     them (``csvcopy``), else binary COPY of tuples. If a row is already there (a re-delivered record) or
     PostgreSQL refuses a value (a NUL character, a number out of range), the transaction is rolled back and
     written again *carefully*, each table under a savepoint: rows that conflict go through a staging table and
     ``INSERT ... ON CONFLICT DO NOTHING`` (de-duplication is paid only when a conflict happens), and refused rows
     are split in halves under savepoints until the records at fault are isolated; they are dead-lettered and
     their neighbours land.
   - the **dead letters** of the batch, with their reasons, in the same transaction.

Transient failures (connection lost, server restarting) roll the transaction back and the whole write is retried
(``retry.py``); nothing is half-written.

**The last line of defence.** Anything else that goes wrong because of the messages at hand, not the database
(``retry.is_message_fault``: a statement PostgreSQL refuses, a daily partition that cannot be made, an exception
in this package's own code), is isolated like a refused value: per message while preparing, per subscription while
registering, per day while partitioning, by halving while writing. Each message at fault becomes an
``internal_error`` dead letter naming the exception, logged once a batch at ERROR; its neighbours land.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Container, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any, Protocol, TypeVar

import asyncpg

from . import contract, csvcopy, fast_rows
from .contract import FeedbackRecord, Layout, ScoringRecord
from .errors import FencedError, RecordError, describe
from .feedback import decode_message
from .feedback_ingest import FeedbackIngest
from .feedback_tables import feedback_columns
from .identifiers import feedback_names_for, quote_ident
from .registry import Registry
from .retry import is_message_fault, pg_error_kind, pg_errors, retrying
from .rows import rows_for
from .subscription import Source, Subscription
from .window import TimestampWindow, WindowBounds

__all__ = ["DeadLetter", "Message", "PreparedBatch", "Sink", "TableRows", "WriteOutcome", "copy_rows"]

log = logging.getLogger(__name__)

_T = TypeVar("_T")
_YIELD_EVERY = 32  # records decoded between yields to the event loop: each step of a write waits for one


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
    """The rows of one table in a batch (``sub``'s payload table, or its feedback table when ``feedback``), all
    tuples or, when ``csv``, all CSV lines (``csvcopy``); ``starts[i]`` is where record ``i``'s rows begin,
    ``record_days[i]`` the day of its partition (payload tables only are partitioned)."""

    sub: Subscription
    csv: bool = False
    feedback: bool = False
    rows: list[Any] = field(default_factory=list)
    starts: list[int] = field(default_factory=list)
    messages: list[Message] = field(default_factory=list)
    days: set[date] = field(default_factory=set)
    record_days: list[date] = field(default_factory=list)

    @property
    def name(self) -> str:
        return feedback_names_for(self.sub.table)[0] if self.feedback else self.sub.table

    @property
    def columns(self) -> tuple[str, ...]:
        return feedback_columns(self.sub) if self.feedback else self.sub.columns

    def add(self, msg: Message, rows: list[Any], day: date) -> None:
        self.starts.append(len(self.rows))
        self.rows.extend(rows)
        self.messages.append(msg)
        self.days.add(day)
        self.record_days.append(day)

    def without(self, days: Container[date]) -> tuple[TableRows, list[tuple[Message, date]]]:
        """These rows less the records of ``days``, and the messages of the records left out with their days."""
        kept = TableRows(self.sub, self.csv, self.feedback)
        left_out = []
        for i, (msg, day) in enumerate(zip(self.messages, self.record_days, strict=True)):
            if day in days:
                left_out.append((msg, day))
            else:
                kept.add(msg, self.rows_of(i, i + 1), day)
        return kept, left_out

    def rows_of(self, lo: int, hi: int) -> list[Any]:
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


_Tables = dict[tuple[int, bool, bool], TableRows]


def _table(tables: _Tables, sub: Subscription, csv: bool, feedback: bool = False) -> TableRows:
    """The batch's rows for ``sub``'s payload (or feedback) table in one COPY format. Keyed by the Subscription
    object: a batch may hold rows of one table from before and after it gained a column, and each set is copied
    with its own column list."""
    table = tables.get((id(sub), csv, feedback))
    if table is None:
        table = tables[id(sub), csv, feedback] = TableRows(sub, csv, feedback)
    return table


async def copy_rows(
    conn: asyncpg.Connection, schema: str, table: str, columns: Sequence[str], rows: list[Any], csv: bool
) -> None:
    """COPY ``rows`` (CSV lines when ``csv``, else tuples for asyncpg's binary COPY) into ``schema.table``."""
    if csv:
        await conn.copy_to_table(
            table, schema_name=schema, columns=list(columns), source=csvcopy.source(rows), **csvcopy.COPY_OPTIONS
        )
    else:
        await conn.copy_records_to_table(table, schema_name=schema, columns=list(columns), records=rows)


_DETAIL_MAX_CHARS = 2000


def _printable(text: str) -> str:
    """Text fit for a text column whatever it holds, so that a dead letter always stores: cut to a bounded length,
    NUL characters and lone surrogates spelled out."""
    if len(text) > _DETAIL_MAX_CHARS:
        text = text[:_DETAIL_MAX_CHARS] + "…"
    return text.replace("\x00", "\\x00").encode("utf-8", "backslashreplace").decode("utf-8")


class Sink:
    """Prepares and writes batches into one datamart schema for one consumer group (or replay)."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        schema: str,
        group_id: str,
        registry: Registry,
        *,
        max_record_bytes: int = contract.DEFAULT_MAX_RECORD_BYTES,
        subscriptions: frozenset[str] | None = None,
        window: TimestampWindow | None = None,
        on_retry: Any = None,
        csv: bool = True,
    ) -> None:
        self._pool = pool
        self._schema = schema
        self._q_schema = quote_ident(schema)
        self._group_id = group_id
        self._registry = registry
        self._feedback = FeedbackIngest(registry)
        self._max_record_bytes = max_record_bytes
        self._only = subscriptions
        self._window = window or TimestampWindow()
        self._on_retry = on_retry
        self._csv = csv  # False: every row in tuples, for binary COPY (benchmarks and tests compare the two)

    # -- stage 1: decode and map ---------------------------------------------------------------------------

    async def prepare(
        self, messages: Sequence[Message], ranges: dict[tuple[str, int], tuple[int, int]], generation: int = 0
    ) -> PreparedBatch:
        """Decode, validate and map a batch of messages to rows; failures become dead letters.

        A record whose subscription and fields the registry already knows is mapped at once (and its decoded form
        freed); the others wait for one registry round trip at the end of the batch.
        """
        dead: list[DeadLetter] = []
        tables: _Tables = {}
        unknown: list[tuple[Message, ScoringRecord]] = []
        labels: list[tuple[Message, FeedbackRecord]] = []
        value_bytes = skipped = 0
        ingested_at = datetime.now(UTC)
        bounds = self._window.at(ingested_at)
        max_bytes = self._max_record_bytes
        mapper = fast_rows.Mapper(self._covering, bounds=bounds, csv=self._csv)
        faults = _InternalErrors()
        last: TableRows | None = None  # the table of the latest compiled message: most often the next one's too
        for i, msg in enumerate(messages):
            if i % _YIELD_EVERY == _YIELD_EVERY - 1:
                await asyncio.sleep(0)
            value = msg.value
            value_bytes += len(value) if value else 0
            try:
                if value and len(value) <= max_bytes:
                    mapped = mapper.to_rows(value, msg.topic, msg.partition, msg.offset, ingested_at)
                    if mapped is not None:
                        if last is None or last.sub is not mapped.sub or last.csv is not mapped.csv:
                            last = _table(tables, mapped.sub, mapped.csv)
                        last.add(msg, mapped.rows, mapped.day)
                        continue
                try:
                    rec = decode_message(value, self._max_record_bytes)
                except RecordError as exc:
                    dead.append(DeadLetter.of(msg, exc))
                    continue
                if self._only is not None and rec.subscription_id not in self._only:
                    skipped += 1
                    continue
                if isinstance(rec, FeedbackRecord):
                    labels.append((msg, rec))
                    continue
                sub = self._registry.lookup(rec)
                if sub is None:
                    unknown.append((msg, rec))
                else:
                    self._map(msg, rec, sub, ingested_at, bounds, tables, dead)
            except Exception as exc:  # a bug in this package costs the message that struck it, never its partition
                dead.append(faults.dead_letter(msg, exc, "decoding and mapping"))
        if unknown:
            subs = await self._prepare_subscriptions([rec for _, rec in unknown])
            for msg, rec in unknown:
                try:
                    self._map(msg, rec, subs[rec.subscription_id], ingested_at, bounds, tables, dead)
                except Exception as exc:
                    dead.append(faults.dead_letter(msg, exc, "mapping"))
        if labels:
            subs = await self._prepare_feedback([rec for _, rec in labels])
            for msg, label in labels:
                try:
                    self._map(msg, label, subs[label.subscription_id], ingested_at, bounds, tables, dead)
                except Exception as exc:
                    dead.append(faults.dead_letter(msg, exc, "mapping", label.subscription_id))
        faults.report()
        return PreparedBatch(ranges, list(tables.values()), dead, len(messages), value_bytes, generation, skipped)

    def _covering(self, subscription_id: str, layout: Layout) -> Subscription | None:
        """For the compiled path: the subscription, if wanted and already covering ``layout``."""
        if self._only is not None and subscription_id not in self._only:
            return None  # the reference path counts it as skipped
        return self._registry.covering(subscription_id, layout)

    @staticmethod
    def _map(
        msg: Message,
        rec: ScoringRecord | FeedbackRecord,
        sub: Subscription | RecordError,
        ingested_at: datetime,
        bounds: WindowBounds,
        tables: _Tables,
        dead: list[DeadLetter],
    ) -> None:
        """Add a record's rows to its table's batch, or a dead letter when its subscription or a value refuses it."""
        if isinstance(sub, RecordError):
            dead.append(DeadLetter.of(msg, sub, rec.subscription_id))
            return
        source = Source(msg.topic, msg.partition, msg.offset)
        feedback = isinstance(rec, FeedbackRecord)
        try:
            if isinstance(rec, FeedbackRecord):
                rows = FeedbackIngest.rows(sub, rec, source, ingested_at)
                day = rec.labelled_at.date()
            else:
                rows = rows_for(sub, rec, source, ingested_at)
                day = bounds.day_of(rec.scoring_timestamp)
        except RecordError as exc:
            dead.append(DeadLetter.of(msg, exc, rec.subscription_id))
            return
        _table(tables, sub, False, feedback=feedback).add(msg, rows, day)

    async def _prepare_feedback(self, recs: list[FeedbackRecord]) -> dict[str, Subscription | RecordError]:
        return await self._on_a_connection("preparing feedback tables", lambda conn: self._feedback.prepare(conn, recs))

    async def _prepare_subscriptions(self, recs: list[ScoringRecord]) -> dict[str, Subscription | RecordError]:
        return await self._on_a_connection("registering subscriptions", lambda conn: self._registry.prepare(conn, recs))

    async def _on_a_connection(self, what: str, work: Callable[[asyncpg.Connection], Awaitable[_T]]) -> _T:
        """``work(conn)`` on a connection of the pool, retried while PostgreSQL is unavailable."""
        async for attempt in retrying(what, on_retry=self._on_retry):
            with attempt, pg_errors(what):
                async with self._pool.acquire() as conn:
                    return await work(conn)
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
                    tables, refused = await self._partitioned(conn, batch.tables)
                    try:
                        return await self._transaction(conn, batch, tables, refused, careful=False)
                    except Exception as exc:
                        if not is_message_fault(exc):
                            raise
                    # A row was there already or PostgreSQL refused a value or a statement: the same again, table
                    # by table under savepoints, so duplicates are skipped and the records at fault isolated.
                    return await self._transaction(conn, batch, tables, refused, careful=True)
        raise AssertionError("unreachable")  # pragma: no cover

    async def _partitioned(
        self, conn: asyncpg.Connection, tables: list[TableRows]
    ) -> tuple[list[TableRows], list[DeadLetter]]:
        """The tables whose daily partitions exist (created as needed), and dead letters for the records of the days
        whose partition could not be made for a reason of its own (not the database's): they cost no other day."""
        ready: list[TableRows] = []
        refused: list[DeadLetter] = []
        faults = _InternalErrors()
        for table in tables:
            if table.feedback:  # not partitioned
                ready.append(table)
                continue
            try:
                await self._registry.ensure_partitions(conn, table.sub, table.days)
            except Exception:
                failed: dict[date, Exception] = {}
                for day in sorted(table.days):
                    try:
                        await self._registry.ensure_partitions(conn, table.sub, (day,))
                    except Exception as exc:
                        if not is_message_fault(exc):
                            raise
                        failed[day] = exc
                table, left_out = table.without(failed)
                where, sub_id = "creating its daily partition", table.sub.subscription_id
                refused += [faults.dead_letter(msg, failed[day], where, sub_id) for msg, day in left_out]
            if table.messages:
                ready.append(table)
        faults.report()
        return ready, refused

    async def _transaction(
        self,
        conn: asyncpg.Connection,
        batch: PreparedBatch,
        tables: list[TableRows],
        refused: list[DeadLetter],
        careful: bool,
    ) -> WriteOutcome:
        """Fence, rows and dead letters (the batch's and ``refused``) in one transaction. Unless ``careful``, each
        table is one plain COPY (the common case: no savepoint, fewest round trips) and a refused or duplicate row
        fails the transaction."""
        outcome = WriteOutcome()
        faults = _InternalErrors()
        async with conn.transaction():
            await self._fence(conn, batch.ranges)
            dead = [*batch.dead_letters, *refused]
            for table in tables:
                if careful:
                    dead += await self._write_table(conn, table, 0, len(table.messages), False, outcome, faults)
                else:
                    await copy_rows(conn, self._schema, table.name, table.columns, table.rows, table.csv)
                    outcome.rows_written += len(table.rows)
            await self._insert_dead_letters(conn, dead)
        faults.report()
        for letter in dead:
            outcome.count_dead_letter(letter.code)
        return outcome

    async def _fence(self, conn: asyncpg.Connection, ranges: dict[tuple[str, int], tuple[int, int]]) -> None:
        """Move every partition's stored next offset from the batch's start to its end, in one statement (rows
        locked in a fixed order); raise FencedError if any was not at the start."""
        keys = sorted(ranges)
        moved = await conn.fetch(
            f"""
            WITH wanted AS (
                SELECT * FROM unnest($2::text[], $3::int[], $4::bigint[], $5::bigint[])
                    AS w(topic, partition, start_offset, end_offset))
            INSERT INTO {self._q_schema}.consumer_offsets AS o (group_id, topic, partition, next_offset, updated_at)
            SELECT $1, topic, partition, end_offset, now() FROM wanted
            ON CONFLICT (group_id, topic, partition)
            DO UPDATE SET next_offset = EXCLUDED.next_offset, updated_at = EXCLUDED.updated_at
            WHERE o.next_offset = (
                SELECT w.start_offset FROM wanted w WHERE w.topic = o.topic AND w.partition = o.partition)
            RETURNING o.topic, o.partition""",
            self._group_id,
            [t for t, _ in keys],
            [p for _, p in keys],
            [ranges[k][0] for k in keys],
            [ranges[k][1] for k in keys],
        )
        if len(moved) != len(keys):
            done = {(r["topic"], r["partition"]) for r in moved}
            topic, partition = next(k for k in keys if k not in done)
            start = ranges[topic, partition][0]
            raise FencedError(f"{topic}[{partition}]: stored offset is no longer {start}; re-reading")

    async def _write_table(
        self,
        conn: asyncpg.Connection,
        table: TableRows,
        lo: int,
        hi: int,
        dedupe: bool,
        outcome: WriteOutcome,
        faults: _InternalErrors,
    ) -> list[DeadLetter]:
        """Write records ``lo..hi-1`` of a table; returns the dead letters of the records PostgreSQL refused (a
        value: ``unstorable_value``; anything else about them: ``internal_error``, noted in ``faults``)."""
        rows = table.rows_of(lo, hi)
        try:
            async with conn.transaction():  # a savepoint: a failure here leaves the batch's other work intact
                if dedupe:
                    written = await self._insert_skipping_duplicates(conn, table, rows)
                else:
                    await copy_rows(conn, self._schema, table.name, table.columns, rows, table.csv)
                    written = len(rows)
        except Exception as exc:
            kind = pg_error_kind(exc)
            if kind == "duplicate" and not dedupe:
                return await self._write_table(conn, table, lo, hi, True, outcome, faults)
            if not is_message_fault(exc):
                raise
            if hi - lo == 1:
                msg = table.messages[lo]
                if kind == "internal":
                    return [faults.dead_letter(msg, exc, "writing its rows", table.sub.subscription_id)]
                refused = RecordError("unstorable_value", "", f"PostgreSQL refused a value: {describe(exc)}")
                return [DeadLetter.of(msg, refused, table.sub.subscription_id)]
            mid = (lo + hi) // 2
            first = await self._write_table(conn, table, lo, mid, dedupe, outcome, faults)
            return first + await self._write_table(conn, table, mid, hi, dedupe, outcome, faults)
        outcome.rows_written += written
        outcome.duplicates_skipped += len(rows) - written
        return []

    async def _insert_skipping_duplicates(self, conn: asyncpg.Connection, table: TableRows, rows: list[Any]) -> int:
        stage_name = f"stage_{table.name}"[:63]
        stage = quote_ident(stage_name)
        target = f"{self._q_schema}.{quote_ident(table.name)}"
        cols = ", ".join(quote_ident(c) for c in table.columns)
        # Dropped and made anew each time: the payload table may have gained columns since the last conflict.
        await conn.execute(
            f"DROP TABLE IF EXISTS pg_temp.{stage}; "
            f"CREATE TEMP TABLE {stage} (LIKE {target} INCLUDING DEFAULTS) ON COMMIT DROP"
        )
        await copy_rows(conn, "pg_temp", stage_name, table.columns, rows, table.csv)
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


class _InternalErrors:
    """The messages of one batch that raised something other than a RecordError: each becomes an
    ``internal_error`` dead letter naming the exception, and the batch logs them once, at ERROR, with the first
    one's traceback (a stream of hostile messages must not flood the log)."""

    def __init__(self) -> None:
        self.count = 0
        self._first: tuple[str, BaseException] | None = None

    def dead_letter(self, msg: Message, exc: Exception, where: str, subscription_id: str | None = None) -> DeadLetter:
        self.count += 1
        if self._first is None:
            self._first = (f"{msg.topic}[{msg.partition}]@{msg.offset} while {where}", exc)
        return DeadLetter.of(msg, RecordError("internal_error", "", f"{where}: {describe(exc)}"), subscription_id)

    def report(self) -> None:
        if self._first is not None:
            where, exc = self._first
            log.error(
                "%d message(s) dead-lettered as internal_error; the first, %s: %s",
                self.count,
                where,
                describe(exc),
                exc_info=exc,
            )


def _sub_id(subscription_id: str | None) -> str | None:
    return None if subscription_id is None else _printable(subscription_id)[: contract.MAX_NAME_CHARS]
