"""Batch ingest: validate each item, store new results once, keep `latest`, run the rules.

Idempotent by result id: an id already stored answers `duplicate` and is not stored again.
A batch with invalid items stores the valid ones and names the invalid ones: each item is
checked on its own (strict types, finite numbers, integers within 64 bits, nesting depth,
text PostgreSQL can store, `started_at` within the accepted window, the cardinality bounds)
and refused with the path of the problem; only the envelope (not JSON, `results` not a
list, too many items, too large) refuses the whole batch.
"""

from __future__ import annotations

import gzip
import json
import math
import uuid
import zlib
from dataclasses import dataclass, field
from typing import Any

import orjson
import sqlalchemy as sa
from pydantic import ValidationError

from agent.wire.errors import format_validation_error
from agent.wire.results import (
    LOAD_TEST_TAG,
    SUPPORTED_SCHEMA_VERSIONS,
    ProbeResult,
    upgrade,
)
from collector import compact
from collector.cardinality import admit, series_cache
from collector.config import LimitsConfig
from collector.errors import Invalid, PayloadTooLarge
from collector.evaluation import RuleBook, StoredResult, evaluate_results
from collector.ingest_pg import insert_results_and_latest
from collector.schema import agents, latest, results, sites
from collector.store import Store

MAX_INT = 2**63 - 1  # what a JSON integer in an item may be: int8 in both databases
MAX_ERROR_CHARS = 500  # a rejected item's reason, as answered


class TooBigNumber:
    """An integer literal too long to be read as a number (the fallback parser leaves this
    in its place, so the item holding it is refused by path rather than the whole body)."""

    __slots__ = ("digits",)

    def __init__(self, digits: int) -> None:
        self.digits = digits


def _parse_int(text: str) -> int | TooBigNumber:
    return int(text) if len(text) <= 20 else TooBigNumber(len(text))


@dataclass
class Batch:
    """A decoded request body. `finite` is true when the fast parser read it, which
    refuses NaN and infinite numbers: its values can then be written by the fast encoder
    (which would turn such numbers into null) without losing anything."""

    items: list[Any]
    finite: bool


@dataclass
class IngestOutcome:
    stored: int = 0
    duplicates: int = 0
    rejected: int = 0
    items: list[dict[str, Any]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "stored": self.stored,
            "duplicates": self.duplicates,
            "rejected": self.rejected,
            "items": self.items,
        }


def decode_body(body: bytes, encoding: str | None, max_bytes: int) -> Batch:
    """Request body (optionally gzip) -> the list under `results`; errors name the problem."""
    if encoding and encoding.strip().lower() == "gzip":
        try:
            d = zlib.decompressobj(16 + zlib.MAX_WBITS)
            body = d.decompress(body, max_bytes + 1)
        except (zlib.error, gzip.BadGzipFile) as exc:
            raise Invalid(f"body is not valid gzip: {exc}") from None
        if len(body) > max_bytes or d.unconsumed_tail:
            raise PayloadTooLarge(f"decoded body is larger than {max_bytes} bytes")
    elif encoding and encoding.strip().lower() not in ("identity", ""):
        raise Invalid(f"Content-Encoding {encoding!r} is not supported (use gzip)")
    if len(body) > max_bytes:
        raise PayloadTooLarge(f"body is larger than {max_bytes} bytes")
    finite = True
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError:
        # NaN/Infinity literals, a huge exponent or integer, lone surrogates, deep nesting:
        # Python's parser takes them, and the item holding one is refused by its path.
        finite = False
        try:
            doc = json.loads(body, parse_int=_parse_int)
        except RecursionError:
            raise Invalid("body is not valid JSON: it nests too deeply to be read") from None
        except (UnicodeDecodeError, ValueError) as exc:
            raise Invalid(f"body is not valid JSON: {str(exc)[:200]}") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("results"), list):
        raise Invalid('body must be a JSON object {"results": [ProbeResult, ...]}')
    return Batch(doc["results"], finite)


