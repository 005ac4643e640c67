"""A small asyncio HTTP/1.1 client for the agent's few calls to the collector.

One request per connection (`Connection: close`), or one after another on a kept-alive
connection (`KeptAlive`, the job long-poll's); bodies by Content-Length, chunked encoding
or end of stream, TLS through the standard library. It exists to keep the agent
process light (an HTTP client library costs several MB of resident memory at idle).
`parse_head` is pure and fails only with `HttpError`.
"""

from __future__ import annotations

import asyncio
import errno
import json
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import SplitResult, urlencode, urlsplit

from agent.tls import client_context, loaded_ssl

MAX_HEAD = 64 * 1024
MAX_BODY = 32 * 1024 * 1024


class HttpError(Exception):
    """The exchange failed: no connection, a timeout, or an answer that is not HTTP/1.x.
    `kind` says which, for advice: "dns", "refused", "unreachable", "connect-timeout",
    "tls-verify", "tls", "timeout", "closed", "protocol" or "url"."""

    def __init__(self, message: str, kind: str = "protocol") -> None:
        super().__init__(message)
        self.kind = kind


def _connect_failure(exc: OSError, host: str, port: int) -> HttpError:
    """The exception of a failed connect or TLS handshake, as an HttpError naming the cause."""
    where = f"{host}:{port}"
    ssl = loaded_ssl()  # None: no TLS was tried, so this is no TLS error
    if ssl is not None and isinstance(exc, ssl.SSLCertVerificationError):
        return HttpError(f"the TLS certificate of {where} is not trusted ({exc.verify_message})",
                         "tls-verify")  # fmt: skip
    if ssl is not None and isinstance(exc, ssl.SSLError):
        return HttpError(f"TLS with {where} failed ({exc.reason or exc})", "tls")
    if isinstance(exc, socket.gaierror):
        return HttpError(f"the host name {host!r} does not resolve", "dns")
    text = str(exc)
    if exc.errno == errno.ECONNREFUSED or isinstance(exc, ConnectionRefusedError) or (
        exc.errno is None and "Connect call failed" in text
    ):  # fmt: skip
        return HttpError(f"nothing accepts connections at {where} (connection refused)", "refused")
    if exc.errno in (errno.ENETUNREACH, errno.EHOSTUNREACH, errno.EADDRNOTAVAIL):
        return HttpError(f"{where} is unreachable ({exc.strerror})", "unreachable")
    return HttpError(f"cannot connect to {where}: {exc.strerror or exc}", "unreachable")


@dataclass(frozen=True)
class Response:
    status: int
    reason: str
    headers: dict[str, str]  # names in lower case; repeated headers joined with ", "
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", "replace")


def parse_head(data: bytes) -> tuple[int, str, dict[str, str]]:
    """Status line and headers of a response head (without the blank line)."""
    try:
        text = data.decode("latin-1")
    except UnicodeDecodeError:  # pragma: no cover - latin-1 decodes every byte
        raise HttpError("response head is not text") from None
    lines = text.split("\r\n")
    parts = lines[0].split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/1."):
        raise HttpError(f"not an HTTP/1.x status line: {lines[0][:80]!r}")
    if not (len(parts[1]) == 3 and parts[1].isdigit()):
        raise HttpError(f"bad status code {parts[1][:10]!r}")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        if not line:
            continue
        name, sep, value = line.partition(":")
        if not sep or not name or name != name.strip():
            raise HttpError(f"malformed header line {line[:80]!r}")
        key = name.lower()
        value = value.strip()
        headers[key] = f"{headers[key]}, {value}" if key in headers else value
    return int(parts[1]), parts[2] if len(parts) > 2 else "", headers


async def _read_chunked(reader: asyncio.StreamReader, max_body: int) -> bytes:
    body = bytearray()
    while True:
        line = await reader.readuntil(b"\r\n")
        size_text = line.split(b";", 1)[0].strip()
        try:
            size = int(size_text, 16)
        except ValueError:
            raise HttpError(f"bad chunk size {size_text[:20]!r}") from None
        if size == 0:
            while (await reader.readuntil(b"\r\n")) != b"\r\n":  # trailers
                pass
            return bytes(body)
        if len(body) + size > max_body:
            raise HttpError("response body is too large")
        body += await reader.readexactly(size)
        if await reader.readexactly(2) != b"\r\n":
            raise HttpError("chunk is not followed by CRLF")


