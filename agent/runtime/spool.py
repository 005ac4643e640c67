"""Store-and-forward spool: every result is committed to SQLite (WAL) before it is shipped.

Results leave the spool only when the collector acknowledged them (`ack`), when the
spool's bounds push them out (older than `max_age_s`, or the oldest beyond `max_bytes` of
stored result bodies), or when they are given up (`reject`): the collector refused the item
(`rejected`), or the shipper isolated it as the item that makes the collector fail
(`quarantined`). What leaves without being stored is counted, persistently, by reason; a
given-up item moves to the `rejected` table (id, reason, kind, time and the body), which keeps
the newest `max_rejected` for inspection and is never re-sent. Time is passed in (`now`,
Unix seconds), so the bounds are testable without a clock.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

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
CREATE TABLE IF NOT EXISTS rejected (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL,
    kind TEXT NOT NULL,
    reason TEXT NOT NULL,
    at REAL NOT NULL,
    body BLOB NOT NULL
);
"""

# Why a result left the spool without being stored (the counters' names are `dropped_<why>`).
DROP_REASONS = ("age", "size", "rejected", "quarantined")
GiveUp = Literal["rejected", "quarantined"]
MAX_REJECTED = 1000  # given-up items kept for inspection, newest first


@dataclass(frozen=True)
class SpooledItem:
    seq: int
    id: str
    body: bytes

    def as_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads(self.body)
        return data


@dataclass(frozen=True)
class RejectedItem:
    id: str
    kind: str  # "rejected" | "quarantined"
    reason: str
    at: float
    body: bytes


@dataclass(frozen=True)
class SpoolStats:
    depth: int  # results waiting to be shipped
    rejected: int  # given-up results kept for inspection in the `rejected` table
    bytes: int
    oldest_age_s: float | None
    dropped: dict[str, int]  # reason (DROP_REASONS) -> results dropped, across restarts

    @property
    def dropped_age(self) -> int:
        return self.dropped.get("age", 0)

    @property
    def dropped_size(self) -> int:
        return self.dropped.get("size", 0)


class Spool:
    """A bounded SQLite queue of JSON results keyed by result id (a re-put is ignored)."""

    def __init__(
        self,
        path: Path | str,
        *,
        max_bytes: int,
        max_age_s: float,
        max_rejected: int = MAX_REJECTED,
    ) -> None:
        if max_bytes <= 0 or max_age_s <= 0 or max_rejected < 0:
            raise ValueError("spool bounds must be positive")
        self.path = Path(path)
        self.max_bytes = max_bytes
        self.max_age_s = max_age_s
        self.max_rejected = max_rejected
        if str(path) != ":memory:":
            self.path.parent.mkdir(parents=True, exist_ok=True)
        self._owner = threading.get_ident()
        self._db = sqlite3.connect(str(path), isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(_SCHEMA)
        self._move_marked_rejects()

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

    def batch(self, limit: int, *, exclude: Iterable[str] = ()) -> list[SpooledItem]:
        """The oldest `limit` results waiting to be shipped, but those in `exclude` (a few
        ids held back by the shipper)."""
        held = sorted({str(i) for i in exclude})
        cond = f" AND id NOT IN ({','.join('?' * len(held))})" if held else ""
        cur = self._db.execute(
            f"SELECT seq, id, body FROM results WHERE rejected IS NULL{cond} ORDER BY seq LIMIT ?",
            (*held, limit),
        )
        return [SpooledItem(seq, id_, bytes(body)) for seq, id_, body in cur]

    def get(self, ids: Iterable[str]) -> list[SpooledItem]:
        """The results with these ids that are still waiting, oldest first."""
        keys = sorted({str(i) for i in ids})
        if not keys:
            return []
        cur = self._db.execute(
            f"SELECT seq, id, body FROM results WHERE rejected IS NULL"
            f" AND id IN ({','.join('?' * len(keys))}) ORDER BY seq",
            keys,
        )
        return [SpooledItem(seq, id_, bytes(body)) for seq, id_, body in cur]

    def ack(self, ids: Iterable[str]) -> int:
        """Delete what the collector acknowledged; returns how many rows went."""
        keys = [(str(i),) for i in ids]
        with self._tx():
            before = self._db.total_changes
            self._db.executemany("DELETE FROM results WHERE id = ?", keys)
            return self._db.total_changes - before

    def reject(self, reasons: dict[str, str], now: float, kind: GiveUp = "rejected") -> int:
        """Give up these results (id -> reason): they leave the spool for the `rejected`
        table, counted as `dropped_<kind>`; returns how many were still spooled."""
        with self._tx():
            moved = 0
            for rid, reason in reasons.items():
                row = self._db.execute(
                    "SELECT body FROM results WHERE id = ?", (str(rid),)
                ).fetchone()
                if row is None:
                    continue
                self._db.execute(
                    "INSERT INTO rejected (id, kind, reason, at, body) VALUES (?, ?, ?, ?, ?)",
                    (str(rid), kind, reason or kind, now, row[0]),
                )
                self._db.execute("DELETE FROM results WHERE id = ?", (str(rid),))
                moved += 1
            self._count(f"dropped_{kind}", moved)
            self._trim_rejected()
            return moved

    def rejected(self, limit: int = 100) -> list[RejectedItem]:
        """The given-up results kept for inspection, newest first."""
        cur = self._db.execute(
            "SELECT id, kind, reason, at, body FROM rejected ORDER BY seq DESC LIMIT ?", (limit,)
        )
        return [RejectedItem(i, k, r, at, bytes(b)) for i, k, r, at, b in cur]

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
        depth, size, oldest = db.execute(
            "SELECT COUNT(*), COALESCE(SUM(size), 0), MIN(created) FROM results"
        ).fetchone()
        (rejected,) = db.execute("SELECT COUNT(*) FROM rejected").fetchone()
        counters = dict(db.execute("SELECT name, value FROM counters"))
        return SpoolStats(
            depth=depth,
            rejected=rejected,
            bytes=size,
            oldest_age_s=None if oldest is None else max(0.0, now - oldest),
            dropped={r: counters.get(f"dropped_{r}", 0) for r in DROP_REASONS},
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
        self._count("dropped_age", by_age)
        self._count("dropped_size", by_size)
        return by_age + by_size

    def _count(self, name: str, n: int) -> None:
        if n:
            self._db.execute(
                "INSERT INTO counters (name, value) VALUES (?, ?)"
                " ON CONFLICT(name) DO UPDATE SET value = value + excluded.value",
                (name, n),
            )

    def _trim_rejected(self) -> None:
        self._db.execute(
            "DELETE FROM rejected WHERE seq <= (SELECT MAX(seq) FROM rejected) - ?",
            (self.max_rejected,),
        )

    def _move_marked_rejects(self) -> None:
        """A spool of an earlier release kept refused results in `results` with a reason in
        its `rejected` column: move them to the `rejected` table (not counted again)."""
        with self._tx():
            self._db.execute(
                "INSERT INTO rejected (id, kind, reason, at, body)"
                " SELECT id, 'rejected', rejected, created, body FROM results"
                " WHERE rejected IS NOT NULL ORDER BY seq"
            )
            self._db.execute("DELETE FROM results WHERE rejected IS NOT NULL")
            self._trim_rejected()

    def _tx(self) -> _Transaction:
        return _Transaction(self._db)


class _Transaction:
    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db

    def __enter__(self) -> None:
        self._db.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type: object, *_: object) -> None:
        self._db.execute("ROLLBACK" if exc_type else "COMMIT")
