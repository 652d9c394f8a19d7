"""The dev stack's pure parts: configuration rendering, Java version parsing, ports, pid files, clear errors."""

from __future__ import annotations

import glob
import os
import signal
import socket
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from stream_logger.devstack import DevStack, ServiceStatus, process
from stream_logger.devstack import kafka as kafka_mod
from stream_logger.devstack import postgres as pg_mod
from stream_logger.errors import DevStackError


@pytest.mark.parametrize(
    ("output", "major"),
    [
        ('openjdk version "17.0.15" 2025-04-15\nOpenJDK Runtime Environment (build 17.0.15+6-Debian-1deb12u1)', 17),
        ('java version "1.8.0_292"\nJava(TM) SE Runtime Environment', 8),
        ('openjdk version "21" 2023-09-19', 21),
        ('openjdk version "25-ea" 2025-09-16', 25),
        ('Picked up JAVA_TOOL_OPTIONS: -Xss1m\nopenjdk version "11.0.2" 2019-01-15', 11),
    ],
)
def test_java_version_is_parsed(output: str, major: int) -> None:
    assert kafka_mod.parse_java_version(output) == major


def test_unparsable_java_version_is_a_clear_error() -> None:
    with pytest.raises(DevStackError, match="Java version"):
        kafka_mod.parse_java_version("bash: java: command not found")


def _fake_java(tmp_path: Path, version: str) -> Path:
    java_home = tmp_path / "jdk"
    (java_home / "bin").mkdir(parents=True)
    java = java_home / "bin" / "java"
    java.write_text(f"#!/bin/sh\necho 'openjdk version \"{version}\" 2019-01-15' >&2\n")
    java.chmod(0o755)
    return java_home


def test_old_java_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JAVA_HOME", str(_fake_java(tmp_path, "11.0.2")))
    with pytest.raises(DevStackError, match=r"needs Java 17 or newer.*Java 11"):
        kafka_mod.KafkaService.java()


def test_missing_java_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JAVA_HOME", str(tmp_path / "no-such-jdk"))
    with pytest.raises(DevStackError, match="Java 17"):
        kafka_mod.KafkaService.java()


def test_missing_maven_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # no mvn there
    service = kafka_mod.KafkaService(tmp_path / "home", 19092, 19093, cache_dir=tmp_path / "cache")
    with pytest.raises(DevStackError, match="Maven"):
        service.jars()


