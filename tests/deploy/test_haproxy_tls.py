"""The TLS example of docs/security.md, run for real: HAProxy (deploy/haproxy/haproxy.cfg,
unchanged) terminates HTTPS with a certificate made here, in front of two collector
replicas on one database; plain HTTP is redirected, /metrics and the API docs are not
reachable from the public side, and the partner and agent APIs work through it."""

from __future__ import annotations

import asyncio
import os
import shutil
import ssl
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from collector.config import CollectorConfig
from collector.store import Store
from tests.collector.conftest import LiveServer, new_tenant
from tests.collector.pg import free_port

CFG = Path(__file__).resolve().parents[2] / "deploy" / "haproxy" / "haproxy.cfg"


def _need(tool: str) -> str:
    path = shutil.which(tool)
    if path is None:
        pytest.skip(f"{tool} is not installed (.ci/run installs it)")
    return path


def _cert(tmp: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1: (the PEM HAProxy serves, the CA file)."""
    key, crt = tmp / "key.pem", tmp / "crt.pem"
    subprocess.run(
        [_need("openssl"), "req", "-x509", "-newkey", "ec", "-pkeyopt",
         "ec_paramgen_curve:prime256v1", "-nodes", "-days", "2", "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(crt)],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    both = tmp / "collector.pem"
    both.write_text(crt.read_text() + key.read_text())
    return both, crt


def _env(https: int, http: int, pem: Path, a: int, b: int) -> dict[str, str]:
    return {
        **os.environ,
        "QS_HTTPS_BIND": f"127.0.0.1:{https}",
        "QS_HTTP_BIND": f"127.0.0.1:{http}",
        "QS_CERT": str(pem),
        "QS_COLLECTOR_1": f"127.0.0.1:{a}",
        "QS_COLLECTOR_2": f"127.0.0.1:{b}",
    }


def _ctx(ca: Path) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(ca))


def _wait_ready(url: str, ca: Path, deadline_s: float = 30.0) -> None:
    deadline = time.monotonic() + deadline_s
    last = ""
    while time.monotonic() < deadline:
        try:
            r = httpx.get(url, verify=_ctx(ca), timeout=5)
            if r.status_code == 200:
                return
            last = f"{r.status_code} {r.text[:200]}"
        except httpx.HTTPError as exc:
            last = repr(exc)
        time.sleep(0.1)
    raise AssertionError(f"{url} never answered 200 through HAProxy: {last}")


@dataclass
class Proxied:
    url: str  # the public HTTPS side
    ca: Path  # the certificate to trust
    http_port: int  # the plain-HTTP side, which only redirects
    log: Path  # HAProxy's log
    replicas: list[LiveServer]


@pytest.fixture
def proxied(tmp_path: Path) -> Iterator[Proxied]:
    haproxy = _need("haproxy")
    pem, ca = _cert(tmp_path)
    store = Store(CollectorConfig(db=f"sqlite:///{tmp_path}/collector.sqlite3"))
    store.migrate()
    replicas = [LiveServer(store, background=False).start() for _ in range(2)]
    https, http = free_port(), free_port()
    env = _env(https, http, pem, replicas[0].port, replicas[1].port)
    check = subprocess.run([haproxy, "-c", "-f", str(CFG)], env=env, capture_output=True,
                           text=True, timeout=60)  # fmt: skip
    assert check.returncode == 0, check.stdout + check.stderr
    log = tmp_path / "haproxy.log"
    with log.open("w") as out:
        proc = subprocess.Popen([haproxy, "-db", "-f", str(CFG)], env=env, stdout=out,
                                stderr=subprocess.STDOUT)  # fmt: skip
    try:
        _wait_ready(f"https://127.0.0.1:{https}/readyz", ca)
        yield Proxied(f"https://127.0.0.1:{https}", ca, http, log, replicas)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
        for r in replicas:
            r.stop()
        store.dispose()


def test_config_check_fails_on_a_broken_file(tmp_path: Path) -> None:
    haproxy = _need("haproxy")
    pem, _ = _cert(tmp_path)
    bad = tmp_path / "haproxy.cfg"
    bad.write_text(CFG.read_text().replace("balance roundrobin", "balance sideways"))
    env = _env(free_port(), free_port(), pem, free_port(), free_port())
    out = subprocess.run([haproxy, "-c", "-f", str(bad)], env=env, capture_output=True,
                         text=True, timeout=60)  # fmt: skip
    assert out.returncode != 0
    assert "balance" in out.stdout + out.stderr, out.stderr


def test_collector_behind_tls(proxied: Proxied) -> None:
    url, ca, http_port = proxied.url, proxied.ca, proxied.http_port
    with httpx.Client(base_url=url, verify=_ctx(ca), timeout=30) as c:
        r = c.get("/healthz")
        assert r.status_code == 200
        assert r.headers["strict-transport-security"].startswith("max-age=")
        assert r.http_version == "HTTP/1.1"
        # The operator's endpoints are not on the public side.
        for path in ("/metrics", "/openapi.json", "/docs", "/redoc"):
            assert c.get(path).status_code == 404, path
    # Plain HTTP only redirects.
    r = httpx.get(f"http://127.0.0.1:{http_port}/api/v1/customers", follow_redirects=False)
    assert r.status_code == 301
    assert r.headers["location"].startswith("https://127.0.0.1")
    # A certificate the client does not trust is refused (nothing falls back to plain).
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{url}/healthz", timeout=10)


def test_partner_and_agent_through_tls(proxied: Proxied) -> None:
    url, ca = proxied.url, proxied.ca
    tenant = new_tenant(proxied.replicas[0], "tls")
    headers = {"Authorization": tenant.partner.headers["Authorization"]}
    with httpx.Client(base_url=url, verify=_ctx(ca), timeout=30, headers=headers) as c:
        for _ in range(4):  # round robin: both replicas answer, from one database
            r = c.get("/api/v1/sites")
            assert r.status_code == 200, r.text
            assert [s["id"] for s in r.json()] == [tenant.site_id]
        assert c.get("/api/v1/sites", headers={"Authorization": "Bearer nope"}).status_code == 401
    agent_headers = {"Authorization": tenant.agent.headers["Authorization"]}
    with httpx.Client(base_url=url, verify=_ctx(ca), timeout=30, headers=agent_headers) as a:
        r = a.get("/api/v1/agent/jobs", params={"wait": 0})
        assert r.status_code == 200, r.text
        assert r.json() == {"jobs": []}
    # Both replicas answered (HAProxy logs the server of each request).
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        text = proxied.log.read_text()
        if "collectors/c1" in text and "collectors/c2" in text:
            break
        time.sleep(0.1)
    else:
        raise AssertionError(f"not both replicas in HAProxy's log:\n{text[-2000:]}")


def test_agent_job_poll_keeps_its_tls_connection(
    proxied: Proxied, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The agent's job polls, one after another through HAProxy's TLS: one connection (one
    TLS handshake) carries them all."""
    from agent.runtime.client import CollectorClient

    tenant = new_tenant(proxied.replicas[0], "keep")
    key = tenant.agent.headers["Authorization"].removeprefix("Bearer ")
    monkeypatch.setenv("SSL_CERT_FILE", str(proxied.ca))  # the agent trusts the example's CA

    async def polls() -> int:
        client = CollectorClient(proxied.url, key)
        try:
            for _ in range(3):
                assert await client.poll_jobs(1) == []
            return client.poll_connection.opened
        finally:
            await client.aclose()

    assert asyncio.run(polls()) == 1