async def _read_body(
    reader: asyncio.StreamReader,
    method: str,
    status: int,
    headers: dict[str, str],
    max_body: int = MAX_BODY,
) -> bytes:
    if method == "HEAD" or status in (204, 304) or 100 <= status < 200:
        return b""
    if "chunked" in headers.get("transfer-encoding", "").lower():
        return await _read_chunked(reader, max_body)
    if "content-length" in headers:
        try:
            n = int(headers["content-length"])
        except ValueError:
            raise HttpError(f"bad Content-Length {headers['content-length'][:20]!r}") from None
        if not 0 <= n <= max_body:
            raise HttpError(f"Content-Length {n} is out of range (at most {max_body})")
        return await reader.readexactly(n)
    body = bytearray()
    while len(body) <= max_body:
        chunk = await reader.read(65536)
        if not chunk:
            return bytes(body)
        body += chunk
    raise HttpError(f"response body is larger than {max_body} bytes")


def _prepare(
    method: str, url: str, params: dict[str, Any] | None, headers: dict[str, str] | None,
    body: bytes, keep: bool,
) -> tuple[SplitResult, int, bytes]:  # fmt: skip
    """The URL's parts, its port and the request's bytes (head and body)."""
    u = urlsplit(url)
    if u.scheme not in ("http", "https") or not u.hostname:
        raise HttpError(f"not an http(s) URL: {url!r}", "url")
    port = u.port or (443 if u.scheme == "https" else 80)
    target = (u.path or "/") + (f"?{u.query}" if u.query else "")
    if params:
        target += ("&" if "?" in target else "?") + urlencode(params)
    host = u.hostname if ":" not in u.hostname else f"[{u.hostname}]"
    hdrs = {"Host": host if u.port is None else f"{host}:{u.port}"}
    if not keep:  # HTTP/1.1 keeps a connection open unless a side says otherwise
        hdrs["Connection"] = "close"
    hdrs.update(headers or {})
    if body or method in ("POST", "PUT", "PATCH"):
        hdrs["Content-Length"] = str(len(body))
    head = f"{method} {target} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in hdrs.items())
    return u, port, head.encode("latin-1") + b"\r\n" + body


class _Steps:
    """How far an exchange got, for the message of a timeout."""

    connected = False
    handshake = False


