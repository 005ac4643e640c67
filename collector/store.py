"""The store: one engine, the config it serves, and dialect-aware write transactions."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from collector.config import CollectorConfig
from collector.db import make_engine, migrate


class Store:
    """Owns the engine. `write()` is a transaction that may write (on SQLite it takes the
    write lock up front, and in-process writers queue on a lock rather than busy-wait)."""

    def __init__(self, config: CollectorConfig, engine: sa.Engine | None = None) -> None:
        self.config = config
        self.engine = engine or make_engine(config.db)
        self.is_sqlite = self.engine.dialect.name == "sqlite"
        self._write_lock = threading.Lock()
        if self.is_sqlite:
            sa.event.listen(self.engine, "connect", _sqlite_autocommit_off)
            sa.event.listen(self.engine, "begin", _sqlite_begin)

    def checkpoint_in_background(self) -> None:
        """Stop SQLite checkpointing the WAL inside the committing request; the app calls
        `checkpoint()` from a background loop instead (no-op on PostgreSQL)."""
        if not self.is_sqlite:
            return
        sa.event.listen(self.engine, "connect", _sqlite_no_autocheckpoint)
        self.engine.dispose()  # pooled connections were opened with autocheckpoint on

    def checkpoint(self) -> None:
        if self.is_sqlite:
            with self.engine.connect() as conn:
                conn.exec_driver_sql("PRAGMA wal_checkpoint(PASSIVE)")

    def migrate(self) -> str | None:
        return migrate(self.engine)

    @contextmanager
    def write(self) -> Iterator[sa.Connection]:
        if self.is_sqlite:
            with self._write_lock, self.engine.connect() as conn:
                conn = conn.execution_options(qs_immediate=True)
                with conn.begin():
                    yield conn
        else:
            with self.engine.begin() as conn:
                yield conn

    def write_lock(self) -> threading.Lock:
        """The lock in-process writers take on SQLite (for work outside `write()`)."""
        return self._write_lock

    @contextmanager
    def read(self) -> Iterator[sa.Connection]:
        with self.engine.connect() as conn:
            yield conn

    def insert(self, table: sa.Table) -> Any:
        """Dialect insert (with on_conflict_do_nothing/do_update)."""
        return sqlite.insert(table) if self.is_sqlite else postgresql.insert(table)

    def dispose(self) -> None:
        self.engine.dispose()


def _sqlite_autocommit_off(dbapi_conn: Any, _record: Any) -> None:
    # Let SQLAlchemy's "begin" event emit BEGIN itself (pysqlite's own is deferred).
    dbapi_conn.isolation_level = None


def _sqlite_no_autocheckpoint(dbapi_conn: Any, _record: Any) -> None:
    dbapi_conn.execute("PRAGMA wal_autocheckpoint=0")


def _sqlite_begin(conn: sa.Connection) -> None:
    immediate = conn.get_execution_options().get("qs_immediate")
    conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")
