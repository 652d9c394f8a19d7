"""A worker in the calling process (``BackgroundWorker``) on the real Kafka and PostgreSQL: waiting until what the
topic holds is written, a bounded wait that times out saying where the worker is, and a worker that cannot start."""

from __future__ import annotations

from pathlib import Path

import pytest

from stream_logger import ThreadedEmitter
from stream_logger.background_worker import BackgroundWorker
from stream_logger.config import Settings
from stream_logger.errors import CatchUpTimeout, StreamLoggerError
from stream_logger.lifecycle import State
from tests.support import config, count_rows, logged_call

pytestmark = pytest.mark.integration


def _log(settings: Settings, topic: str, spool: Path, n: int, start: int = 0) -> None:
    with ThreadedEmitter(topic, settings.bootstrap_servers, spool_dir=spool, strict=True) as em:
        for i in range(start, start + n):
            em.log(**logged_call(i))
        assert em.flush(30)


async def test_wait_until_written_returns_once_the_topic_is_written(
    settings: Settings, topic: str, datamart_schema: str, tmp_path: Path
) -> None:
    _log(settings, topic, tmp_path, 5)
    with BackgroundWorker(config(topic, datamart_schema, until_caught_up=False), settings) as worker:
        worker.wait_until_written(timeout_s=60)
        assert await count_rows(settings, datamart_schema, "payload_german_credit") == 5
        _log(settings, topic, tmp_path, 3, start=5)  # more, while it runs
        worker.wait_until_written(timeout_s=60)
        assert await count_rows(settings, datamart_schema, "payload_german_credit") == 5 + 3
    assert worker.state is State.STOPPED and worker.failure is None


async def test_a_wait_past_its_timeout_says_which_partitions_are_behind(
    settings: Settings, topic: str, datamart_schema: str, tmp_path: Path
) -> None:
    _log(settings, topic, tmp_path, 1)
    # A batch is written once it is a minute old: not within the wait.
    slow = config(topic, datamart_schema, until_caught_up=False, flush_interval_ms=60_000, shutdown_grace_s=10)
    with BackgroundWorker(slow, settings) as worker:
        with pytest.raises(CatchUpTimeout, match=rf"{topic}\[\d\] at 0 of 1.*Nothing is lost") as caught:
            worker.wait_until_written(timeout_s=0.5)
        assert caught.value.retriable
    # stop() wrote the batch it held.
    assert await count_rows(settings, datamart_schema, "payload_german_credit") == 1


async def test_a_worker_that_cannot_start_says_why(settings: Settings, topic: str, schema: str) -> None:
    worker = BackgroundWorker(config(topic, schema, until_caught_up=False), settings)  # no datamart there
    with worker, pytest.raises(StreamLoggerError, match="no datamart"):
        worker.wait_until_written(timeout_s=30)
    assert worker.state is State.STOPPED
