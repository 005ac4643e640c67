"""A private PostgreSQL cluster in a temp dir (initdb + pg_ctl), for the collector tests."""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import sqlalchemy as sa


def pg_bin() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    return Path(found[-1]).parent if found else None


def free_port() -> int:
    """A loopback port free for TCP (tests/ports.py: outside the ephemeral range, one span
    per xdist worker)."""
    from tests.ports import free_port as pick

    return pick(socket.SOCK_STREAM)


class PgCluster:
    """initdb, start on a loopback port with a private socket dir, stop and remove."""

    def __init__(self, bindir: Path) -> None:
        self.bindir = bindir
        self.dir = Path(tempfile.mkdtemp(prefix="qs-pg-"))
        self.port = free_port()
        self.user: str | None = None
        if os.geteuid() == 0:  # postgres refuses to run as root
            self.user = "postgres"
            try:
                pw = pwd.getpwnam(self.user)
            except KeyError:
                self.user, pw = "nobody", pwd.getpwnam("nobody")
            os.chown(self.dir, pw.pw_uid, pw.pw_gid)
        self.data = self.dir / "data"

    def _run(self, *cmd: str) -> None:
        full = [str(self.bindir / cmd[0]), *cmd[1:]]
        if self.user:
            full = ["runuser", "-u", self.user, "--", *full]
        subprocess.run(full, check=True, capture_output=True, timeout=120)

    def start(self) -> None:
        self._run("initdb", "-D", str(self.data), "-A", "trust", "-U", "postgres", "-E", "UTF8")
        opts = (
            f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c fsync=off "
            "-c synchronous_commit=off -c full_page_writes=off -c max_connections=200"
        )
        self._run(
            "pg_ctl",
            "-D",
            str(self.data),
            "-o",
            opts,
            "-l",
            str(self.dir / "log"),
            "-w",
            "-t",
            "60",
            "start",
        )

    def url(self, db: str = "postgres") -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{db}"

    @contextlib.contextmanager
    def database(self, prefix: str, template: str | None = None) -> Iterator[str]:
        """A fresh database of its own (a copy of `template` when named), its URL while the
        block runs; dropped after, whoever is still connected."""
        name = f"{prefix}_{uuid.uuid4().hex[:12]}"
        admin = sa.create_engine(self.url(), isolation_level="AUTOCOMMIT")
        with admin.connect() as c:
            c.exec_driver_sql(
                f"CREATE DATABASE {name}" + (f" TEMPLATE {template}" if template else "")
            )
        try:
            yield self.url(name)
        finally:
            with admin.connect() as c:
                c.exec_driver_sql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
            admin.dispose()

    def stop(self) -> None:
        try:
            self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")
        except (subprocess.CalledProcessError, subprocess.TimeoutExpired):
            pass
        shutil.rmtree(self.dir, ignore_errors=True)
