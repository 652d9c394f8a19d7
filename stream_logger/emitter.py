"""What serving code imports: log every scoring call to Kafka in one call that never blocks and never raises.

::

    async with Emitter("scoring") as em:
        scoring_id = em.log(request={"fields": [...], "values": [[...]]}, response=..., subscription_id="credit")

``log()`` builds, validates and encodes the v1 record on the spot (an invalid record is counted and logged with its
reason, or raises :class:`~stream_logger.errors.RecordError` with ``strict=True``), then hands the bytes to the
producer (librdkafka), whose own threads batch, compress and send them. When memory for pending records reaches
``max_buffer_bytes`` or the broker is down, the ``overflow`` policy applies:

- ``"spill"`` (default): records go to a size-capped spool on local disk (``spool_dir``) and are sent, oldest
  first, once the broker is back or the buffer has room (new records go straight to the broker meanwhile). Each
  process takes a slot of its own in the folder, and sends what processes that are gone left in theirs
  (:mod:`stream_logger.shared_spool`).
- ``"drop"``: the record is counted in ``stats().dropped``, with a rate-limited warning.
- ``"block"``: only :class:`~stream_logger.threaded.ThreadedEmitter` can wait (up to ``block_timeout_s``) before
  falling back to ``block_fallback``; ``log()`` on an event loop must not wait, so here ``"block"`` means
  ``block_fallback`` at once.

An emitter used in a process forked after it started (gunicorn ``--preload``, Celery prefork, a ``multiprocessing``
fork pool) notices the fork: in the child it builds a producer, a thread and a spool slot of its own, so logging goes
on there; what the parent had queued stays the parent's to deliver.

This module never imports asyncpg: a model service needs only the producer side.
"""

from __future__ import annotations

import asyncio
import atexit
import gc
import logging
import os
import sys
import threading
import weakref
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal, Self, Unpack

from prometheus_client.core import REGISTRY, CounterMetricFamily, GaugeMetricFamily

from .config import Settings
from .contract import MAX_SCORING_ID_CHARS, FeedbackCall, ScoringCall
from .delivery import Delivery
from .delivery_counts import EmitterStats
from .errors import MAX_DETAIL_CHARS, ConfigError, RecordError, clip, describe
from .feedback_call import encode_feedback_call
from .kafka_config import KafkaClientConfig, KafkaSecurityOptions
from .lifecycle import Lifecycle, State
from .producer import DeliveryConfig, Overflow
from .scoring_call import encode_call
from .shared_spool import default_spool_dir

if TYPE_CHECKING:
    from .openscale import PayloadRecord

__all__ = ["COMPRESSIONS", "Emitter", "EmitterBase", "EmitterStats", "live_emitters"]

log = logging.getLogger("stream_logger.emitter")

COMPRESSIONS = ("zstd", "lz4", "gzip", "snappy", None)
_live: weakref.WeakSet[EmitterBase] = weakref.WeakSet()
_inherited: list[Delivery] = []
"""Deliveries a forked child inherited: kept alive, as destroying librdkafka's objects would wait for threads that
exist only in the parent."""


