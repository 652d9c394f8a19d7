"""The fast path of the v1 contract: msgspec structs that check a record in C, shared by the emitter and the worker.

:class:`Envelope` declares, in msgspec's types, everything about a record outside its blocks' contents: types,
lengths, ranges. The worker decodes message bytes with it (:func:`decode_fast`, and the per-layout decoders of
:func:`shaped_decoder` behind :mod:`stream_logger.fast_rows`); the emitter converts the Python objects of a
``log()`` call with :data:`CallEnvelope`, derived from the same declaration (:mod:`stream_logger.scoring_call`).
Both then apply :func:`vouches_for`, the cross-field rules.

The fast path only ever *declines*: anything it does not accept, for any reason, goes to the reference validator
(:mod:`stream_logger.records`), which alone writes error messages. It never accepts a record the reference refuses,
and builds the same record when both accept (``tests/unit/test_fast_rows.py``). No I/O here.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Sequence
from datetime import datetime
from typing import Annotated, Any, Final, Literal

import msgspec
from msgspec import Meta

from .contract import (
    DEFAULT_DEPLOYMENT_ID,
    MAX_CALL_ROWS,
    MAX_FIELDS,
    MAX_NAME_CHARS,
    MAX_ROWS,
    MAX_SCORING_ID_CHARS,
    MAX_TAGS,
    NULLABLE_FIELDS,
    TIMESTAMP_PATTERN,
    Layout,
    ScoringRecord,
    Table,
)

__all__ = [
    "DECLINE_ERRORS",
    "KNOWN_NAMES",
    "MISREAD_MIN_DIGITS",
    "CallEnvelope",
    "Envelope",
    "FieldNames",
    "Int64",
    "KnownNames",
    "Rows",
    "Value",
    "call_envelope",
    "decode_fast",
    "envelope",
    "envelope_layout",
    "field_names",
    "logs_a_call",
    "nullable_values",
    "numbers_read_exactly",
    "plain_names",
    "rows_of",
    "shaped_decoder",
    "timestamp_of",
    "vouches_for",
    "with_defaults",
]


_TIMESTAMP: Final = re.compile(TIMESTAMP_PATTERN)

Int64 = Annotated[int, Meta(ge=-(2**63), le=2**63 - 1)]
"""A compiled-path integer (msgspec bounds stop at int64: an unsigned 64-bit value takes the reference path)."""
_Scalar = Int64 | float | str | bool | None
Value = _Scalar | list[_Scalar] | dict[str, _Scalar]
"""A value in a ``values`` row as the compiled path covers it: two levels at most, never deeper than MAX_VALUE_DEPTH."""
_Name = Annotated[str, Meta(min_length=1, max_length=MAX_NAME_CHARS)]
FieldNames = Annotated[list[_Name], Meta(min_length=1, max_length=MAX_FIELDS)]
"""A block's ``fields`` as the fast path checks them (distinct names, and no NUL, are checked apart)."""
Rows = Annotated[list[list[Value]], Meta(min_length=1, max_length=MAX_ROWS)]
"""A block's ``values`` as the fast path covers them (each row's length is checked apart)."""
_FIELDS: Final = msgspec.json.Decoder(FieldNames)
_ROWS: Final = msgspec.json.Decoder(Rows)


class RawTable(msgspec.Struct, forbid_unknown_fields=True):
    """A block whose ``fields`` and ``values`` are still JSON text (see :func:`field_names` and :func:`rows_of`)."""

    fields: msgspec.Raw
    values: msgspec.Raw


class RawRequest(msgspec.Struct, forbid_unknown_fields=True):
    fields: msgspec.Raw
    values: msgspec.Raw
    meta: RawTable | None = None


class Envelope(msgspec.Struct, forbid_unknown_fields=True):
    """A record checked in C except for its blocks' contents (left as JSON text) and the cross-field rules.

    ``scoring_timestamp`` is still text, and absent optional fields are None (no defaults filled in).
    """

    schema_version: Literal[1]
    scoring_id: Annotated[str, Meta(min_length=1, max_length=MAX_SCORING_ID_CHARS)]
    scoring_timestamp: str
    subscription_id: _Name
    request: RawRequest
    response: RawTable | None = None
    deployment_id: _Name | None = None
    asset_revision: _Name | None = None
    response_time_ms: Annotated[float, Meta(ge=0)] | None = None
    status_code: Annotated[int, Meta(ge=100, le=599)] | None = None
    error: Annotated[str, Meta(min_length=1)] | None = None
    sampling_rate: Annotated[float, Meta(gt=0, le=1)] | None = None
    user_id: _Name | None = None
    request_id: _Name | None = None
    trace_id: _Name | None = None
    tags: Annotated[dict[_Name, str], Meta(max_length=MAX_TAGS)] | None = None
    first_row: Annotated[int, Meta(ge=0, le=MAX_CALL_ROWS - 1)] | None = None


