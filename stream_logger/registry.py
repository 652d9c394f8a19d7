"""Subscriptions: one per monitored deployment, each with its own typed, daily-partitioned payload table.

A subscription is declared explicitly (:func:`declare`, ``stream-logger subscription add``) or registered
automatically from the first records that name it (:class:`Registry`, types inferred from the values). A field
that appears later becomes a new column (additive evolution; never a change of type or a dropped column), unless
the subscription says ``evolve: false``, in which case new fields are kept in the ``extra`` JSON column.

Every DDL statement runs in its own short transaction under a PostgreSQL advisory lock (one per datamart for
registering, one per payload table for new columns and partitions), and the state is re-read from the database
under the lock, so several workers can register, evolve and partition the same subscription concurrently. Call
these functions **outside** a transaction: DDL inside a long write transaction would hold its locks until commit
and can deadlock two workers.

Names are never spliced into SQL: subscription ids and field names are mapped to safe identifiers by
:mod:`stream_logger.identifiers` and the mapping is stored in ``subscriptions.fields``.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterable, Mapping, Sequence
from datetime import date, timedelta
from typing import Any, Final

import asyncpg
import orjson

from .contract import Layout, ScoringRecord
from .datamart import advisory_key, refuse_in_transaction
from .errors import DatamartError, RecordError, SubscriptionError, describe
from .feedback_tables import add_feedback_columns, create_feedback_table
from .identifiers import (
    SYSTEM_COLUMN_DEFINITIONS,
    column_name_for,
    columns_sql,
    derived_names,
    partition_name_for,
    quote_ident,
    table_name_for,
    validate_schema_name,
)
from .retry import is_message_fault
from .rows import infer_type, partition_day
from .subscription import SOURCES, TARGET, Field, Subscription, parse_spec

__all__ = [
    "MAX_DECLARED_FIELDS",
    "Registry",
    "create_subscription",
    "declare",
    "list_subscriptions",
    "partition_days",
]

log = logging.getLogger(__name__)

MAX_COVERED_LAYOUTS: Final = 4096
"""Field layouts a subscription's cache remembers as covered; past that it starts afresh (a stream repeats a few;
an adversary could send a new one in every message, which must not grow a worker's memory without bound)."""

MAX_DECLARED_FIELDS: Final = 1500
"""PostgreSQL allows 1600 columns a table (dropped ones included); past this many fields, new ones go to extra."""


def partition_days(records: Iterable[ScoringRecord]) -> set[date]:
    """The UTC days of the records' scoring timestamps: the daily partitions their rows go to (raises RecordError
    for a timestamp no partition can hold, see :func:`rows.partition_day`)."""
    return {partition_day(r.scoring_timestamp) for r in records}


def _show_id(subscription_id: str) -> str:
    """A subscription id for a message: quoted, cut short, anything unprintable escaped."""
    return ascii(subscription_id[:80]) + ("…" if len(subscription_id) > 80 else "")


def _subscription_from_row(schema: str, row: Mapping[str, Any]) -> Subscription:
    stored = [Field(f["name"], f["column"], f["role"], f["type"]) for f in orjson.loads(row["fields"])]
    return Subscription(
        subscription_id=row["subscription_id"],
        schema=schema,
        table=row["table_name"],
        fields=tuple(f for f in stored if f.role != TARGET),
        deployment_id=row["deployment_id"],
        asset_revision=row["asset_revision"],
        evolve=row["evolve"],
        auto_registered=row["auto_registered"],
        target=next((f for f in stored if f.role == TARGET), None),
    )


def _fields_json(sub: Subscription) -> str:
    return orjson.dumps([f.as_json() for f in sub.stored_fields]).decode()


_SELECT = (
    "SELECT subscription_id, table_name, deployment_id, asset_revision, fields::text AS fields, evolve, "
    "auto_registered FROM {schema}.subscriptions"
)


async def _load(conn: asyncpg.Connection, schema: str, subscription_id: str) -> Subscription | None:
    row = await conn.fetchrow(
        _SELECT.format(schema=quote_ident(schema)) + " WHERE subscription_id = $1", subscription_id
    )
    return None if row is None else _subscription_from_row(schema, row)


