"""Safe SQL identifiers from names that users and records supply. Pure functions, no I/O.

Nothing user-supplied is ever spliced into SQL unquoted. The rules:

- **Schema names** are chosen by an operator, so they are validated strictly (:func:`validate_schema_name`) and
  rejected with a clear message rather than rewritten.
- **Field names and subscription ids** come from records, so they are *mapped* to readable, safe identifiers
  (:func:`column_name_for`, :func:`table_name_for`) and the mapping is stored in the ``subscriptions`` table. The
  mapping always succeeds: camelCase becomes snake_case, everything is lowercased, every character outside
  ``[a-z0-9]`` becomes ``_`` (accents are dropped first, so ``Größe`` -> ``gro_e``), a leading digit or an empty
  result gets a prefix, reserved words and the payload table's own columns are avoided, names that collide
  (``Age`` and ``age``) get a numeric suffix, and a name over PostgreSQL's 63-byte limit
  is cut with a short hash of the original so two long names stay distinct.
- **Names the datamart derives from a payload table's name** (its primary key ``<table>_pkey``, its index
  ``<table>_ts_idx``, its daily partitions ``<table>_pYYYYMMDD``) end in a *system suffix*
  (:data:`SYSTEM_SUFFIX`), and a payload table's own name never does (:func:`table_name_for` adds ``_t`` to a
  subscription whose name would). So a subscription named ``credit_pkey`` or ``credit_p20251129`` can never take
  a name that subscription ``credit`` needs: the two namespaces are disjoint by construction.
- Every identifier is still double-quoted by :func:`quote_ident` when it goes into SQL.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from collections.abc import Callable, Mapping
from collections.abc import Set as AbstractSet
from types import MappingProxyType
from typing import Final

from .errors import IdentifierError

__all__ = [
    "FEEDBACK_SYSTEM_COLUMNS",
    "FEEDBACK_SYSTEM_COLUMN_DEFINITIONS",
    "MAX_IDENTIFIER_BYTES",
    "MAX_TABLE_NAME_BYTES",
    "RESERVED_WORDS",
    "SYSTEM_COLUMNS",
    "SYSTEM_COLUMN_DEFINITIONS",
    "SYSTEM_SUFFIX",
    "column_name_for",
    "column_type",
    "columns_sql",
    "derived_names",
    "feedback_names_for",
    "partition_name_for",
    "quote_ident",
    "table_name_for",
    "validate_schema_name",
]

MAX_IDENTIFIER_BYTES: Final = 63
"""PostgreSQL's NAMEDATALEN - 1: longer identifiers are silently truncated by the server, so we never send one."""

PARTITION_SUFFIX_BYTES: Final = len("_p20240101")
MAX_TABLE_NAME_BYTES: Final = MAX_IDENTIFIER_BYTES - PARTITION_SUFFIX_BYTES
"""A payload table's name leaves room for its daily partitions' ``_pYYYYMMDD`` suffix."""

TABLE_PREFIX: Final = "payload_"
FEEDBACK_PREFIX: Final = "feedback_"
LABELLED_PREFIX: Final = "labelled_"

SYSTEM_SUFFIX: Final = re.compile(r"_(?:p[0-9]{8}|pkey|ts_idx|idx|key)\Z")
"""How every name derived from a payload table's name ends (and a payload table's name never does): its daily
partitions, its primary key and index, and the names PostgreSQL gives the partitions' own indexes."""

_NOT_SYSTEM: Final = "_t"

SYSTEM_COLUMN_DEFINITIONS: Final[Mapping[str, str]] = MappingProxyType(
    {
        "scoring_id": "text NOT NULL",
        "row_index": "integer NOT NULL",
        "scoring_timestamp": "timestamptz NOT NULL",
        "deployment_id": "text",
        "asset_revision": "text",
        "response_time_ms": "double precision",
        "status_code": "integer",
        "error": "text",
        "user_id": "text",
        "request_id": "text",
        "trace_id": "text",
        "sampling_rate": "double precision",
        "tags": "jsonb",
        "extra": "jsonb",
        "src_topic": "text",
        "src_partition": "integer",
        "src_offset": "bigint",
        "ingested_at": "timestamptz NOT NULL DEFAULT now()",
    }
)
"""The payload table's own columns and their SQL definitions, in COPY order: a row's key, then the record's
``deployment_id`` and optional fields (``contract.OPTIONAL_FIELDS``, in their order, stored as they are), the values
of undeclared fields (``extra``), where the message came from and when it was written. The declared fields' columns
follow them."""

SYSTEM_COLUMNS: Final[tuple[str, ...]] = tuple(SYSTEM_COLUMN_DEFINITIONS)
"""The payload table's own columns, in COPY order."""

