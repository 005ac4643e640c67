"""SIP OPTIONS probe: is the server there, its response code and round-trip time."""

from __future__ import annotations

from agent.errors import SipError
from agent.probes import ProbeContext, Target, register
from agent.probes.sip_common import SipTransportOptions, sip_session
from agent.wire.lite import SipOptionsMeasurement


class SipOptionsOptions(SipTransportOptions, kw_only=True, forbid_unknown_fields=True):
    pass


@register("sip_options", SipOptionsOptions, timeout_s=40.0)
async def probe(
    target: Target, opts: SipOptionsOptions, ctx: ProbeContext
) -> SipOptionsMeasurement:
    from agent.sip import alg, client

    async with sip_session(target, opts) as (endpoint, resolved):
        res = await client.send_options(endpoint, resolved, opts.user or "qos-scout")
    detected, evidence = alg.detect(res.request, res.response)
    m = SipOptionsMeasurement(
        address=f"{resolved.addr[0]}:{resolved.addr[1]}",
        resolved_via=resolved.via,
        transport=opts.transport,
        status_code=res.status_code,
        reason=res.reason,
        rtt_ms=res.rtt_ms,
        server=res.server,
        public_address=res.public_address,
        sip_alg_detected=detected,
        alg_evidence=evidence,
    )
    if res.status_code >= 500:
        raise SipError(f"OPTIONS answered {res.status_code} {res.reason}", measurement=m)
    return m
