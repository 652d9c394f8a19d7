"""The exceptions stream-logger raises.

Every error carries a ``retriable`` class attribute: ``True`` when doing the same thing again later may succeed
(a broker or database that is down, restarting or overloaded), ``False`` when it will fail the same way again
(bad data, bad configuration, missing permissions). Retry decisions are made from that flag, in ``retry.py``.

::

    StreamLoggerError                 base of everything below
    ├── ConfigError                   a setting is missing or malformed
    │   └── CredentialsError          OpenScale-style credentials that name no usable Kafka or PostgreSQL
    ├── LifecycleError                an object started again after stop(): create a new one
    ├── DevStackError                 the local Kafka/PostgreSQL dev stack cannot start or answer
    ├── RecordError                   a scoring record is not valid v1 (code, path, detail)
    ├── IdentifierError               a user-supplied name cannot be used as a SQL identifier
    ├── DatamartError                 the datamart refused an operation
    │   ├── DatamartNotFound          the schema does not exist or is not a datamart
    │   └── SubscriptionError         a subscription is unknown, or its declaration is invalid
    ├── TransientError  (retriable)   a service is unreachable, restarting or overloaded
    │   ├── BrokerUnavailable         Kafka
    │   ├── DatabaseUnavailable       PostgreSQL
    │   └── CatchUpTimeout            an in-process worker has not written what was stored, in time
    ├── FatalError                    a permanent failure that must stop a worker (auth, permissions, schema)
    └── FencedError                   another worker moved a partition's stored offset first; drop and re-seek

:func:`describe` turns an exception raised by someone else's object into a short text that is safe to log.
"""

from __future__ import annotations

__all__ = [
    "MAX_DETAIL_CHARS",
    "BrokerUnavailable",
    "CatchUpTimeout",
    "ConfigError",
    "CredentialsError",
    "DatabaseUnavailable",
    "DatamartError",
    "DatamartNotFound",
    "DevStackError",
    "FatalError",
    "FencedError",
    "IdentifierError",
    "LifecycleError",
    "MonitorError",
    "RecordError",
    "StreamLoggerError",
    "SubscriptionError",
    "TransientError",
    "clip",
    "describe",
]

MAX_DETAIL_CHARS = 300
"""The longest text :func:`describe` and :func:`clip` return by default."""


class StreamLoggerError(Exception):
    """Base class of every error raised by stream-logger."""

    retriable: bool = False


class ConfigError(StreamLoggerError):
    """A setting is missing or malformed."""


class CredentialsError(ConfigError):
    """Credentials given to the OpenScale-style client (``APIClient``, ``data_mart.setup``) are malformed; the
    message names the key at fault, never a secret's value."""


class LifecycleError(StreamLoggerError):
    """An emitter, worker or delivery was started after it was stopped: each object runs once."""


class DevStackError(StreamLoggerError):
    """The local dev stack (Kafka + PostgreSQL) could not be started, stopped or reached."""


class RecordError(StreamLoggerError):
    """A scoring record is not a valid v1 record.

    ``code`` is one of :data:`stream_logger.contract.ERROR_CODES` (stored in the dead-letter table), ``path`` points
    at the offending part of the record (``request.values[3]``; empty for the whole record) and ``detail`` says
    what is wrong in words.
    """

    def __init__(self, code: str, path: str, detail: str) -> None:
        self.code = code
        self.path = path
        self.detail = detail
        super().__init__(f"{path}: {detail}" if path else detail)


class IdentifierError(StreamLoggerError):
    """A user-supplied name (schema, subscription, field) cannot be used as a SQL identifier."""


class DatamartError(StreamLoggerError):
    """The datamart refused an operation."""


class DatamartNotFound(DatamartError):
    """The schema does not exist, or is not a stream-logger datamart."""


class SubscriptionError(DatamartError):
    """A subscription is unknown, or its declaration is invalid."""


class MonitorError(DatamartError):
    """A monitor definition is invalid (the message says where and why), or names what the datamart lacks."""


class TransientError(StreamLoggerError):
    """A service is unreachable, restarting or overloaded; the same operation may succeed later."""

    retriable = True


class BrokerUnavailable(TransientError):
    """The Kafka broker cannot be reached or is not ready."""


class DatabaseUnavailable(TransientError):
    """PostgreSQL cannot be reached, is restarting, or asked to retry the transaction."""


class CatchUpTimeout(TransientError):
    """A client's in-process worker has not written what the client stored within the time allowed (a broker or
    database that is down, a long backlog in the topic); the records are not lost, the worker goes on."""


class FatalError(StreamLoggerError):
    """A permanent failure (authentication, permissions, missing schema) that must stop a worker."""


class FencedError(StreamLoggerError):
    """Another worker advanced a partition's stored offset first: the batch is dropped and the partition re-read."""


def clip(text: str, max_chars: int = MAX_DETAIL_CHARS) -> str:
    """``text`` cut to at most ``max_chars`` characters, ending with an ellipsis when cut."""
    return text if len(text) <= max_chars else text[: max_chars - 1] + "\u2026"


def describe(exc: BaseException, max_chars: int = MAX_DETAIL_CHARS) -> str:
    """``"TypeName: message"`` for an exception that may come from the caller's objects, at most ``max_chars`` long.

    Reading the message runs the exception's own ``__str__``, which may raise or return megabytes: the text is
    then the type name alone, or cut short.
    """
    name = clip(type(exc).__name__, max_chars)
    try:
        message = str.__str__(str(exc))  # a plain str even when __str__ returns a subclass with methods of its own
    except Exception:
        return name
    return clip(f"{name}: {message[:max_chars]}", max_chars) if message else name
