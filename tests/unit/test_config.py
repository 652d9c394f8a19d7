from __future__ import annotations

import pytest

from stream_logger.config import DEFAULT_BOOTSTRAP_SERVERS, Settings, redact_dsn
from stream_logger.errors import ConfigError


def test_defaults_point_at_the_dev_stack() -> None:
    settings = Settings.from_env({})
    assert settings.bootstrap_servers == DEFAULT_BOOTSTRAP_SERVERS
    assert "127.0.0.1" in settings.dsn


def test_environment_then_flags_override() -> None:
    env = {"STREAM_LOGGER_BOOTSTRAP_SERVERS": "k1:9093,k2:9093", "STREAM_LOGGER_DSN": "postgresql://u@db/x"}
    settings = Settings.from_env(env)
    assert settings.bootstrap_servers == "k1:9093,k2:9093"
    assert settings.with_overrides(dsn="postgresql://v@db/y").dsn == "postgresql://v@db/y"
    assert settings.with_overrides().dsn == "postgresql://u@db/x"


def test_passwords_are_redacted() -> None:
    assert redact_dsn("postgresql://user:s3cret@host:5432/db") == "postgresql://user:***@host:5432/db"
    assert "s3cret" not in redact_dsn("host=h password=s3cret dbname=x")
    with pytest.raises(ConfigError) as err:
        Settings(dsn="mysql://user:s3cret@host/db")
    assert "s3cret" not in str(err.value)


def test_bad_bootstrap_servers_are_refused() -> None:
    with pytest.raises(ConfigError, match="host:port"):
        Settings(bootstrap_servers="no port here")
