"""The job poll's fast path (collector/api/fastpoll.py) answers as the FastAPI route does:
the same requests (good, bad key, no key, another tenant, bad parameters, an oversized
body, a job queued before and while waiting) sent to a collector with the fast path and to
one without it give the same status, headers and body; the route stays in the OpenAPI
document and its answers fit the schema there."""

from __future__ import annotations

import threading
import time
from typing import Any

import httpx
import pytest

from collector.api.fastpoll import bearer_key, poll_params
from tests.collector.conftest import new_tenant
from tests.collector.peers import wait_for

PING = {"probe": "icmp", "targets": ["192.0.2.9"], "options": {"count": 5}}
PATH = "/api/v1/agent/jobs"


def _answer(r: httpx.Response) -> tuple[int, dict[str, str], bytes]:
    headers = {k: v for k, v in r.headers.items() if k not in ("date", "server")}
    return r.status_code, headers, r.content


def _jobs_shape(r: httpx.Response) -> tuple[int, dict[str, str], list[list[str]]]:
    """A job answer with its ids and times left out: the keys of every job."""
    headers = {k: v for k, v in r.headers.items() if k not in ("date", "server", "content-length")}
    return r.status_code, headers, [sorted(j) for j in r.json()["jobs"]]


def _queue(t: Any) -> str:
    job = t.partner.post(f"/api/v1/sites/{t.site_id}/jobs", json={"kind": "probe", "spec": PING})
    assert job.status_code == 201, job.text
    return str(job.json()["id"])


def test_the_fast_path_answers_as_the_route_does(make_store, serve):
    store = make_store(limits={"max_body_bytes": 4096})
    fast = serve(store)
    slow = serve(store, fast_poll=False)
    assert not hasattr(slow.app.state, "fast_poll")
    tf, tf_other = new_tenant(fast, "acme"), new_tenant(fast, "globex")
    ts = new_tenant(slow, "initech")
    key_f = tf.agent.headers["authorization"]
    key_s = ts.agent.headers["authorization"]
    tf.agent.get(PATH)  # the keys looked up and cached by the route
    tf_other.agent.get(PATH)
    ts.agent.get(PATH)
    counter = fast.app.state.fast_poll
    cases: list[tuple[str, dict[str, str], bytes | None, bool]] = [
        # (query, headers, body, answered by the fast path)
        ("", {}, None, True),
        ("?wait=0.2&spool=3", {}, None, True),
        ("?wait=0&spool=0", {}, None, True),
        ("?wait=abc", {}, None, False),
        ("?spool=-1", {}, None, False),
        ("?spool=1000000001", {}, None, False),
        ("?wait=1&wait=0", {}, None, False),
        ("?wait=%00", {}, None, False),
        ("", {"authorization": "Bearer qsa_not-a-key"}, None, False),
        ("", {"authorization": "Basic abc"}, None, False),
        ("", {"authorization": ""}, None, False),
        ("", {"content-type": "application/json"}, b"x" * 5000, False),
    ]
    for query, headers, body, taken in cases:
        before = counter.taken
        got = []
        for srv, key in ((fast, key_f), (slow, key_s)):
            h = {"authorization": key, **headers}
            with httpx.Client(base_url=srv.url, timeout=30) as c:
                got.append(_answer(c.request("GET", PATH + query, headers=h, content=body)))
        assert got[0] == got[1], (query, headers)
        assert got[0][0] in (200, 401, 413, 422), got[0]
        assert counter.taken == before + taken, (query, headers)

    # A job for one tenant is handed to its agent only: the other agent's poll (fast path)
    # answers empty, then the job's owner gets it, on both paths alike.
    _queue(tf)
    _queue(ts)
    before = counter.taken
    assert tf_other.agent.get(PATH).json() == {"jobs": []}
    r_f, r_s = tf.agent.get(PATH), ts.agent.get(PATH)
    assert counter.taken == before + 2
    assert len(r_f.json()["jobs"]) == 1
    assert _jobs_shape(r_f) == _jobs_shape(r_s)
    schema = fast.app.openapi()["paths"][PATH]["get"]
    assert {p["name"] for p in schema["parameters"]} == {"wait", "spool"}
    assert r_f.headers["content-type"] == "application/json"
    assert "application/json" in schema["responses"]["200"]["content"]

    # A job queued while the poll waits wakes it at once.
    out: dict[str, Any] = {}

    def poll() -> None:
        t0 = time.monotonic()
        out["resp"] = tf.agent.get(PATH, params={"wait": 30}, timeout=60)
        out["took"] = time.monotonic() - t0

    before = counter.taken
    th = threading.Thread(target=poll)
    th.start()
    wait_for(lambda: fast.state.waker.waiting, 10, "the poll waiting")
    job_id = _queue(tf)
    th.join(30)
    assert not th.is_alive(), "the poll did not answer"
    assert [j["id"] for j in out["resp"].json()["jobs"]] == [job_id]
    assert out["took"] < 20  # woken by the job, not by the 30 s wait
    assert counter.taken == before + 1
    # Contact and spool depth recorded by the fast path, as by the route.
    before = counter.taken
    assert tf.agent.get(PATH, params={"spool": 17}).status_code == 200
    assert counter.taken == before + 1
    agents = tf.partner.get("/api/v1/agents")
    assert agents.status_code == 200, agents.text
    [row] = [a for a in agents.json() if a["id"] == tf.agent_id]
    assert row["spool_depth"] == 17 and row["last_seen_at"], row

    # An address over its failure budget: the throttle answers for itself (the working
    # key is let through, by the whole stack on both collectors).
    for srv in (fast, slow):
        bad = httpx.Client(base_url=srv.url, headers={"authorization": "Bearer qsa_wrong"})
        statuses = [bad.get(PATH).status_code for _ in range(12)]
        assert statuses[-1] == 429 and 401 in statuses, statuses
    before = counter.taken
    a_f, a_s = _answer(tf.agent.get(PATH)), _answer(ts.agent.get(PATH))
    assert a_f == a_s and a_f[0] == 200
    assert counter.taken == before  # held back: not the fast path's to answer


@pytest.mark.parametrize(
    ("query", "parsed"),
    [
        (b"", (0.0, None)),
        (b"wait=60", (60.0, None)),
        (b"wait=12.5&spool=0", (12.5, 0)),
        (b"spool=1000000000", (0.0, 1_000_000_000)),
        (b"wait=1e3", None),
        (b"wait=-1", None),
        (b"wait=01", None),
        (b"wait=nan", None),
        (b"wait", None),
        (b"spool=1000000001", None),
        (b"spool=1&spool=1", None),
        (b"other=1", None),
        (b"wait=%ff", None),
    ],
)
def test_what_the_fast_path_parses_itself(query, parsed):
    assert poll_params(query) == parsed


def test_one_bearer_header_or_none():
    def scope(*values: bytes) -> dict[str, Any]:
        return {"headers": [(b"authorization", v) for v in values]}

    assert bearer_key(scope(b"Bearer  qsa_x ")) == "qsa_x"
    assert bearer_key(scope(b"bearer qsa_x")) == "qsa_x"
    assert bearer_key(scope()) is None
    assert bearer_key(scope(b"Bearer ")) is None
    assert bearer_key(scope(b"Basic qsa_x")) is None
    assert bearer_key(scope(b"Bearer a", b"Bearer b")) is None
