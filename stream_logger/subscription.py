"""A subscription: a monitored deployment, its payload table, and which field of a record goes to which column.

The registry (:mod:`stream_logger.registry`) loads and declares subscriptions in the datamart; :mod:`stream_logger.rows`
turns a record into the rows of a subscription's table. No I/O here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Final

from .contract import Layout
from .identifiers import SYSTEM_COLUMNS

__all__ = ["ROLES", "SOURCES", "SQL_TYPES", "TYPE_ALIASES", "Field", "Source", "Subscription", "role_source"]

SQL_TYPES: Final = {
    "bigint": "bigint",
    "float8": "double precision",
    "text": "text",
    "boolean": "boolean",
    "float8[]": "double precision[]",
    "jsonb": "jsonb",
}
"""Field type (as stored in ``subscriptions.fields``) -> the column's SQL type."""

TYPE_ALIASES: Final = {
    "integer": "bigint",
    "int": "bigint",
    "int8": "bigint",
    "bigint": "bigint",
    "float": "float8",
    "double": "float8",
    "double precision": "float8",
    "number": "float8",
    "float8": "float8",
    "text": "text",
    "string": "text",
    "boolean": "boolean",
    "bool": "boolean",
    "float_array": "float8[]",
    "array": "float8[]",
    "float8[]": "float8[]",
    "double precision[]": "float8[]",
    "json": "jsonb",
    "jsonb": "jsonb",
}
"""Type names accepted in a subscription declaration."""

ROLES: Final = ("feature", "meta", "prediction", "probability", "response")
"""What a field is. ``feature`` comes from ``request``, ``meta`` from ``request.meta``, the rest from
``response``."""

SOURCES: Final = ("request", "meta", "response")


def role_source(role: str) -> str:
    """Which block of the record a field with this role is read from: request, meta or response."""
    return "request" if role == "feature" else "meta" if role == "meta" else "response"


@dataclass(frozen=True, slots=True)
class Source:
    """Where a record was read from."""

    topic: str
    partition: int
    offset: int


@dataclass(frozen=True, slots=True)
class Field:
    """A declared field: the record's field ``name``, its ``column``, its ``role`` and its type (a SQL_TYPES key)."""

    name: str
    column: str
    role: str
    type: str

    @property
    def source(self) -> str:
        return role_source(self.role)

    def as_json(self) -> dict[str, str]:
        return {"name": self.name, "column": self.column, "role": self.role, "type": self.type}


@dataclass(frozen=True)
class Subscription:
    """A monitored deployment: its payload table in ``schema`` and the mapping of record fields to columns."""

    subscription_id: str
    schema: str
    table: str
    fields: tuple[Field, ...]
    deployment_id: str | None = None
    asset_revision: str | None = None
    evolve: bool = True
    auto_registered: bool = False
    columns: tuple[str, ...] = field(init=False)
    """The COPY column order (unquoted identifiers): the system columns, then one per declared field."""
    plans: dict[Layout, Any] = field(init=False, repr=False, compare=False, default_factory=dict)
    """Row plans by field layout, made and kept by :mod:`stream_logger.rows` (at most a few hundred)."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "columns", SYSTEM_COLUMNS + tuple(f.column for f in self.fields))

    def field_for(self, source: str, name: str) -> Field | None:
        """The declared field ``name`` of block ``source`` (request, meta, response), if any."""
        for f in self.fields:
            if f.name == name and f.source == source:
                return f
        return None
