"""The quality metrics refuse arguments that cannot work with a clear ConfigError, before touching the database."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any, cast

import asyncpg
import pytest

from stream_logger.errors import ConfigError
from stream_logger.evaluation import Window
from stream_logger.monitor_quality import quality_metrics

WINDOW = Window(datetime(2025, 6, 1, tzinfo=UTC), datetime(2025, 6, 1, tzinfo=UTC) + timedelta(hours=1))


class NoDatabase:
    """A connection that fails the test if it is used at all."""

    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"the database was reached ({name}) before the arguments were checked")


async def _call(**kwargs: Any) -> None:
    args: dict[str, Any] = {"problem_type": "binary", "prediction": "prediction", "target": "risk", **kwargs}
    await quality_metrics(cast(asyncpg.Connection, NoDatabase()), '"s"."labelled_x"', WINDOW, **args)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"problem_type": "classification", "positive_class": "Risk"}, "problem_type must be one of binary"),
        ({}, "binary classification needs positive_class"),
        ({"positive_class": "Risk", "prediction": ""}, "prediction must name a column"),
        ({"positive_class": "Risk", "target": None}, "target must name a column"),
        ({"positive_class": "Risk", "probability": 3}, "probability must name a column"),
        ({"positive_class": "Risk", "probability_index": 1}, "probability_index without probability"),
        ({"positive_class": "Risk", "probability": "p", "probability_index": -1}, "whole number from 0"),
        ({"positive_class": "Risk", "probability": "p", "probability_index": True}, "whole number from 0"),
        ({"positive_class": "Risk", "min_records": 0}, "min_records must be a whole number of at least 1"),
        ({"positive_class": "Risk", "min_records": 2.5}, "min_records must be"),
        ({"problem_type": "multiclass", "positive_class": "Risk"}, "positive_class is for binary classification"),
        ({"problem_type": "regression", "probability": "p"}, "probability is for binary classification"),
        ({"problem_type": "multiclass", "probability_index": 0}, "probability_index is for binary"),
    ],
)
async def test_arguments_that_cannot_work_are_refused_before_any_query(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        await _call(**kwargs)
