"""Readiness checks that wrap other probes: SIP server, SIP ALG, DNS/SRV, MTU, trace, bandwidth.

Each function runs its probe through the suite's `call_probe` and grades the result. A
probe missing from this build (PROBE_MODULES) gives a `skipped` check that says so.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from agent.probes import PROBE_MODULES
from agent.readiness import checks
from agent.readiness.checks import FIXES
from agent.readiness.model import Check
from agent.readiness.options import ReadinessOptions
from agent.readiness.thresholds import get
from agent.results import ProbeResult

ProbeCall = Callable[[str, str, dict[str, Any]], Awaitable[ProbeResult]]


def _missing(probe: str, cid: str, group: str, name: str) -> Check | None:
    if probe in PROBE_MODULES:
        return None
    return checks.skipped(cid, group, name, f"the {probe} probe is not part of this build")


def _err(res: ProbeResult) -> str:
    return res.error.message if res.error is not None else "unknown error"


def _sip_opts(opts: ReadinessOptions) -> dict[str, Any]:
    o: dict[str, Any] = {"transport": opts.sip_transport}
    if opts.sip_user:
        o["user"] = opts.sip_user
    if opts.sip_password:
        o["password"] = opts.sip_password
    return o


def _alg_check(evidence: list[str], detected: bool, seen_in: str, cid: str = "sip.alg") -> Check:
    explanation, fix = FIXES["sip_alg"] if detected else ("", "")
    if detected and evidence:
        explanation = f"{'; '.join(evidence[:3])}. {explanation}"
    return checks.Check(
        id=cid, group="sip", name="SIP ALG", status="fail" if detected else "pass",
        display="detected" if detected else "not detected", threshold="fail if detected",
        source="RFC 3261 (Via/Contact must arrive as sent); seen in " + seen_in,
        explanation=explanation, fix=fix, details={"evidence": evidence},
    )  # fmt: skip


async def sip_checks(opts: ReadinessOptions, call_probe: ProbeCall) -> list[Check]:
    """OPTIONS (reachability, response time, ALG), REGISTER with credentials, a test call."""
    assert opts.sip_server
    out: list[Check] = []
    server = opts.sip_server
    if (miss := _missing("sip_options", "sip.options", "sip", "SIP OPTIONS")) is not None:
        return [miss]
    res = await call_probe("sip_options", server, _sip_opts(opts))
    m = res.measurement
    if m and "status_code" in m:
        ok = res.success and 200 <= m["status_code"] < 300
        t = get("sip_response_ms")
        c = checks.graded("sip.options", "sip", "SIP OPTIONS response time", t, m.get("rtt_ms"),
                          "sip", display=f"{m['status_code']} {m.get('reason', '')} in "
                          f"{m.get('rtt_ms', 0):.0f} ms", details=m)  # fmt: skip
        if not ok and m["status_code"] not in (401, 403, 405, 407):
            c = c.model_copy(update={"status": "fail", "explanation": FIXES["sip"][0],
                                     "fix": FIXES["sip"][1]})  # fmt: skip
        out.append(c)
        if m.get("sip_alg_detected"):
            out.append(_alg_check(m.get("alg_evidence") or [], True, "the SIP server's answer",
                                  "sip.alg.server"))  # fmt: skip
    else:
        out.append(checks.probe_failed("sip.options", "sip", "SIP OPTIONS", _err(res), "sip"))
    if opts.sip_user and "sip_register" in PROBE_MODULES:
        res = await call_probe("sip_register", server, _sip_opts(opts))
        m = res.measurement
        if res.success and m:
            out.append(checks.Check(
                id="sip.register", group="sip", name="SIP REGISTER", status="pass",
                value=m.get("rrd_ms"), unit="ms",
                display=f"{m['status_code']} {m.get('reason', '')}, RRD {m['rrd_ms']:.0f} ms",
                threshold="fail unless 2xx", source="RFC 3261 §10, RFC 6076 RRD", details=m,
            ))  # fmt: skip
        else:
            out.append(checks.probe_failed("sip.register", "sip", "SIP REGISTER", _err(res), "sip"))
    if opts.sip_call_uri and "sip_call" in PROBE_MODULES:
        call_opts = {**_sip_opts(opts), "duration_s": min(opts.voice_s, 10.0)}
        res = await call_probe("sip_call", opts.sip_call_uri, call_opts)
        m = res.measurement
        if res.success and m:
            mos = [x for x in ((m.get("out") or {}).get("mos"), (m.get("back") or {}).get("mos"))
                   if x is not None]  # fmt: skip
            worst = min(mos) if mos else None
            c = checks.graded("sip.call", "sip", "SIP test call (MOS, worst direction)",
                              get("mos"), worst, "mos", details=m,
                              display=f"answered ({m.get('codec')}), SRD "
                              f"{m.get('srd_ms') or 0:.0f} ms, MOS "
                              + (f"{worst:.2f}" if worst is not None else "n/a"))  # fmt: skip
            if worst is None:
                c = c.model_copy(update={"status": "pass", "explanation": ""})
            out.append(c)
            if m.get("sip_alg_detected") and not any(x.id == "sip.alg.server" for x in out):
                out.append(_alg_check(m.get("alg_evidence") or [], True, "the test call",
                                      "sip.alg.server"))  # fmt: skip
        else:
            out.append(checks.probe_failed("sip.call", "sip", "SIP test call", _err(res), "sip"))
    return out


async def alg_checks(opts: ReadinessOptions, call_probe: ProbeCall) -> list[Check]:
    """SIP ALG on the path to the responder: an OPTIONS and a 1 s test call to its SIP
    endpoint, which reports what it received (Via, Contact, SDP) for comparison."""
    if (miss := _missing("sip_options", "sip.alg", "sip", "SIP ALG")) is not None:
        return [miss]
    uri = opts.responder_sip or f"sip:{hostport(opts.responder, 5060)}"
    res = await call_probe("sip_options", uri, {"transport": "udp"})
    m = res.measurement
    if not m or "sip_alg_detected" not in m:
        return [checks.probe_failed("sip.alg", "sip", "SIP ALG", _err(res), "sip")]
    evidence = list(m.get("alg_evidence") or [])
    detected = bool(m.get("sip_alg_detected"))
    seen_in = "an OPTIONS to the responder"
    if "sip_call" in PROBE_MODULES:
        call_uri = uri.replace("sip:", "sip:echo@", 1) if "@" not in uri else uri
        cres = await call_probe("sip_call", call_uri, {"duration_s": 1.0})
        cm = cres.measurement
        if cm:
            seen_in += " and a test call"
            detected = detected or bool(cm.get("sip_alg_detected"))
            evidence += [e for e in cm.get("alg_evidence") or [] if e not in evidence]
    return [_alg_check(evidence, detected, seen_in)]


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
    if (miss := _missing("dns", "dns.sip", "dns", name)) is not None:
        return [miss]
    assert opts.sip_server
    domain = _sip_domain(opts.sip_server)
    if domain is None:
        return [checks.skipped("dns.sip", "dns", name, "the SIP server is given as an address")]
    res = await call_probe("dns", domain, {"mode": "sip"})
    m = res.measurement
    if not res.success or not m:
        return [checks.probe_failed("dns.sip", "dns", name, _err(res), "dns")]
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


async def mtu_checks(opts: ReadinessOptions, call_probe: ProbeCall) -> list[Check]:
    """Path MTU toward the responder with DF set, and PMTU black holes (RFC 2923)."""
    name = "Path MTU"
    if (miss := _missing("mtu", "mtu.path", "network", name)) is not None:
        return [miss]
    res = await call_probe("mtu", opts.responder, {})
    m = res.measurement
    if not res.success or not m or m.get("path_mtu") is None:
        return [checks.probe_failed("mtu.path", "network", name, _err(res), "mtu")]
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
    if (miss := _missing("trace", "trace.path", "network", name)) is not None:
        return [miss]
    res = await call_probe("trace", opts.responder, {"rounds": 5, "interval_s": 0.2})
    m = res.measurement
    if not m:
        return [checks.probe_failed("trace.path", "network", name, _err(res), "probe")]
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


async def bandwidth_checks(opts: ReadinessOptions, call_probe: ProbeCall) -> list[Check]:
    """TCP throughput both ways against the responder, graded against the contract."""
    res = await call_probe("bandwidth", hostport(opts.responder, opts.bandwidth_port), {
        "direction": "both", "duration_s": opts.bandwidth_s, "streams": opts.bandwidth_streams,
    })  # fmt: skip
    m = res.measurement
    if not res.success or not m:
        return [checks.probe_failed("bandwidth", "bandwidth", "Bandwidth", _err(res), "probe")]
    out = []
    for direction, key, mbps in (("down", "download", opts.contracted_down_mbps),
                                 ("up", "upload", opts.contracted_up_mbps)):  # fmt: skip
        r = m.get(key) or {}
        c = checks.bandwidth_check(direction, r.get("throughput_bps"),
                                   mbps * 1e6 if mbps else None)  # fmt: skip
        c.details.update({k: r.get(k) for k in ("retransmits", "rtt_loaded_ms",
                                                 "buffer_delay_pct")})  # fmt: skip
        c.details["idle_rtt_ms"] = m.get("idle_rtt_ms")
        out.append(c)
    return out


def hostport(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
