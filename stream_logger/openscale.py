"""For users porting from IBM Watson OpenScale: ``PayloadRecord`` and ``store(records=[...])``.

Same meaning as OpenScale's payload logging: a missing ``scoring_id`` becomes a random id, a missing
``scoring_timestamp`` becomes now in UTC, ``response_time`` is in milliseconds. ``request`` is
``{"fields", "values"}`` and may carry a ``meta`` block; ``response`` echoes the fields and adds ``prediction``
and ``probability``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .emitter import EmitterBase

__all__ = ["PayloadRecord", "store"]


@dataclass(slots=True)
class PayloadRecord:
    """One scoring call, as OpenScale's ``PayloadRecord``; ``response_time`` is in milliseconds."""

    request: Any
    response: Any
    scoring_id: str | None = None
    scoring_timestamp: datetime | str | None = None
    response_time: float | None = None
    asset_revision: str | None = None
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


def store(
    records: Iterable[PayloadRecord], subscription_id: str, emitter: EmitterBase, deployment_id: str | None = None
) -> list[str]:
    """OpenScale's ``subscription.payload_logging.store(records=[...])``: log each record; returns their ids."""
    return emitter.store(records, subscription_id=subscription_id, deployment_id=deployment_id)