def json_text(value: Any, finite: bool) -> str:
    """JSON text of a stored value: the fast encoder when every number is known finite,
    else Python's (which writes NaN and Infinity, as SQLite stores them)."""
    return orjson.dumps(value).decode() if finite else json.dumps(value)


def validate_item(
    item: Any, now: float | None = None, limits: LimitsConfig | None = None
) -> ProbeResult:
    """One wire item -> ProbeResult, or ValueError naming the path and the problem.

    An unknown schema version is refused before anything else (its other fields may
    legitimately differ). Every value of the item is checked before the model: numbers
    finite (NaN and infinity have no JSON form to store) and integers within 64 bits,
    nesting no deeper than `limits.max_item_depth`, text without NUL or lone surrogates
    (neither database stores them). With `now`, `started_at` must lie in the window
    [now - limits.max_result_age_s, now + limits.max_result_future_s]."""
    limits = limits or LimitsConfig()
    if not isinstance(item, dict):
        raise ValueError("item must be a JSON object")
    version = item.get("schema_version", 1)
    if isinstance(version, bool) or not isinstance(version, int):
        raise ValueError(f"schema_version: must be an integer, not {_kind(version)}")
    if version not in SUPPORTED_SCHEMA_VERSIONS:
        known = ", ".join(str(v) for v in sorted(SUPPORTED_SCHEMA_VERSIONS))
        raise ValueError(
            f"schema_version {version} is not supported by this collector (known: {known})"
        )
    bad = (
        None
        if _plain(item, limits.max_item_depth)
        else _value_problem(item, 0, limits.max_item_depth)
    )
    if bad is not None:
        path, reason = bad
        where = ".".join(str(k) for k in reversed(path))
        if len(where) > 200:
            where = where[:200] + "..."
        raise ValueError(f"{where}: {reason}")
    try:
        r = ProbeResult.model_validate(upgrade(item))
    except ValidationError as exc:
        msg = format_validation_error(
            exc, unknown="unknown field", root=None, strip_value_error=True
        )
        raise ValueError(msg[:MAX_ERROR_CHARS]) from None
    if now is not None:
        ts = r.started_at.timestamp()
        if ts < now - limits.max_result_age_s:
            raise ValueError(
                f"started_at: {r.started_at.isoformat()} is older than "
                f"{limits.max_result_age_s / 86400:g} days (limits.max_result_age_s)"
            )
        if ts > now + limits.max_result_future_s:
            raise ValueError(
                f"started_at: {r.started_at.isoformat()} is more than "
                f"{limits.max_result_future_s:g} s in the future (limits.max_result_future_s)"
            )
    return r


def _kind(value: Any) -> str:
    return {dict: "an object", list: "a list", str: "a string", bool: "a boolean"}.get(
        type(value), "null" if value is None else "a number"
    )


def _plain(item: dict[str, Any], max_depth: int) -> bool:
    """True when no value of the item needs a closer look (the common case, checked
    without building paths): finite floats, 64-bit integers, ASCII text without NUL,
    nesting within `max_depth`. False sends the item to `_value_problem`, which names the
    path (non-ASCII text is fine there too)."""
    stack: list[tuple[Any, int]] = [(item, 0)]
    pop, push = stack.pop, stack.append
    while stack:
        v, depth = pop()
        if type(v) is dict:
            for k in v:
                if "\x00" in k or not k.isascii():
                    return False
            values = v.values()
        else:
            values = v
        for x in values:
            t = type(x)
            if t is float:
                if x - x != 0.0:  # NaN or infinite
                    return False
            elif t is str:
                if "\x00" in x or not x.isascii():
                    return False
            elif t is dict or t is list:
                if depth + 1 >= max_depth:
                    return False
                push((x, depth + 1))
            elif t is int:
                if not -MAX_INT - 1 <= x <= MAX_INT:
                    return False
            elif t is TooBigNumber:
                return False
    return True


