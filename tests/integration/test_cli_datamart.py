"""The datamart and subscription commands, end to end against the real PostgreSQL."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import asyncpg
import pytest

from stream_logger.cli import main
from stream_logger.config import Settings
from stream_logger.datamart import DatamartContents, contents
from tests.support import partitioned_datamart

pytestmark = pytest.mark.integration

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "german_credit_subscription.json"


def test_setup_add_list_info(schema: str, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert main(["datamart", "setup", "--schema", schema]) == 0
    assert main(["datamart", "setup", "--schema", schema]) == 0
    assert main(["subscription", "add", "--schema", schema, "--file", str(EXAMPLE)]) == 0
    capsys.readouterr()
    assert main(["subscription", "list", "--schema", schema, "--json"]) == 0
    (listed,) = json.loads(capsys.readouterr().out)
    assert listed["subscription_id"] == "german_credit"
    assert len(listed["fields"]) == 23  # 22 payload fields, and the target
    assert [f["name"] for f in listed["fields"] if f["role"] == "target"] == ["Risk"]
    assert {f["column"]: f["type"] for f in listed["fields"]}["probability"] == "float8[]"
    assert main(["datamart", "info", "--schema", schema, "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["payload_rows"] == 0 and summary["dead_letters"] == 0 and summary["offsets"] == []
    assert summary["subscriptions"] == [
        {"subscription_id": "german_credit", "table": "payload_german_credit", "rows": 0, "fields": 23}
    ]
    assert main(["datamart", "info", "--schema", schema]) == 0
    assert "payload_german_credit" in capsys.readouterr().out

    bad = tmp_path / "bad.json"
    bad.write_text('{"subscription_id": "x", "fields": [{"name": "a", "type": "integr"}]}')
    assert main(["subscription", "add", "--schema", schema, "--file", str(bad)]) == 1
    assert "fields[0].type: unknown type 'integr'" in capsys.readouterr().err


def test_errors_are_one_clear_line(schema: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["datamart", "info", "--schema", schema]) == 1
    assert "run 'stream-logger datamart setup" in capsys.readouterr().err
    assert main(["datamart", "setup", "--schema", 'x"; DROP SCHEMA public; --']) == 1
    assert "invalid schema name" in capsys.readouterr().err


async def _contents(settings: Settings, schema: str, *, build: bool = False) -> DatamartContents | None:
    conn = await asyncpg.connect(settings.dsn)
    try:
        if build:
            await partitioned_datamart(conn, schema, subscriptions=2, days=40)
        return await contents(conn, schema)
    finally:
        await conn.close()


def test_drop_asks_for_yes_then_drops(settings: Settings, schema: str, capsys: pytest.CaptureFixture[str]) -> None:
    before = asyncio.run(_contents(settings, schema, build=True))
    assert before is not None
    assert main(["datamart", "drop", "--schema", schema]) == 2
    err = capsys.readouterr().err
    assert (
        f"datamart {schema!r} holds 2 subscriptions, 8 tables and 80 partitions ({before.relations} relations)" in err
    )
    assert "about 10 rows" in err and "nothing was dropped: add --yes" in err
    assert asyncio.run(_contents(settings, schema)) == before

    assert main(["datamart", "drop", "--schema", schema, "--yes", "--relations-per-transaction", "20"]) == 0
    out = capsys.readouterr().out
    assert f"dropped datamart {schema!r}: {before.relations} relations in " in out
    assert asyncio.run(_contents(settings, schema)) is None
    assert main(["datamart", "drop", "--schema", schema, "--yes"]) == 0
    assert "does not exist: nothing to drop" in capsys.readouterr().out


def test_drop_refuses_what_is_not_a_datamart(
    settings: Settings, schema: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["datamart", "drop", "--schema", schema, "--yes", "--relations-per-transaction", "0"]) == 1
    assert "stream-logger: error: relations per transaction must be at least 1" in capsys.readouterr().err
    asyncio.run(
        _sql(settings, f'CREATE SCHEMA "{schema}"', f'CREATE TABLE "{schema}".schema_migrations (version text)')
    )
    assert main(["datamart", "drop", "--schema", schema, "--yes"]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"stream-logger: error: schema {schema!r} exists but is not a stream-logger datamart")
    assert "Traceback" not in err
    assert asyncio.run(_sql(settings, f"SELECT to_regclass('{schema}.schema_migrations') IS NOT NULL")) is True


async def _sql(settings: Settings, *statements: str) -> object:
    """The value the last of ``statements`` returns."""
    conn = await asyncpg.connect(settings.dsn)
    try:
        return [await conn.fetchval(sql) for sql in statements][-1]
    finally:
        await conn.close()
