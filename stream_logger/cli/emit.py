"""``stream-logger emit``: produce a JSON-lines file of scoring and feedback records (or standard input) to a
topic."""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
from pathlib import Path
from typing import IO

import orjson

from ..emitter import Emitter
from ..errors import FatalError, RecordError
from ..feedback import message_of
from ..spool import Spool
from ._options import add_connection_options, settings_from

__all__ = ["register"]

_SHOW_LINES = 20


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "emit",
        help="produce a JSON-lines file of scoring and feedback records to a topic",
        description="Send one v1 record per line to TOPIC: a scoring record, or a feedback record (a label; its "
        '"kind" is "feedback"). Exits non-zero if any line is invalid or was not delivered, naming the lines.',
    )
    parser.add_argument("--topic", required=True, help="the Kafka topic")
    parser.add_argument("--file", default="-", metavar="F", help="a JSON-lines file; '-' (default) reads stdin")
    parser.add_argument("file_arg", nargs="?", metavar="FILE", help="same as --file")
    parser.add_argument("--timeout-s", type=float, default=60.0, help="how long to wait for acks (default 60)")
    add_connection_options(parser, postgres=False)
    parser.set_defaults(func=run)


def _lines_text(lines: list[int]) -> str:
    shown = ", ".join(map(str, lines[:_SHOW_LINES]))
    more = len(lines) - _SHOW_LINES
    return shown + (f" (and {more} more)" if more > 0 else "")


async def _emit(stream: IO[bytes], args: argparse.Namespace) -> int:
    settings = settings_from(args)
    invalid: list[int] = []
    line_of: dict[str, int] = {}
    progress = sys.stderr.isatty()
    with tempfile.TemporaryDirectory(prefix="stream-logger-emit-") as spool_dir:
        # A private spool: what is not delivered is reported here, not left for a later run to send.
        emitter = Emitter(
            args.topic, settings.bootstrap_servers, spool_dir=spool_dir, strict=True, kafka_config=settings.kafka
        )
        async with emitter:
            for number, raw in enumerate(stream, start=1):
                if not raw.strip():
                    continue
                try:
                    key, value = message_of(orjson.loads(raw))
                    emitter.log_encoded(key, value)
                except (RecordError, ValueError) as exc:
                    invalid.append(number)
                    print(f"line {number}: {exc}", file=sys.stderr)
                    continue
                line_of[key] = number
                if progress and number % 1000 == 0:
                    print(f"\r{number} lines read", end="", file=sys.stderr, flush=True)
                if number % 1000 == 0:
                    await asyncio.sleep(0)  # let the sender run
            await emitter.flush(args.timeout_s)
        # stop() left in the spool whatever the broker did not acknowledge: those are the undelivered lines.
        undelivered = sorted({line_of.get(key.decode(), 0) for key in _spooled_keys(Path(spool_dir))})
        stats = emitter.stats()
    if emitter.refusal is not None:  # a wrong password or an untrusted CA: say so, not only "undelivered"
        raise FatalError(f"{emitter.refusal} ({len(undelivered)} lines not delivered)")
    if progress:
        print("\r", end="", file=sys.stderr)
    print(f"sent {stats.acknowledged}, invalid {len(invalid)}, undelivered {len(undelivered)}")
    if invalid:
        print(f"invalid lines: {_lines_text(invalid)}", file=sys.stderr)
    if undelivered:
        print(f"undelivered lines: {_lines_text(undelivered)}", file=sys.stderr)
    return 1 if invalid or undelivered else 0


def _spooled_keys(spool_dir: Path) -> list[bytes]:
    spool = Spool(spool_dir, max_bytes=1 << 40)
    spool.open()
    try:
        return [key for segment in spool.ready_segments() for key, _ in spool.read(segment).records]
    finally:
        spool.close()


def run(args: argparse.Namespace) -> int:
    path = args.file_arg or args.file
    if path == "-":
        return asyncio.run(_emit(sys.stdin.buffer, args))
    with open(path, "rb") as stream:
        return asyncio.run(_emit(stream, args))