def test_missing_postgres_binaries_say_how_to_install(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("STREAM_LOGGER_PG_BIN", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr(glob, "glob", lambda pattern: [])
    with pytest.raises(DevStackError, match="apt-get install postgresql"):
        pg_mod.find_pg_bin_dir()


def test_server_properties_is_a_single_node_kraft_config(tmp_path: Path) -> None:
    text = kafka_mod.render_server_properties(19092, 19093, tmp_path / "data")
    props = dict(line.split("=", 1) for line in text.splitlines() if line and not line.startswith("#"))
    assert props["process.roles"] == "broker,controller"
    assert props["listeners"] == "PLAINTEXT://127.0.0.1:19092,CONTROLLER://127.0.0.1:19093"
    assert props["advertised.listeners"] == "PLAINTEXT://127.0.0.1:19092"
    assert props["controller.quorum.bootstrap.servers"] == "127.0.0.1:19093"
    assert props["log.dirs"] == str(tmp_path / "data")
    assert props["offsets.topic.replication.factor"] == "1"
    assert props["transaction.state.log.replication.factor"] == "1"
    assert props["group.initial.rebalance.delay.ms"] == "0"
    assert props["auto.create.topics.enable"] == "true"
    assert props["num.partitions"] == "3"
    assert "$" not in text


def test_pom_pins_kafka_log4j_and_the_dependency_plugin() -> None:
    root = ET.fromstring(kafka_mod.render_pom())
    ns = {"m": "http://maven.apache.org/POM/4.0.0"}
    deps = {
        (d.findtext("m:artifactId", namespaces=ns), d.findtext("m:version", namespaces=ns))
        for d in root.iterfind("m:dependencies/m:dependency", ns)
    }
    assert deps == {
        ("kafka_2.13", kafka_mod.KAFKA_VERSION),
        ("log4j-core", kafka_mod.LOG4J_VERSION),
        ("log4j-slf4j-impl", kafka_mod.LOG4J_VERSION),
    }
    plugin = root.find("m:build/m:plugins/m:plugin", ns)
    assert plugin is not None
    assert plugin.findtext("m:version", namespaces=ns) == kafka_mod.DEPENDENCY_PLUGIN_VERSION


def test_cluster_ids_look_like_kafkas() -> None:
    ids = {kafka_mod.new_cluster_id() for _ in range(200)}
    assert len(ids) == 200
    assert all(len(i) == 22 and not i.startswith("-") and "=" not in i for i in ids)


def test_postgres_conf_listens_on_loopback_only(tmp_path: Path) -> None:
    conf = pg_mod.render_conf(55499, tmp_path / "it's run")
    assert "listen_addresses = '127.0.0.1'" in conf
    assert "port = 55499" in conf
    assert f"unix_socket_directories = '{tmp_path}/it''s run'" in conf


def test_a_bound_port_is_not_free_and_a_listening_one_accepts() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        assert not process.port_is_free(port)
        assert not process.port_accepts(port, timeout_s=0.5)
        sock.listen()
        assert process.port_accepts(port)
    assert process.port_is_free(port)


def test_pid_files_and_liveness(tmp_path: Path) -> None:
    pid_file = tmp_path / "x.pid"
    assert process.read_pid(pid_file) is None
    pid_file.write_text("garbage\n")
    assert process.read_pid(pid_file) is None
    pid_file.write_text(f"{os.getpid()}\n/some/dir\n")
    assert process.read_pid(pid_file) == os.getpid()
    assert process.is_alive(os.getpid())
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    assert not process.is_alive(child.pid)
    assert not process.is_alive(None)


def test_an_exited_child_that_is_not_reaped_is_not_alive() -> None:
    pid = process.spawn_detached([sys.executable, "-c", "pass"], Path(os.devnull), cwd=Path.cwd())
    assert process.wait_until(lambda: not process.is_alive(pid), 10)


def test_stop_process_kills_what_ignores_sigterm(tmp_path: Path) -> None:
    script = (
        "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print('ready', flush=True); time.sleep(60)"
    )
    log = tmp_path / "child.log"
    pid = process.spawn_detached([sys.executable, "-c", script], log, cwd=tmp_path)
    assert process.wait_until(lambda: "ready" in process.tail(log), 10)
    assert process.stop_process(pid, timeout_s=0.5) is False
    assert not process.is_alive(pid)
    polite = process.spawn_detached([sys.executable, "-c", "import time; time.sleep(60)"], log, cwd=tmp_path)
    assert process.stop_process(polite, timeout_s=10, first_signal=signal.SIGTERM) is True


def test_tail_keeps_the_last_lines(tmp_path: Path) -> None:
    log = tmp_path / "a.log"
    log.write_text("".join(f"line {i}\n" for i in range(100)))
    assert process.tail(log, 3) == "line 97\nline 98\nline 99"
    assert process.tail(tmp_path / "missing.log") == ""


def test_from_env_reads_home_and_ports(tmp_path: Path) -> None:
    env = {
        "STREAM_LOGGER_HOME": str(tmp_path / "h"),
        "STREAM_LOGGER_DEV_KAFKA_PORT": "19092",
        "STREAM_LOGGER_DEV_PG_PORT": "55499",
    }
    stack = DevStack.from_env(env)
    assert stack.home == tmp_path / "h"
    assert (stack.kafka.port, stack.kafka.controller_port, stack.postgres.port) == (19092, 19093, 55499)
    flagged = DevStack.from_env(env, home=tmp_path / "other", kafka_port=29092, pg_port=55498)
    assert (flagged.home, flagged.kafka.controller_port, flagged.postgres.port) == (tmp_path / "other", 29093, 55498)
    defaults = DevStack.from_env({})
    assert (defaults.kafka.port, defaults.postgres.port) == (9092, 55432)
    assert defaults.home == Path(".stream-logger").absolute()


def test_bad_ports_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(DevStackError, match="port number"):
        DevStack.from_env({"STREAM_LOGGER_DEV_PG_PORT": "fivefive"})
    with pytest.raises(DevStackError, match="must differ"):
        DevStack(tmp_path, kafka_port=19092, pg_port=19093)


def test_env_lines_are_shell_exports(tmp_path: Path) -> None:
    lines = DevStack(tmp_path, kafka_port=19092, pg_port=55499).env_lines()
    assert lines == [
        "export STREAM_LOGGER_BOOTSTRAP_SERVERS=127.0.0.1:19092",
        "export STREAM_LOGGER_DSN=postgresql://stream_logger:stream_logger@127.0.0.1:55499/stream_logger",
    ]


def test_status_of_a_stack_never_started(tmp_path: Path) -> None:
    status = DevStack(tmp_path / "never", kafka_port=19092, pg_port=55499).status()
    assert not status.all_running
    assert [s.state for s in status.services] == ["stopped", "stopped"]
    assert not (tmp_path / "never").exists()


def test_service_status_line() -> None:
    line = ServiceStatus("kafka", True, 123, "127.0.0.1:9092", "started", 300 * 2**20).describe()
    assert line.split() == ["kafka", "running", "pid", "123", "127.0.0.1:9092", "rss", "300", "MiB", "(started)"]


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def test_a_service_that_dies_during_start_up_shows_its_log(tmp_path: Path) -> None:
    service = kafka_mod.KafkaService(tmp_path, _closed_port(), _closed_port(), cache_dir=tmp_path / "cache")
    service.dir.mkdir()
    service.log_file.write_text("starting\nERROR Exiting Kafka due to fatal exception\n")
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    with pytest.raises(DevStackError, match=r"Kafka exited during start-up(.|\n)*fatal exception"):
        service.wait_ready(child.pid, timeout_s=5)


def test_a_service_not_ready_in_time_shows_its_log_and_no_password(tmp_path: Path) -> None:
    kafka = kafka_mod.KafkaService(tmp_path, _closed_port(), _closed_port(), cache_dir=tmp_path / "cache")
    kafka.dir.mkdir()
    kafka.log_file.write_text("still loading\n")
    with pytest.raises(DevStackError, match=r"did not answer on 127\.0\.0\.1:\d+ within(.|\n)*still loading"):
        kafka.wait_ready(os.getpid(), timeout_s=0.5)

    postgres = pg_mod.PostgresService(tmp_path, _closed_port())
    postgres.dir.mkdir(parents=True)
    postgres.log_file.write_text("FATAL:  could not create lock file\n")
    try:
        with pytest.raises(DevStackError) as err:
            postgres.wait_ready(os.getpid(), timeout_s=0.5)
    finally:
        postgres.purge()
    assert "could not create lock file" in str(err.value)
    assert "stream_logger:***@" in str(err.value)
    assert pg_mod.PG_PASSWORD + "@" not in str(err.value)


def test_the_cluster_stays_in_the_home_when_the_server_can_reach_it() -> None:
    base = Path(tempfile.mkdtemp(prefix="sl-rt-", dir="/tmp"))  # /tmp itself is traversable by everyone
    try:
        base.chmod(0o755)
        assert pg_mod.runtime_dir(base / "home", 55432) == base / "home" / "postgres"
    finally:
        base.rmdir()


def test_the_cluster_moves_out_of_a_home_too_long_for_a_socket(tmp_path: Path) -> None:
    home = tmp_path / ("x" * 120)
    chosen = pg_mod.runtime_dir(home, 55432)
    assert chosen != home / "postgres"
    assert len(f"{chosen}/run/.s.PGSQL.55432") <= 100
    assert chosen == pg_mod.runtime_dir(home, 55432)  # the same home always finds the same cluster


def test_the_cluster_moves_out_of_a_private_folder_when_run_as_root(tmp_path: Path) -> None:
    private = tmp_path / "private"
    private.mkdir(mode=0o700)
    private.chmod(0o700)
    chosen = pg_mod.runtime_dir(private / "home", 55432)
    if os.geteuid() == 0:
        assert chosen.parent.parent == Path(tempfile.gettempdir())
    else:  # the server runs as ourselves, who can reach our own folders
        assert chosen == private / "home" / "postgres"


def test_the_brokers_folder_data_and_log_are_owner_only(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # A stand-in for java: formats the storage, then "runs" the broker, which writes a topic's segment and exits.
    java_home = tmp_path / "jdk"
    (java_home / "bin").mkdir(parents=True)
    java = java_home / "bin" / "java"
    java.write_text(
        "#!/bin/sh\n"
        'case "$*" in\n'
        "  -version) echo 'openjdk version \"17.0.2\" 2022-01-18' >&2 ;;\n"
        "  *StorageTool*) mkdir -p data && echo cluster > data/meta.properties ;;\n"
        "  *) mkdir -p data/scoring-0 && echo record > data/scoring-0/0.log && echo started ;;\n"
        "esac\n"
    )
    java.chmod(0o755)
    monkeypatch.setenv("JAVA_HOME", str(java_home))
    cache = tmp_path / "cache"
    service = kafka_mod.KafkaService(tmp_path / "home", _closed_port(), _closed_port(), cache_dir=cache)
    (service.jar_cache / "jars").mkdir(parents=True)
    (service.jar_cache / ".complete").write_text("fake")
    service.dir.mkdir(parents=True)
    service.dir.chmod(0o755)  # as an earlier version left it
    old_umask = os.umask(0o022)
    try:
        service.start()
    finally:
        os.umask(old_umask)
    segment = service.data_dir / "scoring-0" / "0.log"
    assert process.wait_until(lambda: "started" in service.log_file.read_text(), 10, 0.05)
    modes = {p: p.stat().st_mode & 0o777 for p in (service.dir, service.data_dir, segment.parent)}
    assert set(modes.values()) == {0o700}, modes
    files = (service.log_file, service.data_dir / "meta.properties", segment)
    assert {p.stat().st_mode & 0o777 for p in files} == {0o600}


def test_server_properties_with_a_secured_listener(tmp_path: Path) -> None:
    text = kafka_mod.render_server_properties(19092, 19093, tmp_path / "data", 19094, tmp_path / "server.pem")
    props = dict(line.split("=", 1) for line in text.splitlines() if line and not line.startswith("#"))
    assert props["listeners"] == "PLAINTEXT://127.0.0.1:19092,CONTROLLER://127.0.0.1:19093,SASL_SSL://127.0.0.1:19094"
    assert props["advertised.listeners"] == "PLAINTEXT://127.0.0.1:19092,SASL_SSL://127.0.0.1:19094"
    assert props["inter.broker.listener.name"] == "PLAINTEXT"
    assert props["listener.name.sasl_ssl.sasl.enabled.mechanisms"] == "SCRAM-SHA-512"
    assert props["listener.name.sasl_ssl.ssl.keystore.type"] == "PEM"
    assert props["listener.name.sasl_ssl.ssl.keystore.location"] == str(tmp_path / "server.pem")
    assert "ScramLoginModule required;" in props["listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config"]
    assert "$" not in text


def test_the_secure_port_defaults_to_the_kafka_port_plus_two(tmp_path: Path) -> None:
    env = {"STREAM_LOGGER_HOME": str(tmp_path), "STREAM_LOGGER_DEV_KAFKA_PORT": "19092"}
    assert DevStack.from_env(env, secure=True).kafka.secure_port == 19094
    assert DevStack.from_env(env).kafka.secure_port is None
    assert DevStack.from_env(env, kafka_secure_port=29094).kafka.secure_port == 29094


def test_secure_env_lines_point_at_the_secured_listener(tmp_path: Path) -> None:
    stack = DevStack(tmp_path, kafka_port=19092, pg_port=55499, kafka_secure_port=19094)
    stack.kafka.secure.ensure("127.0.0.1")
    user, password = stack.kafka.secure.credentials()
    lines = stack.env_lines(secure=True)
    assert "export STREAM_LOGGER_BOOTSTRAP_SERVERS=127.0.0.1:19094" in lines
    assert "export STREAM_LOGGER_KAFKA_SECURITY_PROTOCOL=SASL_SSL" in lines
    assert f"export STREAM_LOGGER_KAFKA_SASL_USERNAME={user}" in lines
    assert f"export STREAM_LOGGER_KAFKA_SASL_PASSWORD={password}" in lines
    assert f"export STREAM_LOGGER_KAFKA_SSL_CA_LOCATION={stack.kafka.secure.ca.cert}" in lines
    for path in (stack.kafka.secure.credentials_file, stack.kafka.secure.key_store, stack.kafka.secure.ca.key):
        assert path.stat().st_mode & 0o077 == 0, path  # owner-only
