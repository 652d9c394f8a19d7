"""A script written for IBM Watson OpenScale runs on the real Kafka and PostgreSQL with only its imports and
credentials changed (``examples/openscale_port/ported.py``, as a subprocess, with the in-process worker), and reads
back what it stored; and the client's semantics where they must differ from OpenScale's: without the in-process
worker a count shows what a worker has written, and ``close()`` waits for the in-process worker."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from datetime import datetime
from pathlib import Path
from types import ModuleType
from typing import Any
from urllib.parse import urlsplit

import asyncpg
import pytest

from stream_logger.config import Settings
from stream_logger.errors import RecordError, SubscriptionError
from stream_logger.identifiers import quote_ident
from stream_logger.openscale_client import APIClient, CustomMachineLearningAsset, PayloadRecord, ProblemType
from stream_logger.openscale_session import in_process_group
from tests.support import config, dead_letters, run_until_caught_up, stored_offsets, tables_of

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
PORTED = ROOT / "examples" / "openscale_port" / "ported.py"


def _script() -> ModuleType:
    """The ported script's module (its data and its model; ``main()`` is not run on import)."""
    spec = importlib.util.spec_from_file_location("openscale_port_ported", PORTED)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _rows(table: dict[str, Any]) -> list[dict[str, Any]]:
    """OpenScale's ``{"fields", "values"}`` as one dict a row."""
    return [dict(zip(table["fields"], values, strict=True)) for values in table["values"]]


