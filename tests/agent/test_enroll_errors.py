"""Enrollment that fails says why and what to check next, in one line: a collector that is
down or mistyped, a name that does not resolve, a certificate this host does not trust, the
wrong scheme, a used token. Real servers on loopback."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest

from agent.cli.stack import Stack, free_port
from agent.runtime.client import AuthError, CollectorError, enroll
from agent.sip.tlsutil import server_context


def closed_port() -> int:
    return free_port()  # bound and released: nothing listens there


async def test_a_collector_that_is_down_names_the_address_and_what_to_check() -> None:
    port = closed_port()
    with pytest.raises(CollectorError) as err:
        await enroll(f"http://127.0.0.1:{port}", "tok", timeout_s=5)
    msg = str(err.value)
    assert f"nothing accepts connections at 127.0.0.1:{port} (connection refused)" in msg
    assert "check the host and port of the collector URL" in msg
    assert "`qos-scout collector serve`" in msg and "\n" not in msg


async def test_a_mistyped_host_name_says_it_does_not_resolve() -> None:
    with pytest.raises(CollectorError) as err:
        await enroll("http://no-such-host.invalid:8443", "tok", timeout_s=5)
    msg = str(err.value)
    assert "the host name 'no-such-host.invalid' does not resolve" in msg
    assert "check the spelling of the collector URL" in msg


@pytest.fixture
async def serve() -> AsyncIterator[Callable[..., asyncio.Future[int]]]:
    servers: list[asyncio.Server] = []

    async def start(handler: Callable[..., object], **kw: object) -> int:
        srv = await asyncio.start_server(handler, "127.0.0.1", 0, **kw)  # type: ignore[arg-type]
        servers.append(srv)
        return int(srv.sockets[0].getsockname()[1])

    yield start  # type: ignore[misc]
    for s in servers:
        s.close()
        await s.wait_closed()


async def _http_answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """An HTTP server's manners: 200 to a request, 400 to bytes that are not HTTP (as
    uvicorn answers a TLS ClientHello)."""
    try:
        first = await reader.read(1)
        if first != b"P":
            writer.write(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
            return
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}")
        await writer.drain()
    except (OSError, asyncio.IncompleteReadError):
        pass
    finally:
        writer.close()


async def test_an_untrusted_certificate_says_so_and_how_to_trust_it(serve) -> None:  # type: ignore[no-untyped-def]
    port = await serve(_http_answer, ssl=server_context())
    with pytest.raises(CollectorError) as err:
        await enroll(f"https://127.0.0.1:{port}", "tok", timeout_s=5)
    msg = str(err.value)
    assert f"the TLS certificate of 127.0.0.1:{port} is not trusted (" in msg
    assert "install the CA that signed the collector's certificate" in msg
    assert "collector.verify_tls: false" in msg


async def test_https_to_a_plain_http_collector_points_at_the_scheme(serve) -> None:  # type: ignore[no-untyped-def]
    port = await serve(_http_answer)
    with pytest.raises(CollectorError) as err:
        await enroll(f"https://127.0.0.1:{port}", "tok", timeout_s=5)
    msg = str(err.value)
    assert f"TLS with 127.0.0.1:{port} failed (" in msg
    assert "check the URL's scheme: https:// for a collector behind TLS" in msg


async def test_a_server_that_never_completes_the_handshake_points_at_the_scheme(serve) -> None:  # type: ignore[no-untyped-def]
    done = asyncio.Event()

    async def mute(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await done.wait()
        writer.close()

    port = await serve(mute)
    with pytest.raises(CollectorError) as err:
        await enroll(f"https://127.0.0.1:{port}", "tok", timeout_s=0.5)
    done.set()
    assert f"no TLS handshake with 127.0.0.1:{port} within 0.5 s" in str(err.value)
    assert "check the URL's scheme" in str(err.value)


async def test_a_port_that_accepts_but_never_answers_is_a_timeout_with_advice(serve) -> None:  # type: ignore[no-untyped-def]
    done = asyncio.Event()

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await done.wait()
        writer.close()

    port = await serve(silent)
    with pytest.raises(CollectorError) as err:
        await enroll(f"http://127.0.0.1:{port}", "tok", timeout_s=0.5)
    done.set()
    assert "no complete answer within 0.5 s" in str(err.value)
    assert "accepted the connection but did not answer in time" in str(err.value)


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Stack]:
    s = Stack(tmp_path)
    try:
        s.start_collector()
        yield s
    finally:
        s.close()


def test_a_used_token_says_so_and_how_to_get_a_new_one(stack: Stack, tmp_path: Path) -> None:
    token = stack.create_tenancy("p", "s")
    cfg = stack.write_agent_config({})
    stack.enroll(cfg, token)
    with pytest.raises(AuthError) as err:
        asyncio.run(enroll(stack.collector_url, token, timeout_s=10))
    msg = str(err.value)
    assert "enrollment token was already used" in msg
    assert "`qos-scout collector token create --site SITE_ID`" in msg
    # the command prints it as one line and exits 2 (like every CLI error), no traceback
    out = stack.run_cli("agent", "enroll", "--config", str(cfg), "--collector",
                        stack.collector_url, "--token", token, "--force", check=False)  # fmt: skip
    assert out.returncode == 2, out
    assert "enrollment token was already used" in out.stderr
    assert "Traceback" not in out.stderr and len(out.stderr.strip().splitlines()) == 1


def test_the_enroll_command_against_a_down_collector_is_one_line(tmp_path: Path) -> None:
    s = Stack(tmp_path)
    port = closed_port()
    s.collector_url = f"http://127.0.0.1:{port}"
    cfg = s.write_agent_config({})
    out = s.run_cli("agent", "enroll", "--config", str(cfg), "--collector",
                    f"http://127.0.0.1:{port}", "--token", "x", check=False)  # fmt: skip
    assert out.returncode == 2
    line = out.stderr.strip()
    assert len(line.splitlines()) == 1 and "connection refused" in line
    assert "that the collector is running" in line, line