_ENVELOPE: Final = msgspec.json.Decoder(Envelope)


def _derived_envelope(name: str, types: dict[str, Any]) -> Any:
    """A struct with :class:`Envelope`'s fields, constraints and defaults, but the ``types`` given for some."""
    fields: list[Any] = []
    for f in msgspec.structs.fields(Envelope):
        kind = types.get(f.name, f.type)
        fields.append((f.name, kind) if f.required else (f.name, kind, f.default))
    return msgspec.defstruct(name, fields, forbid_unknown_fields=True, gc=False)


CallEnvelope: Final[Any] = _derived_envelope(
    "CallEnvelope", {"scoring_timestamp": datetime, "request": Any, "response": Any}
)
""":class:`Envelope` for the Python objects of a ``log()`` call (``msgspec.convert``): the same checks, on the
objects the emitter is about to write, but for the blocks, which the emitter checks itself (it wrote them)."""


def call_envelope(obj: dict[str, Any]) -> Any:
    """The :data:`CallEnvelope` of a record's JSON object as the emitter writes it, or None when it declines."""
    try:
        env = msgspec.convert(obj, CallEnvelope)
    except DECLINE_ERRORS:
        return None
    return env if vouches_for(env) else None


DECLINE_ERRORS: Final = (msgspec.ValidationError, msgspec.DecodeError, RecursionError)
"""What a compiled decoder raises when it declines a value (the reference validator then decides).

RecursionError too: msgspec spends a level of the interpreter's recursion limit on each level of JSON it reads,
even one it only skips (inside a ``msgspec.Raw`` block), so about 2 kB of brackets there exceed it. The reference
does not recurse in Python: orjson has a fixed depth limit of its own (``malformed_json`` past it), and the validator
refuses a shallower record for what it holds (``invalid_record``)."""


MISREAD_MIN_DIGITS: Final = 8192
"""The fewest digits in a row that make :func:`numbers_read_exactly` false: no shorter message is misread."""


def numbers_read_exactly(value: bytes) -> bool:
    """Whether msgspec reads every number in the message ``value`` as JSON means it; when not, the compiled paths
    decline ``value``.

    msgspec (0.23) reads at most five digits of an exponent, so that ``0.<9999 zeros>1e1000000``, which is too
    large for a float, decodes as ``1.0``, and ``0.<99999 zeros>1e100000`` (``1.0``) as ``0.0``. A sixth digit
    changes a finite result only after some 9,700 digits before it, so a message with 8,192 digits in a row is
    declined (no real record holds one). Such a run covers two offsets ``k`` and ``k + 4096`` where ``k`` is a
    multiple of 4096: only the bytes between those of such pairs that are both digits are looked at.
    """
    step = MISREAD_MIN_DIGITS // 2
    for k in range(0, len(value) - step, step):
        if 0x30 <= value[k] <= 0x39 and 0x30 <= value[k + step] <= 0x39 and value[k : k + step + 1].isdigit():
            return False
    return True


def shaped_decoder(subscription_id: str, layout: Layout, row_types: Sequence[Any]) -> msgspec.json.Decoder[Any]:
    """A decoder of whole records of one subscription and field layout, each block's rows typed by ``row_types``
    (one per block of ``layout``, None for an absent block): the compiled sink path, in one pass.

    It accepts a record only where :data:`Envelope` does, with exactly this subscription id and these field names
    (``layout`` must come from :func:`envelope_layout`), and rows of exactly these types. The caller still checks what
    a type cannot say: equal row counts across blocks, and :func:`logs_a_call`.
    """
    request_names, meta_names, response_names = layout
    request_rows, meta_rows, response_rows = row_types

    def block(name: str, names: tuple[str, ...] | None, row: Any, *extra: Any) -> Any:
        if names is None:
            return None
        fields: Any = tuple.__class_getitem__(tuple(Literal[n] for n in names))
        values = Annotated[list[row], Meta(min_length=1, max_length=MAX_ROWS)]
        return msgspec.defstruct(
            name, [("fields", fields), ("values", values), *extra], forbid_unknown_fields=True, gc=False
        )

    meta = block("Meta", meta_names, meta_rows)
    response = block("Response", response_names, response_rows)
    # A block of the layout is required; one it lacks must be absent or null.
    shaped: dict[str, tuple[Any, ...]] = {
        "subscription_id": (Literal[subscription_id],),
        "request": (block("Request", request_names, request_rows, ("meta", meta) if meta else ("meta", None, None)),),
        "response": (response,) if response else (None, None),
    }
    fields: list[Any] = []
    for f in msgspec.structs.fields(Envelope):
        spec = shaped.get(f.name) or ((f.type,) if f.required else (f.type, f.default))
        fields.append((f.name, *spec))
    # gc=False: a decoded record holds strings, numbers and lists, never itself; the collector need not scan it.
    return msgspec.json.Decoder(msgspec.defstruct("Shaped", fields, forbid_unknown_fields=True, gc=False))


