"""The datamart and subscription commands, end to end against the real PostgreSQL."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from stream_logger.cli import main

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
    assert len(listed["fields"]) == 22
    assert {f["column"]: f["type"] for f in listed["fields"]}["probability"] == "float8[]"
    assert main(["datamart", "info", "--schema", schema, "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["payload_rows"] == 0 and summary["dead_letters"] == 0 and summary["offsets"] == []
    assert summary["subscriptions"] == [
        {"subscription_id": "german_credit", "table": "payload_german_credit", "rows": 0, "fields": 22}
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
