"""How many tables one transaction of datamart.drop takes: the leading ones that fit in the relation budget."""

from __future__ import annotations

import pytest

from stream_logger.datamart import chunk_length


@pytest.mark.parametrize(
    ("relations", "budget", "expected"),
    [
        ([5, 5, 5, 5], 10, 2),  # exactly full
        ([5, 5, 5, 5], 14, 2),  # the third would pass the budget
        ([5, 5], 100, 2),  # everything fits
        ([], 10, 0),
        ([30, 5], 10, 1),  # a table larger than the budget goes alone
        ([1, 30], 10, 1),
    ],
)
def test_chunk_length(relations: list[int], budget: int, expected: int) -> None:
    assert chunk_length(relations, budget) == expected
