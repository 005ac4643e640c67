"""Readiness checks of the network path that wrap other probes: DNS/SRV discovery of the SIP
server, path MTU, trace, bandwidth against the contract.

Each function runs its probe through the suite's `call_probe` and grades the result. A
probe missing from this build gives a `skipped` check that says so.
"""

from __future__ import annotations

from typing import Any

from agent.addresses import hostport
from agent.readiness import checks
from agent.readiness.checks import FIXES, ProbeCall, missing
from agent.readiness.path import LARGEST_WAN_MTU, PathFacts
from agent.readiness.thresholds import get
from agent.wire.readiness import Check, ReadinessOptions


def _sip_domain(server: str) -> str | None:
    """The host part of a SIP URI or host[:port], or None when it is an IP address."""
    import ipaddress

    from agent.probes import Target

    host = Target.parse(server).host
    try:
        ipaddress.ip_address(host)
        return None
    except ValueError:
        return host


async def dns_checks(opts: ReadinessOptions, call_probe: ProbeCall) -> list[Check]:
    """RFC 3263 discovery of the SIP server (NAPTR/SRV/A) and how long DNS takes."""
    name = "DNS for the SIP domain"
    if (miss := missing("dns", "dns.sip", "dns", name)) is not None:
        return [miss]
    assert opts.sip_server
    domain = _sip_domain(opts.sip_server)
    if domain is None:
        return [checks.skipped("dns.sip", "dns", name, "the SIP server is given as an address")]
    res = await call_probe("dns", domain, {"mode": "sip"})
    m = res.measurement
    if not res.success or not m:
        return [checks.result_failed("dns.sip", "dns", name, res, "dns")]
    servers = m.get("sip_servers") or []
    if not servers:
        return [checks.probe_failed("dns.sip", "dns", name, f"{domain} names no SIP server", "dns")]
    how = {x["via"] for x in servers}
    shown = ", ".join(f"{x['host']}:{x['port']}/{x['transport']}" for x in servers[:3])
    via = "NAPTR" if "naptr" in how else "SRV" if "srv" in how else "A record only (no SRV)"
    return [
        checks.graded("dns.sip", "dns", name, get("dns_ms"), m.get("resolution_ms"), "dns",
                      display=f"{via}: {shown} (resolved in {m['resolution_ms']:.0f} ms)",
                      details={"sip_servers": servers, "server": m.get("server")}),
    ]  # fmt: skip


async def mtu_checks(
    opts: ReadinessOptions, call_probe: ProbeCall, path: PathFacts | None = None
) -> list[Check]:
    """Path MTU toward the responder with DF set, and PMTU black holes (RFC 2923). Inside
    this host, on the same link, or larger than any WAN carries, the figure is labelled
    "not meaningful on this path" instead of graded."""
    name = "Path MTU"
    if (miss := missing("mtu", "mtu.path", "network", name)) is not None:
        return [miss]
    res = await call_probe("mtu", opts.responder, {})
    m = res.measurement
    if not res.success or not m or m.get("path_mtu") is None:
        return [checks.result_failed("mtu.path", "network", name, res, "mtu")]
    why = path.not_meaningful if path is not None else None
    if why is None and m["path_mtu"] > LARGEST_WAN_MTU:
        why = f"larger than any WAN carries ({LARGEST_WAN_MTU} B)"
    if why is not None:
        return [checks.not_meaningful("mtu.path", "network", name, f"{m['path_mtu']} B", why,
                                      **m)]  # fmt: skip
    extra = ""
    if m.get("frag_needed_mtu"):
        extra = f", next-hop MTU {m['frag_needed_mtu']} from {m.get('frag_needed_from')}"
    c = checks.graded("mtu.path", "network", name, get("path_mtu_bytes"), float(m["path_mtu"]),
                      "mtu", display=f"{m['path_mtu']} B (local {m['local_mtu']} B{extra})",
                      details=m)  # fmt: skip
    if m.get("pmtu_blackhole"):
        ex, fix = FIXES["mtu"]
        c = c.model_copy(update={
            "status": "fail", "fix": fix,
            "explanation": f"{ex} Too-big packets vanish without an ICMP error (PMTU black hole).",
        })  # fmt: skip
    return [c]


async def trace_checks(opts: ReadinessOptions, call_probe: ProbeCall) -> list[Check]:
    """mtr-style trace to the responder: hops, and where persistent loss starts."""
    name = "Trace to the responder"
    if (miss := missing("trace", "trace.path", "network", name)) is not None:
        return [miss]
    res = await call_probe("trace", opts.responder, {"rounds": 5, "interval_s": 0.2})
    m = res.measurement
    if not m:
        return [checks.result_failed("trace.path", "network", name, res, "probe")]
    hops = m.get("hops") or []
    last = hops[-1] if hops else {}
    rtt = (last.get("rtt_ms") or {}).get("avg")
    shown = f"{len(hops)} hops, {'reached' if m.get('reached') else 'not reached'}"
    if rtt is not None:
        shown += f", last hop {rtt:.1f} ms"
    start = m.get("loss_starts_at_hop")
    if start is None:
        return [checks.info("trace.path", "network", name, shown, **m)]
    hop: dict[str, Any] = next((h for h in hops if h.get("ttl") == start), {})
    ex, fix = FIXES["loss"]
    return [checks.Check(
        id="trace.path", group="network", name=name, status="warn", display=shown
        + f"; loss starts at hop {start} ({hop.get('address') or '?'})",
        threshold="warn if loss persists from one hop to the destination",
        source="mtr-style per-hop loss", explanation=ex, fix=fix, details=m,
    )]  # fmt: skip


async def bandwidth_checks(
    opts: ReadinessOptions, call_probe: ProbeCall, path: PathFacts | None = None
) -> list[Check]:
    """TCP throughput both ways against the responder, graded against the contract."""
    res = await call_probe("bandwidth", hostport(opts.responder, opts.bandwidth_port), {
        "direction": "both", "duration_s": opts.bandwidth_s, "streams": opts.bandwidth_streams,
    })  # fmt: skip
    m = res.measurement
    if not res.success or not m:
        return [checks.result_failed("bandwidth", "bandwidth", "Bandwidth", res, "probe")]
    out = []
    for direction, key, mbps in (("down", "download", opts.contracted_down_mbps),
                                 ("up", "upload", opts.contracted_up_mbps)):  # fmt: skip
        r = m.get(key) or {}
        c = checks.bandwidth_check(direction, r.get("throughput_bps"),
                                   mbps * 1e6 if mbps else None, path)  # fmt: skip
        c.details.update({k: r.get(k) for k in ("retransmits", "rtt_loaded_ms",
                                                 "buffer_delay_pct")})  # fmt: skip
        c.details["idle_rtt_ms"] = m.get("idle_rtt_ms")
        out.append(c)
    return out
