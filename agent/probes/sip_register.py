"""SIP REGISTER probe: registration request delay (RFC 6076 RRD), final code, auth outcome."""

from __future__ import annotations

from pydantic import BaseModel, Field

from agent.errors import SipError
from agent.probes import ProbeContext, Target, register
from agent.probes.sip_base import SipOptionsBase
from agent.probes.sip_common import sip_session
from agent.wire.sip import SipRegisterMeasurement


class SipRegisterOptions(SipOptionsBase):
    expires_s: int = Field(default=300, ge=0, le=86400)
    unregister: bool = Field(default=True, description="remove the binding afterwards")


@register("sip_register", SipRegisterOptions, timeout_s=70.0)
async def probe(target: Target, opts: SipRegisterOptions, ctx: ProbeContext) -> BaseModel:
    from agent.sip import client

    user = opts.user or "qos-scout"
    async with sip_session(target, opts) as (endpoint, resolved):
        res = await client.register(
            endpoint,
            resolved,
            user=user,
            password=opts.password,
            expires=opts.expires_s,
        )
        if opts.unregister and 200 <= res.status_code < 300 and opts.expires_s:
            await client.register(
                endpoint, resolved, user=user, password=opts.password, expires=0, previous=res
            )
    m = SipRegisterMeasurement(
        address=f"{resolved.addr[0]}:{resolved.addr[1]}",
        resolved_via=resolved.via,
        transport=opts.transport,
        status_code=res.status_code,
        reason=res.reason,
        rrd_ms=res.rrd_ms,
        auth_used=res.auth_used,
        auth_ok=res.auth_ok,
        expires_s=res.expires_s,
        public_address=res.public_address,
    )
    if res.auth_ok is False:
        why = "credentials rejected" if opts.password is not None else "no password given"
        raise SipError(
            f"REGISTER as {user}: authentication failed ({why}): {res.status_code} {res.reason}",
            measurement=m,
        )
    if not 200 <= res.status_code < 300:
        raise SipError(f"REGISTER as {user} answered {res.status_code} {res.reason}", measurement=m)
    return m
