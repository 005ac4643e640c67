"""The config check's fast path (collector/api/fastconfig.py) answers as the FastAPI route
does, and never from a version that is no longer the site's: the same requests sent to a
collector with the fast path and to one without it give the same status, headers and
body; a change made through this process is seen at once, one made through another
replica, or straight in the database as the CLI does, as soon as the config epoch is read;
another tenant's version is not the caller's."""

from __future__ import annotations

import logging
from typing import Any

import httpx

from collector import profiles
from tests.collector.conftest import new_tenant
from tests.collector.peers import wait_for

PATH = "/api/v1/agent/config"
PING = {"probe": "icmp", "targets": ["192.0.2.1"], "interval_s": 60, "options": {"count": 5}}
HOST = {"probe": "host", "targets": ["local"], "interval_s": 300}


def _answer(r: httpx.Response) -> tuple[int, dict[str, str], bytes]:
    headers = {k: v for k, v in r.headers.items() if k not in ("date", "server")}
    return r.status_code, headers, r.content


def _put(client: httpx.Client, path: str, modules: dict[str, Any]) -> None:
    r = client.put(f"/api/v1/profiles/{path}", json={"modules": modules})
    assert r.status_code == 200, r.text


def test_the_fast_path_answers_as_the_route_does(make_store, serve):
    store = make_store(limits={"max_body_bytes": 4096})
    fast = serve(store)
    slow = serve(store, fast_poll=False)
    assert not hasattr(slow.app.state, "fast_config")
    t = new_tenant(fast, "acme")
    _put(t.partner, f"partner/{t.partner_id}", {"ping_gw": PING, "host": HOST})
    key = t.agent.headers["authorization"]
    first = t.agent.get(PATH)  # the route: the key and the site's version kept
    assert first.status_code == 200, first.text
    etag = first.headers["etag"]
    assert etag == f'"{first.json()["version"]}"'
    counter = fast.app.state.fast_config
    long_list = f'"{"x" * 190}", {etag}'  # over the route's 200 characters
    assert len(long_list) > 200
    cases: list[tuple[str, list[tuple[str, Any]], bytes | None, bool]] = [
        # (query, headers, body, answered by the fast path)
        ("", [("if-none-match", etag)], None, True),
        ("", [("if-none-match", f'"other", {etag}')], None, True),
        ("", [("if-none-match", '"stale"')], None, False),
        ("", [("if-none-match", f"W/{etag}")], None, False),
        ("", [], None, False),
        ("", [("if-none-match", long_list)], None, False),
        ("", [("if-none-match", etag), ("if-none-match", '"other"')], None, False),
        ("", [("if-none-match", '"\xe9"'.encode("latin-1"))], None, False),
        ("?x=1", [("if-none-match", etag)], None, False),
        ("", [("if-none-match", etag), ("content-type", "text/plain")], b"x" * 5000, False),
        ("", [("if-none-match", etag), ("authorization", "Bearer qsa_not-a-key")], None, False),
        ("", [("if-none-match", etag), ("authorization", "Basic abc")], None, False),
    ]
    for query, headers, body, taken in cases:
        before = counter.taken
        got = []
        for srv in (fast, slow):
            h = headers if any(n == "authorization" for n, _ in headers) else [
                ("authorization", key), *headers
            ]  # fmt: skip
            with httpx.Client(base_url=srv.url, timeout=30) as c:
                got.append(_answer(c.request("GET", PATH + query, headers=h, content=body)))
        assert got[0] == got[1], (query, headers)
        assert got[0][0] in (200, 304, 401, 413, 422), got[0]
        assert counter.taken == before + taken, (query, headers)
        if taken:
            assert got[0][0] == 304 and got[0][1]["etag"] == etag and got[0][2] == b""
    schema = fast.app.openapi()["paths"][PATH]["get"]
    assert "304" in schema["responses"]


