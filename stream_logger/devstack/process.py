"""Process and port helpers shared by the Kafka and PostgreSQL services: pid files, liveness, ports, log tails.

Nothing here knows about Kafka or PostgreSQL; the two service modules build on these.
"""

from __future__ import annotations

import contextlib
import errno
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypeVar

from ..errors import DevStackError

__all__ = [
    "OWNER_ONLY_DIR_MODE",
    "OWNER_ONLY_FILE_MODE",
    "OWNER_ONLY_UMASK",
    "children_of",
    "is_alive",
    "make_owner_only_dir",
    "port_accepts",
    "port_is_free",
    "process_cmdline",
    "read_pid",
    "rss_bytes",
    "spawn_detached",
    "stop_process",
    "tail",
    "wait_until",
]

OWNER_ONLY_DIR_MODE, OWNER_ONLY_FILE_MODE, OWNER_ONLY_UMASK = 0o700, 0o600, 0o077
"""The dev stack's folders, files and services' umask: its data and logs (records of personal features, the
database's contents) are its user's alone."""


T = TypeVar("T")


def read_pid(pid_file: Path) -> int | None:
    """The pid written on the first line of ``pid_file``, or None when it is missing or unreadable."""
    try:
        first = pid_file.read_text().split("\n", 1)[0].strip()
        return int(first) if first else None
    except (OSError, ValueError):
        return None


def _reap(pid: int) -> None:
    # A service started by this very process (tests do that) is our child: reap it once it exits so it is not
    # left as a zombie that still looks alive.
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)


def is_alive(pid: int | None) -> bool:
    """True when a process with this pid exists and is not a zombie."""
    if pid is None or pid <= 0:
        return False
    _reap(pid)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # exists, owned by someone else
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True  # no /proc: trust kill(0)
    # The state letter follows the command name in parentheses, which may itself contain spaces or parentheses.
    return stat[stat.rfind(")") + 2 : stat.rfind(")") + 3] != "Z"


def process_cmdline(pid: int) -> list[str]:
    """The command line of a process (empty when it is gone or unreadable)."""
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


def rss_bytes(pids: Sequence[int]) -> int | None:
    """Resident memory of these processes together, in bytes (None when none can be read)."""
    total, seen = 0, False
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) * 1024
                    seen = True
        except (OSError, ValueError, IndexError):
            continue
    return total if seen else None


def children_of(pid: int) -> list[int]:
    """Direct child pids of a process (Linux /proc), empty when unknown."""
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(p) for p in text.split()]


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    """True when nothing holds ``host:port``: we could bind it ourselves (a listening or merely bound socket counts)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            if exc.errno in (errno.EADDRINUSE, errno.EACCES):
                return False
            raise
    return True


def port_accepts(port: int, host: str = "127.0.0.1", timeout_s: float = 1.0) -> bool:
    """True when a TCP connection to ``host:port`` succeeds."""
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            return True
    except OSError:
        return False


def tail(path: Path, lines: int = 20) -> str:
    """The last ``lines`` lines of a text file (empty when it does not exist)."""
    try:
        with path.open("rb") as fh:
            fh.seek(0, os.SEEK_END)
            fh.seek(max(0, fh.tell() - 64 * 1024))
            data = fh.read().decode(errors="replace")
    except OSError:
        return ""
    return "\n".join(data.splitlines()[-lines:])


def make_owner_only_dir(path: Path) -> None:
    """Create ``path`` (and its parents) if needed, and make it ``0700`` even when it existed with wider modes."""
    path.mkdir(OWNER_ONLY_DIR_MODE, parents=True, exist_ok=True)
    os.chmod(path, OWNER_ONLY_DIR_MODE)


def spawn_detached(argv: Sequence[str], log_file: Path, cwd: Path, env: dict[str, str] | None = None) -> int:
    """Start ``argv`` in its own session (it outlives this process and ignores our terminal's Ctrl-C).

    Standard output and error are appended to ``log_file`` (created ``0600``); the process runs with umask ``077``,
    so the files it creates are its user's alone. Returns the new pid.
    """
    log_fd = os.open(log_file, os.O_WRONLY | os.O_CREAT | os.O_APPEND, OWNER_ONLY_FILE_MODE)
    with os.fdopen(log_fd, "ab") as log, open(os.devnull, "rb") as devnull:
        proc = subprocess.Popen(
            list(argv),
            stdin=devnull,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=cwd,
            env=env,
            start_new_session=True,
            umask=OWNER_ONLY_UMASK,
        )
    return proc.pid


def wait_until(check: Callable[[], bool], timeout_s: float, interval_s: float = 0.25) -> bool:
    """Call ``check`` until it returns True or ``timeout_s`` has passed; returns its last answer."""
    deadline = time.monotonic() + timeout_s
    while True:
        if check():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval_s)


def stop_process(pid: int, timeout_s: float, first_signal: signal.Signals = signal.SIGTERM) -> bool:
    """Ask a process to stop (``first_signal``), wait up to ``timeout_s``, then SIGKILL it.

    Returns True when it stopped by itself, False when it had to be killed.
    """
    try:
        os.kill(pid, first_signal)
    except ProcessLookupError:
        return True
    if wait_until(lambda: not is_alive(pid), timeout_s, 0.1):
        return True
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    if not wait_until(lambda: not is_alive(pid), 10.0, 0.1):
        raise DevStackError(f"process {pid} did not stop, even after SIGKILL")
    return False
