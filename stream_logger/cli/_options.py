"""Options shared by several commands."""

from __future__ import annotations

import argparse

from ..config import Settings

__all__ = ["add_connection_options", "settings_from"]


def add_connection_options(parser: argparse.ArgumentParser, kafka: bool = True, postgres: bool = True) -> None:
    """Add ``--bootstrap-servers`` and/or ``--dsn``."""
    if kafka:
        parser.add_argument(
            "--bootstrap-servers",
            metavar="HOST:PORT[,...]",
            help="Kafka brokers (env STREAM_LOGGER_BOOTSTRAP_SERVERS; default 127.0.0.1:9092, the dev stack)",
        )
    if postgres:
        parser.add_argument(
            "--dsn",
            metavar="postgresql://...",
            help="PostgreSQL connection string (env STREAM_LOGGER_DSN; default: the dev stack's database)",
        )


def settings_from(args: argparse.Namespace) -> Settings:
    """Settings from the environment, overridden by whichever connection flags the command has."""
    return Settings.from_env().with_overrides(
        bootstrap_servers=getattr(args, "bootstrap_servers", None), dsn=getattr(args, "dsn", None)
    )
