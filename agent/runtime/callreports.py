"""The call-report listener: phones at the site send their RFC 6035 quality reports of real
calls (SIP PUBLISH, `application/vq-rtcpxr`) to the agent, which stores each as a
`call_report` result through its spool and shipper, like any probe result.

A report is taken only from a phone the agent's `call_reports.phones` names, by its address
(an address or a network) and/or its account (the report's LocalID); the entry's `name` is
the result's module, the phone's account its target. Answers: 200 (stored), 400 (the report
cannot be read, the reason in the answer), 403 (not a configured phone), 415 (another body
type), 489 (another event package), 503 (more than `max_per_minute` reports), 405 for any
other method but OPTIONS.
"""

from __future__ import annotations

import contextlib
import hashlib
import ipaddress
import logging
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from agent.sip.endpoint import SipEndpoint
from agent.sip.message import SipMessage, SipParseError
from agent.sip.transport import Addr, bind_udp_and_tcp
from agent.wire.errors import format_validation_error
from agent.wire.results import ProbeResult
from agent.wire.vqreport import VqReport, VqReportError, measurement

if TYPE_CHECKING:
    from agent.runtime.config import CallReportsConfig, PhoneConfig

log = logging.getLogger(__name__)

CONTENT_TYPE = "application/vq-rtcpxr"
EVENT = "vq-rtcpxr"
ALLOW = "PUBLISH, OPTIONS"
# Result ids are derived from the PUBLISH, so a report sent twice is stored once.
_ID_NAMESPACE = uuid.UUID("9d3c1a52-8f0e-4a53-9a51-6a2f1c7e0b11")


def _uri_key(uri: str) -> str:
    """`sip:alice@pbx.example.com;transport=udp` -> `alice@pbx.example.com` (lower case)."""
    core = uri.strip().strip("<>").split(";")[0]
    for scheme in ("sips:", "sip:"):
        if core.lower().startswith(scheme):
            core = core[len(scheme) :]
    return core.lower()


def match_phone(phones: list[PhoneConfig], address: str, account: str) -> PhoneConfig | None:
    """The first configured phone whose every given key (address, account) matches."""
    try:
        ip = ipaddress.ip_address(address.split("%")[0])
    except ValueError:
        return None
    if ip.version == 6 and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    for phone in phones:
        if phone.address is not None and ip not in ipaddress.ip_network(phone.address):
            continue
        if phone.account is not None and _uri_key(phone.account) != _uri_key(account):
            continue
        return phone
    return None


def call_report_result(
    req: SipMessage, peer: Addr, phone: PhoneConfig, report: VqReport, now: datetime
) -> ProbeResult:
    """The `call_report` result of one PUBLISH (raises VqReportError for a bad figure)."""
    m = measurement(
        report,
        phone_address=peer[0],
        phone=phone.name,
        user_agent=req.get("User-Agent"),
        account=_angle(req.get("From") or ""),
    )
    # The agent's clock, not the phone's (phones' clocks are often wrong): the report
    # arrives at the end of what it covers; the phone's own START/STOP stay in the measurement.
    span_s = m.duration_s if m.duration_s is not None and m.duration_s <= 86_400 else 0.0
    started = now - timedelta(seconds=span_s)
    digest = hashlib.sha256(req.body).hexdigest()
    rid = uuid.uuid5(_ID_NAMESPACE, f"{req.call_id}|{req.get('CSeq')}|{peer[0]}|{digest}")
    try:
        return ProbeResult(
            id=rid,
            probe="call_report",
            target=m.local_id or f"phone:{peer[0]}",
            module=phone.name,
            started_at=started,
            duration_ms=span_s * 1000.0,
            success=True,
            measurement=m.model_dump(mode="json"),
        )
    except ValidationError as exc:
        raise VqReportError(format_validation_error(exc)) from None


