"""The agent's HTTP/1.1 client: head parsing (fuzzed), bodies by length, chunks and EOF,
over real loopback sockets; failures are HttpError with a reason."""

from __future__ import annotations

import asyncio
import gzip
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agent.runtime.http import HttpError, KeptAlive, parse_head, request


def test_parse_head() -> None:
    status, reason, headers = parse_head(
        b"HTTP/1.1 201 Created\r\nContent-Type: application/json\r\nX-A: 1\r\nx-a: 2"
    )
    assert (status, reason) == (201, "Created")
    assert headers == {"content-type": "application/json", "x-a": "1, 2"}
    for bad, why in [
        (b"SIP/2.0 200 OK", "not an HTTP/1.x status line"),
        (b"HTTP/1.1 2000 OK", "bad status code"),
        (b"HTTP/1.1 200 OK\r\nno colon here", "malformed header line"),
    ]:
        with pytest.raises(HttpError, match=why):
            parse_head(bad)


@given(st.binary(max_size=300))
def test_parse_head_fails_only_with_http_error(data: bytes) -> None:
    try:
        parse_head(data)
    except HttpError:
        pass


Handler = Callable[[bytes], bytes]


async def serve(answer: Handler) -> AsyncIterator[tuple[str, list[bytes]]]:
    seen: list[bytes] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        length = 0
        for line in head.split(b"\r\n"):
            if line.lower().startswith(b"content-length:"):
                length = int(line.split(b":")[1])
        seen.append(head + await reader.readexactly(length))
        writer.write(answer(seen[-1]))
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server:
        yield f"http://127.0.0.1:{port}", seen


@pytest.fixture
async def chunked() -> AsyncIterator[tuple[str, list[bytes]]]:
    body = b'4\r\n{"a"\r\n5;ext=1\r\n: 42}\r\n0\r\nX-Trailer: t\r\n\r\n'
    async for s in serve(lambda _: b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + body):
        yield s


async def test_chunked_body_and_request_bytes(chunked: tuple[str, list[bytes]]) -> None:
    url, seen = chunked
    payload = gzip.compress(b'{"results":[]}')
    r = await request(
        "POST",
        url + "/api/v1/results",
        params={"wait": 5},
        headers={"Content-Encoding": "gzip"},
        body=payload,
    )
    assert r.status == 200 and r.json() == {"a": 42}
    head, _, sent = seen[0].partition(b"\r\n\r\n")
    assert head.startswith(b"POST /api/v1/results?wait=5 HTTP/1.1\r\n")
    assert b"Content-Length: %d" % len(payload) in head and sent == payload


