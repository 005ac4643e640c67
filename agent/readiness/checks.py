"""Turn probe measurements into graded readiness checks (pure: dicts in, `Check`s out).

Each function reads one probe's measurement (the dict a `ProbeResult` carries) and grades
its figures against `thresholds.THRESHOLDS`. Failing and warning checks get a sentence a
support person can read to a customer and the usual fix (FIXES).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from agent.probes import PROBE_MODULES, plain
from agent.readiness.path import PathFacts
from agent.readiness.thresholds import G711_ETHERNET_BPS, Threshold, get
from agent.wire.errors import category_message
from agent.wire.lite import ProbeErrorInfo, ProbeResult
from agent.wire.readiness import Check, Status
from agent.wire.voice import DIRECTIONS, VoiceDirection

ProbeCall = Callable[[str, str, dict[str, Any]], Awaitable[ProbeResult]]


def missing(probe: str, cid: str, group: str, name: str) -> Check | None:
    if probe in PROBE_MODULES:
        return None
    return skipped(cid, group, name, f"the {probe} probe is not part of this build")


def probe_error(res: ProbeResult) -> str:
    return res.error.message if res.error is not None else "unknown error"


DIRECTION_LABELS = {"out": "upstream (site to responder)",
                    "back": "downstream (responder to site)"}  # fmt: skip


def direction(m: dict[str, Any], key: str) -> VoiceDirection:
    """One direction (`out` or `back`) of a voice measurement, typed; empty when absent."""
    d = m.get(key)
    return VoiceDirection.model_validate(d) if d else VoiceDirection(source="stream")


# (explanation, usual fix) per check kind, shown for warn and fail.
FIXES: dict[str, tuple[str, str]] = {
    "rtt": (
        "Round-trip time is high enough that callers talk over each other.",
        "Check for a congested link or a long detour (see the trace); move voice to a "
        "closer SIP edge or prioritise it on the WAN.",
    ),
    "jitter": (
        "Packet arrival times vary so much that the phone's jitter buffer drops audio "
        "(choppy or robotic voice).",
        "Enable QoS for voice (DSCP EF, priority queue) on the firewall and WAN, and find "
        "what saturates the link during calls.",
    ),
    "loss": (
        "Voice packets are lost on the way: callers hear gaps and clipped words.",
        "Look for a saturated link, a duplex mismatch, Wi-Fi, or a faulty cable/port; the "
        "direction tells you whether upload or download is at fault.",
    ),
    "mos": (
        "Estimated call quality (E-model MOS) is below what users accept.",
        "Fix the loss, jitter or delay figures above: MOS is computed from them.",
    ),
    "bandwidth": (
        "The link delivers clearly less than the contracted speed.",
        "Ask the carrier to test the circuit; check for other traffic using the link "
        "during the test and for a speed/duplex mismatch on the firewall's WAN port.",
    ),
    "capacity": (
        "The link cannot carry the number of simultaneous calls the site needs at good quality.",
        "Increase the circuit speed, reserve bandwidth for voice (QoS), or cap the number "
        "of concurrent calls on the phone system.",
    ),
    "dscp": (
        "The DSCP EF marking of voice packets is removed or changed on the way, so "
        "routers cannot prioritise voice.",
        "Trust and keep DSCP 46 on the firewall/switches; ask the carrier whether the "
        "circuit honours (or at least preserves) markings.",
    ),
    "nat": (
        "The firewall forgets idle UDP mappings quickly: incoming calls and audio stop "
        "reaching phones that are idle for longer than this (one-way audio, dropped "
        "registrations).",
        "Raise the firewall's UDP session timeout to at least 60 s (better 120 s), or "
        "make phones send keep-alives more often than the timeout.",
    ),
    "mtu": (
        "The path MTU is small: large SIP messages over UDP get fragmented or lost.",
        "Fix the MTU/MSS on the WAN (PPPoE, VPN tunnel), or use SIP over TCP/TLS.",
    ),
    "sip_alg": (
        "A SIP ALG on the path rewrites SIP messages; it commonly breaks registration "
        "and causes one-way audio.",
        "Disable SIP ALG (SIP helper, SIP transformations) on this firewall.",
    ),
    "sip": (
        "The SIP server did not answer as expected.",
        "Check that the firewall allows SIP to the provider, the server address and "
        "credentials are right, and that no SIP ALG interferes.",
    ),
    "dns": (
        "The SIP domain does not resolve correctly or slowly.",
        "Check the site's DNS servers; phones cannot find the SIP server without them.",
    ),
    "probe": (
        "The test could not measure this.",
        "Check that the responder is reachable from this site (firewall rules for the "
        "test ports) and run the test again.",
    ),
}


def _fmt(value: float | None, unit: str, digits: int = 1) -> str:
    if value is None:
        return "not measured"
    if unit == "MOS":
        return f"{value:.2f}"
    if abs(value) < 1 and value != 0:
        digits = max(digits, 2)
    return f"{value:.{digits}f} {unit}".strip()


def graded(
    check_id: str, group: str, name: str, t: Threshold, value: float | None, kind: str,
    *, display: str | None = None, details: dict[str, Any] | None = None, why: str = "",
) -> Check:  # fmt: skip
    """A check for `value` graded by threshold `t`; warn/fail carry FIXES[kind]."""
    status: Status = t.grade(value)
    explanation, fix = FIXES[kind] if status in ("warn", "fail") else ("", "")
    if status == "skipped":
        explanation = why or "not measured"
    elif why and status in ("warn", "fail"):
        explanation = f"{explanation} {why}"
    return Check(
        id=check_id, group=group, name=name, status=status, value=value, unit=t.unit,
        display=display if display is not None else _fmt(value, t.unit), threshold=t.describe(),
        source=t.source, explanation=explanation, fix=fix, details=details or {},
    )  # fmt: skip


def probe_failed(
    check_id: str, group: str, name: str, message: str, kind: str = "probe",
    *, error: ProbeErrorInfo | None = None,
) -> Check:  # fmt: skip
    """A check whose probe could not measure: a fail with the probe's own reason. With the
    probe's `error`, the explanation also says what its category means for a person
    (CATEGORY_MESSAGES), and `details.error` carries class, category and message."""
    explanation, fix = FIXES[kind]
    text, details = f"{explanation} {message}", {}
    if error is not None:
        meaning = category_message(error.category)
        text = f"{explanation} {meaning} ({message})"
        details = {"error": {**plain(error), "meaning": meaning}}
    return Check(
        id=check_id, group=group, name=name, status="fail", display="no measurement",
        explanation=text, fix=fix, details=details,
    )  # fmt: skip


def result_failed(
    check_id: str, group: str, name: str, res: ProbeResult, kind: str = "probe"
) -> Check:
    """The check of a probe run that measured nothing usable: `probe_failed` with the
    run's error message and category."""
    return probe_failed(check_id, group, name, probe_error(res), kind, error=res.error)


