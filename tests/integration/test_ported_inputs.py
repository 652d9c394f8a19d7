"""What porting users feed in reaches the datamart: WML v4 and Open Inference Protocol bodies, naive timestamps,
and a numpy float matrix whose integer columns became floats (the real broker, worker and PostgreSQL)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import asyncpg
import numpy as np
import pytest

from stream_logger import Emitter
from stream_logger.config import Settings
from tests.support import config, dead_letters, run_until_caught_up, tables_of

pytestmark = pytest.mark.integration

FIELDS = ["Age", "LoanAmount", "Sex"]
WHEN = datetime(2025, 11, 29, 12, 0)  # naive, as datetime.utcnow() gives


async def test_ported_bodies_land_as_rows_of_one_table(
    settings: Settings, topic: str, datamart_schema: str, pg: asyncpg.Connection, tmp_path: Path
) -> None:
    prediction = {"fields": ["prediction", "probability"], "values": [["Risk", [0.3, 0.7]]]}
    async with Emitter(topic, settings.bootstrap_servers, spool_dir=tmp_path, strict=True) as em:
        em.log(  # the first record declares the columns: Age and LoanAmount bigint, Sex text
            subscription_id="credit",
            scoring_id="plain",
            request={"fields": FIELDS, "values": [[33, 1200, "female"]]},
            response=prediction,
            scoring_timestamp=WHEN.replace(tzinfo=UTC),
        )
        em.log(
            subscription_id="credit",
            scoring_id="wml",
            request={"input_data": [{"fields": FIELDS, "values": [[41, 5400, "male"]]}]},
            response={"predictions": [prediction]},
            scoring_timestamp=WHEN,
        )
        em.log(
            subscription_id="credit",
            scoring_id="oip",
            request={
                "inputs": [
                    {"name": "Age", "shape": [2], "datatype": "INT64", "data": [25, 52]},
                    {"name": "LoanAmount", "shape": [2, 1], "datatype": "INT64", "data": [[800], [9100]]},
                    {"name": "Sex", "shape": [2], "datatype": "BYTES", "data": ["female", "male"]},
                ]
            },
            response={
                "outputs": [
                    {"name": "prediction", "shape": [2], "datatype": "BYTES", "data": ["Risk", "No Risk"]},
                    {"name": "probability", "shape": [2, 2], "datatype": "FP32", "data": [0.4, 0.6, 0.9, 0.1]},
                ]
            },
            scoring_timestamp=WHEN,
        )
        matrix = np.array([[60.0, 3000.0], [19.0, 250.0]])  # integer columns, as a float matrix holds them
        em.log(
            subscription_id="credit",
            scoring_id="matrix",
            request={"fields": ["Age", "LoanAmount"], "values": matrix},
            response={"fields": ["prediction"], "values": [["No Risk"], ["Risk"]]},
            scoring_timestamp=WHEN.isoformat(),
        )
        assert await em.flush(30)
        assert em.stats().naive_timestamps == 3 and em.stats().invalid == 0

    summary = await run_until_caught_up(settings, config(topic, datamart_schema))
    assert summary.dead_letters == {} and await dead_letters(pg, datamart_schema) == []
    table = (await tables_of(pg, datamart_schema))["credit"]
    rows = await pg.fetch(
        f"SELECT scoring_id, row_index, age, loan_amount, sex, prediction, probability, scoring_timestamp "
        f'FROM "{datamart_schema}"."{table}" ORDER BY scoring_id, row_index'
    )
    got = [(r["scoring_id"], r["row_index"], r["age"], r["loan_amount"], r["sex"], r["prediction"]) for r in rows]
    assert got == [
        ("matrix", 0, 60, 3000, None, "No Risk"),
        ("matrix", 1, 19, 250, None, "Risk"),
        ("oip", 0, 25, 800, "female", "Risk"),
        ("oip", 1, 52, 9100, "male", "No Risk"),
        ("plain", 0, 33, 1200, "female", "Risk"),
        ("wml", 0, 41, 5400, "male", "Risk"),
    ]
    assert [list(r["probability"]) for r in rows if r["scoring_id"] == "oip"] == [[0.4, 0.6], [0.9, 0.1]]
    assert {r["scoring_timestamp"] for r in rows} == {WHEN.replace(tzinfo=UTC)}
