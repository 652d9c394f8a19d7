"""The ``stream-logger`` command: parses arguments, then calls the library. One module per command group.

Its modules are private; the names here are the package's API: the command itself and how it reads settings and
limits from flags and the environment.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

from .. import __version__
from ..errors import StreamLoggerError
from ..logs import configure_logging
from ._options import duration_s, limit_overrides, settings_from

__all__ = ["build_parser", "duration_s", "limit_overrides", "main", "settings_from"]

# Each module named here defines ``register(subparsers)``; the parsers it adds set ``func(args) -> int``.
COMMAND_MODULES: tuple[str, ...] = ("dev", "datamart", "subscription", "emit", "consume", "replay", "monitor", "demo")

log = logging.getLogger("stream_logger.cli")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="stream-logger",
        description="Log every prediction of any ML model through Kafka into a PostgreSQL datamart.",
        epilog="Settings come from flags, else STREAM_LOGGER_* environment variables, else the dev stack's "
        "defaults. Run 'stream-logger COMMAND --help' for a command's options.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument(
        "--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"], help="default: INFO"
    )
    parser.add_argument(
        "--log-format", default="text", choices=["text", "json"], help="json: one object a line; default: text"
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMAND_MODULES:
        importlib.import_module(f"{__name__}.{name}").register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the process exit code."""
    args = build_parser().parse_args(argv)
    configure_logging(args.log_level, args.log_format)
    try:
        code: int = args.func(args)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except StreamLoggerError as exc:
        print(f"stream-logger: error: {exc}", file=sys.stderr)
        return 1
    return code
