"""NUL characters (U+0000) in a request: refused with a 422 naming where (path, query
parameter, body field), on SQLite and PostgreSQL, before they reach the database (they
were a 500 on PostgreSQL on every route taking a string, and stored as-is on SQLite)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from collector.api.nul import body_problem, url_problem
from tests.collector.conftest import icmp, new_tenant

MESSAGE = "NUL characters (U+0000, %00) are not allowed"


def test_nul_anywhere_is_a_422_naming_where_and_nothing_is_stored(
    make_store: Any, serve: Any
) -> None:
    srv = serve(make_store(rules={"loss": {"trip_after": 1}}))
    t = new_tenant(srv, "acme")
    t.post(icmp(300, loss=50))
    ticket = t.partner.get("/api/v1/tickets").json()[0]["id"]
    c, s = t.customer_id, t.site_id
    cases = [
        ("GET", f"/api/v1/customers/{c}%00", None, "path"),
        ("GET", f"/api/v1/sites?customer_id={c}%00", None, "query.customer_id"),
        ("GET", "/api/v1/results?probe=icmp%00", None, "query.probe"),
        ("POST", "/api/v1/customers", {"name": "a\u0000b"}, "body.name"),
        ("POST", "/api/v1/sites", {"customer_id": c, "name": "x\u0000"}, "body.name"),
        ("PATCH", f"/api/v1/sites/{s}", {"contacts": [{"name": "\u0000"}]}, "body.contacts.0.name"),
        ("PATCH", f"/api/v1/sites/{s}", {"call_info": {"k\u0000": "x"}}, "body.call_info.k (key)"),
        ("POST", f"/api/v1/tickets/{ticket}/comments", {"message": "\u0000"}, "body.message"),
    ]  # fmt: skip
    before = (t.partner.get("/api/v1/customers").json(), t.partner.get(f"/api/v1/sites/{s}").json())
    for method, path, body, where in cases:
        r = t.partner.request(method, path, json=body)
        assert (r.status_code, r.json()) == (422, {"detail": f"{where}: {MESSAGE}"}), (path, r.text)
    after = (t.partner.get("/api/v1/customers").json(), t.partner.get(f"/api/v1/sites/{s}").json())
    assert after == before
    events = t.partner.get(f"/api/v1/tickets/{ticket}").json()["events"]
    assert not [e for e in events if e["kind"] == "comment"]
    # A backslash followed by u0000 is text, not a NUL: stored as sent.
    ok = t.partner.post("/api/v1/customers", json={"name": "a\\u0000b"})
    assert ok.status_code == 201 and ok.json()["name"] == "a\\u0000b"


TEXT = st.text(st.characters(exclude_characters="\x00"), max_size=8)
JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | TEXT,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(TEXT, inner, max_size=4),
    max_leaves=20,
)


def _strings(value: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """The key paths of every string value in a JSON value."""
    if isinstance(value, str):
        return [path]
    if isinstance(value, dict):
        return [p for k, v in value.items() for p in _strings(v, (*path, k))]
    if isinstance(value, list):
        return [p for i, v in enumerate(value) for p in _strings(v, (*path, i))]
    return []


@settings(max_examples=300, deadline=None)
@given(JSON, st.data())
def test_a_nul_in_any_json_string_is_found_at_its_path(value: Any, data: st.DataObject) -> None:
    holder = {"v": value}
    assert body_problem("application/json", json.dumps(holder).encode()) is None
    paths = _strings(holder)
    if not paths:
        return
    target = data.draw(st.sampled_from(paths))
    node: Any = holder
    for k in target[:-1]:
        node = node[k]
    node[target[-1]] += "\x00"
    problem = body_problem("application/json; charset=utf-8", json.dumps(holder).encode())
    where = ".".join(["body", *map(str, target)])
    assert problem == f"{where}: {MESSAGE}"


@pytest.mark.parametrize(
    ("query", "where"),
    [(b"a=1&site_id=x%00", "query.site_id"), (b"a%00=1", "query.a"), (b"%00", "query")],
)
def test_a_nul_in_the_query_names_the_parameter(query: bytes, where: str) -> None:
    assert url_problem({"path": "/x", "query_string": query}) == f"{where}: {MESSAGE}"
    assert url_problem({"path": "/x", "query_string": b"a=%0001"}) is not None
    assert url_problem({"path": "/x", "query_string": b"a=%2500"}) is None  # a literal %00


def test_a_form_body_with_a_nul_names_the_field() -> None:
    form = "application/x-www-form-urlencoded"
    assert body_problem(form, b"user=a&password=x%00y") == f"body.password: {MESSAGE}"
    assert body_problem(form, b"user=a&password=x%2500y") is None