async def list_subscriptions(conn: asyncpg.Connection, schema: str) -> list[Subscription]:
    """Every subscription of the datamart, by id."""
    validate_schema_name(schema)
    rows = await conn.fetch(_SELECT.format(schema=quote_ident(schema)) + " ORDER BY subscription_id")
    return [_subscription_from_row(schema, r) for r in rows]


async def _lock(conn: asyncpg.Connection, *parts: str) -> None:
    await conn.execute("SELECT pg_advisory_xact_lock($1)", advisory_key(*parts))


async def create_subscription(
    conn: asyncpg.Connection,
    schema: str,
    subscription_id: str,
    wanted: Sequence[tuple[str, str, str]],
    *,
    deployment_id: str | None,
    asset_revision: str | None,
    evolve: bool,
    auto_registered: bool,
) -> Subscription:
    """Create the payload table and the subscriptions row. Caller holds the datamart's registry lock."""
    q_schema = quote_ident(schema)
    taken_tables = {
        r[0]
        for r in await conn.fetch(
            "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = $1 "
            f"UNION SELECT table_name FROM {q_schema}.subscriptions",
            schema,
        )
    }
    table = table_name_for(subscription_id, taken_tables)
    pkey, ts_index = derived_names(table)
    fields = _new_fields((), wanted)
    target = _new_target(fields, None, wanted)
    q_table = f"{q_schema}.{quote_ident(table)}"
    columns = "".join(f",\n    {f.column_sql}" for f in fields)
    await conn.execute(
        f"""CREATE TABLE {q_table} (
    {columns_sql(SYSTEM_COLUMN_DEFINITIONS)}{columns},
    CONSTRAINT {quote_ident(pkey)} PRIMARY KEY (scoring_id, row_index, scoring_timestamp)
) PARTITION BY RANGE (scoring_timestamp)"""
    )
    await conn.execute(f"CREATE INDEX {quote_ident(ts_index)} ON {q_table} (scoring_timestamp DESC)")
    await conn.execute(
        f"INSERT INTO {q_schema}.subscriptions (subscription_id, table_name, deployment_id, asset_revision, fields, "
        "auto_registered, evolve) VALUES ($1, $2, $3, $4, $5::jsonb, $6, $7)",
        subscription_id,
        table,
        deployment_id,
        asset_revision,
        orjson.dumps([f.as_json() for f in (*fields, *filter(None, [target]))]).decode(),
        auto_registered,
        evolve,
    )
    return Subscription(
        subscription_id, schema, table, fields, deployment_id, asset_revision, evolve, auto_registered, target
    )


def _new_fields(
    existing: Sequence[Field], wanted: Sequence[tuple[str, str, str]], target: Field | None = None
) -> tuple[Field, ...]:
    """Payload fields for the (name, role, type) in ``wanted`` that ``existing`` lacks, with fresh column names
    (never the target's column: the labelled view shows both)."""
    taken = {f.column for f in existing} | ({target.column} if target else set())
    have = {(f.source, f.name) for f in existing}
    out: list[Field] = []
    for name, role, type_ in wanted:
        key = (Field(name, "", role, type_).source, name)
        if role == TARGET or key in have:
            continue
        if len(existing) + len(out) >= MAX_DECLARED_FIELDS:
            break
        column = column_name_for(name, taken)
        taken.add(column)
        have.add(key)
        out.append(Field(name, column, role, type_))
    return tuple(out)


def _new_target(fields: Sequence[Field], target: Field | None, wanted: Sequence[tuple[str, str, str]]) -> Field | None:
    """The target: ``target`` if set, else the one ``wanted`` declares (a column no payload column takes), if any."""
    if target is not None:
        return target
    for name, role, type_ in wanted:
        if role == TARGET:
            return Field(name, column_name_for(name, {f.column for f in fields}), TARGET, type_)
    return None


