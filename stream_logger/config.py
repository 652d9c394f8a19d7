"""Settings shared by every command: where Kafka and PostgreSQL are, and how to reach Kafka (SASL, TLS).

Each setting comes from a command-line flag, else from the environment (``STREAM_LOGGER_<NAME>``), else (for Kafka's)
from the properties file ``STREAM_LOGGER_KAFKA_CONFIG``, else from the default, which points at the local dev stack
(``stream-logger dev up``). The Kafka client settings are :mod:`stream_logger.kafka_config`'s.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit, urlunsplit

from .errors import ConfigError
from .kafka_config import KafkaClientConfig

__all__ = [
    "DEFAULT_BOOTSTRAP_SERVERS",
    "DEFAULT_DEV_PG_PORT",
    "DEFAULT_DSN",
    "ENV_PREFIX",
    "Settings",
    "default_home",
    "parse_duration_s",
    "redact_dsn",
]

ENV_PREFIX = "STREAM_LOGGER_"
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|h|d)\s*$")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration_s(text: str) -> float:
    """``30d``, ``12h``, ``90m``, ``45s`` in seconds; :class:`ConfigError` for anything else."""
    match = _DURATION.match(text.lower()) if isinstance(text, str) else None
    if match is None:
        raise ConfigError(f"{text!r} is not a duration: use a number and s, m, h or d (30d)")
    return float(match[1]) * _UNIT_S[match[2]]


DEFAULT_BOOTSTRAP_SERVERS = "127.0.0.1:9092"
DEFAULT_DEV_PG_PORT = 55432
DEFAULT_DSN = f"postgresql://stream_logger:stream_logger@127.0.0.1:{DEFAULT_DEV_PG_PORT}/stream_logger"

_HOST_PORT = re.compile(r"^[A-Za-z0-9_.\-\[\]:]+:\d{1,5}$")
_URL_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*://")
_HOST = re.compile(r"(?:\[[^\]]*\]|[^:\[\]]+)(?::(?P<port>.*))?")
"""One host of a URL DSN's host list: a name, or an IPv6 address in brackets, then maybe ``:port``."""
_PASSWORD_SETTING = re.compile(r"(password\s*=\s*)('(?:[^'\\]|\\.)*'?|[^\s&]+)", re.IGNORECASE)
"""A ``password=`` setting, in key=value DSNs and in a URL's query; its value quoted or not."""
_PERCENT_ENCODE = (
    "percent-encode special characters in the user name and password (@ as %40, : as %3A, / as %2F, ? as %3F, # as %23)"
)


def default_home(environ: Mapping[str, str] | None = None) -> Path:
    """The dev stack's state folder: ``$STREAM_LOGGER_HOME``, else ``./.stream-logger``."""
    env = os.environ if environ is None else environ
    return Path(env.get(f"{ENV_PREFIX}HOME") or ".stream-logger").absolute()


def redact_dsn(dsn: str) -> str:
    """The DSN with its password replaced by ``***``, fit for logs and error messages.

    A malformed URL is not shown at all (only its scheme): where its password ends cannot be told.
    """
    scheme = _URL_SCHEME.match(dsn)
    if scheme is None:  # key=value settings
        return _PASSWORD_SETTING.sub(r"\1***", dsn)
    if _dsn_problem(dsn) is not None:
        return f"{scheme.group(0)}<malformed, not shown>"
    parts = urlsplit(dsn)
    user_info, _, hosts = parts.netloc.rpartition("@")
    netloc = f"{user_info.partition(':')[0]}:***@{hosts}" if ":" in user_info else parts.netloc
    return urlunsplit(parts._replace(netloc=netloc, query=_PASSWORD_SETTING.sub(r"\1***", parts.query)))


