"""The credentials of the OpenScale-style client (:mod:`stream_logger.openscale_client`), read into settings.

Two kinds, as a ported script passes them:

- ``APIClient(credentials)`` names Kafka, the topic and, optionally, the database::

      {"bootstrap_servers": "kafka-1:9092,kafka-2:9092",   # or a list of host:port
       "topic": "scoring",
       "dsn": "postgresql://user:pw@db:5432/monitoring",    # or an OpenScale PostgreSQL dict (below)
       "schema": "datamart",
       "kafka_config": "client.properties",                 # or a dict by librdkafka name, or a KafkaClientConfig
       "sasl_username": "...", "sasl_password": "...",      # any keyword of KafkaSecurityOptions
       "in_process_worker": True}                           # run a worker in this process (see the client)

  Every key is optional; what is missing comes from :meth:`Settings.from_env` (``STREAM_LOGGER_BOOTSTRAP_SERVERS``,
  ``STREAM_LOGGER_DSN``, the Kafka client settings of the environment), the topic ``scoring`` and the schema
  ``datamart``.
- ``data_mart.setup(db_credentials)`` takes OpenScale's PostgreSQL credentials: ``{"db_type": "postgresql", "uri":
  "postgres://user:pw@host:5432/db"}``, or ``{"db_type": "postgresql", "hostname", "port", "username",
  "password", "db"}`` (``dbname`` for ``db``), or a DSN string.

Malformed credentials raise :class:`~stream_logger.errors.CredentialsError` naming the key at fault; no message
quotes a password (nor a DSN, except with its password as ``***``). No I/O here.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import quote

from .config import ENV_PREFIX, Settings
from .errors import ConfigError, CredentialsError, IdentifierError
from .identifiers import validate_schema_name
from .kafka_config import KafkaClientConfig, KafkaSecurityOptions

__all__ = [
    "CREDENTIAL_KEYS",
    "DB_CREDENTIAL_KEYS",
    "DEFAULT_SCHEMA",
    "DEFAULT_TOPIC",
    "ClientSettings",
    "client_settings",
    "dsn_from_db_credentials",
]

DEFAULT_TOPIC: Final = "scoring"
DEFAULT_SCHEMA: Final = "datamart"

_SECURITY_KEYS: Final = tuple(k for k in KafkaSecurityOptions.__annotations__ if k != "kafka_config")
CREDENTIAL_KEYS: Final = (
    "bootstrap_servers",
    "topic",
    "dsn",
    "schema",
    "kafka_config",
    *_SECURITY_KEYS,
    "in_process_worker",
)
"""The keys ``APIClient(credentials)`` accepts."""
DB_CREDENTIAL_KEYS: Final = ("db_type", "uri", "hostname", "port", "username", "password", "db", "dbname")
"""The keys of OpenScale's PostgreSQL credentials that ``data_mart.setup(db_credentials)`` accepts."""

_TOPIC = re.compile(r"^[A-Za-z0-9._-]{1,249}$")
_POSTGRESQL = ("postgresql", "postgres")


@dataclass(frozen=True, slots=True, repr=False)
class ClientSettings:
    """What a client's credentials come to: where Kafka and PostgreSQL are, the topic, the datamart schema, and
    whether the client runs a worker in its own process."""

    settings: Settings
    topic: str = DEFAULT_TOPIC
    schema: str = DEFAULT_SCHEMA
    in_process_worker: bool = False

    def __repr__(self) -> str:
        return (
            f"ClientSettings({self.settings!r}, topic={self.topic!r}, schema={self.schema!r}, "
            f"in_process_worker={self.in_process_worker})"
        )


