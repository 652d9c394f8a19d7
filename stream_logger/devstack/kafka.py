"""The dev stack's Apache Kafka broker: one KRaft node (broker and controller) run from jars fetched by Maven.

The jars are gathered once into a cache folder outside the repository (``~/.cache/stream-logger/kafka-<version>/``,
or ``$STREAM_LOGGER_CACHE``), so the second ``up`` downloads nothing. The broker's configuration, data, pid file
and log live under ``<home>/kafka/``, a folder only its user can enter (``0700``; the broker runs with umask
``077``).
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import logging
import os
import re
import shutil
import subprocess
import uuid
from collections.abc import Iterator, Mapping
from importlib import resources
from pathlib import Path
from string import Template

from ..errors import DevStackError
from ..sync import run_sync
from . import process
from .status import ServiceStatus
from .tls import SCRAM_MECHANISM, SecureListener

__all__ = [
    "DEPENDENCY_PLUGIN_VERSION",
    "KAFKA_VERSION",
    "LOG4J_VERSION",
    "MIN_JAVA_VERSION",
    "KafkaService",
    "default_cache_dir",
    "parse_java_version",
    "render_pom",
    "render_server_properties",
]

KAFKA_VERSION = "4.1.1"
LOG4J_VERSION = "2.24.3"
DEPENDENCY_PLUGIN_VERSION = "3.8.1"
MIN_JAVA_VERSION = 17
HEAP_OPTS = ("-Xms128m", "-Xmx512m")
READY_TIMEOUT_S = 120.0
STOP_TIMEOUT_S = 30.0
HOST = "127.0.0.1"

log = logging.getLogger(__name__)


def _template(name: str) -> Template:
    return Template(resources.files(__package__).joinpath(name).read_text())


def render_pom(kafka_version: str = KAFKA_VERSION) -> str:
    """The POM whose runtime dependencies are the broker's jars plus a log4j2 backend."""
    return _template("pom.xml").substitute(
        kafka_version=kafka_version, log4j_version=LOG4J_VERSION, dependency_plugin_version=DEPENDENCY_PLUGIN_VERSION
    )


def render_server_properties(
    port: int, controller_port: int, log_dir: Path, secure_port: int | None = None, key_store: Path | None = None
) -> str:
    """The single-node KRaft ``server.properties`` for a broker on ``127.0.0.1:port``; with ``secure_port``, also
    a SASL_SSL listener there (SCRAM-SHA-512, the PEM ``key_store``). Inter-broker and controller traffic stay
    plaintext on loopback."""
    secure_listener = secure_settings = ""
    if secure_port is not None:
        assert key_store is not None
        secure_listener = f",SASL_SSL://{HOST}:{secure_port}"
        secure_settings = "\n".join(
            [
                "# The secured listener (dev up --secure): SCRAM users are created at format time.",
                f"sasl.enabled.mechanisms={SCRAM_MECHANISM}",
                f"listener.name.sasl_ssl.sasl.enabled.mechanisms={SCRAM_MECHANISM}",
                f"listener.name.sasl_ssl.{SCRAM_MECHANISM.lower()}.sasl.jaas.config="
                "org.apache.kafka.common.security.scram.ScramLoginModule required;",
                "listener.name.sasl_ssl.ssl.keystore.type=PEM",
                f"listener.name.sasl_ssl.ssl.keystore.location={_escaped(key_store)}",
                "",
            ]
        )
    return _template("server.properties").substitute(
        host=HOST,
        port=port,
        controller_port=controller_port,
        log_dirs=_escaped(log_dir),
        secure_listener=secure_listener,
        secure_settings=secure_settings,
    )


def _escaped(path: Path) -> str:
    return str(path).replace("\\", "\\\\")


def parse_java_version(output: str) -> int:
    """The major version from ``java -version`` output (``"1.8.0_292"`` is 8, ``"17.0.15"`` is 17, ``"21"`` is 21)."""
    match = re.search(r'version "([^"]+)"', output)
    if not match:
        raise DevStackError(f"cannot tell the Java version from `java -version`: {output.strip()[:200]!r}")
    parts = re.split(r"[.\-+_]", match.group(1))
    try:
        major = int(parts[1] if parts[0] == "1" and len(parts) > 1 else parts[0])
    except ValueError as exc:
        raise DevStackError(f"cannot tell the Java version from {match.group(1)!r}") from exc
    return major


