"""The dev stack's PostgreSQL: a cluster of its own under ``<home>/postgres/``, run with the machine's server binaries.

It listens on ``127.0.0.1:port`` only (never on a system PostgreSQL's 5432) and on a unix socket inside the home.
Run as root, the server runs as an unprivileged user (Debian's ``postgres``, else a ``stream-logger`` system user
created for it) that owns ``<home>/postgres/``. Local socket connections are trusted (the socket folder is private to
that user); loopback TCP needs a password (scram-sha-256). Role, password and database are all ``stream_logger``.
"""

from __future__ import annotations

import contextlib
import glob
import hashlib
import logging
import os
import pwd
import re
import shutil
import signal
import stat
import subprocess
import tempfile
from pathlib import Path

from ..config import redact_dsn
from ..errors import DevStackError
from ..sync import run_sync
from . import process
from .status import ServiceStatus

__all__ = ["PG_DATABASE", "PG_PASSWORD", "PG_ROLE", "PostgresService", "find_pg_bin_dir", "render_conf"]

PG_ROLE = "stream_logger"
PG_PASSWORD = "stream_logger"
PG_DATABASE = "stream_logger"
SUPERUSER = "postgres"
FALLBACK_SERVER_USER = "stream-logger"
HOST = "127.0.0.1"
READY_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 30.0
MAX_SOCKET_PATH = 100  # sun_path holds 108 bytes, including ".s.PGSQL.<port>"

log = logging.getLogger(__name__)


def _version_key(path: str) -> tuple[int, ...]:
    return tuple(int(n) for n in re.findall(r"\d+", path))


def find_pg_bin_dir() -> Path:
    """The folder with ``initdb`` and ``pg_ctl``: ``$STREAM_LOGGER_PG_BIN``, the newest ``/usr/lib/postgresql/*/bin``
    (Debian), else PATH."""
    candidates: list[Path] = []
    if os.environ.get("STREAM_LOGGER_PG_BIN"):
        candidates.append(Path(os.environ["STREAM_LOGGER_PG_BIN"]))
    candidates += [Path(p) for p in sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=_version_key, reverse=True)]
    on_path = shutil.which("pg_ctl")
    if on_path:
        candidates.append(Path(on_path).resolve().parent)
    for bin_dir in candidates:
        if (bin_dir / "pg_ctl").exists() and (bin_dir / "initdb").exists():
            return bin_dir
    raise DevStackError(
        "no PostgreSQL server binaries (initdb, pg_ctl) were found under /usr/lib/postgresql/*/bin or on PATH; "
        "install them with: apt-get install postgresql"
    )


def render_conf(port: int, socket_dir: Path) -> str:
    """The settings the dev stack adds to ``postgresql.conf`` (rewritten at every start)."""
    socket = str(socket_dir).replace("'", "''")
    return (
        "# Written by `stream-logger dev up` at every start; edits are overwritten.\n"
        f"listen_addresses = '{HOST}'\n"
        f"port = {port}\n"
        f"unix_socket_directories = '{socket}'\n"
        "password_encryption = 'scram-sha-256'\n"
        "shared_buffers = 128MB\n"
        "max_connections = 100\n"
    )