def client_settings(credentials: Mapping[str, Any] | None, environ: Mapping[str, str] | None = None) -> ClientSettings:
    """``APIClient``'s credentials read (see the module's docstring); ``environ`` stands for ``os.environ``."""
    if credentials is None:
        credentials = {}
    if not isinstance(credentials, Mapping):
        raise CredentialsError(
            f"the credentials must be a dict (or None for the usual settings), not {type(credentials).__name__}"
        )
    _refuse_unknown_keys(
        credentials, CREDENTIAL_KEYS, "the credentials",
        " (an OpenScale service's apikey and url have no use here: name Kafka and PostgreSQL instead)",
    )  # fmt: skip
    env = os.environ if environ is None else environ
    kafka = _kafka_config(credentials, env)
    try:
        defaults = Settings.from_env(env, kafka=kafka)
    except ConfigError as exc:
        raise CredentialsError(f"the settings from the environment ({ENV_PREFIX}...): {exc}") from None
    servers = _bootstrap_servers(credentials.get("bootstrap_servers")) or kafka.get("bootstrap.servers")
    dsn = dsn_from_db_credentials(credentials.get("dsn"), defaults.dsn, where="credentials['dsn']")
    try:
        settings = Settings(bootstrap_servers=servers or defaults.bootstrap_servers, dsn=dsn, kafka=kafka)
    except ConfigError as exc:
        raise CredentialsError(f"the credentials: {exc}") from None
    topic = credentials.get("topic", DEFAULT_TOPIC)
    if not isinstance(topic, str) or not _TOPIC.match(topic):
        raise CredentialsError(
            "credentials['topic'] must be a Kafka topic name: 1 to 249 letters, digits, '.', '_' or '-'"
        )
    schema = credentials.get("schema", DEFAULT_SCHEMA)
    try:
        validate_schema_name(schema)
    except IdentifierError as exc:
        raise CredentialsError(f"credentials['schema']: {exc}") from None
    in_process_worker = credentials.get("in_process_worker", False)
    if not isinstance(in_process_worker, bool):
        raise CredentialsError("credentials['in_process_worker'] must be True or False")
    return ClientSettings(settings, topic, schema, in_process_worker)


def _bootstrap_servers(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, list | tuple) and value and all(isinstance(v, str) for v in value):
        value = ",".join(value)
    if not isinstance(value, str) or not value.strip():
        raise CredentialsError(
            "credentials['bootstrap_servers'] must be host:port[,host:port...], as a string or a list of strings"
        )
    return value


def _kafka_config(credentials: Mapping[str, Any], env: Mapping[str, str]) -> KafkaClientConfig:
    """The Kafka client settings: the security keys of the credentials over their ``kafka_config`` (a properties
    file, a dict by librdkafka name, or a KafkaClientConfig), else over the environment's."""
    overrides: dict[str, Any] = {k: credentials[k] for k in _SECURITY_KEYS if credentials.get(k) is not None}
    for key, value in overrides.items():
        if not isinstance(value, str):
            raise CredentialsError(f"credentials[{key!r}] must be a string")
    config = credentials.get("kafka_config")
    try:
        if isinstance(config, Mapping):
            config = KafkaClientConfig.from_properties(config, "credentials['kafka_config']")
        elif config is not None and not isinstance(config, str | os.PathLike | KafkaClientConfig):
            raise CredentialsError(
                "credentials['kafka_config'] must be a properties file's path, a dict of Kafka client settings "
                "by librdkafka name, or a KafkaClientConfig"
            )
        if config is not None:
            overrides["kafka_config"] = config
        return KafkaClientConfig.load(env, overrides=overrides)
    except CredentialsError:
        raise
    except ConfigError as exc:
        raise CredentialsError(f"the credentials' Kafka settings: {exc}") from None


