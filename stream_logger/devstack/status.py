"""What ``stream-logger dev status`` reports about each service."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["ServiceStatus"]


@dataclass(frozen=True, slots=True)
class ServiceStatus:
    """One service of the dev stack as seen right now.

    ``state`` is ``"running"`` or ``"stopped"``; ``note`` says what the last action did (``"started"``, ``"already
    running"``, ``"stopped"``, ``"not running"``) or is empty; ``rss_bytes`` is the resident memory of the service's
    processes when known (summed over PostgreSQL's processes, so its shared buffers count more than once).
    """

    name: str
    running: bool
    pid: int | None
    address: str
    note: str = ""
    rss_bytes: int | None = None

    @property
    def state(self) -> str:
        return "running" if self.running else "stopped"

    def describe(self) -> str:
        """One line for people: ``kafka  running  pid 123  127.0.0.1:9092  (412 MiB)``."""
        pid = f"pid {self.pid}" if self.pid is not None else "-"
        parts = [f"{self.name:<10}", f"{self.state:<7}", f"{pid:<10}", self.address]
        if self.rss_bytes is not None:
            parts.append(f"rss {self.rss_bytes / 2**20:.0f} MiB")
        if self.note:
            parts.append(f"({self.note})")
        return "  ".join(parts)