async def _add_fields(
    conn: asyncpg.Connection, sub: Subscription, wanted: Sequence[tuple[str, str, str]]
) -> Subscription:
    """Add columns for the fields of ``wanted`` that ``sub`` lacks (to the payload table, and to the feedback table
    when there is one), and the target if ``wanted`` declares one and ``sub`` has none. Caller holds the table's
    lock and has just re-read ``sub`` from the database."""
    added = _new_fields(sub.fields, wanted, sub.target)
    target = _new_target(sub.fields, sub.target, wanted)
    if not added and target is sub.target:
        return sub
    q_schema = quote_ident(sub.schema)
    if added:
        await conn.execute(
            f"ALTER TABLE {q_schema}.{quote_ident(sub.table)} "
            + ", ".join(f"ADD COLUMN IF NOT EXISTS {f.column_sql}" for f in added)
        )
    evolved = dataclasses.replace(sub, fields=sub.fields + added, target=target)
    await add_feedback_columns(conn, evolved, added)
    await conn.execute(
        f"UPDATE {q_schema}.subscriptions SET fields = $2::jsonb, updated_at = now() WHERE subscription_id = $1",
        sub.subscription_id,
        _fields_json(evolved),
    )
    return evolved


class Registry:
    """The subscriptions of one datamart, cached in memory, registered and evolved on demand.

    ``auto_register``: a record naming an unknown subscription registers it (types inferred from the records);
    when off, such records get ``unknown_subscription``. ``max_auto_registered``: once the datamart holds that many
    auto-registered subscriptions, a record naming a new one gets ``subscription_limit`` (declared ones do not
    count and are never refused). A response field named ``prediction_field`` gets the
    prediction role, ``probability_field`` the probability role; other response fields that do not echo a
    request field get the response role.
    """

    def __init__(
        self,
        schema: str,
        *,
        auto_register: bool = True,
        max_auto_registered: int | None = None,
        prediction_field: str = "prediction",
        probability_field: str = "probability",
    ) -> None:
        self.schema = validate_schema_name(schema)
        self.auto_register = auto_register
        self.max_auto_registered = max_auto_registered
        self.prediction_field = prediction_field
        self.probability_field = probability_field
        self._subs: dict[str, Subscription] = {}
        self._covered: dict[str, set[Any]] = {}
        self._partitions: set[tuple[str, date]] = set()

    def cached(self, subscription_id: str) -> Subscription | None:
        """The cached subscription, if loaded."""
        return self._subs.get(subscription_id)

    def _role(self, block: int, name: str) -> str:
        if block == 0:
            return "feature"
        if block == 1:
            return "meta"
        if name == self.prediction_field:
            return "prediction"
        if name == self.probability_field:
            return "probability"
        return "response"

    def fields_to_declare(self, records: Sequence[ScoringRecord]) -> tuple[Field, ...]:
        """The fields auto-registration would declare for a new subscription of these records."""
        return _new_fields((), self._wanted(records, None))

    def _wanted(self, records: Sequence[ScoringRecord], sub: Subscription | None) -> list[tuple[str, str, str]]:
        """(name, role, type) of the fields these records carry that ``sub`` lacks, in first-seen order; types
        inferred from every row of every record; fields that are null everywhere are left out (kept in extra)."""
        order: list[tuple[int, str]] = []
        values: dict[tuple[int, str], list[Any]] = {}
        for record in records:
            request_names = set(record.request.fields)
            blocks = (record.request, record.request_meta, record.response)
            for b, table in enumerate(blocks):
                if table is None:
                    continue
                for i, name in enumerate(table.fields):
                    if b == 2 and name in request_names:
                        continue  # an echo of a request field
                    if sub is not None and sub.field_for(SOURCES[b], name) is not None:
                        continue
                    key = (b, name)
                    if key not in values:
                        order.append(key)
                        values[key] = []
                    values[key].extend(row[i] for row in table.values if i < len(row))
        wanted: list[tuple[str, str, str]] = []
        for b, name in order:
            type_ = infer_type(values[(b, name)])
            if type_ is not None:
                wanted.append((name, self._role(b, name), type_))
        return wanted

    def _covers(self, sub: Subscription, records: Sequence[ScoringRecord]) -> bool:
        """Whether ``sub`` already has a column for every field of ``records`` that should have one."""
        covered = self._covered.setdefault(sub.subscription_id, set())
        for record in records:
            key = record.layout
            if key in covered:
                continue
            if not sub.evolve or len(sub.fields) >= MAX_DECLARED_FIELDS or not self._undeclared(sub, record):
                if len(covered) >= MAX_COVERED_LAYOUTS:
                    covered.clear()
                covered.add(key)  # nothing to add, ever, for this layout: new fields go to extra
            elif self._wanted([record], sub):
                return False
            # else: the undeclared fields are null in this record; a later non-null value will add their column.
        return True

    @staticmethod
    def _undeclared(sub: Subscription, record: ScoringRecord) -> bool:
        request_names = record.request.fields
        for b, table in enumerate((record.request, record.request_meta, record.response)):
            if table is None:
                continue
            for name in table.fields:
                if sub.field_for(SOURCES[b], name) is None and not (b == 2 and name in request_names):
                    return True
        return False

    def covering(self, subscription_id: str, layout: Layout) -> Subscription | None:
        """The subscription when the cache knows it and has found it covers records of ``layout`` (no I/O, no
        record needed: the sink's compiled path). None until :meth:`lookup` has seen a record of that layout."""
        covered = self._covered.get(subscription_id)
        if covered is not None and layout in covered:
            return self._subs.get(subscription_id)
        return None

    def lookup(self, record: ScoringRecord) -> Subscription | None:
        """The record's subscription when the cache alone knows it and has a column for each of the record's
        fields (no I/O: the common case); None when :meth:`prepare` must ask the database."""
        sub = self._subs.get(record.subscription_id)
        if sub is not None and self._covers(sub, (record,)):
            return sub
        return None

    async def prepare(
        self, conn: asyncpg.Connection, records: Sequence[ScoringRecord]
    ) -> dict[str, Subscription | RecordError]:
        """The subscription of every subscription id in ``records``: loaded, registered or evolved as needed.

        Unknown ids map to RecordError(unknown_subscription) when auto-registration is off, or
        (subscription_limit) past the limit. Any other failure to register or evolve one subscription that is
        caused by its records, not by the database being unavailable or refusing everyone, maps that subscription
        to RecordError(internal_error) and leaves the others be. Call outside a transaction (DDL runs in its own
        short transactions).
        """
        by_id: dict[str, list[ScoringRecord]] = {}
        for record in records:
            by_id.setdefault(record.subscription_id, []).append(record)
        out: dict[str, Subscription | RecordError] = {}
        out.update(await self._refused_at_the_limit(conn, [i for i in by_id if i not in self._subs]))
        for subscription_id, recs in by_id.items():
            if subscription_id in out:
                continue
            sub = self._subs.get(subscription_id)
            if sub is not None and self._covers(sub, recs):
                out[subscription_id] = sub
                continue
            refuse_in_transaction(conn, "Registry.prepare")
            try:
                out[subscription_id] = await self._sync(conn, subscription_id, recs)
            except Exception as exc:
                if not is_message_fault(exc):
                    raise
                self.forget(subscription_id)
                log.error("registering subscription %s failed", _show_id(subscription_id), exc_info=True)
                out[subscription_id] = RecordError(
                    "internal_error", "subscription_id", f"registering or evolving the subscription: {describe(exc)}"
                )
        return out

    async def _sync(
        self, conn: asyncpg.Connection, subscription_id: str, records: Sequence[ScoringRecord]
    ) -> Subscription | RecordError:
        schema = self.schema
        async with conn.transaction():
            sub = await _load(conn, schema, subscription_id)
            if sub is None:
                if not self.auto_register:
                    return RecordError(
                        "unknown_subscription",
                        "subscription_id",
                        f"subscription {subscription_id!r} is not declared and auto-registration is off",
                    )
                await _lock(conn, schema, "registry")
                sub = await _load(conn, schema, subscription_id)
                if sub is None:
                    refusal = await self._over_the_limit(conn, subscription_id)
                    if refusal is not None:
                        return refusal
                    first = records[0] if records else None  # a subscription a label names first has no fields
                    sub = await create_subscription(
                        conn,
                        schema,
                        subscription_id,
                        self._wanted([first], None) if first else (),
                        deployment_id=first.deployment_id if first else None,
                        asset_revision=first.asset_revision if first else None,
                        evolve=True,
                        auto_registered=True,
                    )
            if sub.evolve and records:
                await _lock(conn, schema, "table", sub.table)
                sub = await _load(conn, schema, subscription_id) or sub
                wanted = self._wanted(records, sub)
                if wanted:
                    sub = await _add_fields(conn, sub, wanted)
        self._subs[subscription_id] = sub
        self._covered.pop(subscription_id, None)
        return sub

    async def ensure(self, conn: asyncpg.Connection, subscription_id: str) -> Subscription | RecordError:
        """The subscription, loaded, or registered without fields when the datamart lacks it (a label may name a
        subscription before any of its payload); RecordError as :meth:`prepare` gives. Call outside a transaction."""
        sub = self._subs.get(subscription_id)
        if sub is not None:
            return sub
        refused = await self._refused_at_the_limit(conn, [subscription_id])
        if refused:
            return refused[subscription_id]
        refuse_in_transaction(conn, "Registry.ensure")
        return await self._sync(conn, subscription_id, ())

    async def ready_for_feedback(
        self, conn: asyncpg.Connection, sub: Subscription, target: tuple[str, str] | None = None
    ) -> Subscription:
        """Make ``sub``'s feedback table (and labelled view) if need be, first giving it the target ``target`` (name
        and type, from its first labels) unless it has one (declared, or given by another worker first): the
        subscription as the datamart then has it. Re-read under the table's lock, so the table gets every column."""
        async with conn.transaction():
            await _lock(conn, self.schema, "table", sub.table)
            sub = await _load(conn, self.schema, sub.subscription_id) or sub
            if sub.target is None and target is not None:
                sub = await _add_fields(conn, sub, [(target[0], TARGET, target[1])])
            if sub.target is not None:
                await create_feedback_table(conn, sub)
        self._subs[sub.subscription_id] = sub
        self._covered.pop(sub.subscription_id, None)
        return sub

    async def _auto_registered(self, conn: asyncpg.Connection) -> int:
        count: int = await conn.fetchval(
            f"SELECT count(*) FROM {quote_ident(self.schema)}.subscriptions WHERE auto_registered"
        )
        return count

    def _limit_error(self, subscription_id: str, count: int) -> RecordError:
        return RecordError(
            "subscription_limit",
            "subscription_id",
            f"subscription {_show_id(subscription_id)} is new and the datamart already has {count} auto-registered "
            f"subscriptions, the limit (--max-subscriptions, STREAM_LOGGER_MAX_SUBSCRIPTIONS is "
            f"{self.max_auto_registered}): declare it with 'stream-logger subscription add', or raise the limit",
        )

    async def _over_the_limit(self, conn: asyncpg.Connection, subscription_id: str) -> RecordError | None:
        """RecordError(subscription_limit) when registering one more subscription would pass the limit. Caller holds
        the registry lock."""
        if self.max_auto_registered is None:
            return None
        count = await self._auto_registered(conn)
        return self._limit_error(subscription_id, count) if count >= self.max_auto_registered else None

    async def _refused_at_the_limit(
        self, conn: asyncpg.Connection, ids: Sequence[str]
    ) -> dict[str, Subscription | RecordError]:
        """Once the limit is reached, the refusals of the ids among ``ids`` that the datamart lacks, in two queries
        whatever their number (a stream of new ids must not cost a lock and four round trips each). The limit is
        still checked under the lock for every subscription actually registered."""
        if not ids or not self.auto_register or self.max_auto_registered is None:
            return {}
        count = await self._auto_registered(conn)
        if count < self.max_auto_registered:
            return {}
        existing = {
            r[0]
            for r in await conn.fetch(
                f"SELECT subscription_id FROM {quote_ident(self.schema)}.subscriptions "
                "WHERE subscription_id = ANY($1::text[])",
                list(ids),
            )
        }
        return {i: self._limit_error(i, count) for i in ids if i not in existing}

    async def ensure_partitions(self, conn: asyncpg.Connection, sub: Subscription, days: Iterable[date]) -> None:
        """Create the daily (UTC) partitions of ``sub``'s table for ``days`` that do not exist yet."""
        missing = sorted({d for d in days if (sub.table, d) not in self._partitions})
        if not missing:
            return
        refuse_in_transaction(conn, "Registry.ensure_partitions")
        await create_partitions(conn, sub, missing)
        self._partitions.update((sub.table, d) for d in missing)

    def forget(self, subscription_id: str | None = None) -> None:
        """Drop cached state (all of it, or one subscription's), e.g. after the datamart was recreated."""
        if subscription_id is None:
            self._subs.clear()
            self._covered.clear()
            self._partitions.clear()
        else:
            sub = self._subs.pop(subscription_id, None)
            self._covered.pop(subscription_id, None)
            if sub is not None:
                self._partitions = {p for p in self._partitions if p[0] != sub.table}


