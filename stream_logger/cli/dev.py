"""``stream-logger dev up | down | status | env``: the local Kafka + PostgreSQL (see ``stream_logger.devstack``)."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from ..config import Settings
from ..devstack import DevStack, StackStatus, services_answer
from ..devstack.process import port_accepts
from ..sync import run_sync

__all__ = ["register"]


def _stack(args: argparse.Namespace) -> DevStack:
    return DevStack.from_env(
        home=args.home,
        kafka_port=args.kafka_port,
        pg_port=args.pg_port,
        secure=args.secure or args.kafka_secure_port is not None,
        kafka_secure_port=args.kafka_secure_port,
    )


def _print(status: StackStatus) -> None:
    for service in status.services:
        print(service.describe())


def _up(args: argparse.Namespace) -> int:
    started = time.monotonic()
    if args.reuse:
        settings = Settings.from_env()
        if run_sync(services_answer(settings)):
            print(
                f"Kafka at {settings.bootstrap_servers} and PostgreSQL at {settings.redacted_dsn} already answer: "
                "using them, starting nothing"
            )
            stack = _stack(args)
            if stack.kafka.secure_port is not None and not port_accepts(stack.kafka.secure_port):
                print(
                    f"no secured listener answers on {stack.kafka.secure_address}: the tests of it skip (and fail "
                    "under CI=true); for it, stop the services and run dev up --secure"
                )
            return 0
    status = _stack(args).up()
    _print(status)
    if all(s.note == "already running" for s in status.services):
        print("both services were already running; nothing changed")
    print(f"dev stack up in {time.monotonic() - started:.1f} s")
    return 0


def _down(args: argparse.Namespace) -> int:
    _print(_stack(args).down(purge=args.purge))
    return 0


def _status(args: argparse.Namespace) -> int:
    status = _stack(args).status()
    _print(status)
    return 0 if status.all_running else 3


def _env(args: argparse.Namespace) -> int:
    print("\n".join(_stack(args).env_lines(secure=args.secure)))
    return 0


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``dev`` command and its four subcommands."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--home", type=Path, help="state folder (env STREAM_LOGGER_HOME; default ./.stream-logger)")
    common.add_argument(
        "--kafka-port",
        type=int,
        metavar="PORT",
        help="Kafka's port on 127.0.0.1; its controller takes the next one (env STREAM_LOGGER_DEV_KAFKA_PORT; "
        "default 9092)",
    )
    common.add_argument(
        "--pg-port",
        type=int,
        metavar="PORT",
        help="PostgreSQL's port on 127.0.0.1 (env STREAM_LOGGER_DEV_PG_PORT; default 55432)",
    )
    common.add_argument(
        "--secure",
        action="store_true",
        help="up: also open a SASL_SSL listener (SCRAM-SHA-512, a CA and certificate made for this home); "
        "env: print the settings for it",
    )
    common.add_argument(
        "--kafka-secure-port",
        type=int,
        metavar="PORT",
        help="the secured listener's port on 127.0.0.1; implies --secure (env STREAM_LOGGER_DEV_KAFKA_SECURE_PORT; "
        "default the Kafka port + 2)",
    )
    dev = subparsers.add_parser(
        "dev",
        help="the local Kafka + PostgreSQL (no Docker needed)",
        description="Start, stop and inspect a local Kafka broker and PostgreSQL server on loopback.",
    )
    sub = dev.add_subparsers(dest="dev_command", metavar="SUBCOMMAND", required=True)
    up = sub.add_parser("up", parents=[common], help="start both services (idempotent); returns once they answer")
    up.add_argument(
        "--reuse",
        action="store_true",
        help="if Kafka and PostgreSQL already answer at STREAM_LOGGER_BOOTSTRAP_SERVERS / STREAM_LOGGER_DSN "
        "(another stack, docker compose), use them and start nothing",
    )
    up.set_defaults(func=_up)
    down = sub.add_parser("down", parents=[common], help="stop both services, keeping their data")
    down.add_argument("--purge", action="store_true", help="also delete their data (the downloaded jars stay)")
    down.set_defaults(func=_down)
    status = sub.add_parser("status", parents=[common], help="each service's state; exit 0 only when both run")
    status.set_defaults(func=_status)
    env = sub.add_parser("env", parents=[common], help='shell export lines: eval "$(stream-logger dev env)"')
    env.set_defaults(func=_env)
