"""Collector fixtures: every store-backed test runs on SQLite and on a real PostgreSQL
(a private cluster in a temp dir), plus a real uvicorn on loopback and tenant helpers."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
import uvicorn

from agent.wire.results import SCHEMA_VERSION
from collector.api.app import create_app
from collector.config import CollectorConfig
from collector.store import Store
from collector.tenants import create_partner
from tests.collector.pg import PgCluster, free_port, pg_bin

TEMPLATE_DB = "qs_template"
SCRAPE_TOKEN = "test-scrape-token-0123456789"  # the operator's /metrics token in tests


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[PgCluster]:
    bindir = pg_bin()
    if bindir is None:
        pytest.skip("PostgreSQL server binaries not found in /usr/lib/postgresql/*/bin")
    cluster = PgCluster(bindir)
    try:
        cluster.start()
        # One migrated template database; each test clones it (fast, and fresh).
        eng = sa.create_engine(cluster.url(), isolation_level="AUTOCOMMIT")
        with eng.connect() as c:
            c.exec_driver_sql(f"CREATE DATABASE {TEMPLATE_DB}")
        eng.dispose()
        store = Store(CollectorConfig(db=cluster.url(TEMPLATE_DB)))
        store.migrate()
        store.dispose()
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Any) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/collector.sqlite3"
        return
    cluster: PgCluster = request.getfixturevalue("pg_cluster")
    with cluster.database("t", TEMPLATE_DB) as url:
        yield url


@pytest.fixture
def make_store(db_url: str) -> Iterator[Callable[..., Store]]:
    stores: list[Store] = []

    def make(**config: Any) -> Store:
        config.setdefault("metrics", {"token": SCRAPE_TOKEN})
        store = Store(CollectorConfig(db=db_url, **config))
        store.migrate()
        stores.append(store)
        return store

    yield make
    for s in stores:
        s.dispose()


class LiveServer:
    """A real uvicorn serving the collector app on a loopback port, in a thread."""

    def __init__(self, store: Store, **app_kw: Any) -> None:
        self.store = store
        self.app = create_app(store, **app_kw)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        cfg = uvicorn.Config(
            self.app,
            host="127.0.0.1",
            port=self.port,
            log_config=None,
            lifespan="on",
            access_log=False,
        )
        self.server = uvicorn.Server(cfg)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    @property
    def state(self) -> Any:
        return self.app.state.qs

    @property
    def scrape_headers(self) -> dict[str, str]:
        """What the operator's Prometheus sends to /metrics."""
        return {"Authorization": f"Bearer {self.store.config.metrics.scrape_token()}"}

    def start(self) -> LiveServer:
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=20)


@pytest.fixture
def serve() -> Iterator[Callable[..., LiveServer]]:
    servers: list[LiveServer] = []

    def start(store: Store, **app_kw: Any) -> LiveServer:
        srv = LiveServer(store, **app_kw).start()
        servers.append(srv)
        return srv

    yield start
    for s in servers:
        s.stop()


@dataclass
class Tenant:
    """A partner with one customer, one site and one enrolled agent, and HTTP clients."""

    partner_id: str
    partner: httpx.Client
    customer_id: str
    site_id: str
    agent_id: str
    agent: httpx.Client

    def post(self, *results: dict[str, Any]) -> dict[str, Any]:
        r = self.agent.post("/api/v1/results", json={"results": list(results)})
        assert r.status_code == 200, r.text
        return r.json()  # type: ignore[no-any-return]


