"""Readiness checks of SIP: the SIP server (OPTIONS, REGISTER, a test call) and SIP ALG.

Each function runs its probe through the suite's `call_probe` and grades the result. A
probe missing from this build (PROBE_MODULES) gives a `skipped` check that says so.
"""

from __future__ import annotations

from typing import Any

from agent.addresses import hostport
from agent.probes import PROBE_MODULES
from agent.readiness import checks
from agent.readiness.checks import FIXES, ProbeCall, missing
from agent.readiness.thresholds import get
from agent.wire.readiness import Check, ReadinessOptions


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
    if (miss := missing("sip_options", "sip.options", "sip", "SIP OPTIONS")) is not None:
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
        out.append(checks.result_failed("sip.options", "sip", "SIP OPTIONS", res, "sip"))
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
            out.append(checks.result_failed("sip.register", "sip", "SIP REGISTER", res, "sip"))
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
            out.append(checks.result_failed("sip.call", "sip", "SIP test call", res, "sip"))
    return out


async def alg_checks(opts: ReadinessOptions, call_probe: ProbeCall) -> list[Check]:
    """SIP ALG on the path to the responder: an OPTIONS and a 1 s test call to its SIP
    endpoint, which reports what it received (Via, Contact, SDP) for comparison."""
    if (miss := missing("sip_options", "sip.alg", "sip", "SIP ALG")) is not None:
        return [miss]
    uri = opts.responder_sip or f"sip:{hostport(opts.responder, 5060)}"
    res = await call_probe("sip_options", uri, {"transport": "udp"})
    m = res.measurement
    if not m or "sip_alg_detected" not in m:
        return [checks.result_failed("sip.alg", "sip", "SIP ALG", res, "sip")]
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
