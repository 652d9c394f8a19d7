"""Kafka client settings beyond the broker list: SASL and TLS, and any other client setting, for both clients.

Settings are held by the names Python Kafka users know from confluent-kafka (librdkafka): ``security.protocol``,
``sasl.mechanism``, ``sasl.username``, ``ssl.ca.location``, ``client.id``... Each comes from a command-line flag,
else the environment, else the properties file (``--kafka-config FILE``, ``STREAM_LOGGER_KAFKA_CONFIG``), else the
default (PLAINTEXT). :data:`SECURITY_SETTINGS` names those with a flag, an environment variable and an ``Emitter``
keyword of their own, all three derived from the librdkafka name (``ssl.ca.location``: ``--kafka-ssl-ca-location``,
``STREAM_LOGGER_KAFKA_SSL_CA_LOCATION``, ``Emitter(ssl_ca_location=...)``).

Two renderings, each made here only: :meth:`KafkaClientConfig.librdkafka_config` for the emitter's producers, and
:meth:`KafkaClientConfig.aiokafka_kwargs` for the aiokafka clients (workers, replay, topic administration, the demo),
where the names differ (:data:`AIOKAFKA_NAMES`, and the ``ssl.*`` files become an ``ssl_context``). A setting of the
file that aiokafka cannot honour is a :class:`~stream_logger.errors.ConfigError` naming it when an aiokafka client is
made, unless it only concerns producers (:data:`PRODUCER_ONLY`: it then goes to librdkafka alone). Settings
stream-logger itself decides (``acks``, ``group.id``...) are refused in the file, with the option to use instead.

Secrets (any setting whose name holds ``password`` or ``secret``) never appear in a ``repr``, a log line or an
error message: :meth:`KafkaClientConfig.mask` replaces their values in a text from a client library.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypedDict, cast

from .errors import ConfigError

if TYPE_CHECKING:
    import ssl

__all__ = [
    "AIOKAFKA_NAMES",
    "PRODUCER_ONLY",
    "SECURITY_SETTINGS",
    "KafkaClientConfig",
    "KafkaSecurityOptions",
    "env_name",
    "flag_name",
    "is_secret",
    "keyword_name",
    "read_properties",
]

SECURITY_PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
SASL_MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")
CONFIG_FILE_ENV = "KAFKA_CONFIG"


class KafkaSecurityOptions(TypedDict, total=False):
    """The ``Emitter(...)`` keywords of the security settings: the librdkafka name with ``_`` for ``.``; and
    ``kafka_config``, a properties file or a :class:`KafkaClientConfig` (a ``Settings.kafka``) to start from."""

    security_protocol: str
    sasl_mechanism: str
    sasl_username: str
    sasl_password: str
    ssl_ca_location: str
    ssl_certificate_location: str
    ssl_key_location: str
    ssl_key_password: str
    kafka_config: str | os.PathLike[str] | KafkaClientConfig


SECURITY_SETTINGS: dict[str, str] = {
    "security.protocol": "PLAINTEXT (default), SSL, SASL_PLAINTEXT or SASL_SSL",
    "sasl.mechanism": "PLAIN (default with SASL), SCRAM-SHA-256 or SCRAM-SHA-512",
    "sasl.username": "the SASL user name (an API key on Confluent Cloud)",
    "sasl.password": "the SASL password (prefer the environment variable: a flag shows in ps)",
    "ssl.ca.location": "a PEM file of the CAs to trust (default: the system's)",
    "ssl.certificate.location": "the client certificate (PEM) for mutual TLS",
    "ssl.key.location": "the client certificate's private key (PEM)",
    "ssl.key.password": "the private key's password, if it is encrypted",
}
"""The settings with a flag, an environment variable and an Emitter keyword, with their help text."""

AIOKAFKA_NAMES: dict[str, str] = {
    "security.protocol": "security_protocol",
    "sasl.mechanism": "sasl_mechanism",
    "sasl.username": "sasl_plain_username",
    "sasl.password": "sasl_plain_password",
    "client.id": "client_id",
    "connections.max.idle.ms": "connections_max_idle_ms",
    "retry.backoff.ms": "retry_backoff_ms",
    "request.timeout.ms": "request_timeout_ms",
    "sasl.kerberos.service.name": "sasl_kerberos_service_name",
}
"""librdkafka names and the aiokafka keyword that honours each (values ending in ``.ms`` are whole numbers)."""

_TLS_FILES = ("ssl.ca.location", "ssl.certificate.location", "ssl.key.location", "ssl.key.password")
_TLS_SETTINGS = (*_TLS_FILES, "ssl.endpoint.identification.algorithm")
"""Honoured for aiokafka through its ``ssl_context``."""

PRODUCER_ONLY = frozenset(
    {
        "retries",
        "message.send.max.retries",
        "retry.backoff.max.ms",
        "partitioner",
        "sticky.partitioning.linger.ms",
        "queue.buffering.backpressure.threshold",
        "batch.num.messages",
        "compression.level",
    }
)
"""librdkafka settings that concern producers only: passed to the emitter's producers, unknown to consumers."""

