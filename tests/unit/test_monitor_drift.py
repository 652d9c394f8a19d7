"""What the drift monitor decides without a database: a sample's header, the arguments it refuses before any query,
and the PSI sum with its floor for empty bins."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from stream_logger.errors import ConfigError
from stream_logger.evaluation import Window
from stream_logger.monitor_drift import (
    EPSILON,
    DriftFeature,
    SampleBaseline,
    WindowBaseline,
    drift_metrics,
    population_stability_index,
    sample_header,
)

T0 = datetime(2025, 3, 1, tzinfo=UTC)
WINDOW = Window(T0, T0 + timedelta(hours=1))
INCOME = DriftFeature("Income", "income", "numeric")


def _sample(tmp_path: Path, content: str | bytes) -> SampleBaseline:
    path = tmp_path / "sample.csv"
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")
    return SampleBaseline(path)


def test_the_header_names_the_fields(tmp_path: Path) -> None:
    sample = _sample(tmp_path, 'Income,"Loan, purpose", Age\n1,a,2\n')
    assert sample_header(sample) == ["Income", "Loan, purpose", "Age"]


def test_a_byte_order_mark_is_not_part_of_the_first_name(tmp_path: Path) -> None:
    assert sample_header(_sample(tmp_path, "\ufeffIncome,Age\n1,2\n")) == ["Income", "Age"]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("", "is empty: its first line must name the fields"),
        ("\n1,2\n", "is empty"),
        ("Income,,Age\n", "header column 2 has no name"),
        ("Income,Age,Income\n", "the header names 'Income' twice"),
        (b"Inc\xffome\n", "its header is not UTF-8 text"),
        ('"Income\n', "its header is not CSV"),
    ],
)
def test_a_bad_header_is_refused_with_what_is_wrong(tmp_path: Path, content: str | bytes, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        sample_header(_sample(tmp_path, content))


def test_a_missing_file_a_folder_and_an_oversized_file_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        sample_header(SampleBaseline(tmp_path / "nope.csv"))
    with pytest.raises(ConfigError, match="is not a file"):
        sample_header(SampleBaseline(tmp_path))
    path = tmp_path / "big.csv"
    path.write_text("Income\n" + "1\n" * 100, encoding="utf-8")
    with pytest.raises(ConfigError, match="holds 207 bytes, more than the 100 allowed"):
        sample_header(SampleBaseline(path, max_bytes=100))


def test_a_sample_path_may_be_given_as_text() -> None:
    assert SampleBaseline("a/b.csv").path == Path("a/b.csv")  # type: ignore[arg-type]


def test_baselines_and_features_check_themselves() -> None:
    with pytest.raises(ValueError, match="timezone"):
        WindowBaseline(datetime(2025, 1, 1), datetime(2025, 1, 2))
    with pytest.raises(ValueError, match="end after it starts"):
        WindowBaseline(T0, T0)
    with pytest.raises(ValueError, match="kind must be one of"):
        DriftFeature("x", "x", "ordinal")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="a name and a column"):
        DriftFeature("", "x", "numeric")
    with pytest.raises(ValueError, match="max_bytes"):
        SampleBaseline(Path("a.csv"), max_bytes=0)


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"features": []}, "at least one feature"),
        ({"features": [INCOME, DriftFeature("Income", "other", "categorical")]}, r"features named twice: \['Income'\]"),
        ({"bins": 1}, "bins must be between 2 and 100"),
        ({"bins": 101}, "bins must be between 2 and 100"),
        ({"threshold": 0.0}, "threshold must be a positive number"),
        ({"threshold": math.nan}, "threshold must be a positive number"),
        ({"min_records": 0}, "min_records must be at least 1"),
        ({"epsilon": 0.0}, "epsilon must be between 0 and 1"),
        ({"max_categories": 1}, "max_categories must be at least 2"),
    ],
)
async def test_invalid_arguments_are_refused_before_any_query(arguments: dict[str, Any], message: str) -> None:
    features = arguments.pop("features", [INCOME])
    with pytest.raises(ValueError, match=message):
        await drift_metrics(None, '"s"."t"', WINDOW, WindowBaseline(T0 - timedelta(days=1), T0), features, **arguments)


def test_psi_of_identical_histograms_is_zero() -> None:
    assert population_stability_index([10, 20, 30], [1, 2, 3]) == 0.0


def test_psi_is_the_sum_of_its_terms() -> None:
    e, a = [0.25, 0.75], [0.5, 0.5]
    expected = sum((ai - ei) * math.log(ai / ei) for ai, ei in zip(a, e, strict=True))
    assert population_stability_index([25, 75], [50, 50]) == pytest.approx(expected, abs=1e-15)
    assert population_stability_index([25, 75], [50, 50]) == pytest.approx(
        population_stability_index([50, 50], [25, 75]), abs=1e-15
    )  # symmetric


def test_an_empty_bin_is_floored_so_the_value_is_finite() -> None:
    value = population_stability_index([100, 0], [50, 50])
    expected = (0.5 - 1.0) * math.log(0.5 / 1.0) + (0.5 - EPSILON) * math.log(0.5 / EPSILON)
    assert value == pytest.approx(expected, abs=1e-15)
    assert population_stability_index([100, 0, 0], [100, 0, 0]) == 0.0  # empty on both sides adds nothing
    assert population_stability_index([100, 0], [50, 50], epsilon=1e-6) > value


def test_psi_needs_the_same_bins_and_values_on_both_sides() -> None:
    with pytest.raises(ValueError, match="same bins"):
        population_stability_index([1, 2], [1, 2, 3])
    with pytest.raises(ValueError, match="values on both sides"):
        population_stability_index([0, 0], [1, 2])
