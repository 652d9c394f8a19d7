"""One lifecycle for everything that owns a connection or a thread: the emitters, the delivery, the worker.

::

    NEW --start()--> STARTED --stop()--> STOPPING --> STOPPED
     └------------------stop()------------------------^

``start()`` on a started object does nothing; after ``stop()`` it raises :class:`~stream_logger.errors.LifecycleError`
(create a new object instead). ``stop()`` is idempotent, and stopping an object never started only marks it stopped.
An object collected while still started warns with a ``ResourceWarning``, as an unclosed socket or event loop does.
"""

from __future__ import annotations

import enum
import warnings

from .errors import LifecycleError

__all__ = ["Lifecycle", "State"]


class State(enum.Enum):
    """Where an object is in its lifecycle."""

    NEW = "new"
    """Created, not started."""
    STARTED = "started"
    """Running: connections or threads are open."""
    STOPPING = "stopping"
    """``stop()`` began: delivering or writing what it still holds, then closing."""
    STOPPED = "stopped"
    """Closed for good; a new object is needed to start again."""


class Lifecycle:
    """The state of one object with ``start()``/``stop()``; the transitions are enforced here.

    The owner calls :meth:`may_start` then :meth:`started` around its start-up, and :meth:`may_stop` then
    :meth:`stopped` around its shutdown; :meth:`warn_if_running` belongs in its ``__del__``.
    """

    __slots__ = ("_what", "state")

    def __init__(self, what: str) -> None:
        self._what = what
        self.state = State.NEW

    def may_start(self) -> bool:
        """True when a start-up is due (new); False when already started; LifecycleError once stop() was called."""
        if self.state is State.NEW:
            return True
        if self.state is State.STARTED:
            return False
        raise LifecycleError(f"a stopped {self._what} cannot be started again: create a new one")

    def started(self) -> None:
        """The start-up went ahead (from then on ``stop()`` has work to do)."""
        self.state = State.STARTED

    def may_stop(self) -> bool:
        """True when a shutdown is due (started: the state becomes STOPPING); else the object is marked stopped and
        False is returned (never started, or stopping or stopped already)."""
        if self.state is State.STARTED:
            self.state = State.STOPPING
            return True
        if self.state is State.NEW:
            self.state = State.STOPPED
        return False

    def stopped(self) -> None:
        """The shutdown is over."""
        self.state = State.STOPPED

    def released(self) -> None:
        """Another process owns what this object holds (a forked child's inherited delivery is its parent's to
        stop): it is never stopped here, and never warned about."""
        self.state = State.STOPPED

    @property
    def running(self) -> bool:
        """Started, and ``stop()`` not called yet."""
        return self.state is State.STARTED

    def warn_if_running(self, owner: object, detail: str = "") -> None:
        """From ``owner.__del__``: a ``ResourceWarning`` when it was started and never stopped."""
        if self.state is State.STARTED:
            message = f"{self._what} {owner!r} was started and never stopped{detail}"
            warnings.warn(message, ResourceWarning, stacklevel=3, source=owner)
