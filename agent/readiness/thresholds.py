"""The readiness thresholds: one row per figure, with its limits and where they come from.

A row says which way is bad (`higher_is_worse`), the warn and fail limits (None: that
level does not exist for this figure) and the source of the numbers. `grade()` is the only
place a figure becomes pass / warn / fail. docs/readiness.md mirrors this table.
"""

from __future__ import annotations

from dataclasses import dataclass

from agent.wire.readiness import Status

# G.711 at 20 ms ptime on the wire, per direction per call (docs/readiness.md):
# 160 B audio + 12 RTP + 8 UDP + 20 IPv4 = 200 B per packet, 50 packets/s.
G711_IP_PACKET_BYTES = 160 + 12 + 8 + 20
G711_PACKETS_PER_S = 50
ETHERNET_OVERHEAD_BYTES = 14 + 4  # MAC header + FCS (preamble and inter-frame gap not counted)
G711_IP_BPS = G711_IP_PACKET_BYTES * 8 * G711_PACKETS_PER_S  # 80 000 bit/s
G711_ETHERNET_BPS = (G711_IP_PACKET_BYTES + ETHERNET_OVERHEAD_BYTES) * 8 * G711_PACKETS_PER_S


@dataclass(frozen=True)
class Threshold:
    key: str
    unit: str
    higher_is_worse: bool
    warn: float | None
    fail: float | None
    source: str

    def describe(self) -> str:
        """The limits in words, e.g. "fail > 150 ms" or "warn < 4, fail < 3.6"."""
        op = ">" if self.higher_is_worse else "<"
        unit = f" {self.unit}" if self.unit and self.unit != "MOS" else ""
        parts = []
        if self.warn is not None:
            parts.append(f"warn {op} {self.warn:g}{unit}")
        if self.fail is not None:
            parts.append(f"fail {op} {self.fail:g}{unit}")
        return ", ".join(parts) or "information only"

    def grade(self, value: float | None) -> Status:
        """pass / warn / fail for a measured value; None (not measured) is `skipped`."""
        if value is None:
            return "skipped"

        def worse(limit: float | None) -> bool:
            if limit is None:
                return False
            return value > limit if self.higher_is_worse else value < limit

        if worse(self.fail):
            return "fail"
        if worse(self.warn):
            return "warn"
        return "pass"


_VOIP = "ITU-T G.114 / common VoIP-readiness limits"

THRESHOLDS: dict[str, Threshold] = {
    t.key: t
    for t in (
        Threshold("rtt_ms", "ms", True, None, 150.0, _VOIP),
        Threshold("jitter_ms", "ms", True, None, 30.0, _VOIP),
        Threshold("loss_pct", "%", True, None, 1.0, _VOIP),
        Threshold("mos", "MOS", False, 4.0, 3.6, "ITU-T G.107 E-model, G.107 Annex B MOS"),
        Threshold(
            "bandwidth_pct_of_contracted",
            "%",
            False,
            None,
            80.0,
            "common readiness limit: 80 % of the contracted circuit speed",
        ),
        Threshold(
            "nat_binding_s",
            "s",
            False,
            None,
            30.0,
            "RFC 4787 REQ-5 asks for at least 2 min; SIP/RTP keep-alives are often 30 s",
        ),
        Threshold(
            "path_mtu_bytes",
            "B",
            False,
            1500.0,
            1300.0,
            "RFC 3261 §18.1.1: SIP requests over 1300 B (or near the path MTU) need TCP",
        ),
        Threshold(
            "sip_response_ms",
            "ms",
            True,
            1000.0,
            None,
            "RFC 6076 session request delay; RFC 3261 Timer T1 = 500 ms",
        ),
        Threshold(
            "dns_ms",
            "ms",
            True,
            500.0,
            None,
            "a SIP client waits for DNS before every call set-up (RFC 3263)",
        ),
    )
}


def get(key: str) -> Threshold:
    try:
        return THRESHOLDS[key]
    except KeyError:
        raise KeyError(f"no readiness threshold named {key!r}") from None
