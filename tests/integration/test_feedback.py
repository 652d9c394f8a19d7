"""Feedback (ground-truth labels) through the real pipeline: emitter, broker, worker, PostgreSQL.

Labels by reference arriving before and after their payload rows, standalone feedback rows, duplicates collapsed,
bad feedback dead-lettered with its reason, the labelled view, and a replay of a topic with both kinds equal to the
live datamart.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import orjson
import pytest

from stream_logger import Emitter
from stream_logger.config import Settings
from stream_logger.errors import SubscriptionError
from stream_logger.identifiers import quote_ident
from stream_logger.readback import Datamart
from stream_logger.registry import declare
from stream_logger.replay import plan_replay
from stream_logger.samples import german_credit_record
from stream_logger.worker import Worker
from tests.support import config, drop_schema, produce, run_until_caught_up, unique_name

pytestmark = pytest.mark.integration

SUB = "german-credit"
T0 = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)


def _call(i: int, rows: int = 1) -> dict[str, Any]:
    r = german_credit_record(i, rows=rows)
    return {
        "request": r["request"],
        "response": r["response"],
        "subscription_id": SUB,
        "scoring_id": f"call-{i}",
        "scoring_timestamp": T0 + timedelta(minutes=i),
    }


async def _send(settings: Settings, topic: str, tmp_path: Path, calls: list[dict[str, Any]], labels: list[Any]) -> None:
    async with Emitter(topic, settings.bootstrap_servers, spool_dir=tmp_path / "spool", strict=True) as em:
        for call in calls:
            em.log(**call)
        for label in labels:
            em.log_feedback(**label)
        assert await em.flush(30)


async def _tables(pg: asyncpg.Connection, schema: str) -> tuple[str, str, str]:
    table = await pg.fetchval(
        f"SELECT table_name FROM {quote_ident(schema)}.subscriptions WHERE subscription_id = $1", SUB
    )
    stem = table.removeprefix("payload_")
    return tuple(
        f"{quote_ident(schema)}.{quote_ident(prefix + stem)}" for prefix in ("payload_", "feedback_", "labelled_")
    )  # type: ignore[return-value]


async def _labelled(pg: asyncpg.Connection, schema: str, target: str = "label") -> dict[tuple[str, int], Any]:
    _, _, view = await _tables(pg, schema)
    rows = await pg.fetch(f"SELECT scoring_id, row_index, {quote_ident(target)} AS y FROM {view}")
    return {(r["scoring_id"], r["row_index"]): r["y"] for r in rows}


async def test_labels_by_reference_before_and_after_their_payload_rows(
    settings: Settings, topic: str, datamart_schema: str, pg: asyncpg.Connection, tmp_path: Path
) -> None:
    schema = datamart_schema
    early = [
        {"subscription_id": SUB, "scoring_id": "call-0", "label": "Risk", "labelled_at": T0 + timedelta(hours=1)},
        {"subscription_id": SUB, "scoring_id": "call-1", "label": "No Risk", "labelled_at": T0 + timedelta(hours=1)},
    ]
    await _send(settings, topic, tmp_path, [], early)  # before any payload: the subscription is not even known
    await run_until_caught_up(settings, config(topic, schema))
    _, feedback, _ = await _tables(pg, schema)
    assert await pg.fetchval(f"SELECT count(*) FROM {feedback}") == 2  # kept, though no payload row matches
    assert await _labelled(pg, schema) == {}

    late = [
        {"subscription_id": SUB, "scoring_id": "call-2", "row_index": 1, "label": "Risk", "labelled_at": T0},
        {"subscription_id": SUB, "scoring_id": "call-3", "label": "No Risk", "labelled_at": T0},
        # a correction, labelled later: the latest label wins
        {"subscription_id": SUB, "scoring_id": "call-0", "label": "No Risk", "labelled_at": T0 + timedelta(days=7)},
        # an older label, arriving last: it does not
        {"subscription_id": SUB, "scoring_id": "call-1", "label": "Risk", "labelled_at": T0},
    ]
    await _send(settings, topic, tmp_path, [_call(0), _call(1), _call(2, rows=3), _call(3, rows=2)], late)
    await run_until_caught_up(settings, config(topic, schema))
    assert await _labelled(pg, schema) == {
        ("call-0", 0): "No Risk",
        ("call-1", 0): "No Risk",
        ("call-2", 1): "Risk",  # only the row it names
        ("call-3", 0): "No Risk",  # every row of the call
        ("call-3", 1): "No Risk",
    }
    assert await pg.fetchval(f"SELECT count(*) FROM {feedback}") == 6
    target = await pg.fetchval(
        f"SELECT f FROM {quote_ident(schema)}.subscriptions, jsonb_array_elements(fields) f WHERE f->>'role' = 'target'"
    )
    assert orjson.loads(target) == {"name": "label", "column": "label", "role": "target", "type": "text"}
    # A quality query is one SELECT: the view carries the prediction beside the label.
    _, _, view = await _tables(pg, schema)
    agree = await pg.fetchval(f"SELECT count(*) FILTER (WHERE prediction = label) FROM {view}")
    expected = sum(
        1
        for (sid, row), y in (await _labelled(pg, schema)).items()
        if german_credit_record(int(sid.split("-")[1]), rows=3 if sid == "call-2" else 2 if sid == "call-3" else 1)[
            "response"
        ]["values"][row][0]
        == y
    )
    assert agree == expected

    # Read back from a notebook: named as the record's fields, the label as its target.
    datamart = Datamart(schema, settings.dsn)
    frame = datamart.labelled(SUB)
    assert len(frame) == 5 and {"LoanAmount", "prediction", "label", "labelled_at"} <= set(frame.columns)
    keys = zip(frame["scoring_id"], frame["row_index"], strict=True)
    assert dict(zip(keys, frame["label"], strict=True)) == await _labelled(pg, schema)
    labels = datamart.feedback(SUB, since=T0 + timedelta(days=1), format="records")
    assert [(r["scoring_id"], r["label"]) for r in labels] == [("call-0", "No Risk")]


async def test_standalone_rows_duplicates_and_bad_feedback(
    settings: Settings, topic: str, datamart_schema: str, pg: asyncpg.Connection, tmp_path: Path
) -> None:
    schema = datamart_schema
    gc = german_credit_record(5, rows=2)
    fields = [*gc["request"]["fields"], "Risk", "prediction", "Comment"]
    rows = [[*row, "Risk", "No Risk", "checked by hand"] for row in gc["request"]["values"]]
    standalone = {"subscription_id": SUB, "data": {"fields": fields, "values": rows}, "label_field": "Risk"}
    await _send(settings, topic, tmp_path, [_call(5)], [standalone, {**standalone, "feedback_id": "fb-twice"}])
    await run_until_caught_up(settings, config(topic, schema))

    # The same label sent again (a producer retry, a re-run labelling job): collapsed by its feedback_id.
    again: dict[str, Any] = {"subscription_id": SUB, "scoring_id": "call-5", "label": "Risk", "feedback_id": "fb-twice"}
    bad: list[dict[str, Any]] = [
        {"kind": "feedback", "feedback_id": "b1", "subscription_id": SUB, "scoring_id": "call-5", "label": 1},
        {"kind": "feedback", "feedback_id": "b2", "subscription_id": SUB, "scoring_id": "call-5"},
        {"kind": "feedback", "feedback_id": "b3", "subscription_id": SUB, "data": {"fields": ["Age"], "values": [[1]]}},
        {
            "kind": "feedback",
            "feedback_id": "b4",
            "subscription_id": SUB,
            "data": {"fields": ["Age", "Risk"], "values": [["old", "Risk"]]},
        },
        {"kind": "scoring", "feedback_id": "b5", "subscription_id": SUB, "scoring_id": "call-5", "label": "Risk"},
    ]
    when = "2025-06-02T00:00:00Z"
    values = [orjson.dumps({"schema_version": 1, "labelled_at": when, **b}) for b in bad]
    async with Emitter(topic, settings.bootstrap_servers, spool_dir=tmp_path / "s2", strict=True) as em:
        em.log_feedback(**again)
        em.log_feedback(**again)
        assert await em.flush(30)
    await produce(settings, topic, values, [b["feedback_id"].encode() for b in bad])
    await run_until_caught_up(settings, config(topic, schema))

    _, feedback, _ = await _tables(pg, schema)
    stored = await pg.fetch(
        f"SELECT feedback_id, feedback_row, scoring_id, risk, loan_amount, sex, prediction, extra FROM {feedback} "
        "ORDER BY feedback_id, feedback_row"
    )
    twice = [r for r in stored if r["feedback_id"] == "fb-twice"]
    assert [(r["feedback_row"], r["scoring_id"]) for r in twice] == [(0, None), (1, None)]  # the first one sent
    others = [r for r in stored if r["feedback_id"] != "fb-twice"]
    assert len(others) == 2
    amount = gc["request"]["fields"].index("LoanAmount")
    sex = gc["request"]["fields"].index("Sex")
    for r in [*twice, *others]:
        row = gc["request"]["values"][r["feedback_row"]]
        assert (r["risk"], r["loan_amount"], r["sex"], r["prediction"]) == ("Risk", row[amount], row[sex], "No Risk")
        assert orjson.loads(r["extra"]) == {"Comment": "checked by hand"}
    read = Datamart(schema, settings.dsn).feedback(SUB, limit=None)
    assert len(read) == 4 and set(read["Risk"]) == {"Risk"} and "LoanAmount" in read.columns
    letters = {
        r["key"].decode(): r["error_code"]
        for r in await pg.fetch(f"SELECT key, error_code FROM {quote_ident(schema)}.dead_letters")
    }
    assert letters == {
        "b1": "type_conflict",  # an integer for the text target
        "b2": "invalid_record",  # no label
        "b3": "invalid_record",  # standalone rows without the target's field
        "b4": "type_conflict",  # "old" for the integer Age column
        "b5": "invalid_record",  # an unknown kind
    }, letters


async def test_replay_of_a_topic_with_both_kinds_equals_the_live_datamart(
    settings: Settings, topic: str, datamart_schema: str, pg: asyncpg.Connection, tmp_path: Path
) -> None:
    calls = [_call(i, rows=1 + i % 3) for i in range(40)]
    labels: list[Any] = [
        {"subscription_id": SUB, "scoring_id": f"call-{i}", "label": "Risk" if i % 2 else "No Risk", "labelled_at": T0}
        for i in range(0, 40, 3)
    ]
    labels += [{"subscription_id": SUB, "scoring_id": "call-3", "label": "Risk", "labelled_at": T0 + timedelta(days=1)}]
    labels.append({"subscription_id": SUB, "scoring_id": "call-99", "label": "Risk", "labelled_at": T0})  # no payload
    await _send(settings, topic, tmp_path, calls, labels)
    await produce(settings, topic, [b'{"schema_version": 1, "kind": "feedback"}'], [b"bad"])
    await run_until_caught_up(settings, config(topic, datamart_schema))

    replayed = unique_name("r")
    try:
        plan = await plan_replay(settings, [topic], replayed)
        async with Worker(plan.worker_config(replayed, flush_interval_ms=100), settings) as worker:
            await asyncio.wait_for(worker.run(), 120)
        live, again = await _contents(pg, datamart_schema), await _contents(pg, replayed)
        assert live == again
        assert len(live[0]) == 16 and len(live[2]) == 1  # 14 labels, a correction, one with no payload; one dead letter
    finally:
        await drop_schema(settings, replayed)


async def _contents(pg: asyncpg.Connection, schema: str) -> tuple[list[Any], list[Any], list[Any]]:
    _, feedback, view = await _tables(pg, schema)
    labels = await pg.fetch(
        f"SELECT feedback_id, feedback_row, scoring_id, row_index, labelled_at, label, src_topic, src_partition, "
        f"src_offset FROM {feedback} ORDER BY feedback_id, feedback_row"
    )
    view_rows = await pg.fetch(f"SELECT scoring_id, row_index, label, labelled_at FROM {view} ORDER BY 1, 2")
    letters = await pg.fetch(
        f'SELECT topic, partition, "offset", error_code, detail FROM {quote_ident(schema)}.dead_letters '
        "ORDER BY 1, 2, 3"
    )
    return [tuple(r) for r in labels], [tuple(r) for r in view_rows], [tuple(r) for r in letters]


async def test_a_declared_target_types_the_labels(
    settings: Settings, topic: str, datamart_schema: str, pg: asyncpg.Connection, tmp_path: Path
) -> None:
    spec = {
        "subscription_id": SUB,
        "fields": [{"name": "Age", "type": "integer"}, {"name": "defaulted", "type": "boolean", "role": "target"}],
    }
    sub = await declare(pg, datamart_schema, spec)
    assert sub.target is not None and (sub.target.name, sub.target.type) == ("defaulted", "boolean")
    assert "defaulted" not in sub.columns  # the payload table has no column for it
    with pytest.raises(SubscriptionError, match="the target is already 'defaulted'"):
        await declare(pg, datamart_schema, {**spec, "fields": [{"name": "y", "type": "text", "role": "target"}]})
    labels = [
        {"subscription_id": SUB, "scoring_id": "call-1", "label": True, "feedback_id": "yes"},
        {"subscription_id": SUB, "scoring_id": "call-2", "label": "no", "feedback_id": "text"},
    ]
    await _send(settings, topic, tmp_path, [_call(1), _call(2)], labels)
    await run_until_caught_up(settings, config(topic, datamart_schema))
    assert await _labelled(pg, datamart_schema, "defaulted") == {("call-1", 0): True}
    code = await pg.fetchval(f"SELECT error_code FROM {quote_ident(datamart_schema)}.dead_letters WHERE key = 'text'")
    assert code == "type_conflict"