def skipped(check_id: str, group: str, name: str, why: str) -> Check:
    return Check(id=check_id, group=group, name=name, status="skipped", display="not run",
                 explanation=why)  # fmt: skip


def info(check_id: str, group: str, name: str, display: str, **details: Any) -> Check:
    return Check(id=check_id, group=group, name=name, status="info", display=display,
                 details=details)  # fmt: skip


# --------------------------------------------------------------------------- voice stream


def voice_checks(m: dict[str, Any]) -> list[Check]:
    """RTT, and per direction loss, jitter and MOS of the G.711-paced stream (`udp` probe)."""
    g = "voice"
    rtt = (m.get("rtt_ms") or {}).get("median")
    out = [
        graded("voice.rtt", g, "Round-trip time (median)", get("rtt_ms"), rtt, "rtt",
               details={"rtt_ms": m.get("rtt_ms")}),
    ]  # fmt: skip
    per_dir = str(m.get("direction_loss_method", "")).startswith("reflector")
    for key in DIRECTIONS:
        label = DIRECTION_LABELS[key]
        d = direction(m, key)
        loss = d.loss_pct if per_dir else m.get("loss_pct")
        why = "" if per_dir else "(this reflector cannot tell the direction: round-trip loss)"
        lost = d.lost if per_dir else m.get("lost")
        packets = d.packets_sent if per_dir else m.get("sent")
        out += [
            graded(f"voice.loss.{key}", g, f"Packet loss {label}", get("loss_pct"), loss,
                   "loss", display=f"{_fmt(loss, '%', 2)} ({lost} of {packets})"
                   if loss is not None else None, why=why),
            graded(f"voice.jitter.{key}", g, f"Jitter {label}", get("jitter_ms"),
                   d.jitter_ms, "jitter"),
            graded(f"voice.mos.{key}", g, f"MOS {label}", get("mos"), comparable_mos(d),
                   "mos", display=_mos_display(d)),
        ]  # fmt: skip
    return out


