"""The agent's HTTP/1.1 client: head parsing (fuzzed), bodies by length, chunks and EOF,
over real loopback sockets; failures are HttpError with a reason."""

from __future__ import annotations

import asyncio
import gzip
from collections.abc import AsyncIterator, Callable

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agent.runtime.http import HttpError, parse_head, request


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