def _value_problem(value: Any, depth: int, max_depth: int) -> tuple[list[Any], str] | None:
    """(reversed path, reason) of the first value of an item that cannot be stored as it is
    sent, or None. Recursion is bounded by `max_depth`."""
    t = type(value)
    if t is str:
        return _text_problem(value)
    if t is float:
        if math.isfinite(value):
            return None
        return [], "NaN and infinite numbers are not JSON; send null"
    if t is int:
        return None if -MAX_INT - 1 <= value <= MAX_INT else ([], "integer out of range (64 bits)")
    if t is dict:
        items: Any = value.items()
    elif t is list:
        items = enumerate(value)
    elif t is TooBigNumber:
        return [], f"integer of {value.digits} digits is out of range (64 bits)"
    else:
        return None  # bool, None
    if depth >= max_depth:
        return [], f"nests deeper than {max_depth} levels (limits.max_item_depth)"
    for k, v in items:
        if type(k) is str:
            bad = _text_problem(k)
            if bad is not None:
                return [k.encode("utf-8", "backslashreplace").decode()], "key " + bad[1]
        found = _value_problem(v, depth + 1, max_depth)
        if found is not None:
            found[0].append(k)
            return found
    return None


def _text_problem(text: str) -> tuple[list[Any], str] | None:
    if "\x00" in text:
        return [], "text must not contain NUL characters"
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            return [], "text is not valid Unicode (a lone surrogate)"
    return None


def ingest(
    store: Store,
    book: RuleBook,
    agent: dict[str, Any],
    items: list[Any],
    now: float,
    touch_agent: bool = True,
    finite: bool = False,
) -> IngestOutcome:
    """Store a batch for `agent`. With `touch_agent=False` the caller records the agent's
    last contact itself (the HTTP app batches those updates). Every stored item has passed
    `validate_item`, so its numbers are finite and the fast encoder writes them (`finite`
    is kept for callers; it is implied)."""
    limits = store.config.limits
    if not isinstance(items, list):
        raise Invalid('body must be a JSON object {"results": [ProbeResult, ...]}')
    if len(items) > limits.max_batch_items:
        raise PayloadTooLarge(
            f"batch has {len(items)} results, the limit is {limits.max_batch_items} "
            "(limits.max_batch_items)"
        )
    finite = True
    out = IngestOutcome()
    statuses: list[dict[str, Any]] = []
    rows: list[dict[str, Any]] = []
    row_statuses: list[dict[str, Any]] = []
    seen: set[str] = set()
    for index, item in enumerate(items):
        raw_id = item.get("id") if isinstance(item, dict) else None
        if not (isinstance(raw_id, str) and len(raw_id) <= 64 and _text_problem(raw_id) is None):
            raw_id = None  # echoed back only when it can be
        try:
            r = validate_item(item, now, limits)
        except ValueError as exc:
            statuses.append({"index": index, "id": raw_id, "status": "rejected", "error": str(exc)})
            continue
        rid = str(r.id)
        status = {"index": index, "id": rid, "status": "pending", "error": None}
        statuses.append(status)
        if rid in seen:
            status["status"] = "duplicate"
            continue
        seen.add(rid)
        row_statuses.append(status)
        rows.append(
            {
                "id": rid,
                "site_id": agent["site_id"],
                "agent_id": agent["id"],
                "schema_version": r.schema_version,
                "probe": r.probe,
                "target": r.target,
                "module": r.module,
                "started_at": r.started_at.timestamp(),
                "duration_ms": r.duration_ms,
                "success": r.success,
                "error": r.error.model_dump(by_alias=True) if r.error else None,
                "measurement": r.measurement,
                "job_id": r.job_id,
                "tags": r.tags,
                "received_at": now,
            }
        )
    with store.write() as conn:
        refused = admit(conn, store.config, series_cache(store), agent, rows, now) if rows else {}
        if refused:
            for i, reason in refused.items():
                row_statuses[i].update(status="rejected", error=reason)
            rows = [row for i, row in enumerate(rows) if i not in refused]
        new_ids: set[str] = set()
        latest_done = False  # PostgreSQL: `latest` kept by the same statement
        load_test = any(LOAD_TEST_TAG in (row["tags"] or {}) for row in rows)
        if rows and not store.is_sqlite and not load_test:
            got = insert_results_and_latest(conn, rows, finite)
            if got is not None:
                new_ids, latest_done = got, True
        if rows and not latest_done:
            new_ids = insert_new_results(conn, store.is_sqlite, rows, finite)
            mark_hours(conn, store.is_sqlite, [r for r in rows if r["id"] in new_ids])
        if touch_agent:
            conn.execute(agents.update().where(agents.c.id == agent["id"]).values(last_seen_at=now))
        # Results of a deliberate overload (capacity ramp) are stored, nothing more.
        fresh = [
            row for row in rows
            if row["id"] in new_ids and LOAD_TEST_TAG not in (row["tags"] or {})
        ]  # fmt: skip
        if fresh:
            if not latest_done:
                _update_latest(conn, store, fresh, finite)
            ctx = book.site_context(conn, agent["site_id"])
            stored = [
                StoredResult(
                    x["id"],
                    x["probe"],
                    x["target"],
                    x["started_at"],
                    x["success"],
                    x["measurement"],
                )
                for x in fresh
            ]
            evaluate_results(conn, store.insert, book, ctx, stored, now)
    for s in statuses:
        if s["status"] == "pending":
            s["status"] = "stored" if s["id"] in new_ids else "duplicate"
        if s["status"] == "stored":
            out.stored += 1
        elif s["status"] == "duplicate":
            out.duplicates += 1
        else:
            out.rejected += 1
    out.items = statuses
    return out


