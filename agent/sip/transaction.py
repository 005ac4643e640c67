"""Client transactions (RFC 3261 §17.1) as pure state machines: time is passed in.

`ClientTransaction` handles both INVITE (timers A, B, D) and non-INVITE (timers E, F, K)
requests. Feed it responses and timer ticks with the current monotonic time; it answers
with what to send (retransmissions, the ACK for a non-2xx final response) and what to hand
to the caller. The asyncio driver lives in `agent.sip.endpoint`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum

from agent.sip.headers import Via
from agent.sip.message import SipMessage

T1 = 0.5
T2 = 4.0
T4 = 5.0


class State(Enum):
    CALLING = "calling"  # INVITE sent, nothing back (non-INVITE: "trying")
    PROCEEDING = "proceeding"
    COMPLETED = "completed"
    TERMINATED = "terminated"


@dataclass
class Step:
    """What the transaction wants done after an event."""

    send: list[SipMessage] = field(default_factory=list)
    deliver: SipMessage | None = None
    timed_out: bool = False


def ack_for_non_2xx(request: SipMessage, response: SipMessage) -> SipMessage:
    """The ACK a client INVITE transaction sends for a 300-699 (RFC 3261 §17.1.1.3)."""
    ack = SipMessage.request("ACK", request.uri or "")
    ack.add("Via", request.get_all("Via")[0])
    for route in request.get_all("Route"):
        ack.add("Route", route)
    ack.add("From", request.get("From") or "")
    ack.add("To", response.get("To") or "")
    ack.add("Call-ID", request.call_id)
    ack.add("CSeq", f"{request.cseq[0]} ACK")
    ack.add("Max-Forwards", "70")
    return ack


class ClientTransaction:
    """One client transaction; `reliable` (TCP/TLS) turns retransmission off."""

    def __init__(
        self, request: SipMessage, *, reliable: bool, now: float, t1: float = T1, t2: float = T2
    ) -> None:
        self.request = request
        self.invite = request.method == "INVITE"
        self.reliable = reliable
        self.t1, self.t2 = t1, t2
        self.state = State.CALLING
        self.branch = Via.parse(request.get_all("Via")[0]).branch or ""
        self.started = now
        self._interval = t1
        # Retransmit timer (A or E), off on reliable transports.
        self._retransmit_at: float | None = None if reliable else now + t1
        # Timeout timer (B or F): 64*T1.
        self._timeout_at: float | None = now + 64 * t1
        # Linger timer (D or K) once completed.
        self._linger_at: float | None = None
        self.retransmissions = 0
        self.final: SipMessage | None = None

    def next_deadline(self) -> float | None:
        times = [t for t in (self._retransmit_at, self._timeout_at, self._linger_at) if t]
        return min(times) if times else None

    def on_timer(self, now: float) -> Step:
        step = Step()
        if self._linger_at is not None and now >= self._linger_at:
            self.state = State.TERMINATED
            self._linger_at = None
            return step
        if self._timeout_at is not None and now >= self._timeout_at:
            self.state = State.TERMINATED
            self._timeout_at = self._retransmit_at = None
            step.timed_out = True
            return step
        if self._retransmit_at is not None and now >= self._retransmit_at:
            step.send.append(self.request)
            self.retransmissions += 1
            if self.invite:
                self._interval *= 2
            elif self.state == State.PROCEEDING:
                self._interval = self.t2
            else:
                self._interval = min(self._interval * 2, self.t2)
            self._retransmit_at = now + self._interval
        return step

    def on_response(self, response: SipMessage, now: float) -> Step:
        status = response.status or 0
        step = Step()
        if self.state == State.TERMINATED:
            return step
        if self.state == State.COMPLETED:
            if self.invite and status >= 300 and self.final is not None:
                step.send.append(ack_for_non_2xx(self.request, response))  # absorb + re-ACK
            return step
        if status < 200:
            if self.invite:
                self._retransmit_at = None
            elif self._retransmit_at is not None:
                self._retransmit_at = now + self.t2
                self._interval = self.t2
            self.state = State.PROCEEDING
            step.deliver = response
            return step
        self.final = response
        step.deliver = response
        self._retransmit_at = self._timeout_at = None
        if self.invite and status < 300:
            # 2xx: the transaction ends, the dialog sends the ACK (RFC 6026 aside).
            self.state = State.TERMINATED
            return step
        if self.invite:
            step.send.append(ack_for_non_2xx(self.request, response))
            linger = 0.0 if self.reliable else 32.0
        else:
            linger = 0.0 if self.reliable else T4
        if linger:
            self.state = State.COMPLETED
            self._linger_at = now + linger
        else:
            self.state = State.TERMINATED
        return step
