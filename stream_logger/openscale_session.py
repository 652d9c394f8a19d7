"""What the objects of one OpenScale-style client share (:mod:`stream_logger.openscale_client`): the settings, the
datamart schema, the emitter records are stored through, the optional in-process worker, and the lifecycle.

Storing goes through Kafka: a record stored is in the datamart once a worker has written it. :meth:`ClientSession.
caught_up` is what every count and read calls first: it delivers what the client's emitter holds and, with the
in-process worker, waits (bounded) until the worker has written everything the topic holds, so that a ported script
reads back what it stored without a ``time.sleep``.
"""

from __future__ import annotations

import atexit
import logging
import threading
import time
import weakref
from collections.abc import Awaitable, Callable
from typing import TypeVar

import asyncpg

from .background_worker import BackgroundWorker
from .datamart import connect
from .errors import CatchUpTimeout, StreamLoggerError
from .identifiers import validate_schema_name
from .lifecycle import Lifecycle, State
from .openscale_credentials import ClientSettings
from .sync import run_sync
from .threaded import ThreadedEmitter
from .worker_config import WorkerConfig

__all__ = ["DEFAULT_CATCH_UP_TIMEOUT_S", "ClientSession", "in_process_group"]

log = logging.getLogger(__name__)

_T = TypeVar("_T")

DEFAULT_CATCH_UP_TIMEOUT_S = 60.0
"""How long a count or a read waits for the in-process worker to write what was stored, by default."""


def in_process_group(schema: str) -> str:
    """The consumer group of a client's in-process worker: one a datamart schema, so that two clients writing into
    different schemas never share (and split) a topic's partitions."""
    return f"stream-logger-client-{schema}"


