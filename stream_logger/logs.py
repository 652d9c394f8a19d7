"""Logging set-up for the command line: plain text for people, JSON lines for log collectors.

Library code only creates loggers (``logging.getLogger(__name__)``); only the CLI configures handlers. Log records
never carry payload contents or passwords: pass identifiers and counts in ``extra``, not values.

aiokafka logs an ERROR for every failed reconnect (dozens a second while a broker is down) and asyncpg's pool a
WARNING with a full traceback for every connection it fails to reset: :class:`FloodFilter` condenses each such
flood into its first line, a count every minute while it lasts, and a summary once it has been quiet a while.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import orjson

__all__ = ["FloodFilter", "configure_logging"]

log = logging.getLogger(__name__)

# The level each flood's first line is shown at. The worker reports a PostgreSQL outage itself (one WARNING), so the
# pool's own line is detail; a broker outage after start-up is reported by aiokafka alone.
FLOODING_LOGGERS: Mapping[str, int] = {"aiokafka": logging.WARNING, "asyncpg.pool": logging.INFO}

_STANDARD_ATTRS = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}


class _JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": self.formatTime(record, "%Y-%m-%dT%H:%M:%S") + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD_ATTRS:
                out[key] = value
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return orjson.dumps(out, default=str).decode()


class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever ``sys.stderr`` is when a record is emitted (it may be replaced after configuration)."""

    @property
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, _value: Any) -> None:
        pass


@dataclass(slots=True)
class _Flood:
    began: float
    last: float
    reported: float
    suppressed: int = 0
    suppressed_since_report: int = 0
    last_message: str = ""


class FloodFilter(logging.Filter):
    """A handler filter that condenses floods of WARNING-and-above records from the given loggers (and their
    children): the first record of a flood passes, at the level ``loggers`` gives and without its traceback; the
    rest are counted, with a count logged every ``report_every_s`` while the flood lasts and a summary once none
    came for ``quiet_s``.

    The summary comes from a timer thread (a flood usually ends with silence, not with a record);
    :meth:`flush` does the same at once, for tests and at exit.
    """

    def __init__(
        self,
        loggers: Mapping[str, int] = FLOODING_LOGGERS,
        *,
        quiet_s: float = 10.0,
        report_every_s: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__()
        self._loggers = dict(loggers)
        self._quiet_s = quiet_s
        self._report_every_s = report_every_s
        self._clock = clock
        self._floods: dict[str, _Flood] = {}
        self._lock = threading.Lock()
        self._timer: threading.Timer | None = None

    def filter(self, record: logging.LogRecord) -> bool:
        source = self._source(record)
        if source is None or record.levelno < logging.WARNING:
            return True
        now = self._clock()
        with self._lock:
            flood = self._floods.get(source)
            if flood is not None and now - flood.last >= self._quiet_s:  # the old flood ended unseen by the timer
                self._end(source, flood)
                flood = None
            if flood is None:
                self._floods[source] = _Flood(began=now, last=now, reported=now)
                self._schedule()
                _condense(record, source, self._loggers[source])
                return True
            flood.last = now
            flood.suppressed += 1
            flood.suppressed_since_report += 1
            flood.last_message = record.getMessage()
            if now - flood.reported < self._report_every_s:
                return False
            n, flood.suppressed_since_report, flood.reported = flood.suppressed_since_report, 0, now
        log.log(
            self._loggers[source],
            "%s: %d more similar messages in the last %.0f s (still failing: %s)",
            source,
            n,
            self._report_every_s,
            flood.last_message,
            extra={"flood": source, "suppressed": n},
        )
        return False

    def flush(self) -> None:
        """Summarize every flood that has been quiet for ``quiet_s``."""
        now = self._clock()
        with self._lock:
            ended = [(k, f) for k, f in self._floods.items() if now - f.last >= self._quiet_s]
            for source, flood in ended:
                self._end(source, flood)
            if self._floods:
                self._schedule()

    def _source(self, record: logging.LogRecord) -> str | None:
        if getattr(record, "flood", None) is not None:
            return None  # our own summaries
        for name in self._loggers:
            if record.name == name or record.name.startswith(name + "."):
                return name
        return None

    def _end(self, source: str, flood: _Flood) -> None:
        del self._floods[source]
        if flood.suppressed:
            log.info(
                "%s: the messages stopped; %d similar ones suppressed over %.1f s",
                source,
                flood.suppressed,
                flood.last - flood.began,
                extra={"flood": source, "suppressed": flood.suppressed},
            )

    def _schedule(self) -> None:
        if self._timer is not None and self._timer.is_alive() and self._timer is not threading.current_thread():
            return
        self._timer = threading.Timer(self._quiet_s, self.flush)
        self._timer.daemon = True
        self._timer.start()


def _condense(record: logging.LogRecord, source: str, level: int) -> None:
    """The first record of a flood, as one line at ``level``: the exception's text, not its traceback."""
    message = record.getMessage()
    if record.exc_info and record.exc_info[1] is not None:
        exc = record.exc_info[1]
        message = f"{message} ({type(exc).__name__}: {exc})"
    record.msg, record.args = f"{message} [repeats from {source} are counted, not shown]", None
    record.exc_info, record.exc_text, record.stack_info = None, None, None
    record.levelno, record.levelname = level, logging.getLevelName(level)


def configure_logging(level: str = "INFO", fmt: str = "text") -> None:
    """Send log records to standard error, as text or JSON lines; floods from aiokafka and asyncpg condensed."""
    handler = _StderrHandler()
    handler.addFilter(FloodFilter())
    if fmt == "json":
        formatter: logging.Formatter = _JsonFormatter()
        formatter.converter = time.gmtime
    else:
        formatter = logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s", "%H:%M:%S")
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for noisy in ("aiokafka", "kafka"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, logging.getLevelName(level)))
