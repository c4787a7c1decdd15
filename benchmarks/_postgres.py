"""A throwaway PostgreSQL server on 127.0.0.1, for the tests and benchmarks that need one.

``initdb`` into a fresh temporary folder, ``pg_ctl start`` on a free loopback port (its unix
socket in that folder too, fsync off, trust authentication for the user ``paretrain``),
databases made on demand, and ``stop()`` ends it and removes the folder. It uses Debian's
server binaries (``/usr/lib/postgresql/*/bin``, package ``postgresql``, which
``scripts/system-deps.sh`` installs); ``PARETRAIN_PG_BIN`` names another folder. PostgreSQL
refuses to run as root: as root, the folder is handed to the ``postgres`` user (else
``nobody``) and the server runs as that user.

    with postgres_server() as pg:
        url = pg.create_database("study")   # postgresql://paretrain@127.0.0.1:PORT/study
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

__all__ = ["PostgresServer", "PostgresUnavailable", "pg_bin_dir", "postgres_server"]


class PostgresUnavailable(RuntimeError):
    """The server binaries are missing or the server did not start."""


def pg_bin_dir() -> Path:
    """The folder of ``initdb`` and ``pg_ctl``: ``$PARETRAIN_PG_BIN``, else Debian's newest."""
    if os.environ.get("PARETRAIN_PG_BIN"):
        return Path(os.environ["PARETRAIN_PG_BIN"])
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parts[-3]))
    if found:
        return Path(found[-1]).parent
    on_path = shutil.which("initdb")
    if on_path:
        return Path(on_path).parent
    raise PostgresUnavailable(
        "PostgreSQL's server binaries (initdb, pg_ctl) were not found in /usr/lib/postgresql/*/bin or on PATH. "
        "To fix: run 'bash scripts/system-deps.sh' (it installs Debian's postgresql package), or "
        "'apt-get install postgresql', or set PARETRAIN_PG_BIN to the folder holding initdb"
    )


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _server_user() -> pwd.struct_passwd | None:
    """Who runs the server: None (this user) unless this is root, which PostgreSQL refuses."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        try:
            return pwd.getpwnam(name)
        except KeyError:
            continue
    raise PostgresUnavailable(
        "running as root and there is no 'postgres' or 'nobody' user to run PostgreSQL as. "
        "To fix: create a 'postgres' user (useradd postgres) or run as a normal user"
    )


class PostgresServer:
    def __init__(self, port: int | None = None) -> None:
        self.bin = pg_bin_dir()
        self.port = port or _free_port()
        self.user = _server_user()
        self.dir = Path(tempfile.mkdtemp(prefix="paretrain-pg-"))
        self.data = self.dir / "data"
        self.log = self.dir / "server.log"
        self.started = False

    def _run(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        as_user: dict[str, Any] = {}
        if self.user is not None:
            as_user = {"user": self.user.pw_uid, "group": self.user.pw_gid, "extra_groups": []}
        return subprocess.run(
            [str(self.bin / args[0]), *args[1:]],
            cwd=self.dir,
            capture_output=True,
            text=True,
            timeout=timeout,
            env={**os.environ, "LC_ALL": "C"},
            **as_user,
        )

    def start(self) -> None:
        if self.user is not None:
            os.chown(self.dir, self.user.pw_uid, self.user.pw_gid)
        os.chmod(self.dir, 0o700)
        steps = [
            ("initdb", "-D", str(self.data), "-U", "paretrain", "--auth=trust", "-E", "UTF8", "--no-sync"),
            (
                "pg_ctl",
                "-D",
                str(self.data),
                "-l",
                str(self.log),
                "-w",
                "-t",
                "60",
                "-o",
                f"-h 127.0.0.1 -p {self.port} -k {self.dir} -F -c max_connections=200",
                "start",
            ),
        ]
        for step in steps:
            out = self._run(*step)
            if out.returncode != 0:
                tail = self.log.read_text()[-2000:] if self.log.exists() else ""
                self.stop()
                raise PostgresUnavailable(
                    f"{step[0]} failed (exit {out.returncode}): {out.stderr.strip()[-2000:]}\n{tail}"
                )
            self.started = True

    def create_database(self, name: str) -> str:
        """A new, empty database; its URL (psycopg 3, which SQLAlchemy picks for postgresql://)."""
        out = self._run("createdb", "-h", "127.0.0.1", "-p", str(self.port), "-U", "paretrain", name)
        if out.returncode != 0:
            raise PostgresUnavailable(f"createdb {name} failed: {out.stderr.strip()}")
        return self.url(name)

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://paretrain@127.0.0.1:{self.port}/{database}"

    def stop(self) -> None:
        if self.started:
            self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop", timeout=60)
            self.started = False
        shutil.rmtree(self.dir, ignore_errors=True)


@contextmanager
def postgres_server() -> Iterator[PostgresServer]:
    server = PostgresServer()
    server.start()
    try:
        yield server
    finally:
        server.stop()
