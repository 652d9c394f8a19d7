"""One lifecycle for the emitters and the worker: start, stop twice, no start after stop, a ResourceWarning for an
object started and never stopped (none for one never started). No broker or database: nothing answers at the
addresses used here."""

from __future__ import annotations

import asyncio
import gc
import logging
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from stream_logger import Emitter, ThreadedEmitter
from stream_logger.config import Settings
from stream_logger.errors import LifecycleError, StreamLoggerError
from stream_logger.lifecycle import Lifecycle, State
from stream_logger.worker import Worker, WorkerConfig
from tests.support import free_ports

UNREACHABLE = "127.0.0.1:1"


@pytest.fixture
def nowhere(caplog: pytest.LogCaptureFixture) -> Settings:
    """Settings whose broker and database refuse connections. The warnings about them are not logged: a captured
    record holds the connection error, whose traceback holds the worker, alive until the test ends."""
    caplog.set_level(logging.ERROR, logger="stream_logger")
    kafka_port, pg_port = free_ports(2)
    return Settings(bootstrap_servers=f"127.0.0.1:{kafka_port}", dsn=f"postgresql://u:p@127.0.0.1:{pg_port}/db")


def _state(obj: Lifecycle | Emitter | ThreadedEmitter | Worker) -> State:
    """Its state, read afresh (mypy would keep the state an earlier assert narrowed it to)."""
    return obj.state


def _worker(settings: Settings) -> Worker:
    return Worker(WorkerConfig(topics=("t",), group_id="g", schema="s"), settings)


def _resource_warnings(make: Callable[[], object]) -> list[str]:
    """The ResourceWarnings raised when the object ``make()`` returns is collected."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        obj = make()
        del obj
        gc.collect()
    return [str(w.message) for w in caught if issubclass(w.category, ResourceWarning)]


@pytest.fixture
def stop_afterwards() -> Iterator[list[Callable[[], None]]]:
    """Cleanups run after the test: an emitter collected while started leaves its delivery's thread running."""
    cleanups: list[Callable[[], None]] = []
    yield cleanups
    for cleanup in cleanups:
        cleanup()


def test_the_transitions() -> None:
    lifecycle = Lifecycle("thing")
    assert _state(lifecycle) is State.NEW and lifecycle.may_start()
    lifecycle.started()
    assert lifecycle.running and not lifecycle.may_start()  # started already: nothing to do
    assert lifecycle.may_stop() and _state(lifecycle) is State.STOPPING
    assert not lifecycle.may_stop()  # a second stop while the first runs has nothing to do
    lifecycle.stopped()
    assert _state(lifecycle) is State.STOPPED and not lifecycle.may_stop()
    with pytest.raises(LifecycleError, match="a stopped thing cannot be started again"):
        lifecycle.may_start()


def test_stopping_what_never_started_marks_it_stopped() -> None:
    lifecycle = Lifecycle("thing")
    assert not lifecycle.may_stop()
    assert _state(lifecycle) is State.STOPPED
    with pytest.raises(LifecycleError):
        lifecycle.may_start()


def test_a_lifecycle_error_is_a_stream_logger_error_that_retrying_cannot_cure() -> None:
    assert issubclass(LifecycleError, StreamLoggerError) and not LifecycleError.retriable


async def test_an_emitter_stops_twice_and_refuses_to_start_again(tmp_path: Path) -> None:
    em = Emitter("t", UNREACHABLE, spool_dir=tmp_path, close_timeout_s=0.5)
    assert _state(em) is State.NEW
    async with em:
        assert _state(em) is State.STARTED
        await em.start()  # again: nothing happens
    assert _state(em) is State.STOPPED
    await em.stop()
    with pytest.raises(LifecycleError, match="Emitter cannot be started again"):
        await em.start()
    with pytest.raises(LifecycleError):
        async with em:
            pass


async def test_an_emitter_stopped_before_it_started_cannot_start(tmp_path: Path) -> None:
    em = Emitter("t", UNREACHABLE, spool_dir=tmp_path)
    await em.stop()
    assert _state(em) is State.STOPPED
    with pytest.raises(LifecycleError):
        await em.start()


