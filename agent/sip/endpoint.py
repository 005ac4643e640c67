"""A SIP endpoint: one transport, client transactions driven on asyncio, requests to a handler.

`SipEndpoint.request()` sends a request in a client transaction (retransmitting over UDP)
and returns the final response; provisional responses go to a callback. Incoming requests
go to `on_request(request, peer)`; `respond()` answers them, and retransmitted requests are
answered again from a cache. The endpoint learns its public address from the `received`
and `rport` parameters of the Via in responses (RFC 3581).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

from agent.sip.headers import Via, format_hostport, new_branch
from agent.sip.message import SipMessage, SipParseError, is_number
from agent.sip.transaction import T1, ClientTransaction
from agent.sip.transport import Addr, Transport, local_address_towards

log = logging.getLogger(__name__)

OnRequest = Callable[[SipMessage, Addr], Awaitable[None] | None]


class SipTimeoutError(Exception):
    """A client transaction got no final response (timer B or F fired)."""


class SipEndpoint:
    """Client and server sides sharing one transport."""

    def __init__(self, transport: Transport, *, on_request: OnRequest | None = None) -> None:
        self.transport = transport
        transport.on_message = self._received
        self.on_request = on_request
        self._pending: dict[tuple[str, str], asyncio.Queue[SipMessage]] = {}
        self._answered: dict[tuple[str, str, str], SipMessage] = {}
        self.public_address: Addr | None = None
        self.parse_errors = 0
        self._tasks: set[asyncio.Task[None]] = set()

    # ------------------------------------------------------------------ addresses

    def via_for(self, peer: Addr) -> Via:
        """A fresh Via for a request to `peer`, with rport (RFC 3581)."""
        host, port = self.transport.local
        if host in ("0.0.0.0", "::"):
            host = local_address_towards(peer)
        return Via(self.transport.name, host, port, {"branch": new_branch(), "rport": None})

    def contact_hostport(self, peer: Addr) -> str:
        via = self.via_for(peer)
        return format_hostport(via.host, via.port)

    # ------------------------------------------------------------------ receive

    def _received(self, data: bytes, peer: Addr, transport: Transport) -> None:
        try:
            msg = SipMessage.parse(data, stream=transport.reliable)
        except SipParseError as exc:
            self.parse_errors += 1
            log.info("dropped a malformed SIP message from %s:%d: %s", peer[0], peer[1], exc)
            return
        if msg.is_request:
            self._request_received(msg, peer)
            return
        try:
            via = Via.parse(msg.get_all("Via")[0])
            key = (via.branch or "", msg.cseq[1])
        except (SipParseError, IndexError) as exc:
            self.parse_errors += 1
            log.info("dropped a response with a bad Via/CSeq from %s: %s", peer, exc)
            return
        self._learn_public_address(via)
        queue = self._pending.get(key)
        if queue is not None:
            queue.put_nowait(msg)

    def _learn_public_address(self, via: Via) -> None:
        received = via.params.get("received")
        rport = via.params.get("rport")
        if received or rport:
            host = received or via.host
            port = int(rport) if rport and is_number(rport) else (via.port or 5060)
            if (host, port) != self.public_address:
                self.public_address = (host, port)
                if (host, port) != (via.host, via.port):
                    log.info("the far end sees us at %s:%d (received/rport)", host, port)

    def _request_received(self, msg: SipMessage, peer: Addr) -> None:
        try:
            branch = Via.parse(msg.get_all("Via")[0]).branch or ""
            key = (branch, msg.cseq[1], msg.call_id)
        except (SipParseError, IndexError):
            self.parse_errors += 1
            return
        cached = self._answered.get(key)
        if cached is not None and msg.method != "ACK":
            self._spawn(self.transport.send(bytes(cached), peer))
            return
        if self.on_request is not None:
            result = self.on_request(msg, peer)
            if asyncio.iscoroutine(result):
                self._spawn(result)

    def _spawn(self, coro: Awaitable[None]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # ------------------------------------------------------------------ server side

    async def respond(
        self, request: SipMessage, peer: Addr, status: int, reason: str, **kw: object
    ) -> SipMessage:
        """Send a response to `request` (copying Via/From/To/Call-ID/CSeq), cache finals."""
        resp = make_response(request, status, reason, peer, **kw)  # type: ignore[arg-type]
        await self.send_response(request, resp, peer)
        return resp

    async def send_response(self, request: SipMessage, resp: SipMessage, peer: Addr) -> None:
        if (resp.status or 0) >= 200:
            branch = Via.parse(request.get_all("Via")[0]).branch or ""
            key = (branch, request.cseq[1], request.call_id)
            self._answered[key] = resp
            if len(self._answered) > 4096:
                self._answered.pop(next(iter(self._answered)))
        await self.transport.send(bytes(resp), peer)  # to the source: rport (RFC 3581)

    # ------------------------------------------------------------------ client side

    async def request(
        self,
        msg: SipMessage,
        peer: Addr,
        *,
        on_provisional: Callable[[SipMessage, float], None] | None = None,
        t1: float = T1,
    ) -> tuple[SipMessage, float]:
        """Run a client transaction; return the final response and when it arrived."""
        branch = Via.parse(msg.get_all("Via")[0]).branch or ""
        key = (branch, msg.cseq[1])
        queue: asyncio.Queue[SipMessage] = asyncio.Queue()
        self._pending[key] = queue
        now = time.monotonic()
        tx = ClientTransaction(msg, reliable=self.transport.reliable, now=now, t1=t1)
        try:
            await self.transport.send(bytes(msg), peer)
            while True:
                deadline = tx.next_deadline()
                timeout = None if deadline is None else max(0.0, deadline - time.monotonic())
                try:
                    resp = await asyncio.wait_for(queue.get(), timeout)
                except TimeoutError:
                    step = tx.on_timer(time.monotonic())
                else:
                    step = tx.on_response(resp, time.monotonic())
                for out in step.send:
                    await self.transport.send(bytes(out), peer)
                if step.timed_out:
                    raise SipTimeoutError(
                        f"no final response to {msg.method} from {peer[0]}:{peer[1]} "
                        f"within {64 * t1:g} s ({tx.retransmissions} retransmissions)"
                    )
                if step.deliver is not None:
                    arrived = time.monotonic()
                    if (step.deliver.status or 0) < 200:
                        if on_provisional is not None:
                            on_provisional(step.deliver, arrived)
                    else:
                        if tx.state.value != "terminated":
                            self._linger(key, queue, tx, peer)
                            key = ("", "")  # the lingering task owns the queue now
                        return step.deliver, arrived
        finally:
            if key != ("", ""):
                self._pending.pop(key, None)

    def _linger(
        self,
        key: tuple[str, str],
        queue: asyncio.Queue[SipMessage],
        tx: ClientTransaction,
        peer: Addr,
    ) -> None:
        """Keep a completed UDP transaction alive to absorb (and re-ACK) retransmissions."""

        async def run() -> None:
            try:
                while (deadline := tx.next_deadline()) is not None:
                    try:
                        resp = await asyncio.wait_for(
                            queue.get(), max(0.0, deadline - time.monotonic())
                        )
                    except TimeoutError:
                        tx.on_timer(time.monotonic())
                        continue
                    for out in tx.on_response(resp, time.monotonic()).send:
                        await self.transport.send(bytes(out), peer)
            finally:
                self._pending.pop(key, None)

        self._spawn(run())

    async def send_request(self, msg: SipMessage, peer: Addr) -> None:
        """Send a request outside any transaction (the ACK for a 2xx)."""
        await self.transport.send(bytes(msg), peer)

    def close(self) -> None:
        for t in list(self._tasks):
            t.cancel()
        self.transport.close()


def make_response(
    request: SipMessage,
    status: int,
    reason: str,
    peer: Addr,
    *,
    to_tag: str | None = None,
    body: bytes = b"",
    content_type: str | None = None,
    extra: list[tuple[str, str]] | None = None,
) -> SipMessage:
    """A response with the request's Vias (received/rport filled in, RFC 3581 §4)."""
    resp = SipMessage.response(status, reason)
    vias = request.get_all("Via")
    for i, v in enumerate(vias):
        if i == 0:
            via = Via.parse(v)
            if via.host != peer[0]:
                via.params["received"] = peer[0]
            if "rport" in via.params:
                via.params["rport"] = str(peer[1])
                via.params["received"] = peer[0]
            v = str(via)
        resp.add("Via", v)
    for rr in request.get_all("Record-Route"):
        resp.add("Record-Route", rr)
    resp.add("From", request.get("From") or "")
    to = request.get("To") or ""
    if to_tag and ";tag=" not in to:
        to = f"{to};tag={to_tag}"
    resp.add("To", to)
    resp.add("Call-ID", request.call_id)
    resp.add("CSeq", request.get("CSeq") or "")
    for name, value in extra or []:
        resp.add(name, value)
    if body:
        resp.add("Content-Type", content_type or "application/sdp")
        resp.body = body
    return resp
