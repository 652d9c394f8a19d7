"""FloodFilter: a flood of library errors becomes its first line, periodic counts and a summary."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

from stream_logger.logs import FloodFilter


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


class Collect(logging.Handler):
    def __init__(self, flood_filter: FloodFilter) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []
        self.addFilter(flood_filter)

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def lines(self) -> list[str]:
        return [f"{r.levelname} {r.name}: {r.getMessage()}" for r in self.records]


@pytest.fixture
def setup(clock: Clock) -> Iterator[tuple[FloodFilter, Collect]]:
    flood_filter = FloodFilter(quiet_s=10, report_every_s=60, clock=clock)
    handler = Collect(flood_filter)
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    libraries = [logging.getLogger(name) for name in ("aiokafka", "kafka", "asyncpg")]
    library_levels = [logger.level for logger in libraries]  # the CLI's set-up, run by other tests, raises them
    root.handlers[:] = [handler]
    root.setLevel(logging.INFO)
    for logger in libraries:
        logger.setLevel(logging.NOTSET)
    yield flood_filter, handler
    root.handlers[:], level = saved
    root.setLevel(level)
    for logger, library_level in zip(libraries, library_levels, strict=True):
        logger.setLevel(library_level)


def test_a_broker_outage_is_one_warning_then_a_summary(setup: tuple[FloodFilter, Collect], clock: Clock) -> None:
    flood_filter, handler = setup
    client = logging.getLogger("aiokafka.client")
    for _ in range(70 * 30):  # 30 s at 70 errors a second
        client.error('Unable connect to "%s:%s": %s', "127.0.0.1", 9092, "connection refused")
        clock.now += 1 / 70
    assert handler.lines() == [
        'WARNING aiokafka.client: Unable connect to "127.0.0.1:9092": connection refused '
        "[repeats from aiokafka are counted, not shown]"
    ]
    flood_filter.flush()  # not quiet long enough yet
    assert len(handler.records) == 1
    clock.now += 10
    flood_filter.flush()
    assert len(handler.records) == 2
    summary = handler.records[1]
    assert summary.levelno == logging.INFO
    assert "2099 similar ones suppressed over 30.0 s" in summary.getMessage()


def test_a_long_flood_is_counted_every_minute(setup: tuple[FloodFilter, Collect], clock: Clock) -> None:
    _, handler = setup
    for _ in range(150):  # 150 s, one error a second
        logging.getLogger("aiokafka.consumer.fetcher").error("Failed fetch messages from %s: %s", 1, "refused")
        clock.now += 1
    counts = [r for r in handler.records if "more similar messages" in r.getMessage()]
    assert len(counts) == 2 and len(handler.records) == 3
    assert counts[0].getMessage().startswith("aiokafka: 60 more similar messages in the last 60 s")


def test_the_first_pool_warning_loses_its_traceback_not_its_reason(setup: tuple[FloodFilter, Collect]) -> None:
    _, handler = setup
    pool = logging.getLogger("asyncpg.pool")
    for _ in range(5):
        try:
            raise ConnectionResetError("Connection lost")
        except ConnectionResetError:
            pool.warning("Failed to restore the pool connection", exc_info=True)
    assert len(handler.records) == 1
    first = handler.records[0]
    assert first.exc_info is None and first.levelno == logging.INFO  # the worker's own WARNING tells the outage
    assert "Failed to restore the pool connection (ConnectionResetError: Connection lost)" in first.getMessage()


def test_other_loggers_and_quiet_gaps_pass(setup: tuple[FloodFilter, Collect], clock: Clock) -> None:
    _, handler = setup
    for _ in range(3):
        logging.getLogger("stream_logger.worker").warning("ours, always shown")
        logging.getLogger("aiokafka").info("below WARNING, always shown")
    logging.getLogger("aiokafka.conn").error("first flood")
    clock.now += 11  # quiet for longer than quiet_s: the next error starts a new flood, and is shown
    logging.getLogger("aiokafka.conn").error("second flood")
    assert [line.split(": ", 1)[1][:12] for line in handler.lines()] == [
        "ours, always",
        "below WARNIN",
    ] * 3 + ["first flood ", "second flood"]
