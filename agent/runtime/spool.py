"""Store-and-forward spool: every result is committed to SQLite (WAL) before it is shipped.

Results leave the spool only when the collector acknowledged them (`ack`), or when the
spool's bounds push them out: older than `max_age_s`, or the oldest beyond `max_bytes` of
stored result bodies. What the bounds drop is counted, persistently, by reason. Items the
collector rejected stay on disk for inspection (never re-sent) until the bounds age them out.
Time is passed in (`now`, Unix seconds), so the bounds are testable without a clock.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

_SCHEMA = """
CREATE TABLE IF NOT EXISTS results (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    created REAL NOT NULL,
    size INTEGER NOT NULL,
    body BLOB NOT NULL,
    rejected TEXT
);
CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
"""


@dataclass(frozen=True)
class SpooledItem:
    seq: int
    id: str
    body: bytes

    def as_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads(self.body)
        return data


@dataclass(frozen=True)
class SpoolStats:
    depth: int  # results waiting to be shipped
    rejected: int  # results the collector refused, kept for inspection
    bytes: int
    oldest_age_s: float | None
    dropped_age: int
    dropped_size: int


class Spool:
    """A bounded SQLite queue of JSON results keyed by result id (a re-put is ignored)."""

    def __init__(self, path: Path | str, *, max_bytes: int, max_age_s: float) -> None:
        if max_bytes <= 0 or max_age_s <= 0:
            raise ValueError("spool bounds must be positive")
        self.path = Path(path)
        self.max_bytes = max_bytes
        self.max_age_s = max_age_s
        if str(path) != ":memory:":
            self.path.parent.mkdir(parents=True, exist_ok=True)
        self._owner = threading.get_ident()
        self._db = sqlite3.connect(str(path), isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(_SCHEMA)

    def close(self) -> None:
        try:
            self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        finally:
            self._db.close()

    def put(self, result: dict[str, Any], now: float) -> bool:
        """Commit one result (a dict with an `id`); False if that id is already spooled."""
        return self.put_many([result], now) == 1

    def put_many(self, results: Iterable[dict[str, Any]], now: float) -> int:
        rows = []
        for r in results:
            body = json.dumps(r, separators=(",", ":")).encode()
            rows.append((str(r["id"]), now, len(body), body))
        with self._tx():
            before = self._db.total_changes
            self._db.executemany(
                "INSERT OR IGNORE INTO results (id, created, size, body) VALUES (?, ?, ?, ?)", rows
            )
            added = self._db.total_changes - before
            self._enforce(now)
        return added

    def batch(self, limit: int) -> list[SpooledItem]:
        """The oldest `limit` results waiting to be shipped."""
        cur = self._db.execute(
            "SELECT seq, id, body FROM results WHERE rejected IS NULL ORDER BY seq LIMIT ?",
            (limit,),
        )
        return [SpooledItem(seq, id_, bytes(body)) for seq, id_, body in cur]

    def ack(self, ids: Iterable[str]) -> int:
        """Delete what the collector acknowledged; returns how many rows went."""
        keys = [(str(i),) for i in ids]
        with self._tx():
            before = self._db.total_changes
            self._db.executemany("DELETE FROM results WHERE id = ?", keys)
            return self._db.total_changes - before

    def reject(self, reasons: dict[str, str]) -> None:
        """Mark results the collector refused: never re-sent, kept until the bounds drop them."""
        with self._tx():
            self._db.executemany(
                "UPDATE results SET rejected = ? WHERE id = ?",
                [(reason or "rejected", str(i)) for i, reason in reasons.items()],
            )

    def enforce(self, now: float) -> int:
        """Apply the age and size bounds; returns how many results were dropped."""
        with self._tx():
            return self._enforce(now)

    def stats(self, now: float) -> SpoolStats:
        """Depth, bytes, age and drop counters; callable from another thread (a scrape)."""
        if threading.get_ident() == self._owner:
            return self._stats(self._db, now)
        db = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True)
        try:
            return self._stats(db, now)
        finally:
            db.close()

    @staticmethod
    def _stats(db: sqlite3.Connection, now: float) -> SpoolStats:
        depth, rejected, size, oldest = db.execute(
            "SELECT COUNT(*) - COUNT(rejected), COUNT(rejected), COALESCE(SUM(size), 0),"
            " MIN(created) FROM results"
        ).fetchone()
        counters = dict(db.execute("SELECT name, value FROM counters"))
        return SpoolStats(
            depth=depth,
            rejected=rejected,
            bytes=size,
            oldest_age_s=None if oldest is None else max(0.0, now - oldest),
            dropped_age=counters.get("dropped_age", 0),
            dropped_size=counters.get("dropped_size", 0),
        )

    def _enforce(self, now: float) -> int:
        cur = self._db.execute("DELETE FROM results WHERE created < ?", (now - self.max_age_s,))
        by_age = cur.rowcount
        total = self._db.execute("SELECT COALESCE(SUM(size), 0) FROM results").fetchone()[0]
        by_size = 0
        if total > self.max_bytes:
            excess = total - self.max_bytes
            # Oldest first, until what remains fits.
            doomed: list[int] = []
            freed = 0
            for seq, size in self._db.execute("SELECT seq, size FROM results ORDER BY seq"):
                if freed >= excess:
                    break
                doomed.append(seq)
                freed += size
            self._db.executemany("DELETE FROM results WHERE seq = ?", [(s,) for s in doomed])
            by_size = len(doomed)
        for name, n in (("dropped_age", by_age), ("dropped_size", by_size)):
            if n:
                self._db.execute(
                    "INSERT INTO counters (name, value) VALUES (?, ?)"
                    " ON CONFLICT(name) DO UPDATE SET value = value + excluded.value",
                    (name, n),
                )
        return by_age + by_size

    def _tx(self) -> _Transaction:
        return _Transaction(self._db)


class _Transaction:
    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db

    def __enter__(self) -> None:
        self._db.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type: object, *_: object) -> None:
        self._db.execute("ROLLBACK" if exc_type else "COMMIT")