def _dsn_problem(dsn: str) -> str | None:
    """What is wrong with a URL DSN (``postgresql://[user[:password]@][host][:port][,...][/dbname][?name=value]``),
    in words that never quote it; None when it is well formed.

    Read as asyncpg reads it: the user name and password end at the first ``@``, the host part at the first ``/``,
    ``?`` or ``#``. A special character in the password must therefore be percent-encoded, or the password spills
    into the host, the port or the path.
    """
    try:
        parts = urlsplit(dsn)
    except ValueError:  # "Invalid IPv6 URL"
        return f"the DSN cannot be parsed (an unclosed [ in its host part?): {_PERCENT_ENCODE}"
    if "@" in parts.path or "@" in parts.query or "@" in parts.fragment:
        return f"the DSN's host part ends before its @ (a /, ? or # in the password?): {_PERCENT_ENCODE}"
    if parts.netloc.count("@") > 1:
        return f"the DSN has more than one @ before its host: {_PERCENT_ENCODE}"
    if parts.fragment or dsn.endswith("#"):
        return f"the DSN has a # (which ends it): {_PERCENT_ENCODE}"
    hosts = parts.netloc.rpartition("@")[2]
    ports: list[str] = []
    for host in hosts.split(",") if hosts else ():
        match = _HOST.fullmatch(host)
        if match is None:
            return "the DSN has an empty host in its host list" if not host else "the DSN has a malformed host"
        ports.append(match.group("port") or "")
    try:
        query = parse_qs(parts.query, strict_parsing=True) if parts.query else {}
    except ValueError:
        return f"the DSN's query (after ?) must be name=value pairs joined by &: {_PERCENT_ENCODE}"
    for value in query.get("port", ()):
        ports.extend(value.split(","))
    for port in filter(None, ports):
        if not (port.isascii() and port.isdigit()):
            return f"the DSN's port is not a number: {_PERCENT_ENCODE}"
        if not 0 < int(port) < 65536:
            return "the DSN's port is outside 1..65535"
    return None


@dataclass(frozen=True, slots=True, repr=False)
class Settings:
    """Where the broker and the database are, and the Kafka clients' security settings (``kafka``)."""

    bootstrap_servers: str = DEFAULT_BOOTSTRAP_SERVERS
    dsn: str = DEFAULT_DSN
    kafka: KafkaClientConfig = field(default_factory=KafkaClientConfig)

    def __post_init__(self) -> None:
        for server in self.bootstrap_servers.split(","):
            if not _HOST_PORT.match(server.strip()):
                raise ConfigError(f"bootstrap servers must be host:port[,host:port...], got {self.bootstrap_servers!r}")
        if not self.dsn.startswith(("postgresql://", "postgres://")):
            raise ConfigError(f"the DSN must start with postgresql://, got {redact_dsn(self.dsn)!r}")
        problem = _dsn_problem(self.dsn)
        if problem is not None:
            raise ConfigError(problem)

    @classmethod
    def from_env(
        cls, environ: Mapping[str, str] | None = None, prefix: str = ENV_PREFIX, kafka: KafkaClientConfig | None = None
    ) -> Settings:
        """Settings from ``<prefix>BOOTSTRAP_SERVERS``, ``<prefix>DSN`` and the Kafka client settings (``kafka``,
        else :meth:`KafkaClientConfig.load` from the environment), with the defaults for the rest. The broker list
        may also come from the properties file's ``bootstrap.servers``."""
        env = os.environ if environ is None else environ
        kafka = KafkaClientConfig.load(env, prefix) if kafka is None else kafka
        return cls(
            bootstrap_servers=env.get(f"{prefix}BOOTSTRAP_SERVERS")
            or kafka.get("bootstrap.servers")
            or DEFAULT_BOOTSTRAP_SERVERS,
            dsn=env.get(f"{prefix}DSN") or DEFAULT_DSN,
            kafka=kafka,
        )

    def with_overrides(self, bootstrap_servers: str | None = None, dsn: str | None = None) -> Settings:
        """A copy with the given values (from command-line flags) in place of these."""
        return replace(
            self,
            bootstrap_servers=bootstrap_servers or self.bootstrap_servers,
            dsn=dsn or self.dsn,
        )

    def __repr__(self) -> str:
        return (
            f"Settings(bootstrap_servers={self.bootstrap_servers!r}, dsn={self.redacted_dsn!r}, kafka={self.kafka!r})"
        )

    def librdkafka_config(self) -> dict[str, str]:
        """The Kafka client settings for confluent-kafka (the emitter's producers), broker list included."""
        return self.kafka.librdkafka_config(self.bootstrap_servers)

    def aiokafka_kwargs(self, **defaults: Any) -> dict[str, Any]:
        """The Kafka client settings as keywords of an aiokafka client, broker list included; ``defaults`` are the
        caller's own (the settings may override ``client_id``)."""
        return self.kafka.aiokafka_kwargs(self.bootstrap_servers, **defaults)

    @property
    def redacted_dsn(self) -> str:
        return redact_dsn(self.dsn)
