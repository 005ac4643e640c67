"""The responder's SIP endpoint: answers OPTIONS, REGISTER and test calls on UDP/TCP/TLS.

Calls get an SDP answer, RTP back (our own paced stream and/or an echo of what arrives,
`X-Scout-Media: echo|stream|both`, default both) and RTCP. Every answer carries
`X-Scout-Seen` (see `agent.sip.alg`): the Via, Contact, SDP address and lengths as they
arrived, and at BYE what the responder received of the caller's RTP, so the caller can
tell per direction what the network did and whether something rewrote the SIP.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from agent.sip import alg
from agent.sip.endpoint import SipEndpoint, make_response
from agent.sip.media import RtpSession
from agent.sip.message import SipMessage, SipParseError, is_number
from agent.sip.rtpstats import received_direction
from agent.sip.sdp import answer as sdp_answer
from agent.sip.sdp import build_sdp, parse_sdp
from agent.sip.transport import (
    Addr,
    StreamTransport,
    UdpTransport,
    bind_udp_and_tcp,
    local_address_towards,
)

if TYPE_CHECKING:
    import ssl

log = logging.getLogger(__name__)

ALLOW = "INVITE, ACK, CANCEL, BYE, OPTIONS, REGISTER"


@dataclass
class _Call:
    invite: SipMessage
    peer: Addr
    endpoint: SipEndpoint
    to_tag: str
    media: RtpSession | None = None
    acked: asyncio.Event = field(default_factory=asyncio.Event)
    final: SipMessage | None = None
    duration_s: float = 3600.0


class SipUas:
    """A standalone SIP responder service: `await start()`, `await stop()`."""

    def __init__(
        self,
        host: str = "0.0.0.0",
        port: int = 5060,
        *,
        tls_port: int | None = None,
        tls_context: ssl.SSLContext | None = None,
        media_host: str | None = None,
        max_calls: int = 200,
        max_call_s: float = 3600.0,
    ) -> None:
        self.host, self.port, self.tls_port = host, port, tls_port
        self.tls_context = tls_context
        self.media_host = media_host
        self.max_calls = max_calls
        self.max_call_s = max_call_s
        self.endpoints: list[SipEndpoint] = []
        self.calls: dict[str, _Call] = {}
        self._tasks: set[asyncio.Future[None]] = set()
        self.stats = {"options": 0, "invites": 0, "calls_completed": 0, "rejected": 0}

    async def start(self) -> None:
        from agent.sip.media import g711_payloads

        # Encode the test tone now, so the first call's answer is not delayed by it.
        for pt in (0, 8):
            await asyncio.to_thread(g711_payloads, pt, 20)
        transports: list[UdpTransport | StreamTransport] = []
        try:
            udp, tcp = await bind_udp_and_tcp(self.host, self.port)
            transports += [udp, tcp]
            self.port = udp.local[1]
            if self.tls_port is not None:
                if self.tls_context is None:
                    from agent.sip.tlsutil import server_context

                    self.tls_context = server_context()
                tls = StreamTransport(lambda *a: None, server_ssl=self.tls_context, tls=True)
                transports.append(tls)
                await tls.listen(self.host, self.tls_port)
                self.tls_port = tls.local[1]
        except OSError:
            for t in transports:
                t.close()
            raise
        for t in transports:
            ep = SipEndpoint(t)
            ep.on_request = self._handler(ep)
            self.endpoints.append(ep)
        log.info(
            "SIP responder on %s port %d (UDP/TCP), TLS %s", self.host, self.port, self.tls_port
        )

    async def stop(self) -> None:
        for call in list(self.calls.values()):
            if call.media is not None:
                await call.media.close(final_rtcp=False)
        self.calls.clear()
        for ep in self.endpoints:
            ep.close()
        self.endpoints = []
        for t in list(self._tasks):
            t.cancel()

    def _handler(self, ep: SipEndpoint) -> Callable[[SipMessage, Addr], Awaitable[None]]:
        async def on_request(req: SipMessage, peer: Addr) -> None:
            try:
                await self._dispatch(ep, req, peer)
            except (SipParseError, OSError) as exc:
                log.info("cannot answer %s from %s: %s", req.method, peer, exc)
                with contextlib.suppress(Exception):
                    await ep.respond(req, peer, 400, f"Bad Request ({exc})"[:120])

        return on_request

    async def _dispatch(self, ep: SipEndpoint, req: SipMessage, peer: Addr) -> None:
        seen = alg.describe_request(req, peer)
        method = req.method
        if method == "OPTIONS":
            self.stats["options"] += 1
            await ep.respond(
                req,
                peer,
                200,
                "OK",
                to_tag=secrets.token_hex(4),
                extra=[
                    ("Allow", ALLOW),
                    ("Accept", "application/sdp"),
                    ("Server", "qos-scout"),
                    (alg.SEEN_HEADER, alg.encode_seen(seen)),
                ],
            )
        elif method == "REGISTER":
            contact = req.get("Contact") or ""
            expires = req.get("Expires") or "300"
            extra = [(alg.SEEN_HEADER, alg.encode_seen(seen))]
            if contact:
                extra.insert(0, ("Contact", f"{contact};expires={expires}"))
            await ep.respond(req, peer, 200, "OK", to_tag=secrets.token_hex(4), extra=extra)
        elif method == "INVITE":
            await self._invite(ep, req, peer, seen)
        elif method == "ACK":
            call = self.calls.get(req.call_id)
            if call is not None:
                call.acked.set()
        elif method == "BYE":
            await self._bye(ep, req, peer, seen)
        elif method == "CANCEL":
            await self._cancel(ep, req, peer)
        else:
            await ep.respond(req, peer, 501, "Not Implemented", extra=[("Allow", ALLOW)])

    async def _invite(
        self, ep: SipEndpoint, req: SipMessage, peer: Addr, seen: dict[str, Any]
    ) -> None:
        call_id = req.call_id
        if call_id in self.calls:
            return  # a retransmission while we set the call up
        self.stats["invites"] += 1
        if len(self.calls) >= self.max_calls:
            self.stats["rejected"] += 1
            await ep.respond(req, peer, 486, "Busy Here (call limit)")
            return
        tag = secrets.token_hex(4)
        call = _Call(req, peer, ep, tag)
        self.calls[call_id] = call
        await ep.respond(req, peer, 100, "Trying")
        try:
            offer = parse_sdp(req.body)
            host = self.media_host or (
                self.host
                if self.host not in ("0.0.0.0", "::")
                else local_address_towards((offer.address, offer.port))
            )
            ans = sdp_answer(offer, host, 0)
        except (SipParseError, OSError) as exc:
            del self.calls[call_id]
            await ep.respond(
                req,
                peer,
                488,
                "Not Acceptable Here",
                to_tag=tag,
                extra=[("Warning", f'399 qos-scout "{exc}"')],
            )
            return
        mode = (req.get("X-Scout-Media") or "both").lower()
        media = RtpSession(
            host,
            payload_type=ans.payload_types[0],
            ptime_ms=ans.ptime_ms,
            echo=mode in ("echo", "both"),
        )
        ans.port = await media.open()
        call.media = media
        media.set_remote(
            (offer.address, offer.port), (offer.address, offer.rtcp_port or offer.port + 1)
        )
        contact_host = ep.contact_hostport(peer)
        scheme = "sips" if ep.transport.name == "TLS" else "sip"
        tparam = "" if ep.transport.name == "UDP" else f";transport={ep.transport.name.lower()}"
        extra = [
            ("Contact", f"<{scheme}:responder@{contact_host}{tparam}>"),
            ("Allow", ALLOW),
            ("Server", "qos-scout"),
            (alg.SEEN_HEADER, alg.encode_seen(seen)),
        ]
        resp = make_response(req, 200, "OK", peer, to_tag=tag, body=build_sdp(ans), extra=extra)
        delay_ms = _answer_delay_ms(req)
        if delay_ms:
            # Early media: 183 with the same SDP, our stream starts, the 2xx follows later.
            early = make_response(req, 183, "Session Progress", peer, to_tag=tag,
                                  body=resp.body, extra=extra)  # fmt: skip
            await ep.send_response(req, early, peer)
            if mode in ("stream", "both"):
                media.start(self.max_call_s)
            await asyncio.sleep(delay_ms / 1000.0)
            if self.calls.get(call_id) is not call:  # CANCELled while ringing
                await media.close(final_rtcp=False)
                return
        call.final = resp
        await ep.send_response(req, resp, peer)
        if mode in ("stream", "both"):
            if not delay_ms:
                media.start(self.max_call_s)
        else:
            media.start_rtcp()
        if not ep.transport.reliable:
            self._spawn(self._retransmit_2xx(call))
        asyncio.get_running_loop().call_later(self.max_call_s, self._expire, call_id)

    def _spawn(self, coro: Awaitable[None]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _retransmit_2xx(self, call: _Call) -> None:
        """Resend the 2xx until the ACK arrives (RFC 3261 §13.3.1.4)."""
        interval, waited = 0.5, 0.0
        while waited < 32.0 and call.final is not None:
            try:
                await asyncio.wait_for(call.acked.wait(), interval)
                return
            except TimeoutError:
                waited += interval
                interval = min(interval * 2, 4.0)
                if call.invite.call_id not in self.calls:
                    return
                await call.endpoint.transport.send(bytes(call.final), call.peer)

    def _expire(self, call_id: str) -> None:
        call = self.calls.pop(call_id, None)
        if call is not None and call.media is not None:
            self._spawn(call.media.close())

    async def _bye(
        self, ep: SipEndpoint, req: SipMessage, peer: Addr, seen: dict[str, Any]
    ) -> None:
        call = self.calls.pop(req.call_id, None)
        if call is None:
            await ep.respond(req, peer, 481, "Call/Transaction Does Not Exist")
            return
        if call.media is not None:
            media = call.media
            media.stop_sending()
            seen.update(_rx_report(media))
            await media.close()
        self.stats["calls_completed"] += 1
        await ep.respond(req, peer, 200, "OK", extra=[(alg.SEEN_HEADER, alg.encode_seen(seen))])

    async def _cancel(self, ep: SipEndpoint, req: SipMessage, peer: Addr) -> None:
        call = self.calls.get(req.call_id)
        await ep.respond(req, peer, 200 if call else 481, "OK" if call else "No such call")
        if call is not None and not call.acked.is_set() and call.final is None:
            self.calls.pop(req.call_id, None)
            await ep.respond(call.invite, call.peer, 487, "Request Terminated", to_tag=call.to_tag)


def _answer_delay_ms(req: SipMessage) -> int:
    """`X-Scout-Answer-After-Ms: N` asks for 183 with early media, then the 2xx N ms later."""
    value = (req.get("X-Scout-Answer-After-Ms") or "").strip()
    return min(int(value), 30_000) if is_number(value) else 0


def _rx_report(media: RtpSession) -> dict[str, float | int]:
    """What the responder received of the caller's stream, for the BYE answer."""
    rec = media.main_remote_stream()
    if rec is None:
        return {"rx_packets": 0, "rx_lost": 0, "rx_late": 0, "rx_jitter_ms": 0.0}
    d = received_direction(
        rec,
        sent=None,
        first_seq=None,
        send_times=None,
        one_way_ms=0.0,
        codec="PCMU",
        ptime_ms=media.ptime_ms,
        jitter_buffer_ms=60.0,
    )
    return {
        "rx_packets": d.packets_received or 0,
        "rx_lost": round((d.loss_pct or 0.0) * len(rec.seqs) / 100.0),
        "rx_late": d.late_discards or 0,
        "rx_jitter_ms": round(d.jitter_ms or 0.0, 4),
        "rx_burst_ratio": round(d.burst_ratio or 1.0, 4),
        "rx_ssrc": rec.ssrc,
        "at": round(time.time(), 3),
    }


async def start_sip_service(cfg: Any) -> SipUas | None:
    """Start the UAS for the responder (`ResponderConfig.sip_*`); None when the port is busy
    and the SIP service was not asked for explicitly."""
    ctx = None
    if cfg.sip_tls_port is not None:
        from agent.sip.tlsutil import server_context

        ctx = server_context(cfg.sip_cert, cfg.sip_key)
    uas = SipUas(cfg.bind, cfg.sip_port, tls_port=cfg.sip_tls_port, tls_context=ctx)
    try:
        await uas.start()
    except OSError as exc:
        await uas.stop()
        if not cfg.sip_optional:
            raise
        log.warning("SIP responder not started: port %s is busy (%s)", cfg.sip_port, exc)
        return None
    return uas