async def _open(
    u: SplitResult, port: int, verify: bool, steps: _Steps
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    assert u.hostname is not None  # _prepare checked it
    try:
        reader, writer = await asyncio.open_connection(u.hostname, port, limit=MAX_HEAD)
        steps.connected = True
        if u.scheme == "https":
            steps.handshake = True
            try:
                await writer.start_tls(client_context(verify), server_hostname=u.hostname)
            except BaseException:
                writer.close()
                raise
            steps.handshake = False
    except OSError as exc:
        raise _connect_failure(exc, u.hostname, port) from None
    return reader, writer


async def _exchange(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, method: str, data: bytes,
    max_body: int,
) -> Response:  # fmt: skip
    writer.write(data)
    await writer.drain()
    raw = await reader.readuntil(b"\r\n\r\n")
    status, reason, rh = parse_head(raw[:-4])
    while status == 100:  # an interim answer: the real one follows
        raw = await reader.readuntil(b"\r\n\r\n")
        status, reason, rh = parse_head(raw[:-4])
    return Response(status, reason, rh, await _read_body(reader, method, status, rh, max_body))


async def _guarded(
    method: str, url: str, u: SplitResult, port: int, timeout_s: float,
    run: Callable[[_Steps], Awaitable[Response]],
) -> Response:  # fmt: skip
    """`run` within `timeout_s`, anything but a complete response raised as an HttpError."""
    steps = _Steps()
    try:
        async with asyncio.timeout(timeout_s):
            return await run(steps)
    except TimeoutError:
        if steps.handshake:
            raise HttpError(f"{method} {url}: no TLS handshake with {u.hostname}:{port} within "
                            f"{timeout_s:g} s", "tls") from None  # fmt: skip
        if not steps.connected:
            raise HttpError(f"{method} {url}: no connection to {u.hostname}:{port} within "
                            f"{timeout_s:g} s", "connect-timeout") from None  # fmt: skip
        raise HttpError(f"{method} {url}: no complete answer within {timeout_s:g} s",
                        "timeout") from None  # fmt: skip
    except HttpError as exc:
        if exc.kind == "protocol":
            raise
        raise HttpError(f"{method} {url}: {exc}", exc.kind) from None
    except asyncio.IncompleteReadError:
        raise HttpError(f"{method} {url}: the connection closed mid-answer", "closed") from None
    except asyncio.LimitOverrunError:
        raise HttpError(f"{method} {url}: response head is too large") from None
    except OSError as exc:  # reset mid-exchange
        raise HttpError(f"{method} {url}: {exc.strerror or exc}", "closed") from None


async def request(
    method: str,
    url: str,
    *,
    params: dict[str, Any] | None = None,
    headers: dict[str, str] | None = None,
    body: bytes = b"",
    timeout_s: float = 15.0,
    verify: bool = True,
    max_body: int = MAX_BODY,
) -> Response:
    """One HTTP exchange on a connection of its own; raises HttpError for anything but a
    complete HTTP response (the whole exchange within `timeout_s`, a body of at most
    `max_body` bytes)."""
    u, port, data = _prepare(method, url, params, headers, body, keep=False)
    writer: asyncio.StreamWriter | None = None

    async def run(steps: _Steps) -> Response:
        nonlocal writer
        reader, writer = await _open(u, port, verify, steps)
        return await _exchange(reader, writer, method, data, max_body)

    try:
        return await _guarded(method, url, u, port, timeout_s, run)
    finally:
        if writer is not None:
            writer.close()


class KeptAlive:
    """One connection kept open for requests made one after another to one origin (the job
    long-poll: a poll every `jobs.wait_s`, each as soon as the last is answered, so the
    server's idle keep-alive timeout, uvicorn's 5 s, does not run out between them). A new
    connection is opened when there is none, the origin changes, or the server closed it
    (it said `Connection: close`, ended the body by closing, or closed it while idle). A GET
    that finds its reused connection closed under it is sent once more on a new one.
    Requests made at the same time take turns. `opened` counts the connections made."""

    def __init__(self) -> None:
        self.opened = 0
        self._turn = asyncio.Lock()
        self._conn: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None
        self._origin: tuple[str, str, int] | None = None

    def close(self) -> None:
        if self._conn is not None:
            self._conn[1].close()
        self._conn = self._origin = None

    def _usable(self, origin: tuple[str, str, int]) -> bool:
        if self._conn is None or self._origin != origin:
            return False
        reader, writer = self._conn
        return not (reader.at_eof() or writer.is_closing() or reader.exception() is not None)

    async def request(
        self,
        method: str,
        url: str,
        *,
        params: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
        body: bytes = b"",
        timeout_s: float = 15.0,
        verify: bool = True,
        max_body: int = MAX_BODY,
    ) -> Response:
        """As `request()`, on the kept connection (`timeout_s` counts from this request's
        turn)."""
        u, port, data = _prepare(method, url, params, headers, body, keep=True)
        async with self._turn:
            return await self._request(method, url, u, port, data, timeout_s, verify, max_body)

    async def _request(
        self, method: str, url: str, u: SplitResult, port: int, data: bytes, timeout_s: float,
        verify: bool, max_body: int,
    ) -> Response:  # fmt: skip
        assert u.hostname is not None
        origin = (u.scheme, u.hostname, port)
        for attempt in (1, 2):
            reused = self._usable(origin)
            if not reused:
                self.close()

            async def run(steps: _Steps) -> Response:
                if self._conn is None:
                    self._conn = await _open(u, port, verify, steps)
                    self._origin = origin
                    self.opened += 1
                steps.connected = True
                return await _exchange(*self._conn, method, data, max_body)

            try:
                resp = await _guarded(method, url, u, port, timeout_s, run)
            except HttpError as exc:
                self.close()
                if reused and attempt == 1 and exc.kind == "closed" and method == "GET":
                    continue  # the server closed the idle connection as the request went out
                raise
            except BaseException:  # cancelled mid-exchange: the connection is in no state
                self.close()
                raise
            if self._conn is not None and (
                "close" in resp.headers.get("connection", "").lower() or self._conn[0].at_eof()
            ):
                self.close()
            return resp
        raise AssertionError("unreachable: the second attempt returns or raises")