def logs_a_call(env: Any) -> bool:
    """The cross-field rule on an envelope: a record without a response logs a failed call (an error or a status
    of 400 or more)."""
    return env.response is not None or env.error is not None or (env.status_code is not None and env.status_code >= 400)


def vouches_for(env: Any) -> bool:
    """The rules an envelope's types cannot say: a record without a response logs a failed call, and the
    subscription id is plain printable ASCII (the reference normalises any other, or refuses it)."""
    subscription_id = env.subscription_id
    return (
        (env.response is not None or logs_a_call(env)) and subscription_id.isascii() and subscription_id.isprintable()
    )


def envelope(value: bytes) -> Envelope | None:
    """The record's envelope when its types are right (None: ask :func:`decode`).

    Checked here: everything outside the blocks' ``fields`` and ``values``. The caller checks the cross-field rules
    (:func:`vouches_for`), the blocks (:func:`field_names`, :func:`rows_of`, equal row counts, at most
    :data:`MAX_FIELDS` names) and parses the timestamp (:func:`timestamp_of`).
    """
    try:
        return _ENVELOPE.decode(value)
    except DECLINE_ERRORS:
        return None


def with_defaults(env: Any) -> tuple[str, float, dict[str, str]]:
    """An envelope's ``deployment_id``, ``sampling_rate`` and ``tags``, with v1's defaults for absent (or null) ones."""
    deployment_id, sampling_rate, tags = env.deployment_id, env.sampling_rate, env.tags
    return (
        DEFAULT_DEPLOYMENT_ID if deployment_id is None else deployment_id,
        1.0 if sampling_rate is None else sampling_rate,
        {} if tags is None else tags,
    )


def timestamp_of(env: Any) -> datetime | None:
    """The envelope's scoring timestamp, or None for the reference validator to judge."""
    text = env.scoring_timestamp
    if _TIMESTAMP.match(text) is None:
        return None
    try:
        return datetime.fromisoformat(text)
    except ValueError:  # a lower-case t or z: the reference knows
        return None


class KnownNames:
    """Field-name lists found valid, remembered by their JSON text and as lists: a stream repeats a handful of
    lists, so each is checked once. Valid means 1 to :data:`MAX_FIELDS` distinct names of 1 to :data:`MAX_NAME_CHARS`
    characters, none holding a NUL character.

    One memory for the three readers of names: the worker's fast path (:meth:`of_json`), the reference validator
    and the emitter's check (:meth:`known`, then :meth:`add` once they have checked a list themselves). Bounded: past
    :data:`MAX_KNOWN_CHARS` characters of names or :data:`MAX_KNOWN_TEXTS` texts it starts afresh.
    """

    def __init__(self) -> None:
        self._by_text: dict[bytes, tuple[str, ...]] = {}
        self._lists: dict[tuple[str, ...], list[str]] = {}
        self._last: list[list[str] | None] = [None, None, None]
        self._chars = 0

    def of_json(self, raw: msgspec.Raw | bytes) -> tuple[str, ...] | None:
        """The names in the JSON text of a block's ``fields`` when they are valid, else None."""
        text = bytes(raw)
        names = self._by_text.get(text)
        if names is None:
            try:
                names = tuple(_FIELDS.decode(text))
            except DECLINE_ERRORS:
                return None
            if len(set(names)) != len(names) or b"\\u0000" in text:
                return None
            if len(self._by_text) >= MAX_KNOWN_TEXTS:
                self._by_text.clear()
            self._by_text[text] = names
        return names

    def known(self, names: Any, block: int) -> list[str] | None:
        """The remembered list equal to the list ``names`` of block ``block`` (0 request, 1 meta, 2 response), else
        None. Its names are plain ``str``: write those, never the caller's, which may only claim to be equal."""
        if type(names) is not list:  # a tuple or a string of the same names is written otherwise
            return None
        last = self._last[block]
        try:
            if last is not None and names == last:  # the same objects compare at once
                return last
            found = self._lists.get(tuple(names))
        except Exception:  # a name that cannot even be compared or hashed: not a known list
            return None
        if found is not None:
            self._last[block] = found
        return found

    def add(self, names: list[str], block: int) -> list[str]:
        """Remember a list of names the caller found valid; returns the remembered copy (plain ``str``)."""
        plain = [str.__str__(name) for name in names]
        chars = sum(map(len, plain))
        if self._chars + chars > MAX_KNOWN_CHARS:
            self._lists.clear()
            self._chars = 0
        self._lists[tuple(plain)] = plain
        self._chars += chars
        self._last[block] = plain
        return plain