_ALIASES = {"sasl.mechanisms": "sasl.mechanism"}
"""librdkafka's other spellings (Confluent Cloud's client.properties writes ``sasl.mechanisms``)."""

_DECIDED_BY_STREAM_LOGGER: dict[str, str] = {
    "acks": "the emitter waits for every replica (acks=all)",
    "enable.idempotence": "the emitter's producer is idempotent",
    "compression.type": "use Emitter(compression=...)",
    "compression.codec": "use Emitter(compression=...)",
    "linger.ms": "use Emitter(linger_ms=...)",
    "queue.buffering.max.ms": "use Emitter(linger_ms=...)",
    "batch.size": "use Emitter(max_batch_bytes=...)",
    "message.timeout.ms": "use Emitter(delivery_timeout_s=...)",
    "delivery.timeout.ms": "use Emitter(delivery_timeout_s=...)",
    "queue.buffering.max.kbytes": "use Emitter(max_buffer_bytes=...)",
    "queue.buffering.max.messages": "use Emitter(max_buffer_bytes=...)",
    "delivery.report.only.error": "the emitter hears of failed deliveries only",
    "message.max.bytes": "the emitter sizes it from max_batch_bytes",
    "group.id": "use consume --group",
    "enable.auto.commit": "workers commit offsets with the rows, in PostgreSQL",
    "auto.offset.reset": "workers start from the earliest offset a new group has",
    "isolation.level": "workers read committed records only",
    "metadata.max.age.ms": "workers refresh metadata on their own schedule",
    "sasl.jaas.config": "a Java client setting: set sasl.username and sasl.password instead",
    "ssl.truststore.location": "a Java client setting: set ssl.ca.location (PEM) instead",
}


def env_name(setting: str, prefix: str = "STREAM_LOGGER_") -> str:
    """``ssl.ca.location`` -> ``STREAM_LOGGER_KAFKA_SSL_CA_LOCATION``."""
    return f"{prefix}KAFKA_{setting.upper().replace('.', '_')}"


def flag_name(setting: str) -> str:
    """``ssl.ca.location`` -> ``--kafka-ssl-ca-location``."""
    return f"--kafka-{setting.replace('.', '-')}"


def keyword_name(setting: str) -> str:
    """``ssl.ca.location`` -> ``ssl_ca_location`` (the Emitter keyword and the argparse destination)."""
    return setting.replace(".", "_")


def is_secret(setting: str) -> bool:
    return "password" in setting or "secret" in setting


def read_properties(path: str | os.PathLike[str]) -> dict[str, str]:
    """The ``name=value`` lines of a properties file; ``#`` and ``!`` start comment lines, blank lines are skipped.

    Only the first ``=`` separates (a value may hold more); no line continuations. Errors name the line, never
    its text (it may hold a password).
    """
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read the Kafka client settings file {os.fspath(path)}: {exc}") from None
    settings: dict[str, str] = {}
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line[0] in "#!":
            continue
        name, sep, value = line.partition("=")
        if not sep or not name.strip():
            raise ConfigError(f"{os.fspath(path)} line {number}: expected name=value")
        settings[name.strip()] = value.strip()
    return settings


