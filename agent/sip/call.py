"""A synthetic call as a UAC: INVITE with an SDP offer, auth, early media, ACK, RTP both
ways for a while, BYE; RFC 6076 timings and per-direction voice quality.

SRD runs from the first INVITE to the first response other than 100 (post-dial delay),
the answer time to the 2xx, SDD from the BYE to its final response.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from agent.sip import alg
from agent.sip.auth import DigestClient
from agent.sip.client import SipTarget, contact_uri
from agent.sip.dialog import Dialog, Leg, cancel_for
from agent.sip.endpoint import SipEndpoint
from agent.sip.media import RtpSession
from agent.sip.message import SipMessage, SipParseError
from agent.sip.rtpstats import received_direction, reported_direction
from agent.sip.sdp import (
    OPUS_FRAME_MS,
    MediaDescription,
    build_sdp,
    default_offer,
    parse_sdp,
)
from agent.sip.transport import local_address_towards
from agent.wire.voice import VoiceDirection

log = logging.getLogger(__name__)


@dataclass
class CallSettings:
    duration_s: float = 10.0
    user: str | None = None
    password: str | None = None
    from_user: str = "qos-scout"
    codecs: list[str] = field(default_factory=lambda: ["PCMU", "PCMA"])
    ptime_ms: int = 20
    jitter_buffer_ms: float = 60.0
    answer_timeout_s: float = 20.0
    # What our responder sends back (X-Scout-Media): both, stream, echo, or sink (RTCP only).
    media_mode: str | None = None
    # Leave the statistics to `CallResult.finish()`: with many concurrent calls the caller
    # computes them once every stream has stopped, so the work never delays a live stream.
    defer_stats: bool = False
    extra_headers: list[tuple[str, str]] = field(default_factory=list)


@dataclass
class CallResult:
    setup_ok: bool = False
    final_code: int | None = None
    response_codes: list[int] = field(default_factory=list)
    srd_ms: float | None = None
    answer_ms: float | None = None
    sdd_ms: float | None = None
    bye_code: int | None = None
    codec: str | None = None
    early_media: bool = False
    out: VoiceDirection | None = None
    back: VoiceDirection | None = None
    echo_detected: bool = False
    rtcp_received: int = 0
    rtt_ms: float | None = None
    sip_alg_detected: bool = False
    alg_evidence: list[str] = field(default_factory=list)
    public_address: str | None = None
    failure: str | None = None
    pending: Callable[[], None] | None = field(default=None, repr=False)

    def finish(self) -> CallResult:
        """Compute the media statistics left pending (`CallSettings.defer_stats`)."""
        if self.pending is not None:
            pending, self.pending = self.pending, None
            pending()
        return self


async def place_call(endpoint: SipEndpoint, target: SipTarget, s: CallSettings) -> CallResult:
    res = CallResult()
    local_host = local_address_towards(target.addr)
    media = RtpSession(local_host, ptime_ms=s.ptime_ms)
    await media.open()
    try:
        await _signal_and_stream(endpoint, target, s, media, res)
    finally:
        await media.close()
    if endpoint.public_address is not None:
        host, port = endpoint.public_address
        res.public_address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    return res


async def _signal_and_stream(
    endpoint: SipEndpoint, target: SipTarget, s: CallSettings, media: RtpSession, res: CallResult
) -> None:
    user = s.from_user
    leg = Leg(f"sip:{user}@{target.host}", target.uri, contact_uri(endpoint, target, user))
    offer = default_offer(media.host, media.port, s.codecs)
    offer.ptime_ms = s.ptime_ms
    body = build_sdp(offer)
    auth = DigestClient(s.user or user, s.password or "")
    t0 = time.monotonic()
    remote_media: dict[str, MediaDescription] = {}

    def on_provisional(resp: SipMessage, at: float) -> None:
        code = resp.status or 0
        res.response_codes.append(code)
        if code != 100 and res.srd_ms is None:
            res.srd_ms = (at - t0) * 1000.0
        if code in (180, 183) and resp.body:
            with contextlib.suppress(SipParseError):
                remote_media["early"] = parse_sdp(resp.body)
                res.early_media = True

    invite: SipMessage | None = None
    resp: SipMessage | None = None
    for _attempt in range(3):
        invite = leg.request("INVITE", endpoint.via_for(target.addr))
        invite.add("Content-Type", "application/sdp")
        invite.add("Allow", "INVITE, ACK, CANCEL, BYE, OPTIONS")
        if s.media_mode:
            invite.add("X-Scout-Media", s.media_mode)
        for name, value in s.extra_headers:
            invite.add(name, value)
        invite.body = body
        if auth.challenge:
            invite.add(auth.header_name, auth.authorization("INVITE", target.uri))
        resp = await _invite(endpoint, target, invite, on_provisional, s.answer_timeout_s, res)
        code = resp.status or 0
        res.response_codes.append(code)
        if code in (401, 407) and s.password is not None and not auth.challenge:
            header = "WWW-Authenticate" if code == 401 else "Proxy-Authenticate"
            auth.on_challenge(code, resp.get_all(header))
            continue
        break
    assert invite is not None and resp is not None
    arrived = time.monotonic()
    code = resp.status or 0
    res.final_code = code
    if res.srd_ms is None:
        res.srd_ms = (arrived - t0) * 1000.0
    res.sip_alg_detected, res.alg_evidence = alg.detect(invite, resp)
    if not 200 <= code < 300:
        answered = f"INVITE answered {code} {resp.reason}"
        res.failure = f"{res.failure}; {answered}" if res.failure else answered
        return
    res.answer_ms = (arrived - t0) * 1000.0
    dialog = Dialog.from_response(leg, invite, resp)
    await endpoint.send_request(dialog.ack(endpoint.via_for(target.addr), invite), target.addr)
    try:
        answer = parse_sdp(resp.body)
    except SipParseError as exc:
        res.failure = f"2xx answer has no usable SDP: {exc}"
        await _bye(endpoint, target, dialog, res)
        return
    offered = tuple(c.upper() for c in s.codecs)
    chosen = answer.first_audio_codec(offered)
    if chosen is None:
        res.failure = (f"answer has none of the codecs offered ({', '.join(offered)}; "
                       f"got {', '.join(answer.codecs)})")  # fmt: skip
        await _bye(endpoint, target, dialog, res)
        return
    res.setup_ok = True
    res.codec = chosen[1]
    media.set_codec(*chosen)
    media.ptime_ms = answer.ptime_ms or s.ptime_ms
    if res.codec == "OPUS" and media.ptime_ms not in OPUS_FRAME_MS:
        media.ptime_ms = s.ptime_ms  # one Opus frame per packet: keep the ptime we offered
    rtcp_port = answer.rtcp_port or answer.port + 1
    media.set_remote((answer.address, answer.port), (answer.address, rtcp_port))
    media.start(s.duration_s)
    try:
        await asyncio.wait_for(media.done.wait(), s.duration_s + 5.0)
    except TimeoutError:
        log.warning("RTP sender did not finish on time")
    media.stop_sending()
    media.send_rtcp()
    await asyncio.sleep(0.3)  # let the last echoed packets and a final RTCP arrive
    bye_resp = await _bye(endpoint, target, dialog, res)
    res.pending = lambda: _media_stats(media, res, s, bye_resp)
    if not s.defer_stats:
        res.finish()


async def _invite(
    endpoint: SipEndpoint,
    target: SipTarget,
    invite: SipMessage,
    on_provisional: Any,
    answer_timeout_s: float,
    res: CallResult,
) -> SipMessage:
    """Send the INVITE; CANCEL it when nothing final arrives within the answer timeout."""
    task = asyncio.create_task(endpoint.request(invite, target.addr, on_provisional=on_provisional))
    done, _ = await asyncio.wait({task}, timeout=answer_timeout_s)
    if not done:
        res.failure = f"no answer within {answer_timeout_s:g} s: CANCEL sent"
        with contextlib.suppress(Exception):
            await endpoint.request(cancel_for(invite), target.addr)
    resp, _ = await task
    return resp


async def _bye(
    endpoint: SipEndpoint, target: SipTarget, dialog: Dialog, res: CallResult
) -> SipMessage | None:
    bye = dialog.request("BYE", endpoint.via_for(target.addr))
    sent = time.monotonic()
    try:
        resp, arrived = await endpoint.request(bye, target.addr)
    except Exception as exc:
        res.failure = f"BYE failed: {exc}"
        return None
    res.sdd_ms = (arrived - sent) * 1000.0
    res.bye_code = resp.status
    return resp


def _media_stats(
    media: RtpSession, res: CallResult, s: CallSettings, bye_resp: SipMessage | None
) -> None:
    codec = res.codec or "PCMU"
    tx = media.tx
    res.rtcp_received = media.rtcp_received
    if media.rtts_ms:
        res.rtt_ms = sorted(media.rtts_ms)[len(media.rtts_ms) // 2]
    echo = media.rx.get(tx.ssrc)
    one_way = res.rtt_ms / 2.0 if res.rtt_ms is not None else None
    common = {"codec": codec, "ptime_ms": media.ptime_ms, "jitter_buffer_ms": s.jitter_buffer_ms}
    if echo is not None and echo.seqs:
        res.echo_detected = True
        echo_stats = received_direction(
            echo,
            sent=tx.sent,
            first_seq=tx.first_seq,
            send_times=tx.send_times,
            one_way_ms=None,
            **common,  # type: ignore[arg-type]
        )
        one_way = echo_stats.one_way_delay_ms
    remote = media.main_remote_stream()
    if remote is not None:
        res.back = received_direction(
            remote,
            sent=None,
            first_seq=None,
            send_times=None,
            one_way_ms=one_way,
            **common,  # type: ignore[arg-type]
        )
    elif echo is not None and echo.seqs:
        res.back = echo_stats  # what we hear is our own stream, round trip
    seen = alg.responder_report(bye_resp) if bye_resp is not None else None
    if seen is not None and "rx_packets" in seen:
        res.out = reported_direction(
            sent=tx.sent,
            received=int(seen["rx_packets"]),
            lost=None,  # sent - received: loss at the end of the stream counts too
            jitter_ms=float(seen["rx_jitter_ms"]),
            late=int(seen["rx_late"]),
            one_way_ms=one_way,
            source="responder",
            burst_ratio=float(seen.get("rx_burst_ratio", 1.0)),
            **common,  # type: ignore[arg-type]
        )
    elif media.reports_about_us:
        last = media.reports_about_us[-1]
        expected = ((last["highest_sequence"] - tx.first_seq) & 0xFFFF) + 1
        ticks_per_ms = media.clock_rate() / 1000.0  # RTCP jitter is in RTP clock ticks
        res.out = reported_direction(
            sent=expected,
            received=None,
            lost=max(0, last["packets_lost"]),
            jitter_ms=last["jitter"] / ticks_per_ms,
            late=None,
            one_way_ms=one_way,
            source="rtcp",
            **common,  # type: ignore[arg-type]
        )
    elif echo is not None and echo.seqs:
        res.out = echo_stats
