"""The demo end to end, small: its summary must agree with the datamart."""

from __future__ import annotations

import io

import asyncpg
import pytest

from stream_logger.config import Settings
from stream_logger.demo.run import DemoOptions, run_demo
from stream_logger.identifiers import quote_ident

pytestmark = pytest.mark.integration


async def test_demo_summary_matches_the_datamart(settings: Settings, schema: str, pg: asyncpg.Connection) -> None:
    out = io.StringIO()
    result = await run_demo(
        DemoOptions(records=150, rate_per_s=0, history_days=3, workers=2, schema=schema), settings, out
    )
    text = out.getvalue()
    q = quote_ident(schema)
    table = await pg.fetchval(
        f"SELECT table_name FROM {q}.subscriptions WHERE subscription_id = 'GermanCreditRiskModel'"
    )
    rows, requests = await pg.fetchrow(f"SELECT count(*), count(DISTINCT scoring_id) FROM {q}.{quote_ident(table)}")
    assert result.emitted == 150 and requests == 150
    assert result.summary.total_rows == rows and result.summary.total_requests == requests
    assert rows >= requests  # requests score 1 to 3 applicants each
    # every malformed message is dead-lettered with the expected reason, and flagged in the output
    assert all(code == m.expected_error_code for m, code in result.malformed)
    dead = await pg.fetch(f"SELECT error_code, count(*) AS n FROM {q}.dead_letters GROUP BY 1")
    assert sum(r["n"] for r in dead) == len(result.malformed)
    for m, _ in result.malformed:
        assert m.label in text
    # back-dated over 3 days: several daily partitions
    parts = await pg.fetchval(
        "SELECT count(*) FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhparent "
        "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = $1 AND c.relname = $2",
        schema,
        table,
    )
    assert parts >= 3
    risk = await pg.fetchval(f"SELECT count(*) FROM {q}.{quote_ident(table)} WHERE prediction = 'Risk'")
    assert f"{rows:,}" in text and result.summary.total_rows == rows
    assert 0 < risk < rows
    assert "disparate impact" in text.lower()
    # Delayed labels for a share of the calls, each stored once; the accuracy by sex read from the labelled view.
    labels = await pg.fetchval(f"SELECT count(*) FROM {q}.{quote_ident(table.replace('payload_', 'feedback_', 1))}")
    assert result.labels == labels > 0 and 0 < result.labelled_calls < 150
    labelled = await pg.fetch(
        f"SELECT sex, prediction, risk FROM {q}.{quote_ident(table.replace('payload_', 'labelled_', 1))}"
    )
    assert len(labelled) == labels  # every label is for a row of its call, and each row is labelled once
    for group in result.summary.accuracy_by_sex:
        mine = [r for r in labelled if r["sex"] == group.group]
        assert group.labelled == len(mine) and group.correct == sum(r["prediction"] == r["risk"] for r in mine)
        truly_fine = [r for r in mine if r["risk"] == "No Risk"]
        assert group.false_risk == sum(r["prediction"] == "Risk" for r in truly_fine)
    assert "Quality: accuracy on the labelled rows" in text and "false Risk" in text
    # Its monitors: the four kinds measured, the shifted half's drift caught, ending with monitor show's table.
    measured = await pg.fetch(f"SELECT monitor, metric, state, breached FROM {q}.measurements")
    by_metric = {(r["monitor"], r["metric"]): r for r in measured}
    assert {m for m, _ in by_metric} == {"fairness", "quality", "drift", "traffic"}
    assert by_metric["drift", "psi:Age"]["breached"] and not by_metric["drift", "psi:Sex"]["breached"]
    assert by_metric["quality", "accuracy"]["state"] == "ok"
    assert text.rstrip().splitlines()[-1].startswith("GermanCreditRiskModel  traffic")  # the table ends the demo
    assert "psql" in text.lower() or "SELECT" in text