class PostgresService:
    """The PostgreSQL cluster of one dev-stack home, on ``127.0.0.1:port``."""

    name = "postgresql"

    def __init__(self, home: Path, port: int) -> None:
        self.dir = runtime_dir(home, port)
        self.outside_home = self.dir.parent != home.absolute()
        self.port = port
        self.data_dir = self.dir / "data"
        self.socket_dir = self.dir / "run"
        self.log_file = self.dir / "postgres.log"

    @property
    def address(self) -> str:
        return f"{HOST}:{self.port}"

    @property
    def dsn(self) -> str:
        return f"postgresql://{PG_ROLE}:{PG_PASSWORD}@{HOST}:{self.port}/{PG_DATABASE}"

    # -- state ---------------------------------------------------------------------------------------------------

    def pid(self) -> int | None:
        """The postmaster's pid when this home's cluster is running (from ``postmaster.pid``)."""
        pid = process.read_pid(self.data_dir / "postmaster.pid")
        if not process.is_alive(pid):
            return None
        assert pid is not None
        cmdline = process.process_cmdline(pid)
        if not cmdline or "postgres" not in Path(cmdline[0]).name:
            return None  # a stale pid file whose pid now belongs to something else
        return pid

    def status(self, note: str = "") -> ServiceStatus:
        pid = self.pid()
        running = pid is not None and process.port_accepts(self.port)
        rss = process.rss_bytes([pid, *process.children_of(pid)]) if pid is not None else None
        return ServiceStatus(self.name, running, pid, self.address, note, rss)

    # -- the unprivileged server user ----------------------------------------------------------------------------

    @staticmethod
    def server_user() -> str | None:
        """The user the server runs as when we are root (None: run as ourselves)."""
        if os.geteuid() != 0:
            return None
        for name in (SUPERUSER, FALLBACK_SERVER_USER):
            with contextlib.suppress(KeyError):
                pwd.getpwnam(name)
                return name
        log.info("creating the system user %r to run PostgreSQL (it refuses to run as root)", FALLBACK_SERVER_USER)
        result = subprocess.run(
            ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", FALLBACK_SERVER_USER],
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode != 0:
            raise DevStackError(
                f"PostgreSQL cannot run as root and creating the user {FALLBACK_SERVER_USER!r} failed: "
                f"{result.stderr.strip()}"
            )
        return FALLBACK_SERVER_USER

    def _run(self, argv: list[str], user: str | None, what: str) -> None:
        group = pwd.getpwnam(user).pw_gid if user is not None else None
        result = subprocess.run(
            argv,
            capture_output=True,
            text=True,
            check=False,
            cwd=self.dir,
            user=user,
            group=group,
            extra_groups=[] if user is not None else None,
            start_new_session=True,
            umask=process.OWNER_ONLY_UMASK,  # initdb and pg_ctl's log file: the cluster's user's alone
        )
        if result.returncode != 0:
            output = "\n".join((result.stdout + result.stderr).splitlines()[-20:])
            log_tail = process.tail(self.log_file)
            raise DevStackError(
                f"{what} failed (exit {result.returncode}):\n{output}"
                + (f"\nthe end of {self.log_file}:\n{log_tail}" if log_tail else "")
            )

    def _prepare_dirs(self, user: str | None) -> None:
        if len(str(self.socket_dir)) + len(f"/.s.PGSQL.{self.port}") > MAX_SOCKET_PATH:
            raise DevStackError(
                f"the PostgreSQL socket folder {self.socket_dir} is too long a path for a unix socket; "
                "set TMPDIR to a shorter folder"
            )
        if self.outside_home:
            log.info("PostgreSQL's files are in %s (the home is out of its server user's reach)", self.dir)
        self.socket_dir.mkdir(parents=True, exist_ok=True)
        # Socket connections are trusted, so only the server's user (and root) may reach the socket.
        os.chmod(self.dir, 0o700)
        os.chmod(self.socket_dir, 0o700)
        if user is None:
            return
        entry = pwd.getpwnam(user)
        for path in (self.dir, self.socket_dir):
            os.chown(path, entry.pw_uid, entry.pw_gid)
        reachable = subprocess.run(["test", "-w", str(self.dir)], user=user, group=entry.pw_gid, check=False)
        if reachable.returncode != 0:
            raise DevStackError(
                f"PostgreSQL runs as the user {user!r}, which cannot reach {self.dir}: make each parent folder "
                "searchable by others (chmod o+x) or choose another --home"
            )

    # -- lifecycle -----------------------------------------------------------------------------------------------

    def start(self) -> int:
        """Initialise the cluster on first use, start it and make sure the role and database exist; returns the pid."""
        bin_dir = find_pg_bin_dir()
        user = self.server_user()
        self.dir.mkdir(parents=True, exist_ok=True)
        self._prepare_dirs(user)
        if not (self.data_dir / "PG_VERSION").exists():
            log.info("initialising a PostgreSQL cluster in %s (server %s)", self.data_dir, bin_dir.parent.name)
            shutil.rmtree(self.data_dir, ignore_errors=True)  # a half-done earlier attempt
            self._run(
                [
                    str(bin_dir / "initdb"),
                    "-D",
                    str(self.data_dir),
                    "-U",
                    SUPERUSER,
                    "--auth-local=trust",
                    "--auth-host=scram-sha-256",
                    "--encoding=UTF8",
                    "--no-locale",
                    "--no-instructions",
                ],
                user,
                "initdb",
            )
            with (self.data_dir / "postgresql.conf").open("a") as conf:
                conf.write("\ninclude_if_exists = 'stream_logger.conf'\n")
        conf_file = self.data_dir / "stream_logger.conf"
        conf_file.write_text(render_conf(self.port, self.socket_dir))
        if user is not None:
            entry = pwd.getpwnam(user)
            os.chown(conf_file, entry.pw_uid, entry.pw_gid)
        log.info("starting PostgreSQL on %s", self.address)
        self._run(
            [str(bin_dir / "pg_ctl"), "-D", str(self.data_dir), "-l", str(self.log_file), "-w", "-t", "60", "start"],
            user,
            "starting PostgreSQL",
        )
        pid = self.pid()
        if pid is None:
            raise DevStackError(
                f"PostgreSQL did not stay up; the end of {self.log_file}:\n{process.tail(self.log_file)}"
            )
        run_sync(self._ensure_role_and_database())
        return pid

    async def _ensure_role_and_database(self) -> None:
        import asyncpg

        conn = await asyncpg.connect(
            host=str(self.socket_dir), port=self.port, user=SUPERUSER, database="postgres", timeout=10
        )
        try:
            if not await conn.fetchval("SELECT 1 FROM pg_roles WHERE rolname = $1", PG_ROLE):
                log.info("creating the role and database %r", PG_DATABASE)
                await conn.execute(f"CREATE ROLE {PG_ROLE} LOGIN PASSWORD '{PG_PASSWORD}'")
            if not await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", PG_DATABASE):
                await conn.execute(f"CREATE DATABASE {PG_DATABASE} OWNER {PG_ROLE}")
        finally:
            await conn.close()

    def wait_ready(self, pid: int, timeout_s: float = READY_TIMEOUT_S) -> None:
        """Return once a password connection to the database succeeds over TCP; a clear error if it does not."""

        def ready() -> bool:
            if not process.is_alive(pid):
                raise DevStackError(
                    f"PostgreSQL exited during start-up; the end of {self.log_file}:\n{process.tail(self.log_file)}"
                )
            return run_sync(_connects(self.dsn))

        if not process.wait_until(ready, timeout_s, 0.25):
            raise DevStackError(
                f"PostgreSQL did not accept {redact_dsn(self.dsn)} within {timeout_s:.0f} s; the end of "
                f"{self.log_file}:\n{process.tail(self.log_file)}"
            )

    def stop(self) -> bool:
        """Stop the server with a fast shutdown (SIGINT, then SIGKILL after a timeout); False when not running."""
        pid = self.pid()
        if pid is None:
            return False
        log.info("stopping PostgreSQL (pid %d)", pid)
        if not process.stop_process(pid, STOP_TIMEOUT_S, first_signal=signal.SIGINT):
            log.warning("PostgreSQL did not stop within %.0f s and was killed", STOP_TIMEOUT_S)
        return True

    def purge(self) -> None:
        """Delete the cluster (data, configuration, log)."""
        shutil.rmtree(self.dir, ignore_errors=True)
        if self.outside_home:  # also the folder runtime_dir() chose for it
            with contextlib.suppress(OSError):
                self.dir.parent.rmdir()


def runtime_dir(home: Path, port: int) -> Path:
    """Where a home's cluster lives: ``<home>/postgres``, unless the server could not use it there.

    That is when we run as root (the server then runs as another user) and a folder above the home is not
    traversable by others (a private temporary folder, say), or when the socket's path would pass the unix limit.
    The cluster then lives in a short folder of the system's temporary directory named after the home, so the same
    home always finds the same cluster (and ``down --purge`` deletes it).
    """
    preferred = home.absolute() / "postgres"
    socket_path = f"{preferred}/run/.s.PGSQL.{port}"
    if len(socket_path) <= MAX_SOCKET_PATH and (os.geteuid() != 0 or _others_can_traverse(home.absolute())):
        return preferred
    digest = hashlib.sha256(str(home.absolute()).encode()).hexdigest()[:12]
    return Path(tempfile.gettempdir()) / f"stream-logger-{digest}" / "postgres"


def _others_can_traverse(path: Path) -> bool:
    """Whether a user who owns none of ``path``'s existing folders can go through all of them."""
    existing = (folder for folder in (path, *path.parents) if folder.exists())
    return all(folder.stat().st_mode & stat.S_IXOTH for folder in existing)


async def _connects(dsn: str) -> bool:
    import asyncpg

    try:
        conn = await asyncpg.connect(dsn, timeout=3)
    except Exception:
        return False
    await conn.close()
    return True
