"""The registry's memory of covered field layouts is bounded, whatever layouts a stream brings."""

from __future__ import annotations

from dataclasses import replace

from stream_logger import records
from stream_logger.registry import MAX_COVERED_LAYOUTS, Registry
from stream_logger.samples import german_credit_record
from tests.support import SUBSCRIPTIONS


def test_a_new_layout_in_every_message_does_not_grow_the_cache_without_bound() -> None:
    registry = Registry("dm")
    sub = replace(SUBSCRIPTIONS["german-credit"], evolve=False)  # new fields go to extra: every layout is covered
    registry._subs[sub.subscription_id] = sub
    base = german_credit_record(1)
    for i in range(MAX_COVERED_LAYOUTS + 50):
        doc = {**base, "request": {**base["request"], "fields": [*base["request"]["fields"][:-1], f"x{i}"]}}
        record = records.from_obj(doc)
        assert registry.lookup(record) is sub
    assert len(registry._covered[sub.subscription_id]) <= MAX_COVERED_LAYOUTS
