"""The demo's delayed labels: what became of a share of the loans it scored, learnt later.

For ``share`` of the scoring calls, every row's true outcome (:func:`~stream_logger.demo.model.true_outcome`) is
logged as a label by reference (``log_feedback`` with the call's ``scoring_id`` and the row's ``row_index``), some
calls later, and with a ``labelled_at`` days after the call (never after now): labels arrive late, out of order,
and for some calls only, as they do in production.
"""

from __future__ import annotations

import heapq
import random
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from .model import true_outcome

__all__ = ["DEFAULT_LABEL_SHARE", "Labeller"]

DEFAULT_LABEL_SHARE: Final = 0.4
_DELAY_CALLS: Final = (20, 200)  # a label is logged this many calls after its call (at random)
_DELAY_DAYS: Final = (1.0, 14.0)  # and is dated this long after it


class Labeller:
    """Decides which calls get labels, and hands out each label once it is due."""

    def __init__(self, subscription_id: str, share: float = DEFAULT_LABEL_SHARE, seed: int = 0) -> None:
        self.subscription_id = subscription_id
        self.share = share
        self._rng = random.Random(seed)
        self._pending: list[tuple[int, int, dict[str, Any]]] = []  # (due at call, sequence, label): a heap
        self._sequence = 0
        self.labelled_calls = 0
        self.handed_out = 0

    def observe(self, call: int, scoring_id: str, request: Mapping[str, Any], scored_at: datetime | None) -> None:
        """Call ``call`` was logged as ``scoring_id``: maybe label its rows, later."""
        if self._rng.random() >= self.share:
            return
        self.labelled_calls += 1
        due = call + self._rng.randint(*_DELAY_CALLS)
        now = datetime.now(UTC)
        labelled_at = min((scored_at or now) + timedelta(days=self._rng.uniform(*_DELAY_DAYS)), now)
        for row_index, row in enumerate(request["values"]):
            applicant = dict(zip(request["fields"], row, strict=True))
            label = {
                "subscription_id": self.subscription_id,
                "scoring_id": scoring_id,
                "row_index": row_index,
                "label": true_outcome(applicant, self._rng),
                "labelled_at": labelled_at,
            }
            heapq.heappush(self._pending, (due, self._sequence, label))
            self._sequence += 1

    def due(self, call: int) -> Iterator[dict[str, Any]]:
        """The labels due by call ``call`` (each ``log_feedback``'s keywords), once each."""
        while self._pending and self._pending[0][0] <= call:
            self.handed_out += 1
            yield heapq.heappop(self._pending)[2]

    def rest(self) -> Iterator[dict[str, Any]]:
        """Every label not yet handed out."""
        while self._pending:
            self.handed_out += 1
            yield heapq.heappop(self._pending)[2]
