"""The local Kafka + PostgreSQL behind ``stream-logger dev up | down | status | env``, without Docker.

::

    stack = DevStack.from_env()      # home: $STREAM_LOGGER_HOME or ./.stream-logger
    stack.up()                       # idempotent; returns once both services answer
    print(*stack.env_lines(), sep="\\n")
    stack.down()                     # keeps the data; down(purge=True) deletes it

Modules: ``kafka`` (jars through Maven, KRaft broker), ``postgres`` (a private cluster run with the machine's server
binaries), ``process`` (pid files, ports, log tails shared by both), ``stack`` (the two together).
"""

from __future__ import annotations

from .probe import services_answer
from .stack import DEFAULT_KAFKA_CONTROLLER_PORT, DEFAULT_KAFKA_PORT, DevStack, StackStatus
from .status import ServiceStatus

__all__ = [
    "DEFAULT_KAFKA_CONTROLLER_PORT",
    "DEFAULT_KAFKA_PORT",
    "DevStack",
    "ServiceStatus",
    "StackStatus",
    "services_answer",
]
