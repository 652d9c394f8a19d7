"""README.md's snippets, run for real against Kafka and PostgreSQL, in the order a newcomer would follow them.

The README's names are replaced by fresh ones (topic ``scoring``, schemas ``datamart`` and ``datamart_replay``, the
consumer group); shell snippets run in bash with ``stream-logger`` from this virtualenv on the PATH and the test's
settings in the environment. ``tests/unit/test_readme.py`` checks that every Python and SQL snippet, and every shell
snippet not listed there as parse-only, is in :data:`RUN`; this test checks that it ran each of them.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import asyncpg
import orjson
import pytest

from stream_logger.config import Settings
from stream_logger.identifiers import quote_ident
from stream_logger.topics import create_topic, delete_topic
from tests.readme_snippets import ROOT, RUN_BY_INTEGRATION_TEST, parse_readme, substitute
from tests.support import end_offsets, kafka_offsets, produce, stored_offsets, unique_name

pytestmark = pytest.mark.integration

SNIPPETS = {s.name: s for s in parse_readme() if s.name}


class Walkthrough:
    """Runs snippets with the test's names and settings; remembers which ones ran."""

    def __init__(self, settings: Settings, names: dict[str, str], workdir: Path) -> None:
        self.settings = settings
        self.names = names
        self.workdir = workdir
        self.ran: set[str] = set()
        bin_dir = str(Path(sys.executable).parent)
        self.env = {
            **os.environ,
            "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
            "STREAM_LOGGER_BOOTSTRAP_SERVERS": settings.bootstrap_servers,
            "STREAM_LOGGER_DSN": settings.dsn,
            "STREAM_LOGGER_HOME": str(workdir / "home"),
            "STREAM_LOGGER_STATE_DIR": str(workdir / "state"),
            "STREAM_LOGGER_MAX_RECORD_AGE": "none",  # the README's example records are from 2025
        }

    def code(self, name: str) -> str:
        snippet = SNIPPETS[name]
        code = substitute(snippet.code, snippet.language, self.names)
        self.ran.add(name)
        return code

    def bash(self, name: str, code: str | None = None) -> str:
        script = self.code(name) if code is None else code
        # Settings come from the test's environment, not from the README's example hosts.
        script = "\n".join(line for line in script.splitlines() if not line.startswith("export "))
        run = subprocess.run(
            ["bash", "-euo", "pipefail", "-c", script],
            cwd=self.workdir,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=180,
            check=False,
        )
        assert run.returncode == 0, f"README snippet {name} failed:\n{script}\n--- stdout\n{run.stdout}\n{run.stderr}"
        return run.stdout + run.stderr

    async def python(self, name: str, *, logs: bool = True) -> dict[str, Any]:
        """Run a Python snippet (one that ``logs`` must name the topic); returns the names it defined."""
        code = self.code(name)
        if logs:
            assert self.names["topic"] in code, f"{name}: the snippet should log to the topic 'scoring'"
        namespace: dict[str, Any] = {"__name__": f"readme_{name.replace('-', '_')}"}
        # The snippet may call asyncio.run(): give it a thread of its own, as a script would have.
        await asyncio.to_thread(exec, compile(code, f"README.md:{SNIPPETS[name].line}", "exec"), namespace)
        return namespace

    async def sql(self, conn: asyncpg.Connection, name: str) -> list[list[asyncpg.Record]]:
        code = self.code(name)
        assert f"{self.names['schema']}." in code
        statements = [s.strip() for s in code.split(";\n") if s.strip().rstrip(";").strip()]
        return [await conn.fetch(s) for s in statements]


async def payload_rows(conn: asyncpg.Connection, schema: str) -> int:
    n: int = await conn.fetchval(f"SELECT count(*) FROM {quote_ident(schema)}.payload_german_credit")
    return n


async def dead_letters(conn: asyncpg.Connection, schema: str) -> list[str]:
    rows = await conn.fetch(f"SELECT error_code FROM {quote_ident(schema)}.dead_letters ORDER BY id")
    return [r["error_code"] for r in rows]


