"""Strict per-item validation of result batches over a real uvicorn, on SQLite and
PostgreSQL: each hostile item is refused with its path and reason while the rest of its
batch is stored; only a broken envelope refuses the whole batch (a clean 4xx, never 500)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from tests.collector.conftest import icmp, new_tenant, result


def _nested(depth: int) -> str:
    """A host result whose measurement nests `depth` objects deep, as JSON text."""
    text = json.dumps(result("host", measurement={"n": 0}))
    return text.replace('{"n": 0}', '{"a": ' * depth + '{"v": 1}' + "}" * depth)


def _iso(delta: timedelta) -> str:
    return (datetime.now(UTC) + delta).isoformat()


# (what the item carries, the item as JSON text inside the batch, the error answered)
HOSTILE: list[tuple[str, str, str]] = [
    (
        "a measurement nested 1,000 deep (500 for the whole batch before)",
        _nested(1000),
        "measurement" + ".a" * 31 + ": nests deeper than 32 levels (limits.max_item_depth)",
    ),
    (
        "a 5,000-digit integer (500 before)",
        json.dumps(result("host", measurement={"n": 0})).replace('"n": 0', '"n": ' + "9" * 5000),
        "measurement.n: integer of 5000 digits is out of range (64 bits)",
    ),
    (
        "an integer past 64 bits",
        json.dumps(result("host", measurement={"n": 2**63})),
        "measurement.n: integer out of range (64 bits)",
    ),
    (
        "schema_version [] (500 before)",
        json.dumps({**icmp(10), "schema_version": []}),
        "schema_version: must be an integer, not a list",
    ),
    (
        'schema_version "2"',
        json.dumps({**icmp(10), "schema_version": "2"}),
        "schema_version: must be an integer, not a string",
    ),
    (
        "started_at of year 1 at +14:00 (500 before)",
        json.dumps({**icmp(10), "started_at": "0001-01-01T00:00:00+14:00"}),
        "started_at: started_at is out of range once converted to UTC",
    ),
    (
        "started_at older than the window",
        json.dumps({**icmp(10), "started_at": "2000-01-01T00:00:00+00:00"}),
        "started_at: 2000-01-01T00:00:00+00:00 is older than 400 days (limits.max_result_age_s)",
    ),
    (
        "started_at two days ahead",
        json.dumps({**icmp(10), "started_at": _iso(timedelta(days=2))}),
        "s in the future (limits.max_result_future_s)",
    ),
    (
        "started_at as a number",
        json.dumps({**icmp(10), "started_at": 1700000000}),
        "started_at: started_at must be an ISO 8601 timestamp string",
    ),
    (
        "duration_ms Infinity (stored before)",
        json.dumps({**icmp(10), "duration_ms": float("inf")}),
        "duration_ms: NaN and infinite numbers are not JSON; send null",
    ),
    (
        "a NaN inside the error",
        json.dumps(
            {
                **icmp(10),
                "success": False,
                "error": {"class": "X", "category": "c", "message": float("nan")},
            }
        ),
        "error.message: NaN and infinite numbers are not JSON; send null",
    ),
    (
        '"success": "yes" (stored as true before)',
        json.dumps({**icmp(10), "success": "yes"}),
        "success: Input should be a valid boolean",
    ),
    (
        '"duration_ms": "12"',
        json.dumps({**icmp(10), "duration_ms": "12"}),
        "duration_ms: Input should be a valid number",
    ),
    (
        "a NUL character in the measurement",
        json.dumps(result("host", measurement={"name": "a\u0000b"})),
        "measurement.name: text must not contain NUL characters",
    ),
    (
        "a lone surrogate in the measurement",
        json.dumps(result("host", measurement={"name": "\ud800"})),
        "measurement.name: text is not valid Unicode (a lone surrogate)",
    ),
    (
        "a lone surrogate in a key",
        json.dumps(result("host", measurement={"\udc00": 1})),
        "\\udc00: key text is not valid Unicode (a lone surrogate)",
    ),
    (
        "a control character in the target",
        json.dumps(icmp(10, target="192.0.2.1\r\nX-Injected: 1")),
        "target: target must not contain control characters (found '\\r')",
    ),
    (
        "a NaN id",
        json.dumps({**icmp(10), "id": float("nan")}),
        "id: NaN and infinite numbers are not JSON; send null",
    ),
]


@pytest.mark.parametrize("case", HOSTILE, ids=[c[0] for c in HOSTILE])
def test_a_hostile_item_is_refused_by_path_and_the_rest_stored(make_store, serve, case):
    _, bad, error = case
    store = make_store()
    srv = serve(store)
    t = new_tenant(srv, "acme")
    before, after = icmp(10, target="192.0.2.7"), icmp(11, target="192.0.2.7")
    body = f'{{"results": [{json.dumps(before)}, {bad}, {json.dumps(after)}]}}'
    r = t.agent.post("/api/v1/results", content=body.encode("utf-8", "surrogatepass"))
    assert r.status_code == 200, r.text
    out = r.json()
    assert [i["status"] for i in out["items"]] == ["stored", "rejected", "stored"], out
    assert error in out["items"][1]["error"]
    stored = {x["id"] for x in t.partner.get("/api/v1/results").json()}
    assert stored == {before["id"], after["id"]}


def test_the_envelope_is_checked_with_a_clean_4xx(make_store, serve):
    srv = serve(make_store(limits={"max_batch_items": 10}))
    t = new_tenant(srv, "acme")
    post = t.agent.post
    cases: list[tuple[bytes, int, str]] = [
        (b'{"results": {"a": 1}}', 422, 'body must be a JSON object {"results": [ProbeResult'),
        (b"[1, 2]", 422, 'body must be a JSON object {"results"'),
        (b"{", 422, "body is not valid JSON"),
        (b"\xff\xfe", 422, "body is not valid JSON"),
        (b'{"results": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", 422, "nests too deeply"),
        (b'{"results": [' + b",".join([b"{}"] * 11) + b"]}", 413, "(limits.max_batch_items)"),
    ]
    for body, status, detail in cases:
        r = post("/api/v1/results", content=body)
        assert r.status_code == status, (body[:40], r.text)
        assert detail in r.json()["detail"], (body[:40], r.text)
    # Items that are not objects are refused one by one, the others stored.
    good = icmp(10)
    out = t.post(1, "x", None, [good], good)
    assert [i["status"] for i in out["items"]] == ["rejected"] * 4 + ["stored"]
    assert out["items"][0]["error"] == "item must be a JSON object"


def test_results_kept_offline_for_a_year_are_accepted(make_store, serve):
    """Agents keep results while offline: anything up to limits.max_result_age_s (400 days
    by default) old is stored, and up to a day ahead (a clock a little fast)."""
    srv = serve(make_store())
    t = new_tenant(srv, "acme")
    old = {**icmp(10), "started_at": _iso(-timedelta(days=399))}
    ahead = {**icmp(10), "started_at": _iso(timedelta(hours=23))}
    zulu = {**icmp(10), "started_at": _iso(-timedelta(hours=1)).replace("+00:00", "Z")}
    assert t.post(old, ahead, zulu)["stored"] == 3