def dscp_checks(m: dict[str, Any]) -> list[Check]:
    """Did the DSCP we sent arrive at the responder (RFC 7750), and come back?"""
    sent = m.get("dscp_sent")
    out = []
    up, down = direction(m, "out"), direction(m, "back")
    if not m.get("reflector_reports_dscp"):
        out.append(
            skipped(
                "dscp.out",
                "dscp",
                "DSCP upstream",
                "the reflector does not report the DSCP it received (RFC 7750)",
            )
        )
    else:
        out.append(
            _dscp_check(
                "dscp.out",
                "DSCP upstream (as received by the responder)",
                sent,
                up.dscp_received,
                up.dscp_counts,
            )
        )
    # The reply leaves marked with `back.dscp_sent`: the DSCP1 a STAMP reflector was asked
    # for, or what our TWAMP-light responder received (it echoes it), so there downstream
    # only adds news when the upstream marking survived.
    fwd = down.dscp_sent if down.dscp_sent is not None else up.dscp_received
    out.append(_dscp_check("dscp.back", "DSCP downstream (reply as received here)",
                           fwd if fwd is not None else sent, down.dscp_received,
                           down.dscp_counts, "reflected"))  # fmt: skip
    return out


def _dscp_check(
    cid: str, name: str, sent: int | None, got: int | None, counts: dict[str, int],
    verb: str = "sent",
) -> Check:  # fmt: skip
    if got is None or sent is None:
        return skipped(cid, "dscp", name, "no marked packet came back")
    ok = got == sent
    explanation, fix = ("", "") if ok else FIXES["dscp"]
    return Check(
        id=cid, group="dscp", name=name, status="pass" if ok else "warn", value=float(got),
        display=f"{verb} {sent}, received {got}", threshold="warn if the DSCP changes",
        source="RFC 4594 (EF for telephony), RFC 7750 (reflected DSCP)",
        explanation=explanation, fix=fix, details={"counts": counts},
    )  # fmt: skip


# --------------------------------------------------------------------------- capacity


def capacity_check(capacity: int | None, needed: int, ceiling: int, reason: str) -> Check:
    """How many simultaneous G.711 calls the link carried, against the calls needed."""
    per_call = G711_ETHERNET_BPS / 1000
    if capacity is None:
        return skipped("capacity.calls", "capacity", "Concurrent calls", reason)
    at_least = capacity >= ceiling
    display = f"{'at least ' if at_least else ''}{capacity} calls"
    ok = capacity >= needed
    explanation, fix = ("", "") if ok else FIXES["capacity"]
    if not ok and reason:
        explanation = f"{explanation} At {capacity + 1} calls: {reason}."
    return Check(
        id="capacity.calls", group="capacity", name="Concurrent G.711 calls", value=capacity,
        status="pass" if ok else "fail", unit="calls", display=display,
        threshold=f"fail < {needed} calls (the site needs {needed})",
        source=f"G.711 20 ms: {per_call:.1f} kbit/s per direction with Ethernet framing",
        explanation=explanation, fix=fix,
        details={"needed": needed, "ceiling": ceiling, "kbps_per_call": per_call},
    )  # fmt: skip


# --------------------------------------------------------------------------- bandwidth


def bandwidth_check(
    direction: str, bps: float | None, contracted_bps: float | None,
    path: PathFacts | None = None,
) -> Check:  # fmt: skip
    """Throughput in one direction, graded against the contracted speed when known. On a
    path that is not a customer's line, or above what the interface can carry, the figure is
    shown as not meaningful rather than graded; above the contract it is "contract met",
    never a percentage over 100."""
    label = "upload" if direction == "up" else "download"
    cid, name = f"bandwidth.{direction}", f"Bandwidth {label}"
    if bps is None:
        return skipped(cid, "bandwidth", name, "no throughput measured")
    shown = f"{bps / 1e6:.2f} Mbit/s"
    why = path.not_meaningful if path is not None else None
    if why is None and path is not None and path.above_interface(bps):
        why = f"above the speed of {path.interface} ({path.interface_mbps:g} Mbit/s)"
    if why is not None:
        return not_meaningful(cid, "bandwidth", name, shown, why, throughput_bps=bps,
                              contracted_bps=contracted_bps)  # fmt: skip
    if not contracted_bps:
        return info(cid, "bandwidth", name, f"{shown} (no contracted speed given)",
                    throughput_bps=bps)  # fmt: skip
    pct = 100.0 * bps / contracted_bps
    contract = f"{contracted_bps / 1e6:g} Mbit/s"
    display = (f"{shown}: the contracted {contract} is met" if pct >= 100.0
               else f"{shown} = {pct:.0f} % of {contract}")  # fmt: skip
    return graded(cid, "bandwidth", name, get("bandwidth_pct_of_contracted"), min(pct, 100.0),
                  "bandwidth", display=display,
                  details={"throughput_bps": bps, "contracted_bps": contracted_bps})  # fmt: skip


