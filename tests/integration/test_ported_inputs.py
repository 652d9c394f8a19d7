"""What porting users feed in reaches the datamart: WML v4 and Open Inference Protocol bodies, naive timestamps,
a numpy float matrix whose integer columns became floats, and a DataFrame larger than one record (the real broker,
worker and PostgreSQL)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import asyncpg
import numpy as np
import pytest

from stream_logger import Emitter
from stream_logger.config import Settings
from stream_logger.contract import MAX_ROWS
from stream_logger.identifiers import feedback_names_for, quote_ident
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


async def test_a_frame_larger_than_a_record_lands_whole_under_one_scoring_id(
    settings: Settings, topic: str, datamart_schema: str, pg: asyncpg.Connection, tmp_path: Path
) -> None:
    """A notebook logs a 25,001-row DataFrame: three records of one scoring id, 25,001 rows with their row_index, and
    a label for a row of the third record joins it."""
    import pandas as pd

    rows = 2 * MAX_ROWS + 5_001
    frame = pd.DataFrame({"Age": np.arange(rows) % 60 + 19, "LoanAmount": np.arange(rows) * 10, "Sex": "female"})
    predictions = pd.DataFrame({"prediction": ["Risk" if i % 3 == 0 else "No Risk" for i in range(rows)]})
    async with Emitter(topic, settings.bootstrap_servers, spool_dir=tmp_path, strict=True) as em:
        scoring_id = em.log(subscription_id="credit", request=frame, response=predictions)
        em.log_feedback(subscription_id="credit", scoring_id=scoring_id, row_index=rows - 1, label="Risk")
        assert await em.flush(60)
        assert em.stats().acknowledged == 4  # three records and a label
    await run_until_caught_up(settings, config(topic, datamart_schema))
    name = (await tables_of(pg, datamart_schema))["credit"]
    table, view = (f"{quote_ident(datamart_schema)}.{quote_ident(n)}" for n in (name, feedback_names_for(name)[1]))
    stored = await pg.fetch(f"SELECT scoring_id, row_index, age, loan_amount FROM {table} ORDER BY row_index")
    assert len(stored) == rows and {r["scoring_id"] for r in stored} == {scoring_id}
    assert [r["row_index"] for r in stored] == list(range(rows))
    assert [r["loan_amount"] for r in stored] == list(frame["LoanAmount"])
    assert await dead_letters(pg, datamart_schema) == []
    labelled = await pg.fetch(f"SELECT row_index, loan_amount, label FROM {view}")
    assert [tuple(r) for r in labelled] == [(rows - 1, (rows - 1) * 10, "Risk")]
