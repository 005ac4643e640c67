"""ICMP echo probe (icmplib): RTT statistics, loss and ping-style jitter, per-packet RTTs.

Echo requests go out on a fixed schedule (one every `interval_s`) while a receiver matches
replies by identifier and sequence number, so a slow reply never delays the next request.
Raw sockets are used when the agent may open them (root or CAP_NET_RAW), otherwise the
kernel's unprivileged ICMP datagram sockets (net.ipv4.ping_group_range).
"""

from __future__ import annotations

import asyncio
import ipaddress
import random
import time
from typing import Annotated, Any

import msgspec
from msgspec import Meta

from agent import quality
from agent.errors import (
    NetworkUnreachableError,
    PermissionDeniedError,
    ProbeError,
    ResolveError,
)
from agent.probes import ProbeContext, Target, register, summary_stats
from agent.wire.lite import IcmpMeasurement


class IcmpOptions(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    count: Annotated[int, Meta(ge=1, le=100_000)] = 10
    interval_s: Annotated[float, Meta(ge=0.001, le=60)] = 0.2
    timeout_s: Annotated[float, Meta(gt=0, le=60)] = 2.0  # wait for each reply
    payload_size: Annotated[int, Meta(ge=0, le=65_000)] = 56
    dscp: Annotated[int, Meta(ge=0, le=63)] = 0
    family: int | None = None  # 4 or 6; None picks what resolves
    privileged: bool | None = None  # raw sockets; None: raw when allowed, else datagram


def _estimate_timeout(opts: IcmpOptions) -> float:
    return opts.count * opts.interval_s + opts.timeout_s + 5.0


async def _resolve(host: str, family: int | None) -> str:
    try:
        addr = ipaddress.ip_address(host)
        if family and addr.version != family:
            raise ResolveError(f"{host} is not an IPv{family} address")
        return str(addr)
    except ValueError:
        pass
    from icmplib import async_resolve
    from icmplib.exceptions import NameLookupError

    try:
        return str((await async_resolve(host, family))[0])
    except NameLookupError:
        raise ResolveError(f"host name {host!r} does not resolve") from None


def _open_socket(address: str, privileged: bool | None) -> tuple[Any, bool]:
    from icmplib import ICMPv4Socket, ICMPv6Socket
    from icmplib.exceptions import SocketPermissionError

    cls = ICMPv6Socket if ipaddress.ip_address(address).version == 6 else ICMPv4Socket
    # Raw first (root or CAP_NET_RAW), then the kernel's unprivileged datagram sockets.
    choices = [privileged] if privileged is not None else [True, False]
    for priv in choices:
        try:
            return cls(privileged=priv), bool(priv)
        except SocketPermissionError:
            continue
    raise PermissionDeniedError(
        "cannot open an ICMP socket: raw sockets need root or CAP_NET_RAW, and unprivileged "
        "ICMP sockets are not allowed for this group (see sysctl net.ipv4.ping_group_range)"
    )


@register("icmp", IcmpOptions, estimate_timeout=_estimate_timeout)
async def probe_icmp(target: Target, opts: IcmpOptions, ctx: ProbeContext) -> IcmpMeasurement:
    from icmplib import ICMPRequest
    from icmplib.exceptions import ICMPSocketError, SocketBroadcastError

    address = await _resolve(target.host, opts.family)
    icmp_sock, privileged = _open_socket(address, opts.privileged)
    ident = random.randrange(1, 0xFFFF)
    requests: list[ICMPRequest] = []
    rtts: list[float | None] = [None] * opts.count
    unreachable = 0
    send_errors: list[str] = []
    loop = asyncio.get_running_loop()
    # settled when every request is answered, the last one pending has had its timeout_s
    # after the last send, or a read failed
    settled: asyncio.Future[None] = loop.create_future()
    timer: asyncio.TimerHandle | None = None

    def send(seq: int) -> None:
        nonlocal timer
        req = ICMPRequest(
            destination=address,
            id=ident,
            sequence=seq,
            payload_size=opts.payload_size,
            traffic_class=opts.dscp << 2,
        )
        try:
            icmp_sock.send(req)
        except SocketBroadcastError:
            # icmplib reports any EPERM as a broadcast error; on Linux it is most
            # often a local firewall rule refusing the packet.
            send_errors.append("the local host refused to send (EPERM: firewall?)")
        except ICMPSocketError as exc:
            send_errors.append(str(exc))
        requests.append(req)
        if seq + 1 < opts.count:  # the next on its fixed time: a slow reply never delays it
            timer = loop.call_at(start + (seq + 1) * opts.interval_s, send, seq + 1)
        else:
            on_readable()

    def recheck() -> None:
        nonlocal timer
        if settled.done():
            return
        pending = [r.time for r in requests if rtts[r.sequence] is None]
        wait = max(pending) + opts.timeout_s - time.time() if pending else 0.0
        if wait <= 0:
            settled.set_result(None)
            return
        if timer is not None:
            timer.cancel()
        timer = loop.call_later(wait, recheck)

    def on_readable() -> None:
        # every reply read as it arrives, in this one callback (no task or reader per
        # reply); its time is taken at the read, as icmplib's own receive does
        nonlocal unreachable
        while True:
            try:
                packet = raw.recv(1024)
            except (BlockingIOError, InterruptedError):
                break
            except OSError as exc:
                if not settled.done():
                    settled.set_exception(ICMPSocketError(str(exc)))
                return
            now = time.time()
            reply = icmp_sock._parse_reply(packet=packet, source=None, current_time=now)
            if reply is None or reply.id != ident or not 0 <= reply.sequence < len(requests):
                continue
            if reply.type not in (0, 129):  # not an echo reply: an ICMP error for our request
                unreachable += 1
                continue
            if rtts[reply.sequence] is None:
                req = requests[reply.sequence]
                rtts[reply.sequence] = max(0.0, (reply.time - req.time) * 1000.0)
        if len(requests) == opts.count:
            recheck()

    icmp_sock.blocking = False
    raw = icmp_sock._sock
    loop.add_reader(raw.fileno(), on_readable)
    start = loop.time()
    try:
        send(0)
        await settled
    finally:
        if timer is not None:
            timer.cancel()
        loop.remove_reader(raw.fileno())
        icmp_sock.close()

    got = [r for r in rtts if r is not None]
    # RFC 3550 estimator over the RTT series (D = RTT_i - RTT_{i-1}): send times all equal.
    jitter_3550 = (
        quality.rfc3550_jitter_ms([0.0] * len(got), [r / 1000.0 for r in got])
        if len(got) >= 2
        else None
    )
    sent = len(requests)
    m = IcmpMeasurement(
        address=address,
        sent=sent,
        received=len(got),
        loss_pct=100.0 * (sent - len(got)) / sent if sent else 0.0,
        rtt_ms=summary_stats(got),
        jitter_ms=quality.mean_abs_delta_ms(got),
        jitter_rfc3550_ms=jitter_3550,
        unreachable=unreachable,
        send_errors=len(send_errors),
        rtts_ms=rtts[:sent],
        dscp=opts.dscp,
        privileged=privileged,
    )
    if send_errors and len(send_errors) == sent:
        raise NetworkUnreachableError(f"cannot send to {address}: {send_errors[0]}", measurement=m)
    if not got:
        why = f"{unreachable} ICMP errors" if unreachable else "no reply"
        raise ProbeError(f"{target.host} ({address}): {why} to {sent} echo requests", measurement=m)
    return m
