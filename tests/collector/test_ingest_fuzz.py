"""Hypothesis fuzz of result ingest: any body is a batch or a clean 4xx, any item is a valid
result or a per-item reject naming its path, and `ingest` on a real SQLite and PostgreSQL
store never raises but a 4xx for the envelope (never the 500 of a database error)."""

from __future__ import annotations

import json
import math
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent.wire.results import ProbeResult
from collector import tenants
from collector.errors import CollectorError
from collector.evaluation import RuleBook
from collector.ingest import Batch, decode_body, ingest, json_text, validate_item
from collector.schema import results
from collector.store import Store

NOW = time.time()
NASTY_TEXT = ["\x00", "\ud800", "a\udc00b", "\r\n", "\x85", "é☎", "", "x" * 600, "0001-01-01"]
NASTY_NUMBERS = [math.nan, math.inf, -math.inf, 2**63, -(2**63) - 1, 10**400, 1e308, -0.0]

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=20),
    st.sampled_from(NASTY_TEXT),
    st.sampled_from(NASTY_NUMBERS),
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(st.one_of(st.text(max_size=8), st.sampled_from(NASTY_TEXT)), inner,
                        max_size=4),
    ),
    max_leaves=30,
)  # fmt: skip
FIELDS = [
    "schema_version", "id", "probe", "target", "module", "started_at", "duration_ms",
    "success", "error", "measurement", "job_id", "tags", "extra",
]  # fmt: skip
TIMES = [
    "0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-14:00", "2020-02-30T00:00:00Z",
    datetime.fromtimestamp(NOW, UTC).isoformat(), "now", "1e9", "",
]  # fmt: skip


def _valid(i: int = 0) -> dict[str, Any]:
    return {
        "schema_version": 2,
        "id": str(uuid.uuid4()),
        "probe": "icmp",
        "target": f"192.0.2.{i % 4}",
        "started_at": (datetime.fromtimestamp(NOW, UTC) - timedelta(seconds=i)).isoformat(),
        "duration_ms": 10.0,
        "success": True,
        "measurement": {"sent": 3, "received": 3, "loss_pct": 0.0, "rtt_ms": {"avg": 1.5}},
    }


@st.composite
def items(draw: st.DrawFn) -> Any:
    """A valid item with a few fields replaced, removed or nested deep; or any value."""
    if draw(st.integers(0, 9)) == 0:
        return draw(values)
    item = _valid(draw(st.integers(0, 100)))
    for _ in range(draw(st.integers(0, 3))):
        key = draw(st.sampled_from(FIELDS))
        how = draw(st.integers(0, 4))
        if how == 0:
            item.pop(key, None)
        elif how == 1 and key == "started_at":
            item[key] = draw(st.sampled_from(TIMES))
        elif how == 2:
            deep: Any = draw(values)
            for _ in range(draw(st.integers(0, 60))):
                deep = {"a": deep} if draw(st.booleans()) else [deep]
            item[key] = deep
        else:
            item[key] = draw(values)
    return item


def _check_item(item: Any) -> None:
    try:
        r = validate_item(item, NOW)
    except ValueError as exc:
        msg = str(exc)
        msg.encode("utf-8")  # answered as JSON: no lone surrogate may leak into it
        assert msg and len(msg) <= 600
        return
    assert isinstance(r, ProbeResult)
    assert math.isfinite(r.duration_ms) and math.isfinite(r.started_at.timestamp())
    json_text(r.measurement, True)  # the fast encoder takes every stored value
    orjson.dumps(r.tags)


@settings(max_examples=600, deadline=None)
@given(items())
def test_any_item_is_a_result_or_a_reject_with_a_reason(item):
    _check_item(item)


@settings(max_examples=400, deadline=None)
@given(st.lists(items(), max_size=5), st.sampled_from(["orjson", "json"]))
def test_any_json_body_is_a_batch_or_a_clean_4xx(batch, how):
    doc = {"results": batch}
    try:
        body = (
            orjson.dumps(doc)
            if how == "orjson"
            else json.dumps(doc).encode("utf-8", "surrogatepass")
        )
    except (TypeError, ValueError, orjson.JSONEncodeError):
        return  # not encodable by that encoder (too deep, a big integer): nothing to send
    try:
        out = decode_body(body, None, 8 * 1024 * 1024)
    except CollectorError as exc:
        assert 400 <= exc.status < 500
        return
    assert isinstance(out, Batch)
    for item in out.items:
        _check_item(item)


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=200), st.sampled_from([None, "gzip", "identity", "br"]))
def test_any_bytes_are_a_batch_or_a_clean_4xx(body, encoding):
    try:
        out = decode_body(body, encoding, 1024)
    except CollectorError as exc:
        assert 400 <= exc.status < 500
        return
    assert isinstance(out.items, list)


def _agent(store: Store) -> dict[str, Any]:
    now = time.time()
    with store.write() as c:
        partner, _ = tenants.create_partner(c, "fuzz", now)
        customer = tenants.create_customer(c, partner["id"], "c", "", now)
        site = tenants.create_site(c, partner["id"], customer["id"], {"name": "s"}, now)
        token = tenants.create_token(c, partner["id"], site["id"], 60, now)["token"]
        agent_id = tenants.enroll(c, token, "a", "0", now)["agent_id"]
        return tenants.get_agent(c, partner["id"], agent_id)


def test_ingest_on_a_real_store_answers_per_item(make_store):
    """The batches above through `ingest` on SQLite and PostgreSQL: each item is stored,
    a duplicate or rejected; what is counted stored is in the table; nothing raises."""
    store = make_store()
    agent = _agent(store)
    book = RuleBook(store.config)
    counted = 0

    @settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(st.lists(items(), max_size=6))
    def run(batch):
        nonlocal counted
        body = json.dumps({"results": batch}).encode("utf-8", "surrogatepass")
        try:
            decoded = decode_body(body, None, 8 * 1024 * 1024)
        except CollectorError as exc:
            assert 400 <= exc.status < 500
            return
        out = ingest(store, book, agent, decoded.items, time.time(), finite=decoded.finite)
        assert out.stored + out.duplicates + out.rejected == len(batch)
        assert {i["status"] for i in out.items} <= {"stored", "duplicate", "rejected"}
        counted += out.stored
        orjson.dumps(out.as_dict())  # the answer is JSON

    run()
    with store.read() as c:
        n = c.execute(sa.select(sa.func.count()).select_from(results)).scalar()
    assert n == counted