def test_a_threaded_emitter_stops_twice_under_either_name_and_refuses_to_start_again(tmp_path: Path) -> None:
    with ThreadedEmitter("t", UNREACHABLE, spool_dir=tmp_path, close_timeout_s=0.5) as em:
        assert _state(em) is State.STARTED  # started on creation
        em.start()
    assert _state(em) is State.STOPPED
    em.stop()
    em.close()
    assert not em.flush(0.1)
    with pytest.raises(LifecycleError, match="ThreadedEmitter cannot be started again"):
        em.start()


def test_an_emitter_started_and_never_stopped_warns(tmp_path: Path, stop_afterwards: list[Callable[[], None]]) -> None:
    def started() -> Emitter:
        em = Emitter("leaky", UNREACHABLE, spool_dir=tmp_path, close_timeout_s=0.5)
        asyncio.run(em.start())
        stop_afterwards.append(em._delivery.stop)  # only to end its thread after the test
        return em

    (message,) = _resource_warnings(started)
    assert "Emitter" in message and "never stopped" in message and "topic leaky" in message


def test_a_threaded_emitter_never_closed_warns(tmp_path: Path, stop_afterwards: list[Callable[[], None]]) -> None:
    def started() -> ThreadedEmitter:
        em = ThreadedEmitter("leaky", UNREACHABLE, spool_dir=tmp_path, close_timeout_s=0.5)
        stop_afterwards.append(em._delivery.stop)  # only to end its thread after the test
        return em

    (message,) = _resource_warnings(started)
    assert "ThreadedEmitter" in message and "never stopped" in message


def test_emitters_never_started_or_stopped_do_not_warn(tmp_path: Path) -> None:
    def stopped() -> ThreadedEmitter:
        em = ThreadedEmitter("t", UNREACHABLE, spool_dir=tmp_path / "threaded", close_timeout_s=0.5)
        em.stop()
        return em

    assert _resource_warnings(lambda: Emitter("t", UNREACHABLE, spool_dir=tmp_path / "new")) == []
    assert _resource_warnings(stopped) == []


def test_a_worker_stops_twice_and_refuses_to_start_again(nowhere: Settings) -> None:
    async def scenario() -> None:
        worker = _worker(nowhere)
        await worker.stop()
        await worker.stop()
        assert _state(worker) is State.STOPPED
        with pytest.raises(LifecycleError, match="Worker cannot be started again"):
            await worker.start()
        with pytest.raises(LifecycleError):
            await worker.run()  # it used to return an empty summary at once

    asyncio.run(scenario())


async def _started_while_nothing_answers(worker: Worker) -> None:
    """Start ``worker`` while its database is unreachable, then ask it to stop: start() returns without joining."""
    starting = asyncio.create_task(worker.start())
    await asyncio.sleep(0.3)  # it retries the database meanwhile
    assert not starting.done()
    worker.request_stop()
    await asyncio.wait_for(starting, 10)
    assert _state(worker) is State.STARTED and (await worker.run()).messages == 0


def test_a_worker_started_and_stopped_does_not_warn_and_cannot_start_again(nowhere: Settings) -> None:
    async def scenario() -> Worker:
        worker = _worker(nowhere)
        await _started_while_nothing_answers(worker)
        await worker.stop()
        with pytest.raises(LifecycleError):
            await worker.start()
        return worker

    assert _resource_warnings(lambda: asyncio.run(scenario())) == []


def test_a_worker_started_and_never_stopped_warns(nowhere: Settings) -> None:
    async def scenario() -> Worker:
        worker = _worker(nowhere)
        await _started_while_nothing_answers(worker)
        return worker  # no stop()

    (message,) = _resource_warnings(lambda: asyncio.run(scenario()))
    assert "Worker" in message and "never stopped" in message and "group g" in message


def test_a_worker_never_started_does_not_warn(nowhere: Settings) -> None:
    assert _resource_warnings(lambda: _worker(nowhere)) == []


def test_the_emitter_side_loads_neither_the_consumer_nor_the_database_client() -> None:
    """What a model service imports (the emitters and their delivery) never reaches aiokafka or asyncpg."""
    import subprocess
    import sys

    script = (
        "import sys, stream_logger, stream_logger.threaded, stream_logger.delivery; "
        "print(sorted(m for m in ('aiokafka', 'asyncpg', 'stream_logger.worker', 'stream_logger.sink') "
        "if m in sys.modules))"
    )
    loaded = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout
    assert loaded.strip() == "[]"
