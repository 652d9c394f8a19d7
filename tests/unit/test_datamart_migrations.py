"""The packaged migrations are the canonical ones, numbered without gaps, and agree with contract.ERROR_CODES."""

from __future__ import annotations

import re
from pathlib import Path

from stream_logger.contract import ERROR_CODES
from stream_logger.datamart import latest_version, load_migrations

ROOT = Path(__file__).resolve().parents[2]


def test_packaged_copy_is_identical_to_schemas_datamart() -> None:
    canonical = {p.name: p.read_text(encoding="utf-8") for p in (ROOT / "schemas" / "datamart").glob("*.sql")}
    packaged = {
        p.name: p.read_text(encoding="utf-8") for p in (ROOT / "stream_logger" / "_schemas" / "datamart").glob("*.sql")
    }
    assert canonical, "no migrations found under schemas/datamart"
    assert packaged == canonical, "run: cp schemas/datamart/*.sql stream_logger/_schemas/datamart/"


def test_migrations_are_numbered_from_one_without_gaps() -> None:
    migrations = load_migrations()
    assert [m.version for m in migrations] == list(range(1, len(migrations) + 1))
    assert latest_version() == len(migrations) >= 2


def test_dead_letter_check_lists_exactly_the_error_codes() -> None:
    checks = [re.search(r"error_code IN \((.*?)\)", m.sql, re.S) for m in load_migrations()]
    latest = [check for check in checks if check is not None][-1]
    assert set(re.findall(r"'([a-z_]+)'", latest[1])) == set(ERROR_CODES)
