"""The worker's limits on the command line: durations and counts, from flags or the environment."""

from __future__ import annotations

import argparse

import pytest

from stream_logger.cli import build_parser, duration_s, limit_overrides


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("30d", 30 * 86400.0), ("12h", 43200.0), ("90m", 5400.0), ("45s", 45.0), ("1.5d", 129600.0), ("none", None)],
)
def test_durations(text: str, seconds: float | None) -> None:
    assert duration_s(text) == seconds


@pytest.mark.parametrize("text", ["30", "d", "-1d", "1w", "", "30 days"])
def test_bad_durations_say_what_a_duration_is(text: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError, match="not a duration"):
        duration_s(text)


def consume(*flags: str) -> argparse.Namespace:
    return build_parser().parse_args(["consume", "--topic", "t", "--schema", "s", *flags])


def test_the_defaults_and_the_flags() -> None:
    assert limit_overrides(consume()) == {
        "max_subscriptions": 200,
        "max_record_age_s": 30 * 86400.0,
        "max_record_lead_s": 86400.0,
    }
    flags = ("--max-subscriptions", "none", "--max-record-age", "7d", "--max-record-lead", "none")
    assert limit_overrides(consume(*flags)) == {
        "max_subscriptions": None,
        "max_record_age_s": 7 * 86400.0,
        "max_record_lead_s": None,
    }


def test_the_environment_sets_the_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STREAM_LOGGER_MAX_SUBSCRIPTIONS", "5")
    monkeypatch.setenv("STREAM_LOGGER_MAX_RECORD_AGE", "2h")
    args = consume()
    assert (args.max_subscriptions, args.max_record_age) == (5, 7200.0)
    assert consume("--max-subscriptions", "9").max_subscriptions == 9  # a flag beats the environment


def test_a_bad_value_is_a_usage_error_not_a_traceback(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("STREAM_LOGGER_MAX_RECORD_AGE", "a month")
    with pytest.raises(SystemExit) as exit_:
        consume()
    assert exit_.value.code == 2
    assert "'a month' is not a duration" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        consume("--max-subscriptions", "-3")
    assert "not a count" in capsys.readouterr().err


def test_replay_takes_no_age_or_lead_limit_by_default() -> None:
    args = build_parser().parse_args(["replay", "--topic", "t", "--schema", "s"])
    assert (args.max_record_age, args.max_record_lead, args.max_subscriptions) == (None, None, 200)