MAX_KNOWN_CHARS: Final = 1 << 22
MAX_KNOWN_TEXTS: Final = 4096
KNOWN_NAMES: Final = KnownNames()


field_names: Final = KNOWN_NAMES.of_json
"""The field names in a block's ``fields`` (JSON text) when they are valid, else None."""


def plain_names(names: Any) -> bool:
    """Whether ``names`` is a list of valid field names, each a plain ``str`` (the emitter's check of a list
    :data:`KNOWN_NAMES` does not know)."""
    if type(names) is not list:
        return False
    for name in names:
        if type(name) is not str or "\x00" in name:
            return False
    try:
        msgspec.convert(names, FieldNames)
    except DECLINE_ERRORS:
        return False
    return len(set(names)) == len(names)


def envelope_layout(env: Envelope) -> Layout | None:
    """The field names of the request, its meta and the response (None for an absent block), when every present
    block's names are valid and there are at most :data:`MAX_FIELDS` in all; else None."""
    request, meta, response = env.request, env.request.meta, env.response
    names = field_names(request.fields)
    meta_names = None if meta is None else field_names(meta.fields)
    response_names = None if response is None else field_names(response.fields)
    if names is None or (meta is not None and meta_names is None) or (response is not None and response_names is None):
        return None
    if len(names) + len(meta_names or ()) + len(response_names or ()) > MAX_FIELDS:
        return None
    return names, meta_names, response_names


def rows_of(raw: msgspec.Raw, width: int) -> list[list[Any]] | None:
    """A block's ``values`` when every row holds ``width`` values of a kind the compiled path covers, else None."""
    try:
        rows: list[list[Any]] = _ROWS.decode(raw)
    except DECLINE_ERRORS:
        return None
    for row in rows:
        if len(row) != width:
            return None
    return rows


def decode_fast(value: bytes) -> ScoringRecord | None:
    """The record, when the compiled path can vouch for it; None sends ``value`` to the reference validator."""
    if b"\\u0000" in value:  # a NUL character, which no name may hold: the reference says whether one does
        return None
    # The length test first: on a short message a call would cost more than it.
    if len(value) >= MISREAD_MIN_DIGITS and not numbers_read_exactly(value):
        return None
    env = envelope(value)
    if env is None or not vouches_for(env):
        return None
    scoring_timestamp = timestamp_of(env)
    if scoring_timestamp is None:
        return None
    layout = envelope_layout(env)
    if layout is None:
        return None
    blocks: list[Table | None] = []
    count = None
    for raw, names in zip((env.request, env.request.meta, env.response), layout, strict=True):
        if raw is None or names is None:
            blocks.append(None)
            continue
        rows = rows_of(raw.values, len(names))
        if rows is None or (count is not None and len(rows) != count):
            return None
        count = len(rows)
        blocks.append(Table(list(names), rows))
    request, meta, response = blocks
    assert request is not None
    deployment_id, sampling_rate, tags = with_defaults(env)
    # In the record's declaration order (tests/unit/test_contract.py checks it).
    fields: Any = (
        env.scoring_id,
        scoring_timestamp,
        env.subscription_id,
        request,
        response,
        meta,
        deployment_id,
        *nullable_values(env),
        sampling_rate,
        tags,
        env.first_row or 0,
    )
    return ScoringRecord(*fields)


nullable_values: Final = operator.attrgetter(*NULLABLE_FIELDS)
"""An envelope's (or a record's) :data:`~stream_logger.contract.NULLABLE_FIELDS`, in their order."""