def default_cache_dir(environ: Mapping[str, str] | None = None) -> Path:
    """Where downloaded jars are kept: ``$STREAM_LOGGER_CACHE``, else ``$XDG_CACHE_HOME/stream-logger``."""
    env = os.environ if environ is None else environ
    if env.get("STREAM_LOGGER_CACHE"):
        return Path(env["STREAM_LOGGER_CACHE"]).absolute()
    base = Path(env["XDG_CACHE_HOME"]) if env.get("XDG_CACHE_HOME") else Path.home() / ".cache"
    return base / "stream-logger"


def new_cluster_id() -> str:
    """A KRaft cluster id as Kafka's ``StorageTool random-uuid`` makes it (URL-safe base64, no padding)."""
    while True:
        text = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not text.startswith("-"):  # Kafka avoids ids that look like a command-line option
            return text


@contextlib.contextmanager
def _locked(lock_file: Path) -> Iterator[None]:
    """Hold an exclusive lock, so two ``up`` commands never fill the same jar cache at once."""
    lock_file.parent.mkdir(parents=True, exist_ok=True)
    with lock_file.open("a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


class KafkaService:
    """The broker of one dev-stack home, on ``127.0.0.1:port`` with its controller on ``controller_port``."""

    name = "kafka"

    def __init__(
        self,
        home: Path,
        port: int,
        controller_port: int,
        cache_dir: Path | None = None,
        secure_port: int | None = None,
    ) -> None:
        self.dir = home / "kafka"
        self.port = port
        self.controller_port = controller_port
        self.secure_port = secure_port
        """The SASL_SSL listener's port (``dev up --secure``); None: plaintext only."""
        self.secure = SecureListener(self.dir / "secure")
        self.scram_marker = self.dir / "data" / ".scram-user"
        self.jar_cache = (cache_dir or default_cache_dir()) / f"kafka-{KAFKA_VERSION}"
        self.pid_file = self.dir / "kafka.pid"
        self.log_file = self.dir / "kafka.log"
        self.config_file = self.dir / "server.properties"
        self.log4j_file = self.dir / "log4j2.properties"
        self.data_dir = self.dir / "data"

    @property
    def address(self) -> str:
        return f"{HOST}:{self.port}"

    @property
    def secure_address(self) -> str:
        if self.secure_port is None:
            raise DevStackError("this dev stack has no secured listener: start it with dev up --secure")
        return f"{HOST}:{self.secure_port}"

    def serves_secure_listener(self) -> bool:
        """Whether the running broker's configuration has the SASL_SSL listener on ``secure_port``."""
        try:
            text = self.config_file.read_text()
        except OSError:
            return False
        return self.secure_port is not None and f"SASL_SSL://{HOST}:{self.secure_port}" in text

    # -- state ---------------------------------------------------------------------------------------------------

    def pid(self) -> int | None:
        """The broker's pid when the process in this home's pid file is alive and is our broker."""
        pid = process.read_pid(self.pid_file)
        if not process.is_alive(pid):
            return None
        assert pid is not None
        cmdline = process.process_cmdline(pid)
        if "kafka.Kafka" not in cmdline or str(self.config_file) not in cmdline:
            return None  # the pid was reused by something else
        return pid

    def status(self, note: str = "") -> ServiceStatus:
        pid = self.pid()
        running = pid is not None and process.port_accepts(self.port)
        rss = process.rss_bytes([pid]) if pid is not None else None
        return ServiceStatus(self.name, running, pid, self.address, note, rss)

    # -- prerequisites -------------------------------------------------------------------------------------------

    @staticmethod
    def java() -> str:
        """The ``java`` executable (``$JAVA_HOME/bin/java``, else from PATH), checked to be Java 17 or newer."""
        java_home = os.environ.get("JAVA_HOME")
        java = str(Path(java_home) / "bin" / "java") if java_home else shutil.which("java")
        if not java or not Path(java).exists():
            raise DevStackError(
                f"Java {MIN_JAVA_VERSION}+ is needed for the Kafka broker and none was found "
                "(on Debian: apt-get install openjdk-17-jre-headless)"
            )
        result = subprocess.run([java, "-version"], capture_output=True, text=True, check=False)
        version = parse_java_version(result.stderr + result.stdout)
        if version < MIN_JAVA_VERSION:
            raise DevStackError(
                f"Kafka {KAFKA_VERSION} needs Java {MIN_JAVA_VERSION} or newer; {java} is Java {version} "
                "(set JAVA_HOME to a newer one, or on Debian: apt-get install openjdk-17-jre-headless)"
            )
        return java

    def jars(self) -> Path:
        """The folder of broker jars, downloaded through Maven the first time."""
        jar_dir = self.jar_cache / "jars"
        done = self.jar_cache / ".complete"
        if done.exists():
            return jar_dir
        with _locked(self.jar_cache / ".lock"):
            if done.exists():  # another `up` finished the download while we waited
                return jar_dir
            mvn = shutil.which("mvn")
            if not mvn:
                raise DevStackError(
                    "Maven (mvn) is needed once, to fetch the Kafka jars from Maven Central, and was not found "
                    "(on Debian: apt-get install maven)"
                )
            log.info(
                "fetching the Kafka %s jars through Maven into %s (once; later starts reuse them)",
                KAFKA_VERSION,
                jar_dir,
            )
            shutil.rmtree(jar_dir, ignore_errors=True)
            (self.jar_cache / "pom.xml").write_text(render_pom())
            argv = [
                mvn,
                "-q",
                "-B",
                "-f",
                str(self.jar_cache / "pom.xml"),
                f"org.apache.maven.plugins:maven-dependency-plugin:{DEPENDENCY_PLUGIN_VERSION}:copy-dependencies",
                "-DincludeScope=runtime",
                f"-DoutputDirectory={jar_dir}",
            ]
            result = subprocess.run(argv, capture_output=True, text=True, check=False)
            if result.returncode != 0 or not any(jar_dir.glob("kafka_2.13-*.jar")):
                output = "\n".join((result.stdout + result.stderr).splitlines()[-20:])
                raise DevStackError(f"Maven could not fetch the Kafka jars (exit {result.returncode}):\n{output}")
            done.write_text(f"kafka {KAFKA_VERSION}\n")
            log.info("fetched %d jars", len(list(jar_dir.glob("*.jar"))))
        return jar_dir

    # -- lifecycle -----------------------------------------------------------------------------------------------

    def _java_argv(self, java: str, jar_dir: Path, main: str, *args: str) -> list[str]:
        return [
            java,
            *HEAP_OPTS,
            "-XX:+UseG1GC",
            "-XX:MaxGCPauseMillis=20",
            "-Djava.awt.headless=true",
            f"-Dlog4j2.configurationFile={self.log4j_file}",
            "-cp",
            f"{jar_dir}/*",  # expanded by java itself, not by a shell
            main,
            *args,
        ]

    def _format_storage(self, java: str, jar_dir: Path) -> None:
        if (self.data_dir / "meta.properties").exists():
            return
        log.info("formatting the Kafka storage in %s", self.data_dir)
        cluster_id = new_cluster_id()
        argv = self._java_argv(
            java,
            jar_dir,
            "kafka.tools.StorageTool",
            "format",
            "-t",
            cluster_id,
            "-c",
            str(self.config_file),
            "--standalone",
            "--ignore-formatted",
            *(("--add-scram", self.secure.scram_setting()) if self.secure_port is not None else ()),
        )
        result = subprocess.run(
            argv, capture_output=True, text=True, check=False, cwd=self.dir, umask=process.OWNER_ONLY_UMASK
        )
        if result.returncode != 0:
            output = "\n".join((result.stdout + result.stderr).splitlines()[-20:])
            raise DevStackError(f"formatting the Kafka storage failed (exit {result.returncode}):\n{output}")
        if self.secure_port is not None:
            self.scram_marker.write_text(f"{SCRAM_MECHANISM}\n")

    def start(self) -> int:
        """Start the broker (the caller checked that it is not running and its ports are free); returns its pid."""
        java = self.java()
        jar_dir = self.jars()
        # Owner-only, the broker's umask too: its topics hold the scoring records (personal features).
        process.make_owner_only_dir(self.dir)
        process.make_owner_only_dir(self.data_dir)
        if self.secure_port is not None:
            self.secure.ensure(HOST)
        self.config_file.write_text(
            render_server_properties(
                self.port, self.controller_port, self.data_dir, self.secure_port, self.secure.key_store
            )
        )
        self.log4j_file.write_text(resources.files(__package__).joinpath("log4j2.properties").read_text())
        self._format_storage(java, jar_dir)
        log.info("starting Kafka on %s", self.address)
        argv = self._java_argv(java, jar_dir, "kafka.Kafka", str(self.config_file))
        pid = process.spawn_detached(argv, self.log_file, cwd=self.dir)
        self.pid_file.write_text(f"{pid}\n")
        return pid

    def wait_ready(self, pid: int, timeout_s: float = READY_TIMEOUT_S) -> None:
        """Return once the broker answers a metadata request; a clear error (with its log) if it dies or is late."""

        def ready() -> bool:
            if not process.is_alive(pid):
                raise DevStackError(
                    f"Kafka exited during start-up; the end of {self.log_file}:\n{process.tail(self.log_file)}"
                )
            return process.port_accepts(self.port) and run_sync(_metadata_answers(self.address))

        if not process.wait_until(ready, timeout_s, 0.5):
            raise DevStackError(
                f"Kafka did not answer on {self.address} within {timeout_s:.0f} s; the end of {self.log_file}:\n"
                f"{process.tail(self.log_file)}"
            )

    def ensure_scram_user(self) -> None:
        """Create the SCRAM user on a running broker whose storage was formatted before ``--secure`` was asked
        for (a fresh home gets it at format time)."""
        if self.secure_port is None or self.scram_marker.exists():
            return
        user, password = self.secure.credentials()
        log.info("adding the SCRAM user %s to the existing Kafka storage", user)
        argv = self._java_argv(
            self.java(),
            self.jars(),
            "kafka.admin.ConfigCommand",
            "--bootstrap-server",
            self.address,
            "--alter",
            "--add-config",
            f"{SCRAM_MECHANISM}=[password={password}]",
            "--entity-type",
            "users",
            "--entity-name",
            user,
        )
        result = subprocess.run(argv, capture_output=True, text=True, check=False, cwd=self.dir)
        if result.returncode != 0:
            output = "\n".join((result.stdout + result.stderr).replace(password, "***").splitlines()[-20:])
            raise DevStackError(f"adding the SCRAM user failed (exit {result.returncode}):\n{output}")
        self.scram_marker.write_text(f"{SCRAM_MECHANISM}\n")

    def stop(self) -> bool:
        """Stop the broker (SIGTERM, then SIGKILL after a timeout); False when it was not running."""
        pid = self.pid()
        if pid is None:
            return False
        log.info("stopping Kafka (pid %d)", pid)
        if not process.stop_process(pid, STOP_TIMEOUT_S):
            log.warning("Kafka did not stop within %.0f s and was killed", STOP_TIMEOUT_S)
        self.pid_file.unlink(missing_ok=True)
        return True

    def purge(self) -> None:
        """Delete the broker's data, configuration and log (the jar cache stays)."""
        shutil.rmtree(self.dir, ignore_errors=True)


async def _metadata_answers(address: str) -> bool:
    """True when the broker at ``address`` answers a metadata request."""
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(bootstrap_servers=address, request_timeout_ms=3000)
    try:
        await admin.start()  # bootstraps with a metadata request
        await admin.describe_cluster()
    except Exception:
        return False
    finally:
        with contextlib.suppress(Exception):
            await admin.close()
    return True
