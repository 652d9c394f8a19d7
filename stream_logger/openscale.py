"""For users porting from IBM Watson OpenScale: ``PayloadRecord`` and ``store(records=[...])``.

Same meaning as OpenScale's payload logging: a missing ``scoring_id`` becomes a random id, a missing
``scoring_timestamp`` becomes now in UTC, ``response_time`` is in milliseconds. ``request`` is
``{"fields", "values"}`` and may carry a ``meta`` block; ``response`` echoes the fields and adds ``prediction``
and ``probability``. WML v4 and Open Inference Protocol bodies, DataFrames and lists of dicts are read too, as
``log()`` reads them.

:class:`PayloadRecord` takes both clients' keywords in the newer client's positional order (``asset_revision``,
``multiple_records``, ``user_id`` after ``response_time``); :meth:`PayloadRecord.to_json` and
:meth:`PayloadRecord.from_json` are the newer client's body items (``data_sets.store_records(request_body=[...])``).
The client objects around them (``APIClient``, the data mart, subscriptions) are in
:mod:`stream_logger.openscale_client`, on the ingest side.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, fields
from datetime import datetime
from typing import TYPE_CHECKING, Any

from .errors import RecordError
from .scoring_call import as_table

if TYPE_CHECKING:
    from .emitter import EmitterBase

__all__ = ["PAYLOAD_RECORD_KEYS", "PayloadRecord", "store"]


@dataclass(slots=True)
class PayloadRecord:
    """One scoring call, as OpenScale's ``PayloadRecord``; ``response_time`` is in milliseconds.

    ``multiple_records`` is the newer client's flag for a request that scores several rows: accepted, and kept by
    :meth:`to_json`, but not needed here (every row of a request is a datamart row of its own either way).
    """

    request: Any
    response: Any
    scoring_id: str | None = None
    scoring_timestamp: datetime | str | None = None
    response_time: float | None = None
    asset_revision: str | None = None
    multiple_records: bool = False
    user_id: str | None = None

    def log_to(self, emitter: EmitterBase, *, subscription_id: str, deployment_id: str | None = None) -> str:
        """Log this record with ``emitter``; returns the scoring id used."""
        return emitter.log(
            request=self.request,
            response=self.response,
            subscription_id=subscription_id,
            deployment_id=deployment_id,
            scoring_id=self.scoring_id,
            scoring_timestamp=self.scoring_timestamp,
            response_time_ms=self.response_time,
            asset_revision=self.asset_revision,
            user_id=self.user_id,
        )

    def to_json(self) -> dict[str, Any]:
        """The record as a dict of the same fields, ready for ``json.dumps``: numpy values as lists, a DataFrame as
        ``{"fields", "values"}``, the timestamp as ISO 8601 text. :meth:`from_json` reads it back."""
        out: dict[str, Any] = {}
        for name in PAYLOAD_RECORD_KEYS:
            value = getattr(self, name)
            out[name] = value.isoformat() if isinstance(value, datetime) else _json_ready(value, name)
        return out

    @classmethod
    def from_json(cls, item: Mapping[str, Any], where: str = "record") -> PayloadRecord:
        """A record from a dict of its fields (the newer client's body item, :meth:`to_json`'s output); a key that
        is not a field is a :class:`~stream_logger.errors.RecordError` naming it (``where`` says which item)."""
        if not isinstance(item, Mapping):
            raise RecordError("invalid_record", where, f"expected a PayloadRecord or a dict, not {type(item).__name__}")
        unknown = [k for k in item if k not in PAYLOAD_RECORD_KEYS]
        if unknown:
            raise RecordError(
                "invalid_record",
                where,
                f"unknown key(s) {', '.join(map(repr, unknown))}; "
                f"a payload record has {', '.join(PAYLOAD_RECORD_KEYS)}",
            )
        for required in ("request", "response"):
            if required not in item:
                raise RecordError("invalid_record", f"{where}.{required}", "required")
        return cls(**item)


PAYLOAD_RECORD_KEYS: tuple[str, ...] = tuple(f.name for f in fields(PayloadRecord))
"""The fields of a payload record, in the positional order of :class:`PayloadRecord`."""


def _json_ready(value: Any, path: str) -> Any:
    """``value`` with numpy arrays and scalars as Python values, tuples as lists, a DataFrame as fields and values."""
    if isinstance(value, Mapping):
        return {str(k): _json_ready(v, f"{path}.{k}") for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_ready(v, path) for v in value]
    if isinstance(value, datetime):
        return value.isoformat()
    if hasattr(value, "columns") and hasattr(value, "__getitem__"):  # a pandas DataFrame
        table = as_table(value, path)
        assert table is not None
        return {"fields": table.fields, "values": _json_ready(table.values, path)}
    tolist = getattr(value, "tolist", None)
    return _json_ready(tolist(), path) if tolist is not None else value


def store(
    records: Iterable[PayloadRecord], subscription_id: str, emitter: EmitterBase, deployment_id: str | None = None
) -> list[str]:
    """OpenScale's ``subscription.payload_logging.store(records=[...])``: log each record; returns their ids."""
    return emitter.store(records, subscription_id=subscription_id, deployment_id=deployment_id)