async def test_the_readme_walkthrough(
    settings: Settings, topic: str, schema: str, pg: asyncpg.Connection, tmp_path: Path, monkeypatch: Any
) -> None:
    replay_schema = unique_name("s")
    names = {"topic": topic, "schema": schema, "replay_schema": replay_schema, "group": unique_name("g")}
    walk = Walkthrough(settings, names, tmp_path)
    (tmp_path / "examples").symlink_to(ROOT / "examples")
    monkeypatch.setenv("STREAM_LOGGER_BOOTSTRAP_SERVERS", settings.bootstrap_servers)
    monkeypatch.setenv("STREAM_LOGGER_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("STREAM_LOGGER_STATE_DIR", str(tmp_path / "state"))
    try:
        # Running workers in production: the datamart, the declared subscription.
        out = walk.bash("production-setup")
        assert "german_credit" in out

        # Emitting from serving code: 1 + 2 + 2 scored rows, then a file of one record (1 row).
        await walk.python("emit-async")
        await walk.python("emit-sync")
        await walk.python("emit-openscale")
        record = orjson.loads(SNIPPETS["record-minimal"].code)
        (tmp_path / "records.jsonl").write_bytes(orjson.dumps(record) + b"\n")
        walk.bash("emit-file")
        # A record whose Age does not fit the declared integer column: a dead letter to re-drive later.
        bad = dict(record, scoring_id="bad-age", scoring_timestamp="2025-01-15T10:00:00Z")
        bad["request"] = {"fields": ["Age", "Sex", "LoanAmount"], "values": [["thirty", "male", 900]]}
        await produce(settings, topic, [orjson.dumps(bad)], [b"bad-age"])

        walk.bash("consume-batch")
        assert await payload_rows(pg, schema) == 6
        assert await dead_letters(pg, schema) == ["type_conflict"]
        # The OpenScale snippet's meta field became a column of its own.
        meta = await pg.fetchval(
            f"SELECT count(*) FROM {quote_ident(schema)}.payload_german_credit WHERE customer_id IS NOT NULL"
        )
        assert meta == 2

        # What a monitor runs: every query answers, with rows.
        for name in ("sql-recent", "sql-traffic", "sql-fairness", "sql-dead-letters", "sql-fields", "sql-offsets"):
            results = await walk.sql(pg, name)
            assert results and all(results), f"{name} returned no rows"
        (fairness,) = await walk.sql(pg, "sql-fairness")
        assert {r["sex"] for r in fairness} == {"female", "male"}
        (recent,) = await walk.sql(pg, "sql-recent")
        assert len(recent) == 5  # the file's record is back-dated to 2025: not in the last hour

        # Troubleshooting: export the dead letter, fix it as its detail says, send it again.
        first, second = walk.code("redrive").split("\n# ", 1)
        walk.bash("redrive", first)
        exported = (tmp_path / "redrive.jsonl").read_bytes()
        assert orjson.loads(exported)["scoring_id"] == "bad-age"
        (tmp_path / "redrive.jsonl").write_bytes(exported.replace(b'"thirty"', b"30"))
        walk.bash("redrive", "# " + second)
        walk.bash("consume-batch")
        assert await payload_rows(pg, schema) == 7
        age = await pg.fetchval(
            f"SELECT age FROM {quote_ident(schema)}.payload_german_credit WHERE scoring_id = 'bad-age'"
        )
        assert age == 30

        # A notebook reads the datamart back: the rows under their fields' names, and the dead letter.
        read = await walk.python("read-back", logs=False)
        assert len(read["payload"]) == 7 and set(read["payload"]["Sex"]) == {"female", "male"}
        assert list(read["dead"]["error_code"]) == ["type_conflict"]

        # Feedback: a label for the hand-written record, and a standalone row; the labelled view answers.
        await walk.python("feedback-log")
        walk.bash("consume-batch")
        (quality,) = await walk.sql(pg, "sql-quality")
        assert [(r["sex"], r["labelled"], r["accuracy"]) for r in quality] == [("female", 1, 0)]
        read = await walk.python("feedback-read", logs=False)
        assert sorted(read["labels"]["Risk"]) == ["No Risk", "Risk"] and list(read["labelled"]["Risk"]) == ["Risk"]

        # Monitors: declared, evaluated, shown; the walkthrough's few rows make its fairness groups too small.
        out = walk.bash("monitor-run")
        assert "monitor(s): fairness (fairness), traffic (traffic)" in out and "too_few_records" in out, out
        assert await pg.fetchval(f"SELECT count(*) FROM {quote_ident(schema)}.measurements") > 0

        # Deploying: rewinding the group on purpose fills in a row deleted by hand, doubles nothing (the dead
        # letter is not recorded twice), and the group's Kafka offsets follow the datamart's.
        await pg.execute(f"DELETE FROM {quote_ident(schema)}.payload_german_credit WHERE scoring_id = 'bad-age'")
        out = walk.bash("rewind-group")
        assert "next_offset" in out and "UPDATE " in out
        assert await payload_rows(pg, schema) == 7
        assert await dead_letters(pg, schema) == ["type_conflict"]
        assert await pg.fetchval(f"SELECT count(*) FROM {quote_ident(schema)}.feedback_german_credit") == 2
        positions = await stored_offsets(pg, schema, names["group"])
        assert positions == {p: end for p, end in (await end_offsets(settings, topic)).items() if end > 0}
        assert await kafka_offsets(settings, names["group"], topic) == positions

        # Replay everything into a fresh schema (then --resume: nothing left to do, nothing doubled).
        walk.bash("replay")
        replayed = await payload_rows(pg, replay_schema)
        replayed_dead = len(await dead_letters(pg, replay_schema))
        # Every message of the topic ends once in the replayed schema: as rows, as a dead letter, or as a duplicate
        # of the re-driven record, whose scoring id and timestamp it shares. Which values fit depends on the types
        # the replay infers from the records it meets first (so on the partitions' order), not on the live
        # datamart's declaration, which a replay into a fresh schema does not copy.
        replayed_table = f"{quote_ident(replay_schema)}.payload_german_credit"
        placed = await pg.fetchval(f"SELECT count(DISTINCT (src_partition, src_offset)) FROM {replayed_table}")
        replayed_labels = f"{quote_ident(replay_schema)}.feedback_german_credit"
        placed += await pg.fetchval(f"SELECT count(DISTINCT (src_partition, src_offset)) FROM {replayed_labels}")
        messages = sum((await end_offsets(settings, topic)).values())
        assert messages - (placed + replayed_dead) in (0, 1), (messages, placed, replayed_dead)
        assert replayed >= 1

        # Porting from OpenScale, on a topic and a datamart of its own: the client's in-process worker reads its
        # whole topic into its schema. The count it printed is what its worker had written: the rows are there.
        port = Walkthrough(settings, {**names, "topic": unique_name("t"), "schema": unique_name("s")}, tmp_path)
        await create_topic(settings.bootstrap_servers, port.names["topic"], partitions=3)
        try:
            await port.python("openscale-port")
            port_schema = quote_ident(port.names["schema"])
            assert await pg.fetchval(f"SELECT count(*) FROM {port_schema}.payload_german_credit") == 2
            assert await pg.fetchval(f"SELECT count(*) FROM {port_schema}.feedback_german_credit") == 2
        finally:
            await pg.execute(f"DROP SCHEMA IF EXISTS {quote_ident(port.names['schema'])} CASCADE")
            await delete_topic(settings.bootstrap_servers, port.names["topic"])
        walk.ran |= port.ran
    finally:
        await pg.execute(f"DROP SCHEMA IF EXISTS {quote_ident(replay_schema)} CASCADE")

    assert walk.ran == set(RUN_BY_INTEGRATION_TEST)
