"""The delivery's librdkafka side: its settings (:class:`DeliveryConfig`), a producer sized to a share of
``max_buffer_bytes``, and what librdkafka's error codes mean for a record.

:class:`~stream_logger.delivery.Delivery` runs two producers (and now and then a third): the memory path's, which
takes new records, and the spool's, which replays spilled ones with ``max_buffer_bytes // REPLAY_SHARE``
(:attr:`DeliveryConfig.replay_budget_bytes`). Their queues together never hold more than ``max_buffer_bytes``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from confluent_kafka import KafkaError, KafkaException, Message, Producer

from .contract import DEFAULT_MAX_RECORD_BYTES
from .errors import ConfigError
from .kafka_config import is_secret

__all__ = [
    "PAYLOAD_SHARE",
    "PURGED",
    "RECORD_OVERHEAD_BYTES",
    "REFUSED_CONNECTION",
    "REFUSED_RECORD",
    "REPLAY_SHARE",
    "DeliveryCallback",
    "DeliveryConfig",
    "ErrorCallback",
    "Overflow",
    "new_producer",
    "producer_settings",
    "purge",
]

Overflow = Literal["spill", "drop", "block"]
RECORD_OVERHEAD_BYTES = 256
"""Memory librdkafka takes per pending record on top of its value (the message header, the key, the allocator)."""
PAYLOAD_SHARE = 0.7
"""The share of a producer's budget given to record values; the rest bounds the count of records."""
REPLAY_SHARE = 8
"""The spool's producer gets ``max_buffer_bytes // REPLAY_SHARE``; the memory path gets the rest."""
PURGED = frozenset({KafkaError._PURGE_QUEUE, KafkaError._PURGE_INFLIGHT})
"""A record failed because its producer was purged (stopping, or replaced), not because the broker refused it."""
REFUSED_RECORD = frozenset(
    {
        KafkaError.MSG_SIZE_TOO_LARGE,
        KafkaError.INVALID_RECORD,
        KafkaError.RECORD_LIST_TOO_LARGE,
    }
)
"""Failures that sending again cannot cure: the record is dropped (with a warning), never spilled."""
REFUSED_CONNECTION = {
    KafkaError._AUTHENTICATION: "authentication failed (SASL)",
    KafkaError._SSL: "TLS failed (is ssl.ca.location the broker's CA?)",
}
"""librdkafka's reports of a broker that answers but refuses the client: retrying cannot cure them."""

DeliveryCallback = Callable[[KafkaError | None, Message], None]
ErrorCallback = Callable[[KafkaError], None]


@dataclass(frozen=True, slots=True)
class DeliveryConfig:
    """How an emitter delivers: the topic, the brokers, librdkafka's batching and the overflow policy."""

    topic: str
    bootstrap_servers: str
    client_settings: Mapping[str, str]
    """librdkafka's connection and security settings (``Settings.librdkafka_config()``): SASL, TLS, client.id."""
    compression: str | None
    linger_ms: float
    max_batch_bytes: int
    max_buffer_bytes: int
    overflow: Overflow
    block_fallback: Literal["spill", "drop"]
    spool_dir: Path | None
    max_spool_bytes: int
    delivery_timeout_s: float
    close_timeout_s: float

    @property
    def replay_budget_bytes(self) -> int:
        """Bytes of ``max_buffer_bytes`` for the producer that replays the spool."""
        return self.max_buffer_bytes // REPLAY_SHARE

    @property
    def memory_budget_bytes(self) -> int:
        """Bytes of ``max_buffer_bytes`` for the memory path's producer (the rest)."""
        return self.max_buffer_bytes - self.replay_budget_bytes

    @property
    def spills(self) -> bool:
        """Whether records that cannot be queued go to the spool (``spill``, or ``block`` falling back to it)."""
        fallback = self.overflow if self.overflow != "block" else self.block_fallback
        return fallback == "spill"


def producer_settings(config: DeliveryConfig, budget_bytes: int) -> dict[str, Any]:
    """librdkafka's configuration for ``config``, its queue within ``budget_bytes`` (callbacks not included)."""
    value_bytes = int(budget_bytes * PAYLOAD_SHARE)
    return {
        "bootstrap.servers": config.bootstrap_servers,
        "client.id": "stream-logger-emitter",
        **config.client_settings,
        "acks": "all",
        "enable.idempotence": True,
        "compression.type": config.compression or "none",
        "linger.ms": config.linger_ms,
        "batch.size": config.max_batch_bytes,
        # Any record the v1 check accepts may go: the broker refuses what is larger than it allows (dropped).
        "message.max.bytes": max(config.max_batch_bytes, DEFAULT_MAX_RECORD_BYTES) + (64 << 10),
        "message.timeout.ms": max(1, int(config.delivery_timeout_s * 1000)),
        "queue.buffering.max.kbytes": max(1, value_bytes // 1024),
        "queue.buffering.max.messages": max(1, (budget_bytes - value_bytes) // RECORD_OVERHEAD_BYTES),
        "delivery.report.only.error": True,
        "log_level": 2,  # connection failures come through the error callback, once per outage
    }


def new_producer(
    config: DeliveryConfig,
    budget_bytes: int,
    on_error: ErrorCallback,
    on_delivery: DeliveryCallback | None = None,
) -> Producer:
    """A producer whose queue fits ``budget_bytes``; ``on_delivery`` hears of its records' failures (unless a
    record names a callback of its own). Settings librdkafka refuses are a ConfigError, secrets masked."""
    callbacks: dict[str, Any] = {"error_cb": on_error}
    if on_delivery is not None:  # librdkafka refuses None here
        callbacks["on_delivery"] = on_delivery
    try:
        return Producer(producer_settings(config, budget_bytes), **callbacks)
    except KafkaException as exc:  # a setting librdkafka does not know, or a value it refuses
        message = str(exc.args[0].str() if exc.args else exc)
        for name, value in config.client_settings.items():
            if is_secret(name) and value:
                message = message.replace(value, "***")
        raise ConfigError(f"the Kafka client settings are refused by librdkafka: {message}") from None


def purge(producer: Producer, *, in_flight: bool) -> None:
    """Fail what ``producer`` holds (its failure callback spills or drops it) and serve those callbacks.

    Without ``in_flight``, records already sent stay in flight: their acknowledgement or failure comes later.
    """
    producer.purge(in_queue=True, in_flight=in_flight, blocking=True)
    while producer.poll(0):
        pass
    deadline = time.monotonic() + 5.0
    while in_flight and len(producer) and time.monotonic() < deadline:
        producer.poll(0.01)