FEEDBACK_SYSTEM_COLUMN_DEFINITIONS: Final[Mapping[str, str]] = MappingProxyType(
    {
        "feedback_id": "text NOT NULL",
        "feedback_row": "integer NOT NULL",
        "scoring_id": "text",
        "row_index": "integer",
        "labelled_at": "timestamptz NOT NULL",
        "user_id": "text",
        "extra": "jsonb",
        "src_topic": "text",
        "src_partition": "integer",
        "src_offset": "bigint",
        "ingested_at": "timestamptz NOT NULL DEFAULT now()",
    }
)
"""The feedback table's own columns and their SQL definitions, in COPY order; the target's column, then the
payload fields' columns follow. ``scoring_id`` and ``row_index`` name the labelled payload row (by reference);
``feedback_row`` is the row of the feedback record (standalone rows)."""

FEEDBACK_SYSTEM_COLUMNS: Final[tuple[str, ...]] = tuple(FEEDBACK_SYSTEM_COLUMN_DEFINITIONS)
"""The feedback table's own columns, in COPY order."""


def column_type(definition: str) -> str:
    """The SQL type of a column definition such as ``"text NOT NULL"``: ``"text"``."""
    return definition.partition(" NOT NULL")[0]


def columns_sql(definitions: Mapping[str, str]) -> str:
    """The columns of a ``CREATE TABLE``, one a line (quoted names), from a mapping of names to definitions."""
    return ",\n    ".join(f"{quote_ident(name)} {definition}" for name, definition in definitions.items())


# PostgreSQL's own hidden columns of every table: a user column cannot take these names.
_PG_SYSTEM_COLUMNS: Final = frozenset({"oid", "tableoid", "xmin", "cmin", "xmax", "cmax", "ctid"})

RESERVED_WORDS: Final = frozenset(
    """all analyse analyze and any array as asc asymmetric authorization binary both case cast check collate collation
    column concurrently constraint create cross current_catalog current_date current_role current_schema current_time
    current_timestamp current_user default deferrable desc distinct do else end except false fetch for foreign freeze
    from full grant group having ilike in initially inner intersect into is isnull join lateral leading left like limit
    localtime localtimestamp natural not notnull null offset on only or order outer overlaps placing primary
    references returning right select session_user similar some symmetric table tablesample then to trailing true
    union unique user using variadic verbose when where window with""".split()  # noqa: SIM905
)
"""PostgreSQL's reserved key words (``pg_get_keywords()`` categories R and T): never used as a column name, so a
monitor's hand-written SQL needs no quotes."""

_FORBIDDEN_COLUMNS: Final = (
    frozenset(SYSTEM_COLUMNS) | frozenset(FEEDBACK_SYSTEM_COLUMNS) | _PG_SYSTEM_COLUMNS | RESERVED_WORDS
)

_SCHEMA_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
_CAMEL_1 = re.compile(r"([a-z0-9])([A-Z])")
_CAMEL_2 = re.compile(r"([A-Z]+)([A-Z][a-z])")
_NOT_ALNUM = re.compile(r"[^a-z0-9]+")
_HASH_CHARS: Final = 8


def validate_schema_name(name: str) -> str:
    """Return ``name`` if it is a plain lowercase identifier fit for a datamart schema, else raise IdentifierError.

    Accepted: ``^[a-z_][a-z0-9_]{0,62}$`` and not starting with ``pg_`` (reserved by PostgreSQL).
    """
    if not isinstance(name, str) or not _SCHEMA_NAME.match(name):
        raise IdentifierError(
            f"invalid schema name {name!r}: use 1 to 63 characters among lowercase letters, digits and '_', "
            "not starting with a digit"
        )
    if name.startswith("pg_"):
        raise IdentifierError(f"invalid schema name {name!r}: names starting with 'pg_' are reserved by PostgreSQL")
    return name


def quote_ident(name: str) -> str:
    """``name`` as a double-quoted SQL identifier (embedded quotes doubled).

    Raises IdentifierError for an empty name, a NUL character, or more than 63 bytes (which PostgreSQL would
    silently truncate, making two names one).
    """
    if not name or "\x00" in name:
        raise IdentifierError(f"invalid identifier {name!r}: empty or contains a NUL character")
    if len(name.encode("utf-8")) > MAX_IDENTIFIER_BYTES:
        raise IdentifierError(f"invalid identifier {name[:80]!r}...: longer than {MAX_IDENTIFIER_BYTES} bytes")
    return '"' + name.replace('"', '""') + '"'


def _short_hash(text: str) -> str:
    return hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=8).hexdigest()[:_HASH_CHARS]