class EmitterBase:
    """Settings, ``log()``, ``store()``, ``stats()`` and the lifecycle, shared by the async and the threaded emitter.

    Its state (:class:`~stream_logger.lifecycle.State`) goes NEW -> STARTED -> STOPPING -> STOPPED: a stopped emitter
    cannot start again (:class:`~stream_logger.errors.LifecycleError`), and one collected while started warns with a
    ``ResourceWarning``.
    """

    _block_timeout_s: float | None = None  # only the threaded emitter waits

    def __init__(
        self,
        topic: str,
        bootstrap_servers: str | None = None,
        *,
        compression: Literal["zstd", "lz4", "gzip", "snappy"] | None = "zstd",
        linger_ms: float = 20.0,
        max_batch_bytes: int = 512 * 1024,
        max_buffer_bytes: int = 64 * 1024 * 1024,
        overflow: Overflow = "spill",
        spool_dir: str | os.PathLike[str] | None = None,
        max_spool_bytes: int = 1024 * 1024 * 1024,
        block_timeout_s: float = 1.0,
        block_fallback: Literal["spill", "drop"] = "spill",
        delivery_timeout_s: float = 30.0,
        close_timeout_s: float = 10.0,
        strict: bool = False,
        validate: bool = True,
        **kafka: Unpack[KafkaSecurityOptions],
    ) -> None:
        if compression not in COMPRESSIONS:
            raise ConfigError(f"compression must be one of {COMPRESSIONS}, got {compression!r}")
        if overflow not in ("spill", "drop", "block"):
            raise ConfigError(f"overflow must be spill, drop or block, got {overflow!r}")
        if block_fallback not in ("spill", "drop"):
            raise ConfigError(f"block_fallback must be spill or drop, got {block_fallback!r}")
        if max_buffer_bytes <= 0 or max_batch_bytes <= 0 or max_spool_bytes <= 0:
            raise ConfigError("max_buffer_bytes, max_batch_bytes and max_spool_bytes must be positive")
        if not topic:
            raise ConfigError("a topic is required")
        settings = Settings.from_env(kafka=KafkaClientConfig.load(overrides=kafka))
        servers = bootstrap_servers or settings.bootstrap_servers
        Settings(bootstrap_servers=servers)  # validates host:port[,...]
        if spool_dir is None:
            spool_dir = default_spool_dir(topic)
        self.topic = topic
        self.strict = strict
        self.validate = validate or strict
        self._block_timeout_s = block_timeout_s if overflow == "block" else None
        self._lifecycle = Lifecycle(type(self).__name__)
        self._lifecycle_lock = threading.Lock()
        self._delivery = Delivery(
            DeliveryConfig(
                topic=topic,
                bootstrap_servers=servers,
                client_settings=settings.kafka.librdkafka_config(servers),
                compression=compression,
                linger_ms=linger_ms,
                max_batch_bytes=max_batch_bytes,
                max_buffer_bytes=max_buffer_bytes,
                overflow=overflow,
                block_fallback=block_fallback,
                spool_dir=Path(spool_dir),
                max_spool_bytes=max_spool_bytes,
                delivery_timeout_s=delivery_timeout_s,
                close_timeout_s=close_timeout_s,
            )
        )
        _live.add(self)
        self._created()

    def _created(self) -> None:
        """Called at the end of ``__init__``."""

    @property
    def refusal(self) -> str | None:
        """Why the broker refuses this emitter (authentication failed, TLS verification failed), or None. ``log()``
        never raises for it: records wait in the spool (or are dropped) and a warning is logged once a minute."""
        return self._delivery.refusal

    @property
    def state(self) -> State:
        """Where the emitter is in its lifecycle: NEW, STARTED, STOPPING or STOPPED."""
        return self._lifecycle.state

    @property
    def delivery_config(self) -> DeliveryConfig:
        """The settings it delivers with: topic, brokers, librdkafka's client settings, buffer and spool sizes."""
        return self._delivery.config

    def _start_delivery(self) -> bool:
        """Start the delivery unless started already; True when it started now. LifecycleError once stopped."""
        with self._lifecycle_lock:
            if not self._lifecycle.may_start():
                return False
            self._delivery.start()
            self._lifecycle.started()
            return True

    def _begin_stop(self) -> bool:
        """True when a stop is due (started); marks a never-started emitter stopped."""
        with self._lifecycle_lock:
            return self._lifecycle.may_stop()

    def _finish_stop(self) -> None:
        """Deliver what can be within ``close_timeout_s``, spool the rest, close (blocks: from a thread)."""
        try:
            self._delivery.stop()
        finally:
            self._lifecycle.stopped()

    def _stop_delivery(self) -> None:
        """Stop from synchronous code: the threaded emitter, the exit of a forked child."""
        if self._begin_stop():
            self._finish_stop()

    def __del__(self) -> None:
        if hasattr(self, "_lifecycle"):  # __init__ may have refused the options
            self._lifecycle.warn_if_running(self, f" (topic {self.topic}): records still queued may be lost")

    def _after_fork_in_child(self) -> None:
        """Build a delivery of the child's own in place of the parent's, started if the parent's was."""
        self._lifecycle_lock = threading.Lock()  # another thread of the parent may have held it at the fork
        if self._lifecycle.state in (State.STOPPING, State.STOPPED):
            return
        inherited = self._delivery
        _inherited.append(inherited)
        inherited.release_after_fork()
        self._delivery = Delivery(inherited.config)
        if self._lifecycle.state is not State.STARTED:
            return  # records logged before start() in the parent stay the parent's
        atexit.register(_stop_at_exit, weakref.ref(self))
        if "multiprocessing" in sys.modules:
            import multiprocessing.util

            # Its children leave by os._exit(), after its finalizers, not atexit; and it clears the finalizers
            # inherited by a new child after this hook, then runs its own after-fork callbacks: register there.
            multiprocessing.util.register_after_fork(self, _stop_when_multiprocessing_child_exits)
        try:
            self._delivery.start()
        except Exception as exc:
            reason = f"the emitter could not start again in a forked process ({describe(exc)})"
            self._delivery.refuse(reason)
            log.warning("topic %s: %s; records logged in process %d are dropped", self.topic, reason, os.getpid())

    def log(self, **call: Unpack[ScoringCall]) -> str:
        """Queue one scoring call for delivery and return its ``scoring_id`` (a ``str``; generated when not given).

        Returns at once. ``request``/``response``/``meta``: ``{"fields", "values"}`` (values may be a numpy
        array), a pandas DataFrame, a list of dicts, or a WML v4 or Open Inference Protocol (KServe v2) body;
        ``response`` is ``None`` for a failed call. A missing timestamp is now (UTC); one without a timezone
        (``datetime.utcnow()``) is taken as UTC, counted in ``stats().naive_timestamps`` and warned about once. A
        block with more rows, values a row or bytes than a record holds is refused from its shape, before it is
        converted. Broker trouble never raises here.

        An invalid record (a ``scoring_id`` that is not a ``str`` too) is not queued: with ``strict`` it raises
        :class:`~stream_logger.errors.RecordError`; else it is counted in ``stats().invalid``, logged with its
        reason (cut short), and ``log()`` returns the ``scoring_id`` given, or ``""`` when none was or it was not
        a ``str``.
        """
        try:
            scoring_id, value, naive_timestamp = encode_call(call, self.validate)
        except RecordError as exc:
            return self._invalid(exc, call.get("scoring_id"))
        except Exception as exc:  # a value orjson cannot encode, a date out of range, an object that raises when read
            return self._invalid(RecordError("invalid_record", "", describe(exc)), call.get("scoring_id"), exc)
        if naive_timestamp:
            self._naive_timestamp()
        self._submit(scoring_id, value)
        return scoring_id

    def _naive_timestamp(self) -> None:
        """Count a ``scoring_timestamp`` given without an offset (taken as UTC), and say so the first time."""
        if self._delivery.count_naive_timestamp() == 1:
            log.warning(
                "topic %s: a scoring_timestamp without a timezone was taken as UTC (datetime.utcnow()? give "
                "datetime.now(UTC)); such timestamps are counted in stats().naive_timestamps, not warned again",
                self.topic,
            )

    def log_feedback(self, **call: Unpack[FeedbackCall]) -> str:
        """Queue one label and return its ``feedback_id`` (generated when not given); returns at once, like
        :meth:`log`.

        By reference: ``scoring_id`` (the call's, as :meth:`log` returned it), ``label``, and ``row_index`` for one
        row of a call that scored several (else the label is every row's). Standalone: ``data`` (``{"fields",
        "values"}``, a DataFrame or a list of dicts) holding feature values and the label, in the field
        ``label_field`` (else the subscription's target). ``labelled_at`` defaults to now; one without a timezone is
        taken as UTC, as in :meth:`log`. An invalid label is not queued: counted and logged, or raised with
        ``strict``.
        """
        try:
            feedback_id, value, naive_timestamp = encode_feedback_call(call)
        except RecordError as exc:
            return self._invalid(exc, call.get("feedback_id"), what="feedback record")
        except Exception as exc:  # a value orjson cannot encode, an object that raises when read
            return self._invalid(
                RecordError("invalid_record", "", describe(exc)), call.get("feedback_id"), exc, "feedback record"
            )
        if naive_timestamp:
            self._naive_timestamp()
        self._submit(feedback_id, value)
        return feedback_id

    def log_encoded(self, scoring_id: str, value: bytes) -> None:
        """Queue a record already encoded (and validated) by the caller, e.g. read from a file of v1 records."""
        self._submit(scoring_id, value)

    def _submit(self, scoring_id: str, value: bytes) -> None:
        try:
            self._delivery.submit(scoring_id.encode(), value, self._block_timeout_s)
        except Exception as exc:  # not the caller's fault, and never raised into the service: counted, logged
            self._delivery.drop(f"the emitter failed ({describe(exc)})")
            log.debug("topic %s: submit failed", self.topic, exc_info=True)

    def store(
        self, records: Iterable[PayloadRecord], subscription_id: str, deployment_id: str | None = None
    ) -> list[str]:
        """OpenScale's ``payload_logging.store``: log each :class:`PayloadRecord`; returns their scoring ids."""
        return [r.log_to(self, subscription_id=subscription_id, deployment_id=deployment_id) for r in records]

    def stats(self) -> EmitterStats:
        """Counts of what happened to the records logged so far."""
        return self._delivery.stats()

    def _invalid(
        self, exc: RecordError, scoring_id: object, cause: Exception | None = None, what: str = "scoring record"
    ) -> str:
        """Raise (``strict``) or count and log a refused record; its id (``scoring_id`` or ``feedback_id``) if the
        caller gave a str."""
        exc = _bounded(exc)
        if self.strict:
            raise exc from cause
        self._delivery.count_invalid()
        # type() as well: an object's __class__ can claim to be str
        given = scoring_id if isinstance(scoring_id, str) and issubclass(type(scoring_id), str) else ""
        # The reason and where, never the payload's contents; both cut short, as they may quote the caller's names.
        log.warning(
            "topic %s: invalid %s not sent (%s at %s: %s)",
            self.topic,
            what,
            exc.code,
            exc.path or "<record>",
            exc.detail,
            extra={"scoring_id": clip(given, MAX_SCORING_ID_CHARS), "error_code": exc.code},
        )
        return given


