"""Starting and stopping the aiokafka clients (workers, replay, topic administration, the demo), refusals made
clear, and the one place that reaches past aiokafka's public API (:func:`topic_partitions`).

aiokafka reports every failed bootstrap alike (``KafkaConnectionError: Unable to bootstrap from ...``), whether the
broker is down or refused the client: retried, a wrong password would look like an outage forever. So when a start
fails, :func:`start_client` connects once more by itself to see why: a refused authentication, a SASL mechanism the
broker does not offer or a certificate that cannot be trusted becomes a :class:`~stream_logger.errors.FatalError`
that says so (never with a secret); anything else stays a retriable
:class:`~stream_logger.errors.BrokerUnavailable`.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import time
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka import errors as aiokafka_errors
from aiokafka.conn import create_conn

from .config import Settings
from .errors import FatalError
from .retry import kafka_errors, retrying

__all__ = ["end_offsets", "refusal", "start_client", "start_consumer", "stop_consumer", "topic_partitions"]

log = logging.getLogger(__name__)

_PROBE_TIMEOUT_S = 10.0


class _Startable(Protocol):
    async def start(self) -> None: ...


async def start_client(client: _Startable, settings: Settings, what: str) -> None:
    """``await client.start()``, its failures translated (:func:`~stream_logger.retry.kafka_errors`); a broker
    that refuses the client is a FatalError naming the reason."""
    with kafka_errors(what):
        try:
            await client.start()
        except aiokafka_errors.KafkaConnectionError:
            reason = await refusal(settings)
            if reason is not None:
                raise FatalError(f"{what}: {reason}") from None
            raise


async def start_consumer(
    settings: Settings, where: str, on_retry: Callable[[BaseException], Any], client_id: str, **options: Any
) -> AIOKafkaConsumer:
    """A started consumer with ``settings``' connection and security and ``options``; a broker that cannot be
    reached yet is waited for (retried with backoff, ``on_retry`` told of each failure), one that refuses the
    client is a FatalError (:func:`start_client`)."""
    async for attempt in retrying(where, on_retry=on_retry):
        with attempt, kafka_errors(where):
            consumer = AIOKafkaConsumer(**settings.aiokafka_kwargs(client_id=client_id), **options)
            try:
                await start_client(consumer, settings, where)
            except BaseException:
                await stop_consumer(consumer)
                raise
            return consumer
    raise AssertionError("unreachable")  # pragma: no cover


async def refusal(settings: Settings) -> str | None:
    """Why the brokers refuse these settings (authentication, TLS), or None when none does (or none answers)."""
    kwargs = settings.aiokafka_kwargs()
    how = settings.kafka.describe()
    for server in settings.bootstrap_servers.split(","):
        host, _, port = server.strip().rpartition(":")
        try:
            async with asyncio.timeout(_PROBE_TIMEOUT_S):
                conn = await create_conn(
                    host.strip("[]"),
                    int(port),
                    request_timeout_ms=int(_PROBE_TIMEOUT_S * 1000),
                    ssl_context=kwargs.get("ssl_context"),
                    security_protocol=kwargs.get("security_protocol", "PLAINTEXT"),
                    sasl_mechanism=kwargs.get("sasl_mechanism", "PLAIN"),
                    sasl_plain_username=kwargs.get("sasl_plain_username"),
                    sasl_plain_password=kwargs.get("sasl_plain_password"),
                )
        except (aiokafka_errors.SaslAuthenticationFailed, aiokafka_errors.AuthenticationFailedError) as exc:
            return settings.kafka.mask(f"Kafka at {server} refused: authentication failed ({how}): {exc}")
        except aiokafka_errors.UnsupportedSaslMechanismError as exc:
            return settings.kafka.mask(f"Kafka at {server} refused: authentication failed ({how}): {exc}")
        except ssl.SSLCertVerificationError as exc:
            ca = settings.kafka.get("ssl.ca.location") or "the system's CAs"
            return (
                f"Kafka at {server}: TLS verification of the broker's certificate failed ({exc.verify_message}; "
                f"trusting {ca}, ssl.ca.location)"
            )
        except ssl.SSLError as exc:
            if isinstance(exc, (ssl.SSLEOFError, ssl.SSLZeroReturnError)):
                continue  # the connection was cut mid-handshake: no verdict
            return f"Kafka at {server}: the TLS handshake failed ({exc.reason or exc}): is this a TLS listener?"
        except Exception:  # unreachable, timed out: an outage, not a refusal
            continue
        conn.close()
    return None


async def topic_partitions(
    consumer: AIOKafkaConsumer, topics: Sequence[str], wait_s: float = 0.0
) -> list[TopicPartition]:
    """Every partition of ``topics`` (in their order, partitions sorted) after a metadata refresh; a topic the
    broker does not know within ``wait_s`` (one just created may take a moment) is a FatalError.

    ``AIOKafkaConsumer.partitions_for_topic()`` answers from the metadata the client already holds, which lacks a
    topic the consumer neither subscribes to nor was assigned, or one created since; ``topics()`` fetches fresh
    metadata but returns names only, into a copy the consumer does not keep. So this asks the consumer's client to
    refresh (``force_metadata_update``, not public API): the only use of aiokafka's private ``_client``.
    """
    tps: list[TopicPartition] = []
    for topic in topics:
        deadline = time.monotonic() + wait_s
        while True:
            await consumer._client.force_metadata_update()
            parts = consumer.partitions_for_topic(topic)
            if parts or time.monotonic() >= deadline:
                break
            await asyncio.sleep(0.1)
        if not parts:
            raise FatalError(f"topic {topic!r} does not exist")
        tps += [TopicPartition(topic, p) for p in sorted(parts)]
    return tps


async def end_offsets(settings: Settings, topics: Sequence[str], client_id: str) -> dict[TopicPartition, int]:
    """Each partition's end offset (the offset the next message will get) in ``topics``, read once: a broker that
    cannot be reached is a :class:`~stream_logger.errors.BrokerUnavailable` at once, never waited for."""
    consumer = AIOKafkaConsumer(**settings.aiokafka_kwargs(client_id=client_id), enable_auto_commit=False)
    try:
        await start_client(consumer, settings, f"reading the end offsets of {', '.join(topics)}")
        with kafka_errors(f"reading the end offsets of {', '.join(topics)}"):
            ends: dict[TopicPartition, int] = await consumer.end_offsets(await topic_partitions(consumer, topics, 5.0))
        return ends
    finally:
        await stop_consumer(consumer)


async def stop_consumer(consumer: AIOKafkaConsumer) -> None:
    """Stop a consumer in whatever state it is. With the broker down, aiokafka's stop() cancels its own pending
    fetch tasks and lets their CancelledError out (a BaseException): that one is swallowed, unless this task
    itself is being cancelled."""
    try:
        await consumer.stop()
    except asyncio.CancelledError:
        task = asyncio.current_task()
        if task is not None and task.cancelling():
            raise
        log.debug("the Kafka consumer's stop() let out a cancellation of its own tasks")
    except Exception as exc:
        log.debug("stopping the Kafka consumer: %s", exc)
