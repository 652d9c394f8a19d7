"""Starting the aiokafka clients (workers, replay, topic administration, the demo) with refusals made clear.

aiokafka reports every failed bootstrap alike (``KafkaConnectionError: Unable to bootstrap from ...``), whether the
broker is down or refused the client: retried, a wrong password would look like an outage forever. So when a start
fails, :func:`start_client` connects once more by itself to see why: a refused authentication, a SASL mechanism the
broker does not offer or a certificate that cannot be trusted becomes a :class:`~stream_logger.errors.FatalError`
that says so (never with a secret); anything else stays a retriable
:class:`~stream_logger.errors.BrokerUnavailable`.
"""

from __future__ import annotations

import asyncio
import ssl
from typing import Protocol

from aiokafka import errors as aiokafka_errors
from aiokafka.conn import create_conn

from .config import Settings
from .errors import FatalError
from .retry import kafka_errors

__all__ = ["refusal", "start_client"]

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
