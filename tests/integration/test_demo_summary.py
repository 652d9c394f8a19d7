"""The demo's closing summary against the real PostgreSQL: every number checked against known rows."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest

from stream_logger.demo.summary import quote_ident, render, summarize

pytestmark = pytest.mark.integration

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
TABLE = "payload GermanCreditRiskModel"  # a space and capitals: the SQL must quote it

# (scoring_id, seconds after T0, [(sex, age, prediction), ...]): 7 requests, 11 rows.
REQUESTS: list[tuple[str, int, list[tuple[str | None, int | None, str]]]] = [
    ("a", 10, [("female", 22, "Risk"), ("male", 30, "No Risk")]),
    ("b", 50, [("female", 45, "No Risk")]),
    ("c", 80, [("male", 19, "Risk"), ("male", 25, "No Risk"), ("female", 26, "Risk")]),
    ("d", 239, [("male", 51, "No Risk")]),
    ("e", 840, [("female", 60, "No Risk"), ("male", 35, "No Risk")]),
    ("f", 840, [("male", 50, "Risk")]),
    ("g", 840, [(None, None, "No Risk")]),
]
DEAD_LETTERS = {"invalid_record": 3, "malformed_json": 2, "empty_message": 1}


async def _create(pg: asyncpg.Connection, schema: str) -> str:
    table = f"{quote_ident(schema)}.{quote_ident(TABLE)}"
    await pg.execute(f"CREATE SCHEMA {quote_ident(schema)}")
    await pg.execute(
        f"""CREATE TABLE {table} (
            scoring_id text NOT NULL, row_index integer NOT NULL, scoring_timestamp timestamptz NOT NULL,
            sex text, age integer, prediction text NOT NULL, probability float8[] NOT NULL,
            PRIMARY KEY (scoring_id, row_index))"""
    )
    await pg.execute(
        f"""CREATE TABLE {quote_ident(schema)}.dead_letters (
            topic text NOT NULL, partition integer NOT NULL, "offset" bigint NOT NULL, key bytea, value bytea,
            error_code text NOT NULL, detail text, failed_at timestamptz NOT NULL DEFAULT now())"""
    )
    return table


async def _fill(pg: asyncpg.Connection, schema: str) -> None:
    table = await _create(pg, schema)
    rows: list[tuple[Any, ...]] = []
    for scoring_id, seconds, scored in REQUESTS:
        for index, (sex, age, prediction) in enumerate(scored):
            p_risk = 0.7 if prediction == "Risk" else 0.2
            when = T0 + timedelta(seconds=seconds)
            rows.append((scoring_id, index, when, sex, age, prediction, [1 - p_risk, p_risk]))
    await pg.executemany(f"INSERT INTO {table} VALUES ($1, $2, $3, $4, $5, $6, $7)", rows)
    offset = 0
    for code, count in DEAD_LETTERS.items():
        for _ in range(count):
            await pg.execute(
                f'INSERT INTO {quote_ident(schema)}.dead_letters (topic, partition, "offset", key, value, '
                "error_code, detail) VALUES ('demo', 0, $1, NULL, $2, $3, 'test')",
                offset,
                b"junk",
                code,
            )
            offset += 1


async def test_summary_numbers_match_the_rows(pg: asyncpg.Connection, schema: str) -> None:
    await _fill(pg, schema)
    columns = {"Sex": "sex", "Age": "age", "prediction": "prediction"}
    summary = await summarize(pg, schema, TABLE, columns)

    assert summary.total_rows == 11
    assert summary.total_requests == 7
    assert summary.first_timestamp == T0 + timedelta(seconds=10)
    assert summary.last_timestamp == T0 + timedelta(seconds=840)
    assert summary.dead_letters == DEAD_LETTERS
    assert summary.dead_letters_total == 6
    assert summary.prediction_mix == {"Risk": 4, "No Risk": 7}

    # 14 minutes of traffic: 30-second buckets would be 29 > 24, so one-minute buckets, gaps filled with zeros.
    assert [b.width_s for b in summary.buckets] == [60] * 15
    assert [b.start for b in summary.buckets] == [T0 + timedelta(minutes=m) for m in range(15)]
    requests = [b.requests for b in summary.buckets]
    rows = [b.rows for b in summary.buckets]
    assert requests == [2, 1, 0, 1] + [0] * 10 + [3]
    assert rows == [3, 3, 0, 1] + [0] * 10 + [4]
    assert summary.buckets[0].requests_per_minute == 2.0

    sex = {g.group: (g.rows, g.risk, g.no_risk) for g in summary.by_sex}
    assert sex == {"female": (4, 2, 2), "male": (6, 2, 4)}  # the row without a sex is left out
    assert summary.disparate_impact == pytest.approx(0.5 / (4 / 6))  # 0.75

    bands = [(g.group, g.rows, g.risk, g.no_risk) for g in summary.by_age_band]
    assert bands == [("19-25", 3, 2, 1), ("26-35", 3, 1, 2), ("36-50", 2, 1, 1), ("51+", 2, 0, 2)]
    assert summary.by_age_band[0].risk_rate == pytest.approx(2 / 3)

    text = render(summary)
    assert "rows: 11 from 7 requests" in text
    assert "= 0.75" in text and "BELOW the line" in text
    assert f'"{schema}"."payload GermanCreditRiskModel"' in text


async def test_the_printed_sql_runs_as_printed(pg: asyncpg.Connection, schema: str) -> None:
    await _fill(pg, schema)
    summary = await summarize(pg, schema, TABLE)
    titles = [q.title for q in summary.queries]
    assert titles == [
        "rows, requests and time span",
        "dead letters by reason",
        "requests per 1-minute bucket",
        "prediction mix",
        "Risk rate by sex",
        "Risk rate by age band",
    ]
    text = render(summary)
    for query in summary.queries:
        assert query.sql in text
        assert "$" not in query.sql  # nothing left to bind: it pastes into psql as it is
    by_sex = await pg.fetch(summary.queries[4].sql)
    assert [(r["grp"], float(r["risk_rate"])) for r in by_sex] == [("female", 0.5), ("male", 0.333)]


async def test_an_empty_datamart_summarizes_to_zeros(pg: asyncpg.Connection, schema: str) -> None:
    await _create(pg, schema)
    summary = await summarize(pg, schema, TABLE)
    assert summary.total_rows == 0 and summary.total_requests == 0
    assert summary.buckets == [] and summary.dead_letters == {} and summary.prediction_mix == {}
    assert summary.by_sex == [] and summary.disparate_impact is None
    text = render(summary)
    assert "(no requests)" in text and "n/a" in text


async def test_mapped_column_names(pg: asyncpg.Connection, schema: str) -> None:
    await _fill(pg, schema)
    table = f"{quote_ident(schema)}.{quote_ident(TABLE)}"
    await pg.execute(f'ALTER TABLE {table} RENAME COLUMN sex TO "Sex of applicant"')
    await pg.execute(f"ALTER TABLE {table} RENAME COLUMN scoring_timestamp TO ts")
    summary = await summarize(pg, schema, TABLE, {"Sex": "Sex of applicant", "scoring_timestamp": "ts"})
    assert {g.group: g.rows for g in summary.by_sex} == {"female": 4, "male": 6}
    assert summary.total_requests == 7 and len(summary.buckets) == 15


async def test_accuracy_by_group_from_the_labelled_rows(pg: asyncpg.Connection, schema: str) -> None:
    await _fill(pg, schema)
    # The labelled view's shape: the payload rows that have a label, with it (here a table built by hand).
    table = f"{quote_ident(schema)}.{quote_ident(TABLE)}"
    truth = {("a", 0): "No Risk", ("a", 1): "No Risk", ("b", 0): "Risk", ("c", 0): "Risk", ("c", 2): "No Risk"}
    await pg.execute(
        f"CREATE TABLE {quote_ident(schema)}.labelled AS SELECT *, NULL::text AS risk FROM {table} LIMIT 0"
    )
    for (scoring_id, row_index), label in truth.items():
        await pg.execute(
            f"INSERT INTO {quote_ident(schema)}.labelled SELECT *, $3 FROM {table} "
            "WHERE scoring_id = $1 AND row_index = $2",
            scoring_id,
            row_index,
            label,
        )
    summary = await summarize(pg, schema, TABLE, labelled="labelled")
    # a0 female Risk/No Risk: wrong, false Risk; a1 male No Risk/No Risk: right; b0 female No Risk/Risk: wrong;
    # c0 male Risk/Risk: right; c2 female Risk/No Risk: wrong, false Risk.
    sex = {g.group: (g.labelled, g.correct, g.truly_no_risk, g.false_risk) for g in summary.accuracy_by_sex}
    assert sex == {"female": (3, 0, 2, 2), "male": (2, 2, 1, 0)}
    assert summary.accuracy_by_sex[0].false_risk_rate == 1.0 and summary.accuracy_by_sex[1].accuracy == 1.0
    bands = {g.group: (g.labelled, g.correct) for g in summary.accuracy_by_age_band}
    assert bands == {"19-25": (2, 1), "26-35": (2, 1), "36-50": (1, 0)}
    text = render(summary)
    assert "female  labelled       3   accuracy   0.0%   false Risk 100.0%" in text
    assert summary.queries[-1].sql in text


async def test_no_labelled_view_yet_says_so(pg: asyncpg.Connection, schema: str) -> None:
    await _fill(pg, schema)
    summary = await summarize(pg, schema, TABLE, labelled="labelled_nothing")
    assert summary.accuracy_by_sex == [] and "(no labels yet)" in render(summary)