class CallReportListener:
    """The SIP listener (UDP and TCP on one port): `await start()`, `await stop()`;
    `run()` for the agent's supervised loops. Each stored report goes to `sink`."""

    def __init__(
        self,
        cfg: CallReportsConfig,
        sink: Callable[[Any], None],  # takes the ProbeResult (its `to_json_dict`)
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.cfg = cfg
        self.sink = sink
        self.clock = clock
        self.port: int | None = cfg.port
        self.endpoints: list[SipEndpoint] = []
        self.stats: Counter[str] = Counter()
        self._window: tuple[float, int] = (0.0, 0)

    async def start(self) -> None:
        host, port = self.cfg.address, self.cfg.port or 0
        udp, tcp = await bind_udp_and_tcp(host, port)  # both, or an error and neither
        self.port = udp.local[1]
        for t in (udp, tcp):
            ep = SipEndpoint(t)
            ep.on_request = self._handler(ep)
            self.endpoints.append(ep)
        log.info("call reports (SIP PUBLISH vq-rtcpxr) on %s port %d (UDP/TCP)", host, self.port)

    async def stop(self) -> None:
        for ep in self.endpoints:
            ep.close()
        self.endpoints = []

    async def run(self) -> None:
        """Listen until cancelled."""
        import asyncio

        await self.start()
        try:
            await asyncio.Event().wait()
        finally:
            await self.stop()

    def _handler(self, ep: SipEndpoint) -> Callable[[SipMessage, Addr], Awaitable[None]]:
        async def on_request(req: SipMessage, peer: Addr) -> None:
            try:
                status, reason, extra = self.handle(req, peer, datetime.now(UTC))
            except SipParseError as exc:
                status, reason, extra = 400, f"Bad Request ({exc})", []
            self.stats[str(status)] += 1
            with contextlib.suppress(SipParseError, OSError):
                await ep.respond(req, peer, status, reason[:160], to_tag=uuid.uuid4().hex[:8],
                                 extra=extra)  # fmt: skip

        return on_request

    def _admit(self) -> bool:
        start, count = self._window
        now = self.clock()
        if now - start >= 60.0:
            start, count = now, 0
        self._window = (start, count + 1)
        return count < self.cfg.max_per_minute

    def handle(
        self, req: SipMessage, peer: Addr, now: datetime
    ) -> tuple[int, str, list[tuple[str, str]]]:
        """The answer to one request (status, reason, extra headers); a PUBLISH that is
        answered 200 has gone to the sink."""
        if req.method == "OPTIONS":
            return 200, "OK", [("Allow", ALLOW), ("Accept", CONTENT_TYPE)]
        if req.method == "ACK":
            return 200, "OK", []
        if req.method != "PUBLISH":
            return 405, "Method Not Allowed", [("Allow", ALLOW)]
        event = (req.get("Event") or "").split(";")[0].strip().lower()
        if event != EVENT:
            return 489, f"Bad Event (only {EVENT})", [("Allow-Events", EVENT)]
        ctype = (req.get("Content-Type") or "").split(";")[0].strip().lower()
        if ctype != CONTENT_TYPE:
            return 415, "Unsupported Media Type", [("Accept", CONTENT_TYPE)]
        if not self._admit():
            return 503, "Service Unavailable (report rate limit)", [("Retry-After", "60")]
        try:
            report = VqReport.parse(req.body)
        except VqReportError as exc:
            self.stats["unreadable"] += 1
            log.info("unreadable call report from %s: %s", peer[0], exc)
            return 400, f"Bad Request ({exc})", []
        account = _angle(report.field("LocalID") or req.get("From") or "")
        phone = match_phone(self.cfg.phones, peer[0], account)
        if phone is None:
            self.stats["unknown_phone"] += 1
            log.info("call report from %s (%s) refused: not a configured phone", peer[0],
                     account[:80])  # fmt: skip
            return 403, "Forbidden (not a phone of this site)", []
        try:
            result = call_report_result(req, peer, phone, report, now)
        except VqReportError as exc:
            self.stats["unreadable"] += 1
            return 400, f"Bad Request ({exc})", []
        self.sink(result)
        self.stats["stored"] += 1
        etag = result.id.hex[:16]
        return 200, "OK", [("SIP-ETag", etag), ("Expires", "0")]


def _angle(value: str) -> str:
    """The URI inside `<...>` of a name-addr, or the value itself."""
    if "<" in value and ">" in value:
        return value[value.index("<") + 1 : value.index(">")]
    return value
