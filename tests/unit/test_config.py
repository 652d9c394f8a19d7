from __future__ import annotations

import re

import pytest

from stream_logger.cli import main
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


# Each holds the secret "s3cr" + "et9" (or the whole "s3cret9"); no fragment of it may reach a message.
MALFORMED_DSNS = [
    ("postgresql://u:s3cr/et9@127.0.0.1:5432/db", "ends before its @"),
    ("postgresql://u:s3cr?et9@127.0.0.1:5432/db", "ends before its @"),
    ("postgresql://u:s3cr#et9@127.0.0.1:5432/db", "ends before its @"),
    ("postgresql://u:12/s3cret9@127.0.0.1/db", "ends before its @"),  # the password's "12" reads as a port
    ("postgresql://u:s3cr@et9@127.0.0.1:5432/db", "more than one @"),
    ("postgresql://u:s3cret9@127.0.0.1:notaport/db", "port is not a number"),
    ("postgresql://u:s3cret9@127.0.0.1:99999/db", "outside 1..65535"),
    ("postgresql://u:s3cret9@h1,,h2/db", "empty host"),
    ("postgresql://u:s3cret9@[::1/db", "cannot be parsed"),
    ("postgresql://u:s3cret9@h/db?sslmode", "name=value"),
    ("postgresql://u:s3cret9@h/db?port=x", "port is not a number"),
    ("postgresql://u:s3cret9@h/db#frag", "#"),
]
SECRET_FRAGMENTS = ("s3cr", "et9", "12/")


@pytest.mark.parametrize(("dsn", "reason"), MALFORMED_DSNS)
def test_a_malformed_dsn_is_a_clear_error_that_never_shows_the_password(dsn: str, reason: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(reason)) as err:
        Settings(dsn=dsn)
    message = str(err.value)
    assert "percent-encode" in message or "outside" in message or "empty host" in message
    assert not any(fragment in message for fragment in SECRET_FRAGMENTS), message
    redacted = redact_dsn(dsn)
    assert not any(fragment in redacted for fragment in SECRET_FRAGMENTS), redacted


@pytest.mark.parametrize(
    "dsn",
    [
        "postgresql://u:p%40ss%2Fw%3Ard@127.0.0.1:5432/db",
        "postgresql://u:pa:ss@127.0.0.1/db",
        "postgres://u@h1:5432,h2:5433/db?sslmode=require",
        "postgresql:///db?host=/var/run/postgresql&port=5433",
        "postgresql://[::1]:5432/db",
        "postgresql://u:pw@/db",
    ],
)
def test_well_formed_dsns_are_accepted(dsn: str) -> None:
    assert Settings(dsn=dsn).dsn == dsn


def test_redaction_masks_every_form_of_password() -> None:
    assert redact_dsn("postgresql://u:p%40ss@h/db") == "postgresql://u:***@h/db"
    assert redact_dsn("postgresql://u@h/db?password=s3cret9&sslmode=require") == (
        "postgresql://u@h/db?password=***&sslmode=require"
    )
    assert "s3cr" not in redact_dsn("host=h password='s3cr et9' dbname=x")
    assert "et9" not in redact_dsn("host=h password='s3cr et9' dbname=x")


@pytest.mark.parametrize(("dsn", "reason"), MALFORMED_DSNS[:6])
def test_the_cli_reports_a_malformed_dsn_in_one_line_without_the_password(
    dsn: str, reason: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["datamart", "info", "--schema", "x", "--dsn", dsn]) == 1
    err = capsys.readouterr().err
    assert err.startswith("stream-logger: error: ") and reason in err and "Traceback" not in err
    assert not any(fragment in err for fragment in SECRET_FRAGMENTS), err
