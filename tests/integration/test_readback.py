"""The datamart read back for notebooks: fields' names, time bounds, limits, dead letters, inside an event loop."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import asyncpg
import orjson
import pandas as pd
import pytest

from stream_logger.config import Settings
from stream_logger.errors import StreamLoggerError, SubscriptionError
from stream_logger.readback import Datamart, payload_rows
from tests.support import DAY, config, produce, run_until_caught_up, sub_record

pytestmark = pytest.mark.integration


async def _datamart_of_three_days(settings: Settings, topic: str, schema: str) -> None:
    records = [sub_record(i, "credit", DAY - timedelta(days=i)) for i in range(3)]
    bad = dict(records[0], scoring_id="bad")
    bad["request"] = {"fields": bad["request"]["fields"], "values": [["x"] * len(bad["request"]["fields"])]}
    values = [orjson.dumps(r) for r in [*records, bad]]
    await produce(settings, topic, values, [r["scoring_id"].encode() for r in [*records, bad]])
    await run_until_caught_up(settings, config(topic, schema, max_record_age_s=None))


async def test_payload_rows_are_named_as_the_fields_newest_first_within_bounds(
    settings: Settings, topic: str, datamart_schema: str, pg: asyncpg.Connection
) -> None:
    await _datamart_of_three_days(settings, topic, datamart_schema)
    rows = await payload_rows(pg, datamart_schema, "credit", limit=None)
    assert [r["scoring_timestamp"] for r in rows] == sorted((r["scoring_timestamp"] for r in rows), reverse=True)
    fields = set(orjson.loads(orjson.dumps(sub_record(0, "credit")))["request"]["fields"])
    assert fields <= set(rows[0]) and "scoring_id" in rows[0] and "src_offset" in rows[0]
    day_before = DAY - timedelta(days=1)
    bounded = await payload_rows(pg, datamart_schema, "credit", since=day_before, until=DAY, limit=None)
    assert {r["scoring_timestamp"] for r in bounded} == {day_before}
    assert len(await payload_rows(pg, datamart_schema, "credit", limit=1)) == 1
    with pytest.raises(SubscriptionError, match="no subscription 'nope'"):
        await payload_rows(pg, datamart_schema, "nope")
    with pytest.raises(StreamLoggerError, match="need a timezone"):
        await payload_rows(pg, datamart_schema, "credit", since=datetime(2025, 1, 1))


async def test_a_notebook_reads_frames_without_await_even_inside_a_running_loop(
    settings: Settings, topic: str, datamart_schema: str
) -> None:
    await _datamart_of_three_days(settings, topic, datamart_schema)
    datamart = Datamart(datamart_schema, settings.dsn)  # called from this running event loop, as Jupyter does
    payload = datamart.payload("credit", since=DAY - timedelta(days=1))
    assert isinstance(payload, pd.DataFrame) and len(payload) == 2
    dead = datamart.dead_letters()
    assert list(dead["error_code"]) == ["type_conflict"] and dead["subscription_id"][0] == "credit"
    records = datamart.payload("credit", format="records", limit=None)
    assert len(records) == 3 and records[0]["scoring_timestamp"] == DAY.astimezone(UTC)
