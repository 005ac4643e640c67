"""Client transaction timers (RFC 3261 §17.1), driven by numbers instead of a clock."""

from __future__ import annotations

from agent.sip.message import SipMessage
from agent.sip.transaction import ClientTransaction, State


def _req(method: str) -> SipMessage:
    m = SipMessage.request(method, "sip:b@example.com")
    m.add("Via", "SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bKabc;rport")
    m.add("From", "<sip:a@example.com>;tag=1")
    m.add("To", "<sip:b@example.com>")
    m.add("Call-ID", "c1")
    m.add("CSeq", f"1 {method}")
    return m


def _resp(req: SipMessage, status: int) -> SipMessage:
    r = SipMessage.response(status, "x")
    for name in ("Via", "From", "Call-ID", "CSeq"):
        r.add(name, req.get(name) or "")
    r.add("To", "<sip:b@example.com>;tag=srv")
    return r


def _run(tx: ClientTransaction, until: float) -> list[float]:
    sent = []
    while (t := tx.next_deadline()) is not None and t <= until:
        step = tx.on_timer(t)
        sent += [t] * len(step.send)
        if step.timed_out:
            sent.append(-t)
    return sent


def test_invite_timer_a_doubles_and_timer_b_fires_at_64_t1() -> None:
    tx = ClientTransaction(_req("INVITE"), reliable=False, now=0.0)
    events = _run(tx, 100.0)
    assert events[:7] == [0.5, 1.5, 3.5, 7.5, 15.5, 31.5, -32.0]
    assert tx.state == State.TERMINATED


def test_non_invite_timer_e_caps_at_t2_and_f_fires() -> None:
    tx = ClientTransaction(_req("OPTIONS"), reliable=False, now=0.0)
    events = _run(tx, 100.0)
    assert events[:6] == [0.5, 1.5, 3.5, 7.5, 11.5, 15.5]
    assert events[-1] == -32.0


def test_provisional_stops_invite_retransmissions_and_final_error_is_acked() -> None:
    req = _req("INVITE")
    tx = ClientTransaction(req, reliable=False, now=0.0)
    assert tx.on_response(_resp(req, 100), 0.1).deliver is not None
    assert tx.next_deadline() == 32.0  # only timer B left
    step = tx.on_response(_resp(req, 486), 1.0)
    assert step.deliver is not None and step.deliver.status == 486
    ack = step.send[0]
    assert ack.method == "ACK" and ack.cseq == (1, "ACK") and "tag=srv" in (ack.get("To") or "")
    # A retransmitted 486 is absorbed and re-ACKed; timer D ends it after 32 s.
    again = tx.on_response(_resp(req, 486), 2.0)
    assert again.deliver is None and again.send[0].method == "ACK"
    assert tx.on_timer(33.0).send == [] and tx.state == State.TERMINATED


def test_2xx_ends_invite_transaction_without_ack() -> None:
    req = _req("INVITE")
    tx = ClientTransaction(req, reliable=True, now=0.0)
    assert tx.next_deadline() == 32.0  # reliable: no timer A
    step = tx.on_response(_resp(req, 200), 0.2)
    assert step.send == [] and tx.state == State.TERMINATED


def test_non_invite_completed_lingers_for_timer_k_on_udp_only() -> None:
    req = _req("REGISTER")
    udp = ClientTransaction(req, reliable=False, now=0.0)
    udp.on_response(_resp(req, 200), 0.05)
    assert udp.state == State.COMPLETED and udp.next_deadline() == 5.05
    tcp = ClientTransaction(req, reliable=True, now=0.0)
    tcp.on_response(_resp(req, 200), 0.05)
    assert tcp.state == State.TERMINATED


def test_provisional_sets_non_invite_retransmit_to_t2() -> None:
    req = _req("OPTIONS")
    tx = ClientTransaction(req, reliable=False, now=0.0)
    tx.on_response(_resp(req, 100), 0.1)
    assert tx.next_deadline() == 4.1