def not_meaningful(
    check_id: str, group: str, name: str, shown: str, why: str, **details: Any
) -> Check:
    """A figure measured on a path that cannot describe the customer's line: shown, labelled,
    never graded (so it is neither a finding nor a pass)."""
    return Check(id=check_id, group=group, name=name, status="info",
                 display=f"{shown}: not meaningful on this path ({why})",
                 explanation=f"Not a property of the customer's line: {why}.",
                 details={**details, "not_meaningful": why})  # fmt: skip


# --------------------------------------------------------------------------- host / gateway


def gateway_check(m: dict[str, Any]) -> Check:
    gw = m.get("gateway")
    if not gw:
        return info("network.gateway", "network", "Default gateway", "no default gateway")
    vendor = gw.get("vendor") or "unknown vendor"
    mac = gw.get("mac") or "MAC unknown"
    return info("network.gateway", "network", "Default gateway",
                f"{gw.get('address')} ({vendor}, {mac})", **gw)  # fmt: skip


# --------------------------------------------------------------------------- NAT binding


def nat_check(m: dict[str, Any]) -> Check:
    """Grade the NAT/firewall UDP binding lifetime from the natprobe measurement."""
    survived = m.get("survived_s")
    lost = m.get("lost_s")
    t = get("nat_binding_s")
    limit = t.fail or 30.0
    mapped = m.get("mapped_address")
    nat = m.get("behind_nat")
    where = f" (mapped address {mapped}{', NAT' if nat else ', no NAT'})" if mapped else ""
    details = dict(m)
    if lost is not None and lost <= limit:
        ex, fix = FIXES["nat"]
        shown = f"lost after {survived or 0:g}–{lost:g} s idle"
        return Check(id="nat.binding", group="nat", name="UDP binding timeout", status="fail",
                     value=float(lost), unit="s", display=shown + where, threshold=t.describe(),
                     source=t.source, explanation=ex, fix=fix, details=details)  # fmt: skip
    if survived is not None and survived >= limit:
        shown = f"kept for at least {survived:g} s" + (f", lost by {lost:g} s" if lost else "")
        return Check(id="nat.binding", group="nat", name="UDP binding timeout", status="pass",
                     value=float(survived), unit="s", display=shown + where,
                     threshold=t.describe(), source=t.source, details=details)  # fmt: skip
    tested = max(m.get("intervals_s") or [0])
    return Check(id="nat.binding", group="nat", name="UDP binding timeout", status="info",
                 value=float(survived) if survived is not None else None, unit="s",
                 display=f"kept for at least {survived or 0:g} s (tested up to {tested:g} s)"
                 + where, threshold=t.describe(), source=t.source,
                 explanation=f"idle intervals of {limit:g} s or more were not tested",
                 details=details)  # fmt: skip


def comparable_mos(d: VoiceDirection) -> float | None:
    """The MOS the thresholds grade: on the narrowband scale for every codec (a wideband
    codec's own MOS_CQEW rates the same R lower; docs/measurements.md)."""
    return d.mos_narrowband if d.mos_narrowband is not None else d.mos


def _mos_display(d: VoiceDirection) -> str | None:
    if d.mos is None or d.r_factor is None:
        return None
    if d.scale != "wideband" or d.ceiling_mos is None or d.mos_narrowband is None:
        return f"{d.mos:.2f} (R {d.r_factor:.0f})"
    return (f"{d.mos:.2f} wideband (R {d.r_factor:.0f}, codec ceiling {d.ceiling_mos:.2f}; "
            f"{d.mos_narrowband:.2f} on the narrowband scale)")  # fmt: skip