def _update_latest(
    conn: sa.Connection, store: Store, fresh: list[dict[str, Any]], finite: bool
) -> None:
    newest: dict[tuple[str, str, str], dict[str, Any]] = {}
    for x in fresh:
        k = (x["agent_id"], x["probe"], x["target"])
        if k not in newest or x["started_at"] > newest[k]["started_at"]:
            newest[k] = x
    rows = [
        {
            "agent_id": x["agent_id"],
            "probe": x["probe"],
            "target": x["target"],
            "site_id": x["site_id"],
            "result_id": x["id"],
            "started_at": x["started_at"],
            "success": x["success"],
            "measurement": x["measurement"],
        }
        for x in newest.values()
    ]
    upsert_latest(conn, store.is_sqlite, rows, finite)


def list_results(
    conn: sa.Connection,
    partner_id: str,
    site_id: str | None = None,
    probe: str | None = None,
    since: float | None = None,
    limit: int = 100,
) -> list[dict[str, Any]]:
    """Stored results of the partner, newest first."""
    from collector.timefmt import iso

    q_sites = sa.select(sites.c.id).where(sites.c.partner_id == partner_id)
    mine = set(conn.execute(q_sites).scalars())
    if site_id:
        mine &= {site_id}
    if not mine:
        return []
    q = sa.select(results, sa.literal(partner_id).label("partner_id")).where(
        results.c.site_id.in_(sorted(mine))
    )
    if probe:
        q = q.where(results.c.probe == probe)
    if since is not None:
        q = q.where(results.c.started_at >= since)
    out = []
    for r in conn.execute(q.order_by(results.c.started_at.desc()).limit(limit)):
        d = dict(r._mapping)
        d["started_at"] = iso(d["started_at"])
        d["received_at"] = iso(d["received_at"])
        out.append(d)
    return out


