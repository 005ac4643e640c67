"""`nat_binding` probe: how long the site's firewall/NAT keeps an idle UDP mapping open.

Standard method: socket S sends one BIND to the responder's NAT-binding service, which
remembers S's source address as it saw it (the NAT mapping), then S stays silent for N
seconds. A second socket C (a different mapping, so S's stays idle) asks the service to
send a PROBE to S's mapping; if S receives it, the mapping survived N seconds idle. Every
interval uses its own S and they all run at once, so the test takes as long as the longest
interval. Under 30 s breaks calls (phones' re-registrations and RTP gaps outlive it).
"""

from __future__ import annotations

import asyncio
import secrets

from pydantic import BaseModel, ConfigDict, Field, field_validator

from agent.addresses import resolve
from agent.errors import NetworkUnreachableError, PeerError
from agent.probes import ProbeContext, Target, register
from agent.wire.natpacket import ACK, BIND, BOUND, PROBE, TRIGGER, NatMessage, NatWireError
from agent.wire.net import IntervalResult, NatBindingMeasurement

DEFAULT_PORT = 8620


class NatBindingOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    port: int = Field(default=DEFAULT_PORT, ge=1, le=65535, description="service port")
    intervals_s: list[float] = Field(
        default=[15.0, 30.0, 60.0], min_length=1, max_length=8,
        description="idle times to test, each with its own socket, all at once",
    )  # fmt: skip
    reply_wait_s: float = Field(default=1.5, gt=0, le=10)

    @field_validator("intervals_s")
    @classmethod
    def _intervals(cls, v: list[float]) -> list[float]:
        if any(not 0 < x <= 900 for x in v):
            raise ValueError("every interval must be more than 0 and at most 900 s")
        return sorted(set(v))


def _estimate(opts: NatBindingOptions) -> float:
    return max(opts.intervals_s) + opts.reply_wait_s + 15.0


class _Endpoint(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.queue: asyncio.Queue[NatMessage] = asyncio.Queue()

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        try:
            self.queue.put_nowait(NatMessage.parse(data))
        except NatWireError:
            pass

    def error_received(self, exc: Exception) -> None:
        pass


async def _open(family: int, sockaddr: tuple) -> tuple[asyncio.DatagramTransport, _Endpoint]:
    loop = asyncio.get_running_loop()
    try:
        transport, proto = await loop.create_datagram_endpoint(
            _Endpoint, remote_addr=sockaddr[:2], family=family
        )
    except OSError as exc:
        raise NetworkUnreachableError(f"cannot reach {sockaddr[0]}: {exc.strerror}") from None
    return transport, proto


async def _exchange(
    tr: asyncio.DatagramTransport, ep: _Endpoint, msg: NatMessage, want: int, tries: int = 3
) -> NatMessage | None:
    """Send `msg` until a reply of kind `want` for the same token arrives (1 s per try)."""
    for _ in range(tries):
        tr.sendto(bytes(msg))
        try:
            async with asyncio.timeout(1.0):
                while True:
                    got = await ep.queue.get()
                    if got.kind == want and got.token == msg.token:
                        return got
        except TimeoutError:
            continue
    return None


async def _one(
    family: int, sockaddr: tuple, interval: float, wait: float
) -> tuple[IntervalResult, str | None, str]:
    token = secrets.token_bytes(16)
    tr, ep = await _open(family, sockaddr)
    try:
        local = tr.get_extra_info("sockname")
        bound = await _exchange(tr, ep, NatMessage(BIND, token), BOUND)
        if bound is None:
            raise PeerError(
                f"no answer from the NAT-binding test service at {sockaddr[0]} port "
                f"{sockaddr[1]} (is the responder running it, and is UDP allowed?)"
            )
        mapped = bound.body.decode(errors="replace")
        await asyncio.sleep(interval)
        ctr, cep = await _open(family, sockaddr)
        try:
            ack = await _exchange(ctr, cep, NatMessage(TRIGGER, token), ACK)
        finally:
            ctr.close()
        if ack is None or ack.body != b"ok":
            return IntervalResult(interval_s=interval, survived=None), mapped, local[0]
        survived = False
        try:
            async with asyncio.timeout(wait):
                while True:
                    got = await ep.queue.get()
                    if got.kind == PROBE and got.token == token:
                        survived = True
                        break
        except TimeoutError:
            pass
        return IntervalResult(interval_s=interval, survived=survived), mapped, local[0]
    finally:
        tr.close()


def summarize(results: list[IntervalResult]) -> tuple[float | None, float | None]:
    """(longest interval survived before the first loss, shortest interval lost)."""
    lost = [r.interval_s for r in results if r.survived is False]
    first_lost = min(lost) if lost else None
    ok = [
        r.interval_s
        for r in results
        if r.survived and (first_lost is None or r.interval_s < first_lost)
    ]
    return (max(ok) if ok else None), first_lost


@register("nat_binding", NatBindingOptions, estimate_timeout=_estimate)
async def probe_nat_binding(
    target: Target, opts: NatBindingOptions, ctx: ProbeContext
) -> NatBindingMeasurement:
    port = target.port or opts.port
    family, sockaddr = await resolve(target.host, port)
    done = await asyncio.gather(*(_one(family, sockaddr, i, opts.reply_wait_s)
                                  for i in opts.intervals_s))  # fmt: skip
    results = [r for r, _, _ in done]
    mapped, local = done[0][1], done[0][2]
    survived, lost = summarize(results)
    behind = None
    if mapped:
        behind = mapped.split()[0] != local
    return NatBindingMeasurement(
        address=str(sockaddr[0]), port=port, local_address=local, mapped_address=mapped,
        behind_nat=behind, intervals_s=opts.intervals_s, results=results,
        survived_s=survived, lost_s=lost,
    )  # fmt: skip