class ClientSession:
    """One client's settings, emitter and in-process worker; started on creation, stopped by :meth:`close`."""

    def __init__(self, client: ClientSettings, catch_up_timeout_s: float = DEFAULT_CATCH_UP_TIMEOUT_S) -> None:
        if not catch_up_timeout_s > 0:
            raise StreamLoggerError(f"catch_up_timeout_s must be positive, not {catch_up_timeout_s!r}")
        self.client = client
        self.settings = client.settings
        self.topic = client.topic
        self.catch_up_timeout_s = catch_up_timeout_s
        self._schema = client.schema
        self._dsn = client.settings.dsn
        self._lock = threading.Lock()
        self._emitter: ThreadedEmitter | None = None
        self._worker: BackgroundWorker | None = None
        self._stored = 0  # records handed to the emitter since the last wait
        self._lifecycle = Lifecycle("APIClient")
        self._lifecycle.started()
        self._closes_at_exit = False

    # -- where -------------------------------------------------------------------------------------------------

    @property
    def schema(self) -> str:
        """The datamart schema (the credentials', else ``datamart``; ``data_mart.setup(schema=...)`` changes it)."""
        return self._schema

    @property
    def dsn(self) -> str:
        return self._dsn

    def use(self, schema: str, dsn: str) -> None:
        """Read and write ``schema`` of the database ``dsn`` from now on (``data_mart.setup``); refused once the
        in-process worker writes into another one."""
        validate_schema_name(schema)
        with self._lock:
            if self._worker is not None and (schema, dsn) != (self._schema, self._dsn):
                raise StreamLoggerError(
                    f"this client's in-process worker already writes into schema {self._schema!r}: "
                    "set the datamart up before storing, or use a client of its own for another one"
                )
            self._schema, self._dsn = schema, dsn

    @property
    def state(self) -> State:
        return self._lifecycle.state

    # -- storing -----------------------------------------------------------------------------------------------

    def emitter(self) -> ThreadedEmitter:
        """The emitter records are stored through (made on first use; strict: an invalid record raises)."""
        self._require_open()
        with self._lock:
            if self._emitter is None:
                self._emitter = ThreadedEmitter(
                    self.topic, self.settings.bootstrap_servers, strict=True, kafka_config=self.settings.kafka
                )
            emitter = self._emitter
        self._start_worker()
        self._close_at_exit()
        return emitter

    def _close_at_exit(self) -> None:
        """Have :meth:`close` run at interpreter exit, before the emitter's and the worker's own exit hooks (they
        were registered first, and exit hooks run last first): it waits for the worker, which must still run."""
        with self._lock:
            if not self._closes_at_exit:
                self._closes_at_exit = True
                atexit.register(_close_at_exit, weakref.ref(self))

    def stored(self, count: int) -> None:
        """Count records handed to the emitter (what :meth:`close` waits for the in-process worker to write)."""
        with self._lock:
            self._stored += count

    def _start_worker(self) -> BackgroundWorker | None:
        if not self.client.in_process_worker:
            return None
        with self._lock:
            if self._worker is None:
                config = WorkerConfig(
                    topics=(self.topic,),
                    group_id=in_process_group(self._schema),
                    schema=self._schema,
                    flush_interval_ms=100,
                    shutdown_grace_s=10.0,
                    max_record_age_s=None,  # a ported script may store history, as OpenScale let it
                )
                self._worker = BackgroundWorker(config, self.settings.with_overrides(dsn=self._dsn))
                self._worker.start()
            return self._worker

    def caught_up(self, timeout_s: float | None = None) -> None:
        """Deliver what the emitter holds, then, with the in-process worker, wait until it has written everything
        the topic holds. :class:`~stream_logger.errors.CatchUpTimeout` after ``timeout_s`` (the client's
        ``catch_up_timeout_s`` by default); without the in-process worker, a count shows what other workers wrote
        so far."""
        self._require_open()
        timeout_s = self.catch_up_timeout_s if timeout_s is None else timeout_s
        deadline = time.monotonic() + timeout_s
        emitter = self._emitter
        if emitter is not None and not emitter.flush(timeout_s):
            raise CatchUpTimeout(
                f"the client's emitter has not delivered what was stored to Kafka at {self.settings.bootstrap_servers}"
                f" within {timeout_s:g} s (is the broker down? nothing is lost: the emitter goes on)"
            )
        worker = self._start_worker()
        if worker is not None:
            self._close_at_exit()
            worker.wait_until_written(max(0.0, deadline - time.monotonic()))
            with self._lock:
                self._stored = 0

    def database(self, read: Callable[[asyncpg.Connection], Awaitable[_T]]) -> _T:
        """``read(conn)`` on a connection of its own to the datamart's database, from synchronous code (even inside
        a running event loop, as in Jupyter)."""
        self._require_open()

        async def run() -> _T:
            async with connect(self._dsn) as conn:
                return await read(conn)

        return run_sync(run())

    # -- lifecycle ---------------------------------------------------------------------------------------------

    def _require_open(self) -> None:
        if self._lifecycle.state is not State.STARTED:
            raise StreamLoggerError("this APIClient is closed: create a new one")

    def close(self) -> None:
        """Deliver what the emitter holds (within its ``close_timeout_s``); with the in-process worker, wait (up to
        ``catch_up_timeout_s``) until it wrote what this client stored, then stop it. Idempotent."""
        if not self._lifecycle.may_stop():
            return
        try:
            if self._emitter is not None:
                self._emitter.stop()
            if self._worker is not None:
                try:
                    if self._stored:
                        self._worker.wait_until_written(self.catch_up_timeout_s)
                except StreamLoggerError as exc:  # the records stay in Kafka for the next worker of the group
                    log.warning("closing the client: %s", exc)
                finally:
                    self._worker.stop()
        finally:
            self._lifecycle.stopped()

    def __del__(self) -> None:
        if hasattr(self, "_lifecycle") and (self._emitter is not None or self._worker is not None):
            self._lifecycle.warn_if_running(self, f" (topic {self.topic}): call close()")


def _close_at_exit(ref: weakref.ref[ClientSession]) -> None:
    session = ref()
    if session is not None:
        session.close()
