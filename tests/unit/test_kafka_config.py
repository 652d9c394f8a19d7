"""The Kafka client settings: flags, environment and properties file, both renderings, and secrets kept secret."""

from __future__ import annotations

import asyncio
import ssl
from pathlib import Path

import pytest

from stream_logger import kafka_config
from stream_logger.cli import build_parser, main, settings_from
from stream_logger.config import Settings
from stream_logger.emitter import Emitter
from stream_logger.errors import ConfigError
from stream_logger.kafka_config import KafkaClientConfig, read_properties
from tests.readme_snippets import parse_readme

SECRET = "s3cret-Pa55"
SASL_ENV = {
    "STREAM_LOGGER_KAFKA_SECURITY_PROTOCOL": "sasl_ssl",
    "STREAM_LOGGER_KAFKA_SASL_MECHANISM": "scram-sha-512",
    "STREAM_LOGGER_KAFKA_SASL_USERNAME": "scoring",
    "STREAM_LOGGER_KAFKA_SASL_PASSWORD": SECRET,
}


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in (*SASL_ENV, "STREAM_LOGGER_KAFKA_CONFIG", "STREAM_LOGGER_BOOTSTRAP_SERVERS"):
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def _file(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "client.properties"
    path.write_text(text)
    return path


def test_the_default_is_plaintext_with_nothing_more() -> None:
    settings = Settings.from_env({})
    assert settings.librdkafka_config() == {"bootstrap.servers": "127.0.0.1:9092"}
    assert settings.aiokafka_kwargs() == {"bootstrap_servers": "127.0.0.1:9092"}


def test_sasl_ssl_from_the_environment_in_both_renderings(tmp_path: Path) -> None:
    env = {**SASL_ENV, "STREAM_LOGGER_BOOTSTRAP_SERVERS": "k1:9096,k2:9096"}
    settings = Settings.from_env(env)
    assert settings.librdkafka_config() == {
        "bootstrap.servers": "k1:9096,k2:9096",
        "security.protocol": "SASL_SSL",
        "sasl.mechanism": "SCRAM-SHA-512",
        "sasl.username": "scoring",
        "sasl.password": SECRET,
    }
    kwargs = settings.aiokafka_kwargs(client_id="worker-1")
    context = kwargs.pop("ssl_context")
    assert isinstance(context, ssl.SSLContext) and context.check_hostname
    assert kwargs == {
        "client_id": "worker-1",
        "bootstrap_servers": "k1:9096,k2:9096",
        "security_protocol": "SASL_SSL",
        "sasl_mechanism": "SCRAM-SHA-512",
        "sasl_plain_username": "scoring",
        "sasl_plain_password": SECRET,
    }


def test_flag_beats_environment_beats_file(tmp_path: Path, clean_env: pytest.MonkeyPatch) -> None:
    path = _file(
        tmp_path,
        "# a comment\n! another\n\nbootstrap.servers = file:9092\nsecurity.protocol=SASL_SSL\n"
        "sasl.mechanisms=PLAIN\nsasl.username=from-file\nsasl.password=pa=ss=word\nclient.id=credit\n",
    )
    clean_env.setenv("STREAM_LOGGER_KAFKA_CONFIG", str(path))
    clean_env.setenv("STREAM_LOGGER_KAFKA_SASL_USERNAME", "from-env")
    args = build_parser().parse_args(
        ["consume", "--topic", "t", "--schema", "s", "--kafka-sasl-mechanism", "SCRAM-SHA-256"]
    )
    settings = settings_from(args)
    config = settings.librdkafka_config()
    assert settings.bootstrap_servers == "file:9092"  # the file's, as nothing else names the brokers
    assert config["sasl.mechanism"] == "SCRAM-SHA-256"  # the flag
    assert config["sasl.username"] == "from-env"  # the environment
    assert config["sasl.password"] == "pa=ss=word"  # the file; only the first = separates
    assert settings.aiokafka_kwargs()["client_id"] == "credit"
    clean_env.setenv("STREAM_LOGGER_BOOTSTRAP_SERVERS", "env:9092")
    assert settings_from(args).bootstrap_servers == "env:9092"
    assert settings_from(args).librdkafka_config()["bootstrap.servers"] == "env:9092"
    assert settings_from(args).aiokafka_kwargs()["bootstrap_servers"] == "env:9092"


def test_the_file_named_by_the_flag_wins_over_the_environment_s(tmp_path: Path, clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("STREAM_LOGGER_KAFKA_CONFIG", str(tmp_path / "missing.properties"))
    path = _file(tmp_path, "client.id=from-flag-file\n")
    args = build_parser().parse_args(["replay", "--topic", "t", "--schema", "s", "--kafka-config", str(path)])
    assert settings_from(args).aiokafka_kwargs()["client_id"] == "from-flag-file"


def test_a_producer_only_setting_goes_to_librdkafka_alone(tmp_path: Path) -> None:
    config = KafkaClientConfig.load({}, overrides={"kafka_config": _file(tmp_path, "retries=5\n")})
    assert config.librdkafka_config("k:9092")["retries"] == "5"
    assert "retries" not in config.aiokafka_kwargs("k:9092")


def test_a_setting_aiokafka_cannot_honour_is_an_error_naming_it(tmp_path: Path) -> None:
    config = KafkaClientConfig.load({}, overrides={"kafka_config": _file(tmp_path, "socket.keepalive.enable=true\n")})
    assert config.librdkafka_config("k:9092")["socket.keepalive.enable"] == "true"
    with pytest.raises(ConfigError, match=r"client\.properties: socket\.keepalive\.enable has no equivalent"):
        config.aiokafka_kwargs("k:9092")


@pytest.mark.parametrize(
    ("line", "says"),
    [
        ("acks=1", "acks cannot be set: the emitter waits for every replica"),
        ("compression.type=gzip", r"Emitter\(compression=\.\.\.\)"),
        ("group.id=g", "consume --group"),
        ("sasl.jaas.config=org.apache...PlainLoginModule required;", "sasl.username and sasl.password instead"),
    ],
)
def test_settings_stream_logger_decides_are_refused_with_what_to_use(tmp_path: Path, line: str, says: str) -> None:
    with pytest.raises(ConfigError, match=says):
        KafkaClientConfig.load({}, overrides={"kafka_config": _file(tmp_path, line + "\n")})


@pytest.mark.parametrize(
    ("env", "says"),
    [
        ({"STREAM_LOGGER_KAFKA_SECURITY_PROTOCOL": "TLS"}, "security.protocol must be one of"),
        ({**SASL_ENV, "STREAM_LOGGER_KAFKA_SASL_MECHANISM": "OAUTHBEARER"}, "sasl.mechanism must be one of"),
        ({"STREAM_LOGGER_KAFKA_SECURITY_PROTOCOL": "SASL_SSL"}, "needs sasl.username and sasl.password"),
        ({"STREAM_LOGGER_KAFKA_SASL_USERNAME": "u"}, "security.protocol is PLAINTEXT: set it as well"),
        ({"STREAM_LOGGER_KAFKA_SSL_CA_LOCATION": "/ca.pem"}, "security.protocol is PLAINTEXT"),
    ],
)
def test_inconsistent_settings_are_clear_errors(env: dict[str, str], says: str) -> None:
    with pytest.raises(ConfigError, match=says) as err:
        Settings.from_env(env)
    assert SECRET not in str(err.value)


def test_tls_files_that_cannot_be_loaded_are_a_clear_error(tmp_path: Path) -> None:
    settings = Settings.from_env(
        {
            "STREAM_LOGGER_KAFKA_SECURITY_PROTOCOL": "SSL",
            "STREAM_LOGGER_KAFKA_SSL_CA_LOCATION": str(tmp_path / "no.pem"),
        }
    )
    with pytest.raises(ConfigError, match="the TLS files cannot be loaded"):
        settings.aiokafka_kwargs()


def test_host_name_checks_can_be_switched_off_as_librdkafka_does(tmp_path: Path) -> None:
    path = _file(tmp_path, "security.protocol=SSL\nssl.endpoint.identification.algorithm=none\n")
    config = KafkaClientConfig.load({}, overrides={"kafka_config": path})
    assert config.aiokafka_kwargs("k:9093")["ssl_context"].check_hostname is False


def test_a_malformed_file_names_the_line_never_its_text(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="line 2: expected name=value") as err:
        read_properties(_file(tmp_path, f"security.protocol=SASL_SSL\n{SECRET}\n"))
    assert SECRET not in str(err.value)
    with pytest.raises(ConfigError, match="cannot read the Kafka client settings file"):
        read_properties(tmp_path / "missing")


def test_repr_and_mask_hide_the_secrets() -> None:
    settings = Settings.from_env({**SASL_ENV, "STREAM_LOGGER_DSN": "postgresql://u:dbsecret@h/db"})
    shown = repr(settings)
    assert SECRET not in shown and "dbsecret" not in shown
    assert "sasl.password=***" in shown and "sasl.username='scoring'" in shown
    assert settings.kafka.mask(f"refused {SECRET}!") == "refused ***!"


def test_help_shows_no_secret(capsys: pytest.CaptureFixture[str], clean_env: pytest.MonkeyPatch) -> None:
    for name, value in SASL_ENV.items():
        clean_env.setenv(name, value)
    for command in ("consume", "replay", "emit", "demo"):
        with pytest.raises(SystemExit):
            main([command, "--help"])
        out = capsys.readouterr().out
        assert "--kafka-sasl-password SECRET" in out and "--kafka-config FILE" in out
        assert SECRET not in out


def test_the_emitter_takes_the_settings_as_keywords(tmp_path: Path, clean_env: pytest.MonkeyPatch) -> None:
    em = Emitter(
        "t",
        "k:9096",
        spool_dir=tmp_path,
        security_protocol="SASL_SSL",
        sasl_mechanism="SCRAM-SHA-512",
        sasl_username="scoring",
        sasl_password=SECRET,
        kafka_config=_file(tmp_path, "client.id=credit\nretries=3\n"),
    )
    # the producers' configuration, callbacks aside, is what users would hand confluent-kafka themselves
    from stream_logger.producer import producer_settings

    config = producer_settings(em.delivery_config, 1 << 20)
    assert config["security.protocol"] == "SASL_SSL" and config["sasl.password"] == SECRET
    assert config["client.id"] == "credit" and config["retries"] == "3"
    assert config["acks"] == "all"


def test_a_setting_librdkafka_does_not_know_is_a_config_error_naming_it(tmp_path: Path) -> None:
    em = Emitter("t", "k:9096", spool_dir=tmp_path, kafka_config=_file(tmp_path, f"no.such.setting={SECRET}\n"))
    with pytest.raises(ConfigError, match="refused by librdkafka") as err:
        asyncio.run(em.start())
    assert "no.such.setting" in str(err.value)


def test_every_security_setting_has_its_flag_env_and_keyword_documented() -> None:
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    for name in kafka_config.SECURITY_SETTINGS:
        row = (
            f"| `{name}` | `{kafka_config.flag_name(name)}` | `{kafka_config.env_name(name)}` | "
            f"`{kafka_config.keyword_name(name)}` |"
        )
        assert row in readme, row
        assert kafka_config.keyword_name(name) in kafka_config.KafkaSecurityOptions.__annotations__


def test_the_readme_properties_example_loads(tmp_path: Path) -> None:
    snippet = next(s for s in parse_readme() if s.name == "kafka-properties")
    settings = Settings.from_env({"STREAM_LOGGER_KAFKA_CONFIG": str(_file(tmp_path, snippet.code))})
    assert settings.bootstrap_servers.endswith(".confluent.cloud:9092")
    kwargs = settings.aiokafka_kwargs()
    assert (kwargs["sasl_mechanism"], kwargs["client_id"]) == ("PLAIN", "credit-scoring")