async def create_partitions(conn: asyncpg.Connection, sub: Subscription, days: Iterable[date]) -> None:
    """``CREATE TABLE IF NOT EXISTS`` the daily partitions of ``sub``'s table, under the table's lock.

    Raises :class:`~stream_logger.errors.DatamartError` when a partition's name is held by a relation that is not
    a partition of that table (a table made by hand, or by a stream-logger older than the system suffixes of
    :mod:`stream_logger.identifiers`): its rows would otherwise find no partition.
    """
    q_schema = quote_ident(sub.schema)
    q_parent = f"{q_schema}.{quote_ident(sub.table)}"
    names = []
    async with conn.transaction():
        await _lock(conn, sub.schema, "table", sub.table)
        for day in days:
            name = partition_name_for(sub.table, day.isoformat().replace("-", ""))  # strftime does not pad years < 1000
            upper = "MAXVALUE" if day == date.max else f"'{(day + timedelta(days=1)).isoformat()} 00:00:00+00'"
            await conn.execute(
                f"CREATE TABLE IF NOT EXISTS {q_schema}.{quote_ident(name)} PARTITION OF {q_parent} "
                f"FOR VALUES FROM ('{day.isoformat()} 00:00:00+00') TO ({upper})"
            )
            names.append(name)
        strangers = await conn.fetch(
            "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = $1 AND c.relname = ANY($2::text[]) AND NOT EXISTS ("
            "SELECT 1 FROM pg_inherits i WHERE i.inhrelid = c.oid AND i.inhparent = $3::regclass)",
            sub.schema,
            names,
            q_parent,
        )
    if strangers:
        raise DatamartError(
            f"subscription {sub.subscription_id!r}: {strangers[0]['relname']!r} is not a partition of "
            f"{sub.table!r}, so its rows for that day cannot be stored; rename that relation"
        )