@dataclass(frozen=True, slots=True, repr=False)
class KafkaClientConfig:
    """Kafka client settings by librdkafka name (``bootstrap.servers`` aside: :class:`~stream_logger.config.Settings`
    holds the broker list). ``source`` says where they came from, for error messages."""

    properties: tuple[tuple[str, str], ...] = ()
    source: str = "the Kafka client settings"

    def __post_init__(self) -> None:
        props = dict(self.properties)
        for name, reason in _DECIDED_BY_STREAM_LOGGER.items():
            if name in props:
                raise ConfigError(f"{self.source}: {name} cannot be set: {reason}")
        protocol = props.get("security.protocol", "PLAINTEXT")
        if protocol.upper() not in SECURITY_PROTOCOLS:
            raise ConfigError(f"security.protocol must be one of {', '.join(SECURITY_PROTOCOLS)}, got {protocol!r}")
        sasl, tls = protocol.upper().startswith("SASL_"), protocol.upper().endswith("SSL")
        mechanism = props.get("sasl.mechanism")
        if mechanism is not None and mechanism.upper() not in SASL_MECHANISMS:
            raise ConfigError(f"sasl.mechanism must be one of {', '.join(SASL_MECHANISMS)}, got {mechanism!r}")
        if sasl and not (props.get("sasl.username") and props.get("sasl.password")):
            raise ConfigError(
                f"security.protocol {protocol} needs sasl.username and sasl.password "
                f"({env_name('sasl.username')}, {env_name('sasl.password')})"
            )
        stray = [n for n in props if (n.startswith("sasl.") and not sasl) or (n in _TLS_SETTINGS and not tls)]
        if stray:
            raise ConfigError(f"{', '.join(stray)} set, but security.protocol is {protocol}: set it as well")

    @classmethod
    def load(
        cls,
        environ: Mapping[str, str] | None = None,
        prefix: str = "STREAM_LOGGER_",
        overrides: Mapping[str, Any] | None = None,
    ) -> KafkaClientConfig:
        """The settings from ``overrides`` (flags or Emitter keywords, by :func:`keyword_name`, None for unset),
        else the environment, else the properties file (``kafka_config`` there, else ``<prefix>KAFKA_CONFIG``).

        A KafkaClientConfig as ``kafka_config`` stands for the environment and the file: only the overrides change it.
        """
        env = os.environ if environ is None else environ
        given = {k: v for k, v in (overrides or {}).items() if v is not None and v != ""}
        config_file = given.get("kafka_config") or env.get(f"{prefix}{CONFIG_FILE_ENV}")
        props: dict[str, str] = {}
        source = "the Kafka client settings"
        if isinstance(config_file, KafkaClientConfig):
            props, source, env = dict(config_file.properties), config_file.source, {}
        elif config_file:
            source = os.fspath(config_file)
            props = _canonical(read_properties(config_file), source)
        for name in SECURITY_SETTINGS:
            setting = given.get(keyword_name(name)) or env.get(env_name(name, prefix))
            if setting:
                props[name] = str(setting)
        return cls(tuple(_canonical(props, source).items()), source)

    @classmethod
    def from_properties(cls, properties: Mapping[str, object], source: str) -> KafkaClientConfig:
        """Settings given by librdkafka name, as a properties file holds them (``{"security.protocol": "SASL_SSL",
        "sasl.username": ...}``): librdkafka's other spellings accepted, values strings or numbers. ``source``
        names where they come from in error messages."""
        return cls(tuple(_canonical(properties, source).items()), source)

    def get(self, name: str) -> str | None:
        return dict(self.properties).get(name)

    def __repr__(self) -> str:
        shown = ", ".join(f"{n}={'***' if is_secret(n) else repr(v)}" for n, v in self.properties)
        return f"KafkaClientConfig({shown})"

    def mask(self, text: str) -> str:
        """``text`` with every secret value replaced by ``***`` (for messages from the client libraries)."""
        for name, value in self.properties:
            if is_secret(name) and value:
                text = text.replace(value, "***")
        return text

    def describe(self) -> str:
        """How the client authenticates, for error messages: ``SASL_SSL, SCRAM-SHA-512 as user u``."""
        protocol = self.get("security.protocol") or "PLAINTEXT"
        if protocol.startswith("SASL_"):
            return f"{protocol}, SASL {self.get('sasl.mechanism') or 'PLAIN'} as user {self.get('sasl.username')}"
        return protocol

    # ---- the two renderings ------------------------------------------------------------------------------------

    def librdkafka_config(self, bootstrap_servers: str) -> dict[str, str]:
        """confluent-kafka's configuration: every setting as is (librdkafka validates the names it knows)."""
        config = {**dict(self.properties), "bootstrap.servers": bootstrap_servers}  # a file's list comes last
        if (config.get("security.protocol") or "").startswith("SASL_"):
            config.setdefault("sasl.mechanism", "PLAIN")  # librdkafka's own default, GSSAPI, needs Kerberos
        return config

    def aiokafka_kwargs(self, bootstrap_servers: str, **defaults: Any) -> dict[str, Any]:
        """aiokafka's keywords (``defaults`` are the caller's own, which the settings may override: ``client_id``).

        Raises ConfigError for a setting aiokafka cannot honour.
        """
        kwargs: dict[str, Any] = {**defaults, "bootstrap_servers": bootstrap_servers}
        props = dict(self.properties)
        for name, value in props.items():
            if name in AIOKAFKA_NAMES:
                key = AIOKAFKA_NAMES[name]
                kwargs[key] = _whole_number(name, value) if name.endswith(".ms") else value
            elif name not in _TLS_SETTINGS and name not in PRODUCER_ONLY and name != "bootstrap.servers":
                raise ConfigError(
                    f"{self.source}: {name} has no equivalent in the consumer's client (aiokafka), so it cannot be "
                    "honoured there; see the README's table of Kafka client settings"
                )
        if kwargs.get("security_protocol", "PLAINTEXT").startswith("SASL_"):
            kwargs.setdefault("sasl_mechanism", "PLAIN")
        if kwargs.get("security_protocol", "PLAINTEXT").endswith("SSL"):
            kwargs["ssl_context"] = self._ssl_context(props)
        return kwargs

    def _ssl_context(self, props: Mapping[str, str]) -> ssl.SSLContext:
        from aiokafka.helpers import create_ssl_context

        ca = props.get("ssl.ca.location")
        try:
            context = create_ssl_context(
                cafile=ca if ca and not Path(ca).is_dir() else None,
                capath=ca if ca and Path(ca).is_dir() else None,
                certfile=props.get("ssl.certificate.location"),
                keyfile=props.get("ssl.key.location"),
                password=props.get("ssl.key.password"),
            )
        except (OSError, ValueError) as exc:  # ssl.SSLError is an OSError
            files = ", ".join(f"{n} {props[n]}" for n in _TLS_FILES[:3] if n in props)
            raise ConfigError(f"the TLS files cannot be loaded ({files}): {self.mask(str(exc))}") from None
        algorithm = props.get("ssl.endpoint.identification.algorithm", "https").lower()
        if algorithm not in ("https", "none"):
            raise ConfigError(f"ssl.endpoint.identification.algorithm must be https or none, got {algorithm!r}")
        context.check_hostname = algorithm == "https"
        return cast("ssl.SSLContext", context)


def _canonical(properties: Mapping[str, object], source: str) -> dict[str, str]:
    """Settings under their one name (``sasl.mechanisms`` is ``sasl.mechanism``), as strings, with the protocol and
    the mechanism upper-cased. A value that is neither a string nor a number is refused, naming the setting only."""
    props: dict[str, str] = {}
    for name, value in properties.items():
        if not isinstance(name, str) or isinstance(value, bool) or not isinstance(value, str | int | float):
            raise ConfigError(f"{source}: the setting {name!r} must be a string or a number")
        props[_ALIASES.get(name, name)] = str(value)
    for name in ("security.protocol", "sasl.mechanism"):
        if name in props:
            props[name] = props[name].upper()
    return props


def _whole_number(name: str, value: str) -> int:
    try:
        return int(value)
    except ValueError:
        raise ConfigError(f"{name} must be a whole number of milliseconds, got {value!r}") from None
