"""Retries, and the one place that decides what is worth retrying.

Errors from asyncpg and aiokafka are sorted where they are called (:func:`pg_errors`, :func:`kafka_errors`) into
the package's tree: a transient failure becomes a retriable :class:`~stream_logger.errors.DatabaseUnavailable` or
:class:`~stream_logger.errors.BrokerUnavailable`, a permanent one a :class:`~stream_logger.errors.FatalError`.
:func:`retrying` then retries exactly the errors whose ``retriable`` flag is set, with exponential backoff and
jitter, bounded by attempts and/or total time (unbounded by default: a database outage pauses a worker, it never
makes it skip records). An :class:`Outage` turns the attempts against one service into two log lines: a WARNING
when the service stops answering and an INFO, with the duration and the number of retries, when it answers again.

:func:`pg_error_kind` is the one place that tells a failure of the infrastructure from a failure caused by the work
itself. Errors about the *data* (SQLSTATE classes 22, 23, 54: a NUL character, a number out of range, a duplicate
key) and every other refusal of one statement or bug on one message (``internal``: a name taken, a statement
PostgreSQL refuses, an exception in this package's own code) are left as they are, so that the sink can isolate the
messages at fault and dead-letter them while their neighbours land. Only what no message can cause stops a worker:
``fatal`` is authentication, permissions, a missing database or schema, a corrupted server; ``transient`` is
retried. An ``internal`` error that escapes isolation (it struck the batch's own bookkeeping) is fatal too.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, Literal

import asyncpg
import tenacity
from aiokafka import errors as kafka_errors_mod

from .errors import BrokerUnavailable, DatabaseUnavailable, FatalError, FencedError, StreamLoggerError

__all__ = [
    "ErrorKind",
    "Outage",
    "is_data_error",
    "is_message_fault",
    "kafka_errors",
    "pg_error_kind",
    "pg_errors",
    "retries_enabled",
    "retrying",
    "set_retries_enabled",
]

log = logging.getLogger(__name__)

ErrorKind = Literal["transient", "data", "duplicate", "internal", "fatal"]

# SQLSTATE classes: 08 connection exception, 40 transaction rollback (serialization failure, deadlock),
# 53 insufficient resources (too many connections), 57 operator intervention (shutdown, restart, cancel),
# 55P03 lock not available, 58 system error (I/O).
_TRANSIENT_CLASSES = frozenset({"08", "40", "53", "57", "58"})
_TRANSIENT_STATES = frozenset({"55P03", "55006"})
# 22 data exception, 23 integrity constraint violation, 54 program limit exceeded (a value too large to index).
_DATA_CLASSES = frozenset({"22", "23", "54"})
# What no message can cause: 28 invalid authorization, 3D no such database, 3F no such schema, 0P invalid role,
# F0 configuration file error, XX internal error (a corrupted server); 42501 insufficient privilege.
_INFRASTRUCTURE_CLASSES = frozenset({"28", "3D", "3F", "0P", "F0", "XX"})
_INFRASTRUCTURE_STATES = frozenset({"42501"})

_enabled = os.environ.get("STREAM_LOGGER_RETRIES", "1") not in {"0", "false", "off"}


def set_retries_enabled(enabled: bool) -> None:
    """Switch retries on or off for the whole process (off makes tests fail fast)."""
    global _enabled
    _enabled = enabled


def retries_enabled() -> bool:
    return _enabled


def pg_error_kind(exc: BaseException) -> ErrorKind:
    """Sort an exception raised while storing messages: ``transient`` (retry), ``fatal`` (the infrastructure
    refuses: stop), else caused by the messages at hand: ``duplicate``, ``data`` (a value PostgreSQL cannot hold)
    or ``internal`` (anything else: a statement refused, a bug)."""
    if isinstance(exc, StreamLoggerError):
        if exc.retriable:
            return "transient"
        return "fatal" if isinstance(exc, (FatalError, FencedError)) else "internal"
    if isinstance(exc, asyncpg.UniqueViolationError):
        return "duplicate"
    if isinstance(exc, asyncpg.PostgresError):
        state: str = getattr(exc, "sqlstate", "") or ""
        if state in _TRANSIENT_STATES or state[:2] in _TRANSIENT_CLASSES:
            return "transient"
        if state[:2] in _DATA_CLASSES:
            return "data"
        if state[:2] in _INFRASTRUCTURE_CLASSES or state in _INFRASTRUCTURE_STATES:
            return "fatal"
        return "internal"
    if isinstance(exc, asyncpg.exceptions._base.DataError):
        return "data"  # asyncpg could not encode a value for the column type (client side)
    if isinstance(exc, (OSError, asyncio.TimeoutError, asyncpg.InterfaceError)):
        # refused/reset sockets, timeouts, "connection is closed", "cannot perform operation: another operation
        # is in progress" after a lost connection: all cured by a new connection.
        return "transient"
    return "internal"


def is_message_fault(exc: BaseException) -> bool:
    """Whether the messages being stored caused ``exc`` (isolate and dead-letter them) rather than the
    infrastructure (retry, or stop)."""
    return pg_error_kind(exc) in ("data", "duplicate", "internal")


def is_data_error(exc: BaseException) -> bool:
    """Whether PostgreSQL (or asyncpg) refused a value: the record at fault can be isolated and dead-lettered."""
    return pg_error_kind(exc) == "data"


@contextmanager
def pg_errors(what: str) -> Iterator[None]:
    """Translate transient and permanent PostgreSQL failures into the package's errors; data errors pass through."""
    try:
        yield
    except StreamLoggerError:
        raise
    except Exception as exc:
        kind = pg_error_kind(exc)
        if kind == "transient":
            raise DatabaseUnavailable(f"{what}: PostgreSQL unavailable ({type(exc).__name__}: {exc})") from exc
        if kind in ("fatal", "internal"):  # an internal error here was not isolated: it is the batch's own
            state = getattr(exc, "sqlstate", None)
            code = f" [SQLSTATE {state}]" if state else ""
            raise FatalError(f"{what}: PostgreSQL refused{code}: {exc}") from exc
        raise


