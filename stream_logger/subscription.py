"""A subscription: a monitored deployment, its payload table, and which field of a record goes to which column.

:func:`parse_spec` reads a declaration (``subscription.json``). The registry (:mod:`stream_logger.registry`) loads
and declares subscriptions in the datamart; :mod:`stream_logger.rows` turns a record into the rows of a
subscription's table. No I/O here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Final

from .contract import MAX_NAME_CHARS, Layout
from .errors import SubscriptionError
from .identifiers import SYSTEM_COLUMNS, quote_ident

__all__ = [
    "ROLES",
    "SOURCES",
    "SQL_TYPES",
    "TARGET",
    "TYPE_ALIASES",
    "Field",
    "Source",
    "Subscription",
    "parse_spec",
    "role_source",
]

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

ROLES: Final = ("feature", "meta", "prediction", "probability", "response", "target")
"""What a field is. ``feature`` comes from ``request``, ``meta`` from ``request.meta``, ``target`` (the ground
truth, at most one a subscription) from feedback records, the rest from ``response``."""

TARGET: Final = "target"

SOURCES: Final = ("request", "meta", "response")


def role_source(role: str) -> str:
    """Which block of the record a field with this role is read from: request, meta or response (``target``
    for the target, which feedback records carry)."""
    if role in ("feature", "meta", TARGET):
        return "request" if role == "feature" else role
    return "response"


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

    @property
    def column_sql(self) -> str:
        """The column's definition: its quoted name and SQL type."""
        return f"{quote_ident(self.column)} {SQL_TYPES[self.type]}"


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
    target: Field | None = None
    """The ground truth's field (role ``target``): a column of the feedback table, never of the payload table."""
    columns: tuple[str, ...] = field(init=False)
    """The COPY column order (unquoted identifiers): the system columns, then one per declared field."""
    plans: dict[Layout, Any] = field(init=False, repr=False, compare=False, default_factory=dict)
    """Row plans by field layout, made and kept by :mod:`stream_logger.rows` (at most a few hundred)."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "columns", SYSTEM_COLUMNS + tuple(f.column for f in self.fields))

    @property
    def stored_fields(self) -> tuple[Field, ...]:
        """What ``subscriptions.fields`` holds: the payload fields, then the target."""
        return self.fields if self.target is None else (*self.fields, self.target)

    def field_of(self, name: str, roles: tuple[str, ...]) -> Field | None:
        """The field ``name`` of the first of ``roles`` that has one (a name may be a feature and a response)."""
        for role in roles:
            for f in self.fields:
                if f.name == name and f.role == role:
                    return f
        return None

    def field_for(self, source: str, name: str) -> Field | None:
        """The declared field ``name`` of block ``source`` (request, meta, response), if any."""
        for f in self.fields:
            if f.name == name and f.source == source:
                return f
        return None


_SPEC_KEYS: Final = frozenset({"subscription_id", "deployment_id", "asset_revision", "evolve", "fields"})
_FIELD_KEYS: Final = frozenset({"name", "type", "role"})


def _spec_error(where: str, message: str) -> SubscriptionError:
    return SubscriptionError(f"subscription declaration: {where}: {message}")


def _check_name(value: Any, where: str) -> str:
    if not isinstance(value, str) or not value or len(value) > MAX_NAME_CHARS or "\x00" in value:
        raise _spec_error(where, f"expected a non-empty string of at most {MAX_NAME_CHARS} characters, no NUL")
    return value


def parse_spec(spec: Any) -> tuple[str, list[tuple[str, str, str]], dict[str, Any]]:
    """Validate a declaration; returns (subscription_id, [(name, role, type)], {deployment_id, asset_revision,
    evolve}). Raises SubscriptionError saying what is wrong and where."""
    if not isinstance(spec, dict):
        raise _spec_error("top level", "expected a JSON object")
    unknown = set(spec) - _SPEC_KEYS
    if unknown:
        raise _spec_error("top level", f"unknown keys {sorted(unknown)}; allowed: {sorted(_SPEC_KEYS)}")
    subscription_id = _check_name(spec.get("subscription_id"), "subscription_id")
    options: dict[str, Any] = {"deployment_id": None, "asset_revision": None, "evolve": True}
    for option in ("deployment_id", "asset_revision"):
        if spec.get(option) is not None:
            options[option] = _check_name(spec[option], option)
    if "evolve" in spec:
        if not isinstance(spec["evolve"], bool):
            raise _spec_error("evolve", "expected true or false")
        options["evolve"] = spec["evolve"]
    fields = spec.get("fields")
    if not isinstance(fields, list) or not fields:
        raise _spec_error("fields", "expected a non-empty list of {name, type, role} objects")
    wanted: list[tuple[str, str, str]] = []
    seen: set[tuple[str, str]] = set()
    for i, f in enumerate(fields):
        where = f"fields[{i}]"
        if not isinstance(f, dict):
            raise _spec_error(where, "expected an object with name, type and role")
        if set(f) - _FIELD_KEYS:
            raise _spec_error(where, f"unknown keys {sorted(set(f) - _FIELD_KEYS)}; allowed: name, type, role")
        name = _check_name(f.get("name"), f"{where}.name")
        type_name = f.get("type")
        if not isinstance(type_name, str) or type_name.lower() not in TYPE_ALIASES:
            raise _spec_error(f"{where}.type", f"unknown type {type_name!r}; use one of {sorted(TYPE_ALIASES)}")
        role = f.get("role", "feature")
        if role not in ROLES:
            raise _spec_error(f"{where}.role", f"unknown role {role!r}; use one of {list(ROLES)}")
        key = (Field(name, "", role, "").source, "" if role == TARGET else name)  # one target at most
        if key in seen:
            if role == TARGET:
                raise _spec_error(f"{where}.role", "a subscription has one target field; this is a second")
            raise _spec_error(f"{where}.name", f"field {name!r} is declared twice in the {key[0]} block")
        seen.add(key)
        wanted.append((name, role, TYPE_ALIASES[type_name.lower()]))
    return subscription_id, wanted, options