RESULT_COLUMNS = [c.name for c in results.c]
LATEST_COLUMNS = [c.name for c in latest.c]
JSON_COLUMNS = {"error", "measurement", "tags"}
UUID_COLUMNS = {"id", "site_id", "agent_id"}  # results: UuidKey
HOUR_S = 3600.0


def _multi_row(
    conn: sa.Connection,
    is_sqlite: bool,
    table: str,
    cols: list[str],
    rows: list[dict[str, Any]],
    tail: str,
    finite: bool = False,
) -> Any:
    """One multi-row INSERT through the driver (the hot path of ingest: no per-row SQL
    expression processing); JSON columns are serialised here."""
    mark = "?" if is_sqlite else "%s"
    # results keep the measurement compact (collector/compact.py), `latest` as JSON
    as_json = JSON_COLUMNS - {"measurement"} if table == "results" else JSON_COLUMNS
    one = (
        "("
        + ",".join(f"{mark}::jsonb" if (c in as_json and not is_sqlite) else mark for c in cols)
        + ")"
    )
    sql = f"INSERT INTO {table} ({','.join(cols)}) VALUES {','.join([one] * len(rows))} {tail}"
    params: list[Any] = []
    for row in rows:
        for c in cols:
            v = row[c]
            if c == "tags" and table == "results" and not v:
                v = None  # stored as NULL (compact.EmptyAsNull)
            elif v is not None and c in JSON_COLUMNS:
                v = json_text(v, finite) if c in as_json else compact.encode(v)
            elif c in UUID_COLUMNS and table == "results" and is_sqlite:
                v = compact.uuid_bytes(v)  # the stored form (UuidKey)
            params.append(v)
    return conn.exec_driver_sql(sql, tuple(params))


def insert_new_results(
    conn: sa.Connection, is_sqlite: bool, rows: list[dict[str, Any]], finite: bool = False
) -> set[str]:
    """`INSERT ... ON CONFLICT (id, started_at) DO NOTHING RETURNING id`: the ids actually
    inserted (the others are duplicates: a retried result has the same id and time)."""
    res = _multi_row(
        conn,
        is_sqlite,
        "results",
        RESULT_COLUMNS,
        rows,
        "ON CONFLICT (id, started_at) DO NOTHING RETURNING id",
        finite,
    )
    if is_sqlite:
        return {str(uuid.UUID(bytes=r[0])) for r in res}
    return {str(r[0]) for r in res}


def mark_hours(conn: sa.Connection, is_sqlite: bool, rows: list[dict[str, Any]]) -> None:
    """Mark the (site, hour) of each stored row for the roll-up worker (collector/rollups.py);
    an hour marked again while pending moves its `seq`."""
    keys = sorted({(r["site_id"], (r["started_at"] // HOUR_S) * HOUR_S) for r in rows})
    if not keys:
        return
    mark = "?" if is_sqlite else "%s"
    sql = (
        "INSERT INTO rollup_pending (period, bucket, site_id, seq) VALUES "
        + ",".join([f"('hour', {mark}, {mark}, 1)"] * len(keys))
        + " ON CONFLICT (period, bucket, site_id) DO UPDATE SET seq = rollup_pending.seq + 1"
    )
    conn.exec_driver_sql(sql, tuple(x for site, hour in keys for x in (hour, site)))


def upsert_latest(
    conn: sa.Connection, is_sqlite: bool, rows: list[dict[str, Any]], finite: bool = False
) -> None:
    """Keep the newest result per (agent, probe, target); an older one never overwrites."""
    upd = ("site_id", "result_id", "started_at", "success", "measurement")
    tail = (
        "ON CONFLICT (agent_id, probe, target) DO UPDATE SET "
        + ", ".join(f"{c} = excluded.{c}" for c in upd)
        + " WHERE excluded.started_at >= latest.started_at"
    )
    _multi_row(conn, is_sqlite, "latest", LATEST_COLUMNS, rows, tail, finite)