@contextmanager
def kafka_errors(what: str) -> Iterator[None]:
    """Translate aiokafka failures: retriable ones (and lost connections) into BrokerUnavailable."""
    try:
        yield
    except StreamLoggerError:
        raise
    except kafka_errors_mod.KafkaError as exc:
        if getattr(exc, "retriable", False) or isinstance(exc, kafka_errors_mod.KafkaConnectionError):
            raise BrokerUnavailable(f"{what}: Kafka unavailable ({type(exc).__name__}: {exc})") from exc
        raise FatalError(f"{what}: Kafka refused ({type(exc).__name__}: {exc})") from exc
    except (TimeoutError, OSError) as exc:
        raise BrokerUnavailable(f"{what}: Kafka unavailable ({type(exc).__name__}: {exc})") from exc


class Outage:
    """Whether one service (PostgreSQL, Kafka) answers, as the operations against it tell.

    :meth:`failed` on the first failure logs one WARNING and marks the service down; later failures log at DEBUG.
    :meth:`answered` after an outage logs one INFO with its duration and the number of retries. ``on_retry`` is
    called for every :meth:`retried` attempt (the worker counts them in ``stream_logger_retries``).
    """

    def __init__(self, name: str, on_retry: Callable[[], Any] | None = None) -> None:
        self.name = name
        self._on_retry = on_retry
        self._since: float | None = None
        self._retries = 0

    @property
    def down(self) -> bool:
        """An outage is in progress: the last operation failed and none has succeeded since."""
        return self._since is not None

    def failed(self, exc: BaseException) -> None:
        """An operation against the service failed (it may be retried or not)."""
        if self._since is None:
            self._since, self._retries = time.monotonic(), 0
            log.warning("%s unavailable, retrying until it answers: %s", self.name, exc)
        else:
            log.debug("%s still unavailable: %s", self.name, exc)

    def retried(self, exc: BaseException) -> None:
        """A failed operation is about to be retried: a ``retrying(on_retry=...)`` hook."""
        self.failed(exc)
        self._retries += 1
        if self._on_retry is not None:
            self._on_retry()

    def answered(self) -> None:
        """An operation against the service succeeded: any outage is over."""
        if self._since is None:
            return
        took, retries, self._since = time.monotonic() - self._since, self._retries, None
        log.info("%s available again after %.1f s, %d retries", self.name, took, retries)


def _is_retriable(exc: BaseException) -> bool:
    return isinstance(exc, StreamLoggerError) and exc.retriable


def retrying(
    what: str,
    *,
    max_attempts: int | None = None,
    max_total_s: float | None = None,
    initial_delay_s: float = 0.1,
    max_delay_s: float = 5.0,
    on_retry: Callable[[BaseException], Any] | None = None,
) -> tenacity.AsyncRetrying:
    """An ``async for attempt in retrying(...): with attempt: ...`` loop for retriable errors only.

    Exponential backoff with jitter from ``initial_delay_s`` up to ``max_delay_s`` between attempts; stops after
    ``max_attempts`` or ``max_total_s`` when given (the last error is re-raised), never otherwise. With retries
    switched off (:func:`set_retries_enabled`), the first error is raised. Each retry is logged at DEBUG when
    ``on_retry`` reports it (e.g. :meth:`Outage.retried`, which logs the outage once), at WARNING otherwise.
    """
    stops: list[tenacity.stop.stop_base] = []
    if not _enabled:
        stops.append(tenacity.stop_after_attempt(1))
    if max_attempts is not None:
        stops.append(tenacity.stop_after_attempt(max_attempts))
    if max_total_s is not None:
        stops.append(tenacity.stop_after_delay(max_total_s))
    stop: tenacity.stop.stop_base = tenacity.stop_any(*stops) if stops else tenacity.stop_never

    def before_sleep(state: tenacity.RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome else None
        if exc is None:
            return
        if on_retry is not None:
            on_retry(exc)
        delay = state.next_action.sleep if state.next_action else 0.0
        level = logging.DEBUG if on_retry is not None else logging.WARNING
        log.log(level, "%s failed (attempt %d), retrying in %.1fs: %s", what, state.attempt_number, delay, exc)

    return tenacity.AsyncRetrying(
        retry=tenacity.retry_if_exception(_is_retriable),
        wait=tenacity.wait_exponential(multiplier=initial_delay_s, max=max_delay_s)
        + tenacity.wait_random(0, initial_delay_s),
        stop=stop,
        before_sleep=before_sleep,
        reraise=True,
    )