async def declare(conn: asyncpg.Connection, schema: str, spec: dict[str, Any]) -> Subscription:
    """Declare a subscription (the format of ``subscription.json``, see ``examples/``), or add fields to one.

    ``{"subscription_id": "...", "deployment_id": "...", "asset_revision": "...", "evolve": true, "fields":
    [{"name": "Age", "type": "integer", "role": "feature"}, ...]}``. Types: integer, float, text, boolean,
    float_array, json (or their SQL names); roles: feature, meta, prediction, probability, response. Declaring
    again adds the new fields; a field already there must keep its role and type.
    """
    validate_schema_name(schema)
    subscription_id, wanted, options = parse_spec(spec)
    refuse_in_transaction(conn, "declare")
    async with conn.transaction():
        await _lock(conn, schema, "registry")
        sub = await _load(conn, schema, subscription_id)
        if sub is None:
            return await create_subscription(conn, schema, subscription_id, wanted, auto_registered=False, **options)
        for name, role, type_ in wanted:
            have = sub.target if role == TARGET else sub.field_for(Field(name, "", role, type_).source, name)
            if role == TARGET and have is not None and (have.name, have.type) != (name, type_):
                raise SubscriptionError(
                    f"subscription {subscription_id!r}: the target is already {have.name!r} {have.type}; "
                    f"it cannot become {name!r} {type_}"
                )
            if have is not None and (have.role, have.type) != (role, type_):
                raise SubscriptionError(
                    f"subscription {subscription_id!r}: field {name!r} is already {have.role} {have.type}; "
                    f"it cannot become {role} {type_} (evolution only adds fields)"
                )
        await _lock(conn, schema, "table", sub.table)
        sub = await _add_fields(conn, sub, wanted)
        await conn.execute(
            f"UPDATE {quote_ident(schema)}.subscriptions SET evolve = $2, "
            "deployment_id = coalesce($3, deployment_id), asset_revision = coalesce($4, asset_revision), "
            "updated_at = now() WHERE subscription_id = $1",
            subscription_id,
            options["evolve"],
            options["deployment_id"],
            options["asset_revision"],
        )
        return await _load(conn, schema, subscription_id) or sub