def new_tenant(srv: LiveServer, name: str, site: dict[str, Any] | None = None) -> Tenant:
    with srv.store.write() as c:
        row, key = create_partner(c, name, time.time())
    partner = httpx.Client(base_url=srv.url, headers={"Authorization": f"Bearer {key}"}, timeout=30)
    cust = partner.post("/api/v1/customers", json={"name": f"{name}-customer"})
    assert cust.status_code == 201, cust.text
    body = {"customer_id": cust.json()["id"], "name": f"{name}-hq", **(site or {})}
    s = partner.post("/api/v1/sites", json=body)
    assert s.status_code == 201, s.text
    tok = partner.post(f"/api/v1/sites/{s.json()['id']}/tokens", json={})
    assert tok.status_code == 201, tok.text
    enr = httpx.post(
        f"{srv.url}/api/v1/enroll",
        json={"token": tok.json()["token"], "hostname": f"{name}-box", "version": "0.1.0"},
    )
    assert enr.status_code == 201, enr.text
    agent = httpx.Client(
        base_url=srv.url,
        headers={"Authorization": f"Bearer {enr.json()['agent_key']}"},
        timeout=30,
    )
    return Tenant(
        row["id"], partner, cust.json()["id"], s.json()["id"], enr.json()["agent_id"], agent
    )


# Results start two hours ago and one second apart: inside the collector's accepted window
# (limits.max_result_age_s, max_result_future_s) and fresh for /metrics.
_T0 = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=2)
_seq = iter(range(10**9))


def result(
    probe: str = "icmp",
    target: str = "192.0.2.1",
    measurement: dict[str, Any] | None = None,
    success: bool = True,
    **kw: Any,
) -> dict[str, Any]:
    """A wire ProbeResult with a fresh id and increasing start times."""
    return {
        "schema_version": SCHEMA_VERSION,
        "id": str(uuid.uuid4()),
        "probe": probe,
        "target": target,
        "started_at": (_T0 + timedelta(seconds=next(_seq))).isoformat(),
        "duration_ms": 1000.0,
        "success": success,
        "measurement": measurement,
        **kw,
    }


def icmp(rtt_avg: float, loss: float = 0.0, jitter: float = 1.0, **kw: Any) -> dict[str, Any]:
    m = {
        "sent": 10,
        "received": 10,
        "loss_pct": loss,
        "jitter_ms": jitter,
        "rtt_ms": {
            "min": rtt_avg / 2,
            "avg": rtt_avg,
            "median": rtt_avg,
            "p95": rtt_avg,
            "max": rtt_avg * 2,
        },
    }
    return result("icmp", measurement=m, **kw)


def web_user(
    srv: LiveServer, key: str, role: str = "admin", customer_id: str | None = None,
    email: str | None = None,
) -> tuple[str, str]:  # fmt: skip
    """A user of the partner whose API key is `key`, with a password: (e-mail, password)."""
    from collector.tenants import partner_by_key
    from collector.users import create_user

    email = email or f"{role}-{uuid.uuid4().hex[:8]}@example.com"
    password = "pw-" + uuid.uuid4().hex
    with srv.store.write() as c:
        pid = partner_by_key(c, key)["id"]
        create_user(c, pid, email, role, time.time(), customer_id, password=password)
    return email, password


def form_fields(html: str, action: str) -> dict[str, str]:
    """The hidden fields of the page's form posting to `action` (its anti-forgery token)."""
    import re

    m = re.search(rf'<form[^>]*action="{re.escape(action)}"[^>]*>(.*?)</form>', html, re.S)
    assert m, f"no form posting to {action}"
    return dict(re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)"', m.group(1)))


def web_login_as(srv: LiveServer, email: str, password: str) -> httpx.Client:
    """A client logged in on the support pages with this e-mail and password."""
    ui = httpx.Client(base_url=srv.url, timeout=30)
    form = form_fields(ui.get("/ui/login").text, "/ui/login")
    r = ui.post("/ui/login", data={**form, "email": email, "password": password, "next": "/ui/"})
    assert r.status_code == 303, r.text
    return ui


def web_login(srv: LiveServer, key: str, role: str = "admin",
              customer_id: str | None = None) -> httpx.Client:  # fmt: skip
    """A new user (`role`) of the partner whose API key is `key`, logged in on the pages."""
    return web_login_as(srv, *web_user(srv, key, role, customer_id))