def _slug(text: str) -> str:
    """snake_case, ASCII lowercase letters, digits and single underscores; may be empty."""
    text = _CAMEL_2.sub(r"\1_\2", _CAMEL_1.sub(r"\1_\2", text))
    text = unicodedata.normalize("NFKD", text)
    text = "".join(ch for ch in text if not unicodedata.combining(ch)).lower()
    return _NOT_ALNUM.sub("_", text).strip("_")


def _fit(base: str, original: str, limit: int) -> str:
    """``base`` cut to ``limit`` bytes (it is ASCII), with a hash of ``original`` when anything was cut."""
    if len(base) <= limit:
        return base
    return base[: limit - _HASH_CHARS - 1].rstrip("_") + "_" + _short_hash(original)


def _unique(base: str, taken: Callable[[str], bool], limit: int) -> str:
    """``base``, or ``base_2``, ``base_3``, ... (kept within ``limit`` bytes): the first that is not ``taken``."""
    if not taken(base):
        return base
    n = 2
    while True:
        suffix = f"_{n}"
        candidate = base[: limit - len(suffix)].rstrip("_") + suffix
        if not taken(candidate):
            return candidate
        n += 1


def column_name_for(field: str, taken: set[str]) -> str:
    """A readable, safe column name for ``field`` that is not in ``taken`` (``taken`` is not modified).

    Always succeeds. Never a reserved word, never one of the payload or feedback table's own columns
    (:data:`SYSTEM_COLUMNS`, :data:`FEEDBACK_SYSTEM_COLUMNS`), at most 63 bytes. ``LoanAmount`` -> ``loan_amount``;
    ``2nd score`` -> ``f_2nd_score``; ``select`` -> ``select_``; ``scoring_id`` -> ``scoring_id_2``; a second ``Age``
    after ``age`` -> ``age_2``.
    """
    base = _slug(field)
    if not base:
        base = "field"
    elif base[0].isdigit():
        base = "f_" + base
    if base in RESERVED_WORDS or base in _PG_SYSTEM_COLUMNS:
        base += "_"
    base = _fit(base, field, MAX_IDENTIFIER_BYTES)
    return _unique(base, lambda name: name in taken or name in _FORBIDDEN_COLUMNS, MAX_IDENTIFIER_BYTES)


def feedback_names_for(payload_table: str) -> tuple[str, str]:
    """The feedback table and the labelled view of the subscription whose payload table is ``payload_table``:
    ``payload_<x>`` gives ``feedback_<x>`` and ``labelled_<x>`` (unique as the payload table's name is, and never a
    payload table's, whose names all start ``payload_``)."""
    stem = payload_table.removeprefix(TABLE_PREFIX)
    return FEEDBACK_PREFIX + stem, LABELLED_PREFIX + stem


def table_name_for(subscription_id: str, taken: AbstractSet[str]) -> str:
    """A payload table name ``payload_<slug>`` for a subscription such that neither it nor any name derived from it
    (:func:`derived_names`) is in ``taken`` (which is not modified).

    Short enough (at most :data:`MAX_TABLE_NAME_BYTES`) that its daily partitions ``<table>_pYYYYMMDD`` fit in
    PostgreSQL's 63 bytes; never ending in a :data:`SYSTEM_SUFFIX` (``credit_pkey`` -> ``payload_credit_pkey_t``).
    """
    slug = _slug(subscription_id) or "subscription"
    base = _fit(TABLE_PREFIX + slug, subscription_id, MAX_TABLE_NAME_BYTES)
    if SYSTEM_SUFFIX.search(base):  # "_t" ends it instead, or, when that is cut, a hash (whose hex is no suffix)
        base = _fit(base + _NOT_SYSTEM, subscription_id, MAX_TABLE_NAME_BYTES)

    def unavailable(name: str) -> bool:  # names from _unique end in "_<n>": no system suffix either
        return name in taken or not taken.isdisjoint(derived_names(name))

    return _unique(base, unavailable, MAX_TABLE_NAME_BYTES)


def derived_names(table: str) -> tuple[str, str]:
    """The names a payload table's creation takes besides its own: its primary key and its timestamp index."""
    return f"{table}_pkey", f"{table}_ts_idx"


def partition_name_for(table: str, day_yyyymmdd: str) -> str:
    """The daily partition of ``table`` for a UTC day given as ``YYYYMMDD``."""
    if len(day_yyyymmdd) != 8 or not day_yyyymmdd.isdigit():
        raise IdentifierError(f"invalid partition day {day_yyyymmdd!r}: expected YYYYMMDD")
    return f"{table}_p{day_yyyymmdd}"