def dsn_from_db_credentials(
    db_credentials: Mapping[str, Any] | str | None, default_dsn: str, where: str = "db_credentials"
) -> str:
    """The DSN OpenScale's PostgreSQL credentials name (see the module's docstring); ``default_dsn`` for None.

    Raises :class:`CredentialsError` naming the key at fault (``where`` names the credentials in the message).
    """
    if db_credentials is None:
        return default_dsn
    if isinstance(db_credentials, str):
        return _checked(db_credentials, where)
    if not isinstance(db_credentials, Mapping):
        raise CredentialsError(
            f"{where} must be a dict of PostgreSQL credentials or a DSN, not {type(db_credentials).__name__}"
        )
    _refuse_unknown_keys(db_credentials, DB_CREDENTIAL_KEYS, where)
    db_type = db_credentials.get("db_type", "postgresql")
    if not isinstance(db_type, str) or db_type.lower() not in _POSTGRESQL:
        shown = repr(db_type) if isinstance(db_type, str) else type(db_type).__name__
        raise CredentialsError(f"{where}['db_type'] is {shown}: the datamart is PostgreSQL ('postgresql')")
    parts = [k for k in ("hostname", "port", "username", "password", "db", "dbname") if k in db_credentials]
    if "uri" in db_credentials:
        if parts:
            raise CredentialsError(f"{where}: give either 'uri' or {', '.join(map(repr, parts))}, not both")
        uri = db_credentials["uri"]
        if not isinstance(uri, str):
            raise CredentialsError(f"{where}['uri'] must be a string (postgres://user:password@host:port/db)")
        return _checked(uri, f"{where}['uri']")
    return _checked(_dsn_of_parts(db_credentials, where), where)


def _dsn_of_parts(creds: Mapping[str, Any], where: str) -> str:
    """``postgresql://user:password@host:port/db`` from OpenScale's separate keys, each part percent-encoded."""
    texts: dict[str, str] = {}
    for key in ("hostname", "username", "password", "db", "dbname"):
        value = creds.get(key)
        if value is not None and (not isinstance(value, str) or not value):
            raise CredentialsError(f"{where}[{key!r}] must be a non-empty string")
        if value is not None:
            texts[key] = value
    if "hostname" not in texts:
        raise CredentialsError(f"{where} needs 'uri', or 'hostname' (with 'port', 'username', 'password', 'db')")
    if "db" in texts and "dbname" in texts and texts["db"] != texts["dbname"]:
        raise CredentialsError(f"{where}: 'db' and 'dbname' name different databases; give one")
    port = creds.get("port")
    if port is not None:
        text = str(port) if isinstance(port, int) and not isinstance(port, bool) else port
        if not isinstance(text, str) or not (text.isascii() and text.isdigit()) or not 0 < int(text) < 65536:
            raise CredentialsError(f"{where}['port'] must be a port number, 1 to 65535")
        port = int(text)
    host = texts["hostname"]
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"  # an IPv6 address
    user_info = ""
    if "username" in texts:
        user_info = quote(texts["username"], safe="")
        if "password" in texts:
            user_info += ":" + quote(texts["password"], safe="")
        user_info += "@"
    elif "password" in texts:
        raise CredentialsError(f"{where} has a 'password' but no 'username'")
    database = texts.get("db") or texts.get("dbname")
    return (
        f"postgresql://{user_info}{host}{'' if port is None else f':{port}'}"
        f"{'' if database is None else '/' + quote(database, safe='')}"
    )


def _checked(dsn: str, where: str) -> str:
    """``dsn`` if it is a well-formed PostgreSQL URL; else a CredentialsError that never quotes it."""
    try:
        Settings(dsn=dsn)
    except ConfigError as exc:
        raise CredentialsError(f"{where}: {exc}") from None
    return dsn


def _refuse_unknown_keys(given: Mapping[Any, Any], accepted: Sequence[str], where: str, hint: str = "") -> None:
    """Raise CredentialsError naming the keys of ``given`` not ``accepted`` (never a value: it may be a secret)."""
    unknown = [k for k in given if k not in accepted]
    if unknown:
        shown = ", ".join(repr(k) if isinstance(k, str) else type(k).__name__ for k in unknown)
        raise CredentialsError(f"unknown key(s) in {where}: {shown}; accepted: {', '.join(accepted)}{hint}")
