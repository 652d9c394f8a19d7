"""The broker stopped and restarted while records flow: the emitter spills and delivers, the worker recovers.

These tests stop the dev stack's own Kafka broker for a few seconds. They run when the broker is the dev stack's
(as in CI, where ``make test`` starts it); against a broker the test cannot restart they are skipped, saying why.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from stream_logger import Emitter
from stream_logger.config import Settings
from stream_logger.devstack import DevStack
from stream_logger.devstack.process import port_accepts
from stream_logger.worker import Worker
from tests.support import assert_exactly, config, consume_all, logged_call, produce_records, wait_for_rows

pytestmark = pytest.mark.integration


Restart = Callable[[float], Coroutine[Any, Any, None]]


@pytest.fixture
def restart_broker(settings: Settings) -> Restart:
    """``await restart_broker(down_s)``: stop the broker, keep it down ``down_s`` seconds, start it again."""
    stack = DevStack.from_env()
    if stack.kafka.pid() is None or stack.bootstrap_servers != settings.bootstrap_servers:
        pytest.skip("the broker in use is not this dev stack's own, so the test cannot restart it")
    secured = DevStack.from_env(secure=True)
    if secured.kafka.secure_port is not None and port_accepts(secured.kafka.secure_port):
        stack = secured  # restarted as it runs, with its SASL_SSL listener (test_secure_kafka.py needs it later)

    async def restart(down_s: float) -> None:
        await asyncio.to_thread(stack.kafka.stop)
        await asyncio.sleep(down_s)
        pid = await asyncio.to_thread(stack.kafka.start)
        await asyncio.to_thread(stack.kafka.wait_ready, pid)

    return restart


async def test_emitter_spills_while_the_broker_is_down_and_delivers_everything(
    settings: Settings, topic: str, tmp_path: Path, restart_broker: Restart
) -> None:
    logged: list[str] = []
    async with Emitter(topic, settings.bootstrap_servers, spool_dir=tmp_path / "spool", delivery_timeout_s=5.0) as em:

        async def serve(n: int) -> None:  # a model service logging its calls
            for _ in range(n):
                logged.append(em.log(**logged_call(len(logged))))  # never raises, never waits
                await asyncio.sleep(0.005)

        await serve(100)
        await em.flush()
        outage = asyncio.create_task(restart_broker(6.0))
        await asyncio.sleep(1.0)  # the broker is going down
        await serve(400)  # ... and the service keeps answering meanwhile
        await outage
        await serve(100)
        deadline = asyncio.get_running_loop().time() + 90
        while (stats := em.stats()).acknowledged < len(logged) and asyncio.get_running_loop().time() < deadline:
            await em.flush(timeout_s=5)  # what was spilled goes out in the background once the broker is back
        assert stats.spilled > 0  # the outage was real: records went to the spool
    assert stats.dropped == 0 and stats.invalid == 0
    assert stats.acknowledged >= len(logged) and stats.spool_records == 0
    delivered = await consume_all(settings, topic, expected=len(logged), timeout_s=60)
    assert {key.decode() for key, _ in delivered} == set(logged)  # every scoring_id arrived (duplicates allowed)


async def test_worker_recovers_from_a_broker_restart_exactly(
    settings: Settings, topic: str, datamart_schema: str, pg: asyncpg.Connection, restart_broker: Restart
) -> None:
    await produce_records(settings, topic, 0, 2000)
    cfg = config(topic, datamart_schema, until_caught_up=False, batch_max_records=200)
    async with Worker(cfg, settings) as worker:
        run = asyncio.create_task(worker.run())
        await wait_for_rows(pg, datamart_schema, 200)
        await restart_broker(5.0)
        assert not run.done()
        await produce_records(settings, topic, 2000, 1000)
        await wait_for_rows(pg, datamart_schema, 3000, timeout_s=120)
        worker.request_stop()
        summary = await asyncio.wait_for(run, 60)
    assert summary.duplicates_skipped == 0
    await assert_exactly(pg, datamart_schema, 3000)
