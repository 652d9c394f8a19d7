"""Through the dev stack's SASL_SSL listener (``dev up --secure``): SCRAM-SHA-512 over TLS, as managed Kafka is.

The emitter, ``emit``, ``consume`` and ``replay`` deliver and read through it; a wrong password and an untrusted CA
are clear errors that leak nothing; a plaintext client cannot read from it. The listener is found from the dev
stack's home and ports (``STREAM_LOGGER_HOME``, ``STREAM_LOGGER_DEV_KAFKA_PORT``,
``STREAM_LOGGER_DEV_KAFKA_SECURE_PORT``); without it these tests skip, and fail under ``CI=true``.
"""

from __future__ import annotations

import asyncio
import logging
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import orjson
import pytest
from aiokafka import AIOKafkaConsumer

from stream_logger import Emitter
from stream_logger.config import Settings
from stream_logger.devstack import DevStack
from stream_logger.devstack.process import port_accepts
from stream_logger.devstack.tls import make_ca
from stream_logger.errors import BrokerUnavailable, DevStackError
from stream_logger.kafka_clients import start_client
from stream_logger.kafka_config import KafkaClientConfig, env_name
from stream_logger.samples import german_credit_record
from stream_logger.topics import create_topic, delete_topic
from tests.support import count_rows, scoring_call, setup_datamart, unique_name

pytestmark = pytest.mark.integration

COMMAND_TIMEOUT_S = 120


@pytest.fixture(scope="module")
def secure(settings: Settings) -> Settings:
    """Settings for the secured listener of the dev stack, with the shared database."""
    stack = DevStack.from_env(secure=True)
    try:
        user, password = stack.kafka.secure.credentials()
    except DevStackError:
        user = password = ""
    assert stack.kafka.secure_port is not None
    if not password or not port_accepts(stack.kafka.secure_port):
        missing = f"no secured listener on {stack.kafka.secure_address} (home {stack.home}): run dev up --secure"
        if os.environ.get("CI") == "true":
            pytest.fail(missing)
        pytest.skip(missing)
    kafka = KafkaClientConfig.load(
        {},
        overrides={
            "security_protocol": "SASL_SSL",
            "sasl_mechanism": "SCRAM-SHA-512",
            "sasl_username": user,
            "sasl_password": password,
            "ssl_ca_location": str(stack.kafka.secure.ca.cert),
        },
    )
    return Settings(bootstrap_servers=stack.kafka.secure_address, dsn=settings.dsn, kafka=kafka)


def _password(settings: Settings) -> str:
    password = settings.kafka.get("sasl.password")
    assert password
    return password


@pytest.fixture
async def secure_topic(secure: Settings) -> AsyncIterator[str]:
    """A fresh topic, created and deleted through the secured listener."""
    name = unique_name("sec")
    await create_topic(secure, name, partitions=2)
    yield name
    await delete_topic(secure, name)


