"""Requests to partner-given URLs against real servers on loopback: plain http and private
addresses only for hosts the operator allows, no redirect followed, answers bounded in
size, one deadline per delivery, secrets of a URL never in an error; and the master keys'
config (a bad key named by its position, the delivery's deadline within the lease)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from cryptography.fernet import Fernet

from collector.config import ChannelsConfig, ConfigFileError, parse_config
from collector.egress import Egress, url_problem
from collector.notifiers import DeliveryError
from collector.secretbox import SecretBox, SecretError

BIG = 4096


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    release = threading.Event()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path.startswith("/redirect"):
                self.send_response(302)
                self.send_header("Location", "http://169.254.169.254/latest/meta-data/")
                self.send_header("Content-Length", "0")
                self.end_headers()
            elif self.path.startswith("/big"):
                self.send_response(200)
                self.send_header("Content-Length", str(BIG + 1))
                self.end_headers()
                self.wfile.write(b"x" * (BIG + 1))
            elif self.path.startswith("/slow"):
                release.wait(10)
            else:
                self.send_response(404)
                self.send_header("Content-Length", "9")
                self.end_headers()
                self.wfile.write(b"not found")

        def log_message(self, *args: Any) -> None:
            pass

    srv = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    srv.daemon_threads = True
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{srv.server_address[1]}"
    release.set()
    srv.shutdown()
    srv.server_close()


def _cfg(**kw: Any) -> ChannelsConfig:
    return ChannelsConfig(max_response_bytes=BIG, **kw)


def test_urls_are_checked_before_anything_is_sent(server: str) -> None:
    cfg = _cfg()
    assert url_problem(cfg, "https://psa.example.com/x") is None
    assert "must be https://" in str(url_problem(cfg, server))
    assert "private" in str(url_problem(cfg, "https://169.254.169.254/"))
    with Egress(cfg) as eg, pytest.raises(DeliveryError, match="must be https"):
        eg.request("GET", f"{server}/redirect", "t")
    # https to a name that resolves to loopback: refused after resolution, nothing sent.
    with Egress(cfg) as eg, pytest.raises(DeliveryError, match=r"resolves to (127\.0\.0\.1|::1),"):
        eg.request("GET", "https://localhost:1/hook?token=SECRET", "t")


def test_redirects_sizes_and_the_deadline(server: str) -> None:
    cfg = _cfg(allow_hosts=["127.0.0.1"], timeout_s=1)
    with Egress(cfg) as eg:
        with pytest.raises(DeliveryError, match="redirect") as red:
            eg.request("GET", f"{server}/redirect?key=SECRET", "t")
        with pytest.raises(DeliveryError, match=f"larger than {BIG} bytes"):
            eg.request("GET", f"{server}/big", "t")
        with pytest.raises(DeliveryError, match="HTTP 404") as nf:
            eg.request("GET", f"{server}/nothing/SECRET", "t")
    t0 = time.monotonic()
    with Egress(cfg) as eg, pytest.raises(DeliveryError) as slow:
        eg.request("GET", f"{server}/slow/SECRET", "t")
    assert time.monotonic() - t0 < 5  # one deadline (1 s), not the server's pace
    for exc in (red, nf, slow):
        assert "SECRET" not in str(exc.value)


def test_master_keys_are_checked_and_rotate(monkeypatch: pytest.MonkeyPatch) -> None:
    k1, k2 = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    with pytest.raises(ConfigFileError, match="key 2 is not a Fernet key"):
        SecretBox.from_config(ChannelsConfig(master_keys=[k1, "not-a-key"]))
    old = SecretBox([k1])
    token = old.seal({"private_key": "p"})
    both = SecretBox.from_config(ChannelsConfig(master_keys=[k2, k1]))
    assert both is not None and both.open(token) == {"private_key": "p"}
    rotated = both.rotate(token)
    assert SecretBox([k2]).open(rotated) == {"private_key": "p"}
    with pytest.raises(SecretError, match="no longer configured"):
        SecretBox([k2]).open(token)
    monkeypatch.setenv("QOS_SCOUT_MASTER_KEYS", f" {k2} ,{k1}")
    assert ChannelsConfig(master_keys=["ignored"]).keys() == [k2, k1]
    with pytest.raises(ConfigFileError, match=r"channels.timeout_s \(30 s\) must be shorter"):
        parse_config({"channels": {"timeout_s": 30}, "outbox": {"lease_s": 30}})
