"""The dev stack as a whole: one home folder, one Kafka broker, one PostgreSQL cluster."""

from __future__ import annotations

import logging
import os
import shlex
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from ..config import DEFAULT_DEV_PG_PORT, ENV_PREFIX, default_home
from ..errors import DevStackError
from . import process
from .kafka import KafkaService
from .postgres import PostgresService
from .status import ServiceStatus
from .tls import SCRAM_MECHANISM

__all__ = ["DEFAULT_KAFKA_CONTROLLER_PORT", "DEFAULT_KAFKA_PORT", "DevStack", "StackStatus"]

DEFAULT_KAFKA_PORT = 9092
DEFAULT_KAFKA_CONTROLLER_PORT = 9093

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class StackStatus:
    """Both services' status; ``all_running`` is what ``dev status`` turns into its exit code."""

    kafka: ServiceStatus
    postgres: ServiceStatus

    @property
    def services(self) -> tuple[ServiceStatus, ServiceStatus]:
        return (self.kafka, self.postgres)

    @property
    def all_running(self) -> bool:
        return self.kafka.running and self.postgres.running


def _port(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(f"{ENV_PREFIX}{name}")
    if not raw:
        return default
    try:
        port = int(raw)
    except ValueError:
        raise DevStackError(f"{ENV_PREFIX}{name} must be a port number, got {raw!r}") from None
    if not 0 < port < 65536:
        raise DevStackError(f"{ENV_PREFIX}{name} must be a port number, got {raw!r}")
    return port


class DevStack:
    """The local Kafka + PostgreSQL of one home folder (``./.stream-logger`` unless told otherwise).

    One home is one stack: its pid files say which processes are ours. A port that answers without being ours is
    an error, never silently shared.
    """

    def __init__(
        self,
        home: Path,
        kafka_port: int = DEFAULT_KAFKA_PORT,
        kafka_controller_port: int | None = None,
        pg_port: int = DEFAULT_DEV_PG_PORT,
        cache_dir: Path | None = None,
        kafka_secure_port: int | None = None,
    ) -> None:
        self.home = home.absolute()
        controller_port = kafka_controller_port if kafka_controller_port is not None else kafka_port + 1
        ports = [kafka_port, controller_port, pg_port, *([kafka_secure_port] if kafka_secure_port else [])]
        if len(set(ports)) != len(ports):
            raise DevStackError(
                f"the Kafka, Kafka controller, secured Kafka and PostgreSQL ports must differ, got {ports}"
            )
        self.kafka = KafkaService(self.home, kafka_port, controller_port, cache_dir, kafka_secure_port)
        self.postgres = PostgresService(self.home, pg_port)

    @classmethod
    def from_env(
        cls,
        environ: Mapping[str, str] | None = None,
        home: Path | None = None,
        kafka_port: int | None = None,
        pg_port: int | None = None,
        secure: bool = False,
        kafka_secure_port: int | None = None,
    ) -> DevStack:
        """The stack from ``STREAM_LOGGER_HOME``, ``STREAM_LOGGER_DEV_KAFKA_PORT`` (the controller takes the next
        port unless ``STREAM_LOGGER_DEV_KAFKA_CONTROLLER_PORT`` says otherwise) and ``STREAM_LOGGER_DEV_PG_PORT``;
        explicit arguments (command-line flags) win. With ``secure``, the broker also has a SASL_SSL listener on
        ``kafka_secure_port``, else ``STREAM_LOGGER_DEV_KAFKA_SECURE_PORT``, else the Kafka port + 2."""
        env = os.environ if environ is None else environ
        kafka = kafka_port if kafka_port is not None else _port(env, "DEV_KAFKA_PORT", DEFAULT_KAFKA_PORT)
        controller = _port(env, "DEV_KAFKA_CONTROLLER_PORT", kafka + 1)
        if kafka_secure_port is None and secure:
            kafka_secure_port = _port(env, "DEV_KAFKA_SECURE_PORT", kafka + 2)
        return cls(
            home=home if home is not None else default_home(env),
            kafka_port=kafka,
            kafka_controller_port=controller,
            pg_port=pg_port if pg_port is not None else _port(env, "DEV_PG_PORT", DEFAULT_DEV_PG_PORT),
            kafka_secure_port=kafka_secure_port,
        )

    @property
    def bootstrap_servers(self) -> str:
        return self.kafka.address

    @property
    def dsn(self) -> str:
        """The database URL (with the dev password: print it only through ``env_lines``)."""
        return self.postgres.dsn

    def status(self) -> StackStatus:
        """Each service's state right now."""
        return StackStatus(self.kafka.status(), self.postgres.status())

    def _check_ports_free(self, service: str, ports: list[int], option: str) -> None:
        for port in ports:
            if not process.port_is_free(port):
                raise DevStackError(
                    f"port 127.0.0.1:{port} for {service} is already taken by something that is not this dev stack "
                    f"(home {self.home}); stop it (see: ss -ltnp 'sport = :{port}') or choose another port with "
                    f"{option}"
                )

    def up(self) -> StackStatus:
        """Start whichever service is not running and return once both answer; starting nothing when both run.

        Each service's ``note`` says ``"started"`` or ``"already running"``.
        """
        kafka_pid = self.kafka.pid()
        pg_pid = self.postgres.pid()
        # Check every port before starting anything, so a conflict leaves nothing half-started.
        if kafka_pid is None:
            self._check_ports_free("Kafka", [self.kafka.port, self.kafka.controller_port], "--kafka-port")
            if self.kafka.secure_port is not None:
                self._check_ports_free("Kafka's secured listener", [self.kafka.secure_port], "--kafka-secure-port")
        elif self.kafka.secure_port is not None and not self.kafka.serves_secure_listener():
            raise DevStackError(
                f"Kafka (pid {kafka_pid}) runs without the secured listener on {self.kafka.secure_address}: "
                "stop it with stream-logger dev down (the data stays), then dev up --secure"
            )
        if pg_pid is None:
            self._check_ports_free("PostgreSQL", [self.postgres.port], "--pg-port")
        self.home.mkdir(parents=True, exist_ok=True)
        kafka_note = pg_note = "already running"
        if kafka_pid is None:
            kafka_pid = self.kafka.start()  # Kafka first: its JVM warms up while PostgreSQL starts
            kafka_note = "started"
        if pg_pid is None:
            pg_pid = self.postgres.start()
            pg_note = "started"
        self.postgres.wait_ready(pg_pid)
        self.kafka.wait_ready(kafka_pid)
        self.kafka.ensure_scram_user()
        return StackStatus(self.kafka.status(kafka_note), self.postgres.status(pg_note))

    def down(self, purge: bool = False) -> StackStatus:
        """Stop both services, keeping their data unless ``purge`` (which deletes it; the jar cache stays)."""
        kafka_note = "stopped" if self.kafka.stop() else "not running"
        pg_note = "stopped" if self.postgres.stop() else "not running"
        if purge:
            log.info("deleting the dev stack's data in %s", self.home)
            self.kafka.purge()
            self.postgres.purge()
            if self.home.exists() and not any(self.home.iterdir()):
                shutil.rmtree(self.home, ignore_errors=True)
            kafka_note += ", data deleted"
            pg_note += ", data deleted"
        return StackStatus(self.kafka.status(kafka_note), self.postgres.status(pg_note))

    def env_lines(self, secure: bool = False) -> list[str]:
        """Shell ``export`` lines pointing stream-logger at this stack (``eval "$(stream-logger dev env)"``); with
        ``secure``, at its SASL_SSL listener, the SCRAM password included (print it only here, never in a log)."""
        values = {"BOOTSTRAP_SERVERS": self.bootstrap_servers, "DSN": self.dsn}
        if secure:
            user, password = self.kafka.secure.credentials()
            values |= {
                "BOOTSTRAP_SERVERS": self.kafka.secure_address,
                "KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
                "KAFKA_SASL_MECHANISM": SCRAM_MECHANISM,
                "KAFKA_SASL_USERNAME": user,
                "KAFKA_SASL_PASSWORD": password,
                "KAFKA_SSL_CA_LOCATION": str(self.kafka.secure.ca.cert),
            }
        return [f"export {ENV_PREFIX}{name}={shlex.quote(value)}" for name, value in values.items()]