def _env(settings: Settings, **changes: str) -> dict[str, str]:
    """The process environment pointing at ``settings`` (security settings as STREAM_LOGGER_KAFKA_*)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("STREAM_LOGGER_KAFKA_")}
    env |= {"STREAM_LOGGER_BOOTSTRAP_SERVERS": settings.bootstrap_servers, "STREAM_LOGGER_DSN": settings.dsn}
    env |= {env_name(name): value for name, value in settings.kafka.properties}
    return env | changes


def _run(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "stream_logger", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=COMMAND_TIMEOUT_S,
        check=False,
    )


def _records_file(tmp_path: Path, count: int) -> Path:
    path = tmp_path / "records.jsonl"
    now = datetime.now(UTC).isoformat()
    lines = [orjson.dumps({**german_credit_record(i), "scoring_timestamp": now}) for i in range(count)]
    path.write_bytes(b"\n".join(lines) + b"\n")
    return path


async def test_the_emitter_sends_and_consume_reads_through_sasl_ssl(
    secure: Settings, secure_topic: str, schema: str, tmp_path: Path
) -> None:
    async with Emitter(
        secure_topic,
        secure.bootstrap_servers,
        spool_dir=tmp_path / "spool",
        security_protocol="SASL_SSL",
        sasl_mechanism="SCRAM-SHA-512",
        sasl_username=secure.kafka.get("sasl.username") or "",
        sasl_password=_password(secure),
        ssl_ca_location=secure.kafka.get("ssl.ca.location") or "",
    ) as em:
        for i in range(40):
            em.log(**scoring_call(i, f"sec-{i:06d}", datetime.now(UTC)))
        assert await em.flush(60)
        assert em.stats().acknowledged == 40 and em.refusal is None
    await setup_datamart(secure, schema)

    done = await asyncio.to_thread(
        _run, ["consume", "--topic", secure_topic, "--schema", schema, "--until-caught-up"], _env(secure)
    )

    assert done.returncode == 0, done.stderr
    assert await count_rows(secure, schema, "payload_german_credit") == 40
    assert _password(secure) not in done.stdout + done.stderr


async def test_emit_with_a_properties_file_then_replay_with_flags(
    secure: Settings, secure_topic: str, schema: str, tmp_path: Path
) -> None:
    properties = tmp_path / "client.properties"
    properties.write_text(
        "# the secured dev listener\n"
        + "".join(f"{name}={value}\n" for name, value in secure.kafka.properties)
        + "client.id=secure-test\n"
    )
    plain_env = _env(replace(secure, kafka=KafkaClientConfig()))

    emitted = await asyncio.to_thread(
        _run,
        ["emit", "--topic", secure_topic, "--kafka-config", str(properties), str(_records_file(tmp_path, 25))],
        plain_env,
    )
    assert emitted.returncode == 0, emitted.stderr
    assert "sent 25, invalid 0, undelivered 0" in emitted.stdout

    flags = [
        "--kafka-security-protocol", "SASL_SSL", "--kafka-sasl-mechanism", "SCRAM-SHA-512",
        "--kafka-sasl-username", secure.kafka.get("sasl.username") or "",
        "--kafka-ssl-ca-location", secure.kafka.get("ssl.ca.location") or "",
    ]  # fmt: skip
    replayed = await asyncio.to_thread(
        _run,
        ["replay", "--topic", secure_topic, "--schema", schema, *flags],
        plain_env | {"STREAM_LOGGER_KAFKA_SASL_PASSWORD": _password(secure)},
    )
    assert replayed.returncode == 0, replayed.stderr
    assert await count_rows(secure, schema, "payload_german_credit") == 25
    for done in (emitted, replayed):
        assert _password(secure) not in done.stdout + done.stderr


@pytest.mark.parametrize("command", ["consume", "replay", "emit"])
async def test_a_wrong_password_is_a_clear_error_that_never_shows_it(
    secure: Settings, secure_topic: str, schema: str, tmp_path: Path, command: str
) -> None:
    wrong = "Wr0ng-" + _password(secure)[::-1]
    args = {
        "consume": ["consume", "--topic", secure_topic, "--schema", schema, "--until-caught-up"],
        "replay": ["replay", "--topic", secure_topic, "--schema", schema],
        "emit": ["emit", "--topic", secure_topic, str(_records_file(tmp_path, 3))],
    }[command]
    if command == "consume":
        await setup_datamart(secure, schema)  # the worker checks the datamart before it reaches Kafka

    done = await asyncio.to_thread(_run, args, _env(secure, STREAM_LOGGER_KAFKA_SASL_PASSWORD=wrong))

    assert done.returncode == 1, done.stderr
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("stream-logger: error: ") and "authentication failed (SASL" in last, done.stderr
    assert "Traceback" not in done.stderr
    output = done.stdout + done.stderr
    assert wrong not in output and _password(secure) not in output


async def test_an_untrusted_ca_is_a_clear_tls_error(
    secure: Settings, secure_topic: str, schema: str, tmp_path: Path
) -> None:
    other_ca = make_ca(tmp_path / "other-ca", name="not the dev stack's CA")
    env = _env(secure, STREAM_LOGGER_KAFKA_SSL_CA_LOCATION=str(other_ca.cert))
    await setup_datamart(secure, schema)

    done = await asyncio.to_thread(
        _run, ["consume", "--topic", secure_topic, "--schema", schema, "--until-caught-up"], env
    )

    assert done.returncode == 1, done.stderr
    assert "TLS verification of the broker's certificate failed" in done.stderr.strip().splitlines()[-1]
    assert "Traceback" not in done.stderr and _password(secure) not in done.stdout + done.stderr


async def test_the_emitter_says_why_it_is_refused_and_keeps_the_records(
    secure: Settings, secure_topic: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    wrong = "Wr0ng-" + _password(secure)
    caplog.set_level(logging.WARNING, "stream_logger.emitter")
    em = Emitter(
        secure_topic,
        secure.bootstrap_servers,
        spool_dir=tmp_path / "spool",
        kafka_config=KafkaClientConfig.load({}, overrides={"kafka_config": secure.kafka, "sasl_password": wrong}),
        close_timeout_s=2,
    )
    async with em:
        for i in range(10):
            em.log(**scoring_call(i, f"sec-{i:06d}", datetime.now(UTC)))  # never raises
        await em.flush(30)
        assert em.refusal is not None and "authentication failed (SASL)" in em.refusal
        stats = em.stats()
    assert stats.acknowledged == 0 and stats.spool_records == 10
    refusals = [r for r in caplog.records if "Kafka refused the connection" in r.getMessage()]
    assert len(refusals) == 1  # once, then once a minute: not once a reconnection
    assert wrong not in caplog.text


async def test_a_plaintext_client_cannot_read_from_the_secured_listener(secure: Settings, secure_topic: str) -> None:
    plain = Settings(bootstrap_servers=secure.bootstrap_servers, dsn=secure.dsn)
    consumer = AIOKafkaConsumer(
        secure_topic, **plain.aiokafka_kwargs(group_id=unique_name("g"), request_timeout_ms=5000)
    )
    try:
        async with asyncio.timeout(60):
            with pytest.raises(BrokerUnavailable):
                await start_client(consumer, plain, "reading the secured listener in plaintext")
    finally:
        await consumer.stop()
