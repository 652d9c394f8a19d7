"""An outage is two log lines, however many retries it takes; the retries are counted."""

from __future__ import annotations

import logging

import pytest

from stream_logger.errors import DatabaseUnavailable
from stream_logger.retry import Outage, retrying, set_retries_enabled


async def test_an_outage_logs_once_when_it_starts_and_once_when_it_ends(caplog: pytest.LogCaptureFixture) -> None:
    retries: list[int] = []
    outage = Outage("PostgreSQL", on_retry=lambda: retries.append(1))
    calls = 0
    caplog.set_level(logging.DEBUG, logger="stream_logger")
    set_retries_enabled(True)
    async for attempt in retrying("writing a batch", initial_delay_s=0.001, max_delay_s=0.002, on_retry=outage.retried):
        with attempt:
            calls += 1
            if calls <= 8:
                raise DatabaseUnavailable("connection refused")
    assert outage.down
    outage.answered()
    assert not outage.down and len(retries) == 8
    shown = [(r.levelname, r.getMessage()) for r in caplog.records if r.levelno >= logging.INFO]
    assert shown[0] == ("WARNING", "PostgreSQL unavailable, retrying until it answers: connection refused")
    assert shown[1][0] == "INFO" and shown[1][1].startswith("PostgreSQL available again after ")
    assert shown[1][1].endswith(" s, 8 retries") and len(shown) == 2
    assert sum(r.levelno == logging.DEBUG for r in caplog.records) >= 8  # each attempt, for whoever wants it


def test_answered_without_an_outage_says_nothing(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    Outage("Kafka").answered()
    assert caplog.records == []