def test_a_change_is_seen_here_at_once_and_on_every_replica(make_store, serve):
    a = serve(make_store())
    b = serve(make_store())  # another process on the same database: its own memory
    t = new_tenant(a, "acme")
    _put(t.partner, f"partner/{t.partner_id}", {"ping_gw": PING, "host": HOST})
    on_b = httpx.Client(base_url=b.url, headers=dict(t.agent.headers), timeout=30)
    old = on_b.get(PATH).headers["etag"]
    assert t.agent.get(PATH).headers["etag"] == old
    for srv, client in ((a, t.agent), (b, on_b)):
        before = srv.app.state.fast_config.taken
        assert client.get(PATH, headers={"If-None-Match": old}).status_code == 304
        assert srv.app.state.fast_config.taken == before + 1

    def moved(client: httpx.Client, etag: str) -> str | None:
        r = client.get(PATH, headers={"If-None-Match": etag})
        assert r.status_code in (200, 304), r.text
        return r.headers["etag"] if r.status_code == 200 else None

    # Through the API of `a`: `a` answers the new config at once; `b` once it reads the
    # config epoch, and from then on its fast path answers the new version.
    _put(t.partner, f"site/{t.site_id}", {"ping_gw": {"interval_s": 10}})
    new = moved(t.agent, old)
    assert new is not None and new != old
    assert wait_for(lambda: moved(on_b, old), 20, "replica b to see the change") == new
    before = b.app.state.fast_config.taken
    assert on_b.get(PATH, headers={"If-None-Match": new}).status_code == 304
    assert b.app.state.fast_config.taken == before + 1

    # Straight in the database, as `qos-scout collector profile put` writes it: both see it.
    with a.store.write() as c:
        profiles.put_profile(
            c, t.partner_id, "site", t.site_id, {"modules": {"ping_gw": {"interval_s": 20}}}, 0.0
        )
    third = wait_for(lambda: moved(t.agent, new), 20, "replica a to see the CLI's change")
    assert wait_for(lambda: moved(on_b, new), 20, "replica b to see the CLI's change") == third
    assert t.agent.get(PATH).json()["modules"]["ping_gw"]["interval_s"] == 20

    # The site moved to a customer with a layer of its own: its config moves with it.
    other = t.partner.post("/api/v1/customers", json={"name": "second"}).json()["id"]
    _put(t.partner, f"customer/{other}", {"host": {"interval_s": 600}})
    assert moved(t.agent, third) is None  # a profile of a customer with no site: unchanged
    r = t.partner.patch(f"/api/v1/sites/{t.site_id}", json={"customer_id": other})
    assert r.status_code == 200, r.text
    fourth = moved(t.agent, third)
    assert fourth is not None
    assert wait_for(lambda: moved(on_b, third), 20, "replica b to see the move") == fourth
    assert t.agent.get(PATH).json()["modules"]["host"]["interval_s"] == 600


def test_another_tenants_version_is_not_the_callers(make_store, serve):
    srv = serve(make_store())
    ta, tb = new_tenant(srv, "acme"), new_tenant(srv, "globex")
    _put(ta.partner, f"partner/{ta.partner_id}", {"ping_gw": PING})
    _put(tb.partner, f"partner/{tb.partner_id}", {"host": HOST})
    etag_a = ta.agent.get(PATH).headers["etag"]
    etag_b = tb.agent.get(PATH).headers["etag"]
    assert etag_a != etag_b
    counter = srv.app.state.fast_config
    before = counter.taken
    r = tb.agent.get(PATH, headers={"If-None-Match": etag_a})
    assert r.status_code == 200 and r.headers["etag"] == etag_b
    assert list(r.json()["modules"]) == ["host"]
    assert counter.taken == before


def test_a_version_computed_before_a_drop_is_not_kept(make_store, serve):
    st = serve(make_store()).state
    gen = st.config_gen
    st.drop_config_versions()  # a change seen while the route was computing
    st.keep_config_version("site-1", "v1", gen)
    assert st.config_version("site-1") is None
    st.keep_config_version("site-1", "v2", st.config_gen)
    assert st.config_version("site-1") == "v2"


def test_every_path_writes_the_access_line(make_store, serve, caplog):
    """The fast paths write the line the `AccessLog` middleware writes for the rest."""
    srv = serve(make_store())
    t = new_tenant(srv, "acme")
    etag = t.agent.get(PATH).headers["etag"]
    caplog.set_level(logging.INFO, logger="collector.access")
    checks = srv.app.state.fast_config.taken
    polls = srv.app.state.fast_poll.taken
    assert t.agent.get(PATH, headers={"If-None-Match": etag}).status_code == 304
    assert t.agent.get("/api/v1/agent/jobs").status_code == 200
    assert t.agent.get(PATH).status_code == 200  # the route, through the middleware
    assert srv.app.state.fast_config.taken == checks + 1
    assert srv.app.state.fast_poll.taken == polls + 1

    def lines() -> list[tuple[str, str, int, str]]:
        return [
            (r.method, r.path, r.status, r.client)  # type: ignore[attr-defined]
            for r in caplog.records
            if r.name == "collector.access" and r.getMessage() == "request"
        ]

    # The lines are written after the answers are sent: wait for them.
    wait_for(lambda: len(lines()) >= 3, 20, "the route's access line")
    assert sorted(lines()) == [  # each written as its answer goes: in any order
        ("GET", "/api/v1/agent/config", 200, "127.0.0.1"),
        ("GET", "/api/v1/agent/config", 304, "127.0.0.1"),
        ("GET", "/api/v1/agent/jobs", 200, "127.0.0.1"),
    ]
    durations = [r.duration_ms for r in caplog.records if r.name == "collector.access"]  # type: ignore[attr-defined]
    assert all(isinstance(d, float) and d >= 0 for d in durations)
