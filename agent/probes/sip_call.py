"""SIP call probe: a real call with two-way RTP; RFC 6076 timings, per-direction loss,
jitter, late discards, one-way delay, R-factor and MOS; with `calls` > 1 the RFC 6076
ratios (SER, SEER, ISA, SCR) over concurrent calls.

With several calls, the top-level fields describe the worst call (lowest MOS) and `calls`
lists every call's summary.
"""

from __future__ import annotations

import asyncio
import random
from typing import Any, Literal

from pydantic import BaseModel, Field, ValidationInfo, field_validator

from agent.errors import SipError
from agent.probes import ProbeContext, Target, register
from agent.probes.sip_base import SipOptionsBase
from agent.probes.sip_common import sip_session
from agent.sip.sdp import OPUS_FRAME_MS
from agent.wire.voice import CallSummary, RatiosModel, SipCallMeasurement


class SipCallOptions(SipOptionsBase):
    duration_s: float = Field(default=10.0, gt=0, le=3600)
    calls: int = Field(default=1, ge=1, le=500)
    codecs: list[Literal["PCMU", "PCMA", "G722", "OPUS"]] = Field(
        default=["PCMU", "PCMA"], min_length=1, description="offered in this order"
    )
    ptime_ms: int = Field(default=20, ge=10, le=60)
    jitter_buffer_ms: float = Field(default=60.0, ge=0, le=1000)
    answer_timeout_s: float = Field(default=20.0, gt=0, le=300)
    from_user: str = Field(default="qos-scout", max_length=64)

    @field_validator("ptime_ms")
    @classmethod
    def _opus_ptime(cls, v: int, info: ValidationInfo) -> int:
        if "OPUS" in info.data.get("codecs", ()) and v not in OPUS_FRAME_MS:
            frames = ", ".join(map(str, OPUS_FRAME_MS))
            raise ValueError(f"{v} ms cannot carry one Opus frame: use {frames} with OPUS")
        return v


def _estimate(opts: SipCallOptions) -> float:
    return opts.duration_s + opts.answer_timeout_s + 40.0


@register("sip_call", SipCallOptions, timeout_s=70.0, estimate_timeout=_estimate)
async def probe(target: Target, opts: SipCallOptions, ctx: ProbeContext) -> BaseModel:
    from agent.sip.call import CallResult, CallSettings, place_call
    from agent.sip.ratios import ratios

    settings = CallSettings(
        duration_s=opts.duration_s,
        user=opts.user,
        password=opts.password,
        from_user=opts.user or opts.from_user,
        codecs=list(opts.codecs),
        ptime_ms=opts.ptime_ms,
        jitter_buffer_ms=opts.jitter_buffer_ms,
        answer_timeout_s=opts.answer_timeout_s,
        defer_stats=opts.calls > 1,
    )
    async with sip_session(target, opts) as (endpoint, resolved):

        async def one(i: int) -> CallResult:
            if opts.calls > 1:  # spread the starts over one packet interval
                await asyncio.sleep(random.uniform(0, opts.ptime_ms / 1000.0))
            try:
                return await place_call(endpoint, resolved, settings)
            except Exception as exc:
                if opts.calls == 1:
                    raise
                return CallResult(failure=f"{type(exc).__name__}: {exc}")

        calls = await asyncio.gather(*(one(i) for i in range(opts.calls)))
    results = [c.finish() for c in calls]  # statistics once every stream has stopped
    address = f"{resolved.addr[0]}:{resolved.addr[1]}"
    worst = min(results, key=_call_score)
    m = _measurement(worst, address, resolved.via, opts.transport)
    if opts.calls > 1:
        r = ratios(
            [c.final_code for c in results], [c.setup_ok and c.bye_code == 200 for c in results]
        )
        m.ratios = RatiosModel(**r.__dict__)
        m.calls = [
            CallSummary(
                setup_ok=c.setup_ok,
                final_code=c.final_code,
                srd_ms=c.srd_ms,
                mos_out=c.out.mos if c.out else None,
                mos_back=c.back.mos if c.back else None,
                failure=c.failure,
            )
            for c in results
        ]
        m.sip_alg_detected = any(c.sip_alg_detected for c in results)
    if not m.setup_ok:
        raise SipError(f"call to {target} failed: {m.failure}", measurement=m)
    return m


def _call_score(c: Any) -> tuple[int, float]:
    # the narrowband-scale MOS: comparable whatever codec each call negotiated
    both = [d for d in (c.out, c.back) if d is not None]
    mos = [x for x in (d.mos_narrowband or d.mos for d in both) if x is not None]
    return (1 if c.setup_ok else 0, min(mos) if mos else 0.0)


def _measurement(c: Any, address: str, via: str, transport: str) -> SipCallMeasurement:
    return SipCallMeasurement(
        address=address,
        resolved_via=via,
        transport=transport,
        setup_ok=c.setup_ok,
        final_code=c.final_code,
        response_codes=c.response_codes,
        srd_ms=c.srd_ms,
        answer_ms=c.answer_ms,
        sdd_ms=c.sdd_ms,
        codec=c.codec,
        early_media=c.early_media,
        echo_detected=c.echo_detected,
        rtcp_received=c.rtcp_received,
        rtt_ms=c.rtt_ms,
        out=c.out,
        back=c.back,
        sip_alg_detected=c.sip_alg_detected,
        alg_evidence=c.alg_evidence,
        public_address=c.public_address,
        failure=c.failure,
    )