async def test_body_until_eof_and_truncated_body() -> None:
    async for url, _ in serve(lambda _: b"HTTP/1.0 503 Busy\r\n\r\nlater"):
        r = await request("GET", url + "/x")
        assert (r.status, r.reason, r.text) == (503, "Busy", "later")
    async for url, _ in serve(lambda _: b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort"):
        with pytest.raises(HttpError, match="closed mid-answer"):
            await request("GET", url + "/x")


async def test_refused_and_timeout_are_http_errors() -> None:
    from agent.cli.stack import free_port

    with pytest.raises(HttpError, match=r"GET http://127.0.0.1:\d+/: "):
        await request("GET", f"http://127.0.0.1:{free_port()}/", timeout_s=2)
    server = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server:
        with pytest.raises(HttpError, match=r"no complete answer within 0\.3 s"):
            await request("GET", f"http://127.0.0.1:{port}/", timeout_s=0.3)


async def keep_alive_server(
    close_after: Callable[[int], str],
) -> AsyncIterator[tuple[str, list[int], list[bytes]]]:
    """A server answering any number of requests per connection; `close_after(n)` says what
    it does after the n-th answer on a connection: "keep", "say" (`Connection: close` in
    the answer, then close) or "silent" (close without saying). Yields the URL, the port of
    each connection accepted and every request head."""
    conns: list[int] = []
    heads: list[bytes] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conns.append(writer.get_extra_info("peername")[1])
        n = 0
        while True:
            try:
                heads.append(await reader.readuntil(b"\r\n\r\n"))
            except asyncio.IncompleteReadError:
                break
            n += 1
            then = close_after(n)
            extra = b"Connection: close\r\n" if then == "say" else b""
            writer.write(b"HTTP/1.1 200 OK\r\n" + extra + b"Content-Length: 11\r\n\r\n"
                         b'{"jobs":[]}')  # fmt: skip
            await writer.drain()
            if then != "keep":
                break
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server:
        yield f"http://127.0.0.1:{port}", conns, heads


async def test_kept_alive_connection_is_reused() -> None:
    async for url, conns, heads in keep_alive_server(lambda n: "keep"):
        conn = KeptAlive()
        for _ in range(3):
            r = await conn.request("GET", url + "/api/v1/agent/jobs", params={"wait": 60})
            assert r.json() == {"jobs": []}
        conn.close()
        assert len(conns) == 1 and conn.opened == 1 and len(heads) == 3
        assert all(b"connection:" not in h.lower() for h in heads)  # persistent by default
        # the one-shot request still says it closes
        await request("GET", url + "/")
        assert b"Connection: close\r\n" in heads[-1] and len(conns) == 2


@pytest.mark.parametrize("how", ["say", "silent"])
async def test_kept_alive_reconnects_when_the_server_closes(how: str) -> None:
    async for url, conns, heads in keep_alive_server(lambda n: how if n == 2 else "keep"):
        conn = KeptAlive()
        for _ in range(5):  # closed after the 2nd answer on each connection: 3 connections
            r = await conn.request("GET", url + "/jobs")
            assert r.status == 200
        conn.close()
        assert len(heads) == 5 and len(conns) == conn.opened == 3


async def closed_seen(conn: KeptAlive) -> None:
    """Until the client's side has read the server's close (5 s at most)."""
    deadline = asyncio.get_running_loop().time() + 5
    while conn._conn is not None and not conn._conn[0].at_eof():
        assert asyncio.get_running_loop().time() < deadline, "the close never reached the client"
        await asyncio.sleep(0.01)


async def test_kept_alive_get_resent_once_when_the_idle_connection_died() -> None:
    """The server closes without saying, and the client's next request goes out before it
    notices: the GET is sent once more on a new connection; a POST is not."""
    async for url, conns, _heads in keep_alive_server(lambda n: "silent"):
        conn = KeptAlive()
        await conn.request("GET", url + "/jobs")
        conn._usable = lambda origin, c=conn: c._conn is not None  # type: ignore[method-assign]
        await closed_seen(conn)
        r = await conn.request("GET", url + "/jobs")
        assert r.status == 200 and len(conns) == conn.opened == 2
        with pytest.raises(HttpError, match="closed"):
            await conn.request("POST", url + "/results", body=b"{}")
        assert len(conns) == 2


async def test_job_poll_keeps_its_connection_with_uvicorn() -> None:
    """The collector's server (uvicorn, its keep-alive timeout as `collector serve` leaves
    it) and the agent's job poll: one connection for polls made one after another."""
    import uvicorn

    from agent.runtime.client import CollectorClient

    clients: list[tuple[str, int]] = []

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        clients.append(scope["client"])
        body = b'{"jobs":[]}'
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"application/json"),
                                (b"content-length", str(len(body)).encode())]})  # fmt: skip
        await send({"type": "http.response.body", "body": body})

    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_config=None,
                                           lifespan="off"))  # fmt: skip
    task = asyncio.create_task(server.serve())
    deadline = asyncio.get_running_loop().time() + 10
    while not server.started:
        assert asyncio.get_running_loop().time() < deadline, "uvicorn did not start"
        await asyncio.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    client = CollectorClient(f"http://127.0.0.1:{port}", "qsa_key")
    try:
        for _ in range(3):
            assert await client.poll_jobs(1) == []
        assert len(clients) == 3 and len(set(clients)) == 1
        assert client.poll_connection.opened == 1
    finally:
        await client.aclose()
        server.should_exit = True
        await task


async def test_tls_context_made_once_per_trust_setting(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A client context loads the system's CA store when it is made (tens of ms of CPU):
    every https request used to make one; now one per verification setting and CA files
    named in the environment serves every connection."""
    import ssl

    from agent import tls
    from agent.sip.tlsutil import self_signed_pem, server_context

    cert, key = self_signed_pem()
    (tmp_path / "cert.pem").write_bytes(cert)
    (tmp_path / "key.pem").write_bytes(key)
    ctx = server_context(str(tmp_path / "cert.pem"), str(tmp_path / "key.pem"))
    made: list[int] = []
    real = ssl.create_default_context

    def counting(*a: Any, **kw: Any) -> ssl.SSLContext:
        made.append(1)
        return real(*a, **kw)

    monkeypatch.setattr(ssl, "create_default_context", counting)
    monkeypatch.setattr(tls, "_CLIENT_CONTEXTS", {})
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0, ssl=ctx)
    url = f"https://127.0.0.1:{server.sockets[0].getsockname()[1]}/"
    async with server:
        for _ in range(3):
            assert (await request("GET", url, verify=False, timeout_s=10)).text == "ok"
        assert len(made) == 1
        with pytest.raises(HttpError) as err:  # self-signed: not trusted by the system store
            await request("GET", url, timeout_s=10)
        assert err.value.kind == "tls-verify" and len(made) == 2
        # the CA file named in the environment is a new trust setting: a context of its own
        monkeypatch.setenv("SSL_CERT_FILE", str(tmp_path / "cert.pem"))
        for _ in range(2):
            assert (await request("GET", url, timeout_s=10)).text == "ok"
        assert len(made) == 3


async def test_kept_alive_requests_at_the_same_time_take_turns() -> None:
    async for url, conns, heads in keep_alive_server(lambda n: "keep"):
        conn = KeptAlive()
        got = await asyncio.gather(*(conn.request("GET", f"{url}/{i}") for i in range(4)))
        conn.close()
        assert [r.json() for r in got] == [{"jobs": []}] * 4
        assert len(conns) == conn.opened == 1 and len(heads) == 4
