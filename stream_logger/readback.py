"""Reading the datamart back, for notebooks: a subscription's payload rows, its labels (feedback), its labelled
payload rows, the monitors' measurements and the dead letters, as plain rows or pandas DataFrames, within time
bounds and a limit.

Payload columns are named as the record's fields (``LoanAmount``, not the column ``loan_amount``), as OpenScale's
``get_table_content`` shows them; a name used in two blocks keeps the second as ``<block>.<name>`` (``meta.id``).
The system columns keep their names (``scoring_id``, ``scoring_timestamp``, ...). Rows come newest first.

:class:`Datamart` is the synchronous face a notebook wants: it works with or without a running event loop (Jupyter
runs one), each call on a connection of its own. pandas is optional (``pip install 'stream-logger[pandas]'``).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, Literal, TypeVar

import asyncpg
import orjson

from .config import Settings
from .datamart import connect
from .errors import StreamLoggerError, SubscriptionError
from .feedback_tables import feedback_columns, feedback_table_exists
from .identifiers import FEEDBACK_SYSTEM_COLUMNS, SYSTEM_COLUMNS, feedback_names_for, quote_ident, validate_schema_name
from .registry import list_subscriptions
from .subscription import Field, Subscription
from .sync import run_sync

__all__ = [
    "Datamart",
    "dead_letter_rows",
    "feedback_rows",
    "labelled_rows",
    "measurement_rows",
    "payload_rows",
    "to_frame",
]

_T = TypeVar("_T")
Format = Literal["pandas", "records"]

_DEAD_LETTER_COLUMNS = ("topic", "partition", "offset", "error_code", "detail", "subscription_id", "failed_at", "value")


async def payload_rows(
    conn: asyncpg.Connection,
    schema: str,
    subscription_id: str,
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    limit: int | None = 1000,
) -> list[dict[str, Any]]:
    """The subscription's payload rows with ``since <= scoring_timestamp < until``, newest first, at most ``limit``
    (None: all). Raises :class:`SubscriptionError` for an unknown subscription."""
    sub = await _subscription(conn, schema, subscription_id)
    columns = [*SYSTEM_COLUMNS, *(f.column for f in sub.fields)]
    labels = [*SYSTEM_COLUMNS, *_field_names(sub.fields, SYSTEM_COLUMNS)]
    return await _select(conn, schema, sub.table, columns, labels, _PAYLOAD_ORDER, since, until, limit)


async def feedback_rows(
    conn: asyncpg.Connection,
    schema: str,
    subscription_id: str,
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    limit: int | None = 1000,
) -> list[dict[str, Any]]:
    """The subscription's labels with ``since <= labelled_at < until``, newest first, at most ``limit``: the feedback
    table's own columns, the target (named as its field) and the payload fields (standalone rows fill them). No
    rows while the subscription has no labels yet."""
    sub = await _subscription(conn, schema, subscription_id)
    if sub.target is None or not await feedback_table_exists(conn, sub):
        return []
    labels = [*FEEDBACK_SYSTEM_COLUMNS, *_field_names([sub.target, *sub.fields], FEEDBACK_SYSTEM_COLUMNS)]
    table, _ = feedback_names_for(sub.table)
    return await _select(conn, schema, table, feedback_columns(sub), labels, _FEEDBACK_ORDER, since, until, limit)


async def labelled_rows(
    conn: asyncpg.Connection,
    schema: str,
    subscription_id: str,
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    limit: int | None = 1000,
) -> list[dict[str, Any]]:
    """The subscription's labelled payload rows (its ``labelled_`` view) with ``since <= scoring_timestamp <
    until``, newest first, at most ``limit``: the payload row's columns, then its latest label (named as the target
    field) and ``labelled_at``."""
    sub = await _subscription(conn, schema, subscription_id)
    if sub.target is None or not await feedback_table_exists(conn, sub):
        return []
    columns = [*SYSTEM_COLUMNS, *(f.column for f in sub.fields), sub.target.column, "labelled_at"]
    names = _field_names([*sub.fields, sub.target], (*SYSTEM_COLUMNS, "labelled_at"))
    _, view = feedback_names_for(sub.table)
    labels = [*SYSTEM_COLUMNS, *names, "labelled_at"]
    return await _select(conn, schema, view, columns, labels, _PAYLOAD_ORDER, since, until, limit)


_PAYLOAD_ORDER = ("scoring_timestamp", "scoring_id, row_index")
_FEEDBACK_ORDER = ("labelled_at", "feedback_id, feedback_row")


async def _select(
    conn: asyncpg.Connection,
    schema: str,
    relation: str,
    columns: Sequence[str],
    labels: Sequence[str],
    order: tuple[str, str],
    since: datetime | None,
    until: datetime | None,
    limit: int | None,
) -> list[dict[str, Any]]:
    """``columns`` of ``relation`` as dicts keyed by ``labels``, with ``since <= time < until`` on ``order``'s time
    column, newest first (ties in ``order``'s other columns), at most ``limit``."""
    time_column, ties = order
    where, args = _time_bounds(time_column, since, until)
    query = (
        f"SELECT {', '.join(quote_ident(c) for c in columns)} FROM {quote_ident(schema)}.{quote_ident(relation)}"
        f"{where} ORDER BY {time_column} DESC, {ties}{_limit(limit, args)}"
    )
    return [dict(zip(labels, row.values(), strict=True)) for row in await conn.fetch(query, *args)]


_MEASUREMENT_COLUMNS = (
    "subscription_id",
    "monitor",
    "metric",
    "value",
    "state",
    "breached",
    "threshold_min",
    "threshold_max",
    "window_start",
    "window_end",
    "computed_at",
    "details",
)


async def measurement_rows(
    conn: asyncpg.Connection,
    schema: str,
    subscription_id: str | None = None,
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    limit: int | None = 1000,
) -> list[dict[str, Any]]:
    """The monitors' measurements (of one subscription, or all) with ``since <= window_end < until``, newest first,
    at most ``limit``; ``details`` as a dict."""
    validate_schema_name(schema)
    where, args = _time_bounds("window_end", since, until)
    if subscription_id is not None:
        args.append(subscription_id)
        where += (" AND " if where else " WHERE ") + f"subscription_id = ${len(args)}"
    columns = ", ".join(quote_ident(c) if c != "details" else "details::text AS details" for c in _MEASUREMENT_COLUMNS)
    query = (
        f"SELECT {columns} FROM {quote_ident(schema)}.measurements{where} "
        f"ORDER BY window_end DESC, subscription_id, monitor, metric{_limit(limit, args)}"
    )
    return [{**dict(row), "details": orjson.loads(row["details"])} for row in await conn.fetch(query, *args)]


async def dead_letter_rows(
    conn: asyncpg.Connection,
    schema: str,
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    limit: int | None = 1000,
) -> list[dict[str, Any]]:
    """The dead letters with ``since <= failed_at < until``, newest first, at most ``limit`` (None: all)."""
    validate_schema_name(schema)
    where, args = _time_bounds("failed_at", since, until)
    query = (
        f"SELECT {', '.join(quote_ident(c) for c in _DEAD_LETTER_COLUMNS)} FROM {quote_ident(schema)}.dead_letters"
        f'{where} ORDER BY failed_at DESC, topic, "partition", "offset"{_limit(limit, args)}'
    )
    return [dict(row) for row in await conn.fetch(query, *args)]


def to_frame(rows: Sequence[dict[str, Any]], columns: Sequence[str] | None = None) -> Any:
    """Rows as a pandas DataFrame (pandas is imported here, and only here)."""
    try:
        import pandas as pd
    except ImportError:
        raise StreamLoggerError(
            "reading the datamart as DataFrames needs pandas: pip install 'stream-logger[pandas]' "
            '(or pass format="records")'
        ) from None
    return pd.DataFrame.from_records(list(rows), columns=list(columns) if columns is not None and not rows else None)


class Datamart:
    """A datamart to read from a notebook or a script, without ``await``.

    ``dsn`` defaults to the settings' (``STREAM_LOGGER_DSN``, else the dev stack's).
    """

    def __init__(self, schema: str, dsn: str | None = None) -> None:
        validate_schema_name(schema)
        self.schema = schema
        self.dsn = dsn or Settings.from_env().dsn

    def payload(
        self,
        subscription_id: str,
        *,
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int | None = 1000,
        format: Format = "pandas",
    ) -> Any:
        """The payload rows of ``subscription_id`` (see :func:`payload_rows`), as a DataFrame or a list of dicts."""
        return self._subscription_rows(payload_rows, subscription_id, since, until, limit, format)

    def feedback(
        self,
        subscription_id: str,
        *,
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int | None = 1000,
        format: Format = "pandas",
    ) -> Any:
        """The labels of ``subscription_id`` (see :func:`feedback_rows`), as a DataFrame or a list of dicts."""
        return self._subscription_rows(feedback_rows, subscription_id, since, until, limit, format)

    def labelled(
        self,
        subscription_id: str,
        *,
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int | None = 1000,
        format: Format = "pandas",
    ) -> Any:
        """The labelled payload rows of ``subscription_id`` (see :func:`labelled_rows`), as a DataFrame or a list
        of dicts."""
        return self._subscription_rows(labelled_rows, subscription_id, since, until, limit, format)

    def _subscription_rows(
        self,
        reader: Any,
        subscription_id: str,
        since: datetime | None,
        until: datetime | None,
        limit: int | None,
        format: Format,
    ) -> Any:
        rows = self._run(lambda conn: reader(conn, self.schema, subscription_id, since=since, until=until, limit=limit))
        return rows if format == "records" else to_frame(rows)

    def measurements(
        self,
        subscription_id: str | None = None,
        *,
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int | None = 1000,
        format: Format = "pandas",
    ) -> Any:
        """The monitors' measurements (see :func:`measurement_rows`), as a DataFrame or a list of dicts."""
        rows = self._run(
            lambda conn: measurement_rows(conn, self.schema, subscription_id, since=since, until=until, limit=limit)
        )
        return rows if format == "records" else to_frame(rows, _MEASUREMENT_COLUMNS)

    def dead_letters(
        self,
        *,
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int | None = 1000,
        format: Format = "pandas",
    ) -> Any:
        """The dead letters (see :func:`dead_letter_rows`), as a DataFrame or a list of dicts."""
        rows = self._run(lambda conn: dead_letter_rows(conn, self.schema, since=since, until=until, limit=limit))
        return rows if format == "records" else to_frame(rows, _DEAD_LETTER_COLUMNS)

    def _run(self, read: Any) -> list[dict[str, Any]]:
        """``read(conn)`` on a connection of its own, from synchronous code, even inside a running event loop."""

        async def run() -> list[dict[str, Any]]:
            async with connect(self.dsn) as conn:
                result: list[dict[str, Any]] = await read(conn)
                return result

        return run_sync(run())


async def _subscription(conn: asyncpg.Connection, schema: str, subscription_id: str) -> Subscription:
    for sub in await list_subscriptions(conn, schema):
        if sub.subscription_id == subscription_id:
            return sub
    raise SubscriptionError(f"datamart {schema!r} has no subscription {subscription_id!r}")


def _field_names(fields: Sequence[Field], system: Sequence[str]) -> list[str]:
    """Each field's name, ``<block>.<name>`` for a name already taken (by a ``system`` column or a field)."""
    taken = set(system)
    names = []
    for f in fields:
        name = f.name if f.name not in taken else f"{f.source}.{f.name}"
        taken.add(name)
        names.append(name)
    return names


def _time_bounds(column: str, since: datetime | None, until: datetime | None) -> tuple[str, list[Any]]:
    clauses, args = [], []
    for value, operator in ((since, ">="), (until, "<")):
        if value is not None:
            if value.tzinfo is None:
                raise StreamLoggerError(f"{column} bounds need a timezone: {value.isoformat()} has none")
            args.append(value)
            clauses.append(f"{column} {operator} ${len(args)}")
    return (" WHERE " + " AND ".join(clauses) if clauses else ""), args


def _limit(limit: int | None, args: list[Any]) -> str:
    if limit is None:
        return ""
    if type(limit) is not int or limit < 0:
        raise StreamLoggerError(f"limit must be an integer >= 0 or None, not {limit!r}")
    args.append(limit)
    return f" LIMIT ${len(args)}"