class Emitter(EmitterBase):
    """Logs scoring calls to a Kafka topic from asyncio code; use ``async with`` or ``start()``/``stop()``.

    ``validate=False`` skips the v1 check in ``log()`` (about a third of its cost for a record of a known field
    layout, and the full decode of the others); records that break v1 then reach the worker's dead-letter table
    instead of being refused here. ``strict=True`` implies ``validate``.

    ``bootstrap_servers`` defaults to the settings' (``STREAM_LOGGER_BOOTSTRAP_SERVERS``). SASL and TLS come from
    the keywords ``security_protocol``, ``sasl_mechanism``, ``sasl_username``, ``sasl_password``,
    ``ssl_ca_location``, ``ssl_certificate_location``, ``ssl_key_location``, ``ssl_key_password``, else from the
    environment (``STREAM_LOGGER_KAFKA_SASL_USERNAME`` and so on), else from the properties file ``kafka_config`` (or
    ``STREAM_LOGGER_KAFKA_CONFIG``), as :mod:`stream_logger.kafka_config` says. The producer waits for
    every replica (``acks="all"``), is idempotent, compresses batches (``compression``; zstd by default) and keys
    each record by its ``scoring_id``. ``spool_dir`` defaults to ``<state>/spool/<topic>``, ``<state>`` being
    ``$STREAM_LOGGER_STATE_DIR``, else ``$XDG_STATE_HOME/stream-logger``, else ``~/.local/state/stream-logger``.
    """

    async def start(self) -> None:
        """Start delivering (succeeds even when the broker is unreachable). Calling it again does nothing; after
        :meth:`stop` it raises :class:`~stream_logger.errors.LifecycleError`: create a new emitter."""
        self._start_delivery()

    async def stop(self) -> None:
        """Deliver what can be within ``close_timeout_s`` (the spool's records too), spool the rest, close.

        Safe to call twice; an emitter never started is only marked stopped.
        """
        if self._begin_stop():
            await asyncio.to_thread(self._finish_stop)

    async def flush(self, timeout_s: float | None = None) -> bool:
        """Wait until everything logged so far is acknowledged (or spooled while the broker cannot be reached).

        Returns ``False`` when ``timeout_s`` passed first; nothing is lost then, it stays queued.
        """
        return await asyncio.to_thread(self._delivery.flush, timeout_s)

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()


