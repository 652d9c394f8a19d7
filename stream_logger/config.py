"""Settings shared by every command: where Kafka and PostgreSQL are.

Each setting comes from a command-line flag, else from the environment (``STREAM_LOGGER_<NAME>``), else from the
default, which points at the local dev stack (``stream-logger dev up``).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from .errors import ConfigError

__all__ = [
    "DEFAULT_BOOTSTRAP_SERVERS",
    "DEFAULT_DEV_PG_PORT",
    "DEFAULT_DSN",
    "ENV_PREFIX",
    "Settings",
    "default_home",
    "redact_dsn",
]

ENV_PREFIX = "STREAM_LOGGER_"
DEFAULT_BOOTSTRAP_SERVERS = "127.0.0.1:9092"
DEFAULT_DEV_PG_PORT = 55432
DEFAULT_DSN = f"postgresql://stream_logger:stream_logger@127.0.0.1:{DEFAULT_DEV_PG_PORT}/stream_logger"

_HOST_PORT = re.compile(r"^[A-Za-z0-9_.\-\[\]:]+:\d{1,5}$")


def default_home(environ: Mapping[str, str] | None = None) -> Path:
    """The dev stack's state folder: ``$STREAM_LOGGER_HOME``, else ``./.stream-logger``."""
    env = os.environ if environ is None else environ
    return Path(env.get(f"{ENV_PREFIX}HOME") or ".stream-logger").absolute()


def redact_dsn(dsn: str) -> str:
    """The DSN with its password replaced by ``***``, fit for logs and error messages."""
    try:
        parts = urlsplit(dsn)
    except ValueError:
        return "<unparsable dsn>"
    if parts.password is None:
        return re.sub(r"(password\s*=\s*)\S+", r"\1***", dsn)
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


@dataclass(frozen=True, slots=True)
class Settings:
    """Where the broker and the database are."""

    bootstrap_servers: str = DEFAULT_BOOTSTRAP_SERVERS
    dsn: str = DEFAULT_DSN

    def __post_init__(self) -> None:
        for server in self.bootstrap_servers.split(","):
            if not _HOST_PORT.match(server.strip()):
                raise ConfigError(f"bootstrap servers must be host:port[,host:port...], got {self.bootstrap_servers!r}")
        if not self.dsn.startswith(("postgresql://", "postgres://")):
            raise ConfigError(f"the DSN must start with postgresql://, got {redact_dsn(self.dsn)!r}")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, prefix: str = ENV_PREFIX) -> Settings:
        """Settings from ``<prefix>BOOTSTRAP_SERVERS`` and ``<prefix>DSN``, with the defaults for the rest."""
        env = os.environ if environ is None else environ
        return cls(
            bootstrap_servers=env.get(f"{prefix}BOOTSTRAP_SERVERS") or DEFAULT_BOOTSTRAP_SERVERS,
            dsn=env.get(f"{prefix}DSN") or DEFAULT_DSN,
        )

    def with_overrides(self, bootstrap_servers: str | None = None, dsn: str | None = None) -> Settings:
        """A copy with the given values (from command-line flags) in place of these."""
        return replace(
            self,
            bootstrap_servers=bootstrap_servers or self.bootstrap_servers,
            dsn=dsn or self.dsn,
        )

    @property
    def redacted_dsn(self) -> str:
        return redact_dsn(self.dsn)