async def test_a_ported_openscale_script_reads_back_what_it_stored(
    settings: Settings, topic: str, schema: str, pg: asyncpg.Connection, tmp_path: Path
) -> None:
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "STREAM_LOGGER_BOOTSTRAP_SERVERS": settings.bootstrap_servers,
        "STREAM_LOGGER_DSN": settings.dsn,
        "STREAM_LOGGER_STATE_DIR": str(tmp_path / "state"),
        "OPENSCALE_PORT_TOPIC": topic,
        "OPENSCALE_PORT_SCHEMA": schema,
    }
    run = subprocess.run(
        [sys.executable, str(PORTED)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=180, check=False
    )
    assert run.returncode == 0, f"--- stdout\n{run.stdout}\n--- stderr\n{run.stderr}"
    assert "10 payload records, 10 feedback records" in run.stdout
    result = json.loads(run.stdout.splitlines()[-1])

    script = _script()
    features, applicants = script.FEATURES, script.APPLICANTS
    # What the script stored: (scoring_id, row_index) -> the applicant, in the order it stored them.
    calls = {"gc-port-0": (0, 2), "gc-port-2": (2, 4), "gc-port-4": (4, 5), "gc-port-5": (5, 6)}
    calls |= {"gc-port-6": (6, 7), "gc-port-7": (7, 8), "gc-port-8": (8, 10)}
    stored = {
        (scoring_id, i): applicants[start + i] for scoring_id, (start, end) in calls.items() for i in range(end - start)
    }
    response_times = {"gc-port-0": 18, "gc-port-2": 7, "gc-port-4": 5, "gc-port-5": None, "gc-port-6": 4}
    response_times |= {"gc-port-7": 9, "gc-port-8": 11}

    payload = _rows(result["payload"])
    assert result["count"] == len(payload) == len(stored) == 10
    by_key = {(r["scoring_id"], r["row_index"]): r for r in payload}
    assert set(by_key) == set(stored)
    for key, applicant in stored.items():
        row = by_key[key]
        assert [row[f] for f in features] == applicant, key  # columns named as the record's fields
        scored = script.score([applicant])["values"][0]
        assert (row["prediction"], row["probability"]) == (scored[-2], scored[-1]), key
        assert row["response_time_ms"] == response_times[key[0]], key
        assert row["deployment_id"] == "german-credit-v1"
    assert datetime.fromisoformat(by_key["gc-port-0", 0]["scoring_timestamp"]) == script.WHEN
    newer = by_key["gc-port-2", 1]
    assert (newer["asset_revision"], newer["user_id"]) == ("2026-01", "analyst")

    feedback = _rows(result["feedback"])
    assert result["feedback_count"] == len(feedback) == 10
    labelled = sorted([*row, label] for row, label in zip(applicants, script.LABELS, strict=True))
    assert sorted([r[f] for f in [*features, "Risk"]] for r in feedback) == labelled  # CSV values typed back

    # The datamart itself: every message stored once, none dead-lettered, the asset's roles and types declared,
    # and the in-process worker's group at the end of the topic.
    assert await dead_letters(pg, schema) == []
    fields = await pg.fetchval(
        f"SELECT fields::text FROM {quote_ident(schema)}.subscriptions WHERE subscription_id = $1",
        script.SUBSCRIPTION_ID,
    )
    declared = {f["name"]: (f["role"], f["type"]) for f in json.loads(fields)}
    assert declared["Sex"] == ("feature", "text") and declared["Age"] == ("feature", "bigint")
    assert declared["prediction"] == ("prediction", "text")
    assert declared["probability"] == ("probability", "float8[]")
    assert declared["Risk"] == ("target", "text")
    assert sum((await stored_offsets(pg, schema, in_process_group(schema))).values()) == 7 + 2  # 7 calls, 2 labels


async def test_without_the_in_process_worker_a_count_shows_what_a_worker_has_written(
    settings: Settings, topic: str, schema: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STREAM_LOGGER_STATE_DIR", str(tmp_path))
    credentials = {"bootstrap_servers": settings.bootstrap_servers, "topic": topic, "dsn": settings.dsn}
    with APIClient(credentials) as client:
        client.data_mart.setup(schema=schema)
        subscription = client.data_mart.subscriptions.add(
            CustomMachineLearningAsset("regression", problem_type=ProblemType.REGRESSION, prediction_column="price")
        )
        request = {"fields": ["rooms", "area"], "values": [[3, 71.5], [2, 48.0]]}
        subscription.payload_logging.store([PayloadRecord(request, {"fields": ["price"], "values": [[3.1], [2.2]]})])
        assert subscription.payload_logging.get_records_count() == 0  # in Kafka, not written yet
        await run_until_caught_up(settings, config(topic, schema))
        assert subscription.payload_logging.get_records_count() == 2
        content = subscription.payload_logging.get_table_content(format="python")
        assert sorted((r["rooms"], r["area"], r["price"]) for r in _rows(content)) == [(2, 48.0, 2.2), (3, 71.5, 3.1)]


async def test_the_in_process_worker_writes_what_was_stored_before_close_returns(
    settings: Settings, topic: str, schema: str, pg: asyncpg.Connection, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STREAM_LOGGER_STATE_DIR", str(tmp_path))
    dsn = urlsplit(settings.dsn)
    db_credentials = {  # OpenScale's other form: the parts of the connection
        "db_type": "postgresql",
        "hostname": dsn.hostname,
        "port": dsn.port,
        "username": dsn.username,
        "password": dsn.password,
        "db": dsn.path.lstrip("/"),
    }
    client = APIClient({"bootstrap_servers": settings.bootstrap_servers, "topic": topic, "in_process_worker": True})
    client.data_mart.setup(db_credentials=db_credentials, schema=schema)
    # No type the asset tells: the subscription is declared with its first records' types and the asset's roles.
    asset = CustomMachineLearningAsset("scores", feature_columns=["x"], prediction_column="label", label_column="y")
    subscription = client.data_mart.subscriptions.add(asset)
    assert "scores" in client.data_mart.subscriptions.get_uids()
    good = PayloadRecord({"fields": ["x"], "values": [[1]]}, {"fields": ["label"], "values": [[0]]})
    two_labels_for_one_row = PayloadRecord(
        {"fields": ["x"], "values": [[2]]}, {"fields": ["label"], "values": [[0], [1]]}
    )
    with pytest.raises(RecordError, match=r"records\[1\]\.response") as caught:
        subscription.payload_logging.store([good, two_labels_for_one_row])  # the first is stored, not the second
    assert caught.value.code == "invalid_record"
    with pytest.raises(SubscriptionError, match="no label column"):
        client.data_mart.subscriptions.add(CustomMachineLearningAsset("other")).feedback_logging.store([[1]], ["x"])
    client.close()  # stored one record, never counted: close() waits for the worker to write it
    assert await pg.fetchval(f"SELECT count(*) FROM {quote_ident(schema)}.payload_scores") == 1
    fields = await pg.fetchval(f"SELECT fields::text FROM {quote_ident(schema)}.subscriptions")
    assert [(f["name"], f["role"], f["type"]) for f in json.loads(fields)] == [
        ("x", "feature", "bigint"),
        ("label", "prediction", "bigint"),
    ]
    assert await tables_of(pg, schema) == {"scores": "payload_scores"}
    with APIClient({"dsn": settings.dsn, "schema": schema}) as reader:
        details = reader.data_mart.get_details()
    assert details["schema"] == schema and details["payload_rows"] == 1 and "***" in details["database"]


async def test_at_interpreter_exit_the_client_waits_for_its_in_process_worker(
    settings: Settings, topic: str, schema: str, pg: asyncpg.Connection, tmp_path: Path
) -> None:
    script = (
        "from stream_logger.openscale_client import APIClient, CustomMachineLearningAsset, PayloadRecord\n"
        f"client = APIClient({{'topic': {topic!r}, 'schema': {schema!r}, 'in_process_worker': True}})\n"
        "client.data_mart.setup()\n"
        "subscription = client.data_mart.subscriptions.add(CustomMachineLearningAsset('leaving'))\n"
        "request = {'fields': ['x'], 'values': [[1], [2]]}\n"
        "response = {'fields': ['prediction'], 'values': [[0], [1]]}\n"
        "subscription.payload_logging.store([PayloadRecord(request, response)])\n"  # then exit: no count, no close
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT), "STREAM_LOGGER_STATE_DIR": str(tmp_path)}
    env |= {"STREAM_LOGGER_BOOTSTRAP_SERVERS": settings.bootstrap_servers, "STREAM_LOGGER_DSN": settings.dsn}
    run = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120, check=False
    )
    assert run.returncode == 0, run.stderr
    assert await pg.fetchval(f"SELECT count(*) FROM {quote_ident(schema)}.payload_leaving") == 2