def _bounded(exc: RecordError) -> RecordError:
    """``exc``, or a copy with its path and detail cut short when they are long (a name or a message quoted)."""
    if len(exc.path) <= MAX_DETAIL_CHARS and len(exc.detail) <= MAX_DETAIL_CHARS:
        return exc
    return RecordError(exc.code, clip(exc.path), clip(exc.detail))


def _stop_at_exit(ref: weakref.ref[EmitterBase]) -> None:
    emitter = ref()
    if emitter is not None:
        emitter._stop_delivery()


def _stop_when_multiprocessing_child_exits(emitter: EmitterBase) -> None:
    import multiprocessing.util

    multiprocessing.util.Finalize(None, _stop_at_exit, args=(weakref.ref(emitter),), exitpriority=10)


def _rebuild_after_fork() -> None:
    # What the child inherited is never collected there: a librdkafka producer freed in a forked child (one the
    # parent had left in a reference cycle, say) waits for threads that only the parent has, and the child hangs or
    # crashes. Objects made after the fork are collected as usual.
    gc.freeze()
    for emitter in list(_live):
        try:
            emitter._after_fork_in_child()
        except Exception:  # a hook that raises is only reported by Python; say which emitter it was
            log.exception("topic %s: the emitter could not be rebuilt in a forked process", emitter.topic)


os.register_at_fork(after_in_child=_rebuild_after_fork)


def live_emitters() -> Sequence[EmitterBase]:
    """Every emitter object still alive (for the metrics collector)."""
    return list(_live)


class _StatsCollector:
    """Exposes every live emitter's stats to Prometheus, summed by topic; costs nothing until scraped."""

    def collect(self) -> Iterator[Any]:
        totals: dict[str, dict[str, int]] = {}
        spool: dict[str, int] = {}
        for emitter in live_emitters():
            stats = emitter.stats()
            by_outcome = totals.setdefault(emitter.topic, dict.fromkeys(_OUTCOMES, 0))
            for outcome in _OUTCOMES:
                by_outcome[outcome] += getattr(stats, outcome)
            spool[emitter.topic] = spool.get(emitter.topic, 0) + stats.spool_bytes
        records = CounterMetricFamily(
            "stream_logger_emitter_records", "Scoring records by what happened to them", labels=["topic", "outcome"]
        )
        for topic, by_outcome in totals.items():
            for outcome, count in by_outcome.items():
                records.add_metric([topic, outcome], count)
        yield records
        spooled = GaugeMetricFamily("stream_logger_emitter_spool_bytes", "Bytes waiting in the spool", labels=["topic"])
        for topic, size in spool.items():
            spooled.add_metric([topic], size)
        yield spooled


_OUTCOMES = ("sent", "acknowledged", "failed", "dropped", "spilled", "invalid")
REGISTRY.register(_StatsCollector())
