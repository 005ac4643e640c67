"""RFC 6035 call reports: the documented samples (RFC 6035 §4.7.3, a Snom 360, Gigaset's
FAQ, linphone's own capture) read into the right per-direction figures and round-trip; the
listener takes a report only from a configured phone and answers every other case with a
named reason; any byte sequence gives a report or VqReportError (hypothesis)."""

from __future__ import annotations

import asyncio
import os
import socket
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.runtime.callreports import CallReportListener, match_phone
from agent.runtime.config import CallReportsConfig, PhoneConfig
from agent.sip.message import SipMessage
from agent.wire.measurements import MEASUREMENTS
from agent.wire.results import ProbeResult
from agent.wire.vqreport import VqReport, VqReportError, measurement

DATA = Path(__file__).resolve().parents[1] / "data" / "vqreport"
SCALE = int(os.environ.get("QS_FUZZ_SCALE", "1"))  # `make fuzz` digs ten times deeper


def _read(name: str) -> VqReport:
    return VqReport.parse((DATA / name).read_bytes())


def test_the_rfc_6035_example_reads_per_direction() -> None:
    # RFC 6035 §4.7.3 (F13) as printed, folded lines included; its IPv4 and MAC addresses
    # replaced by documentation ones (RFC 5737, RFC 7042).
    r = _read("rfc6035-4.7.3.txt")
    assert (r.kind, r.event, r.field("CallID")) == ("session", "CallTerm", "6dg37f1890463")
    assert r.local.get("SessionDesc", "FMTP") == '"annexb=no"'  # the folded continuation
    m = measurement(r, phone_address="192.0.2.100", phone="alice", user_agent=None)
    assert m.local_id == "sip:alice@example.org" and m.remote_id == "sip:bill@example.net"
    assert m.codec == "G729" and m.sample_rate_hz == 8000
    assert m.back.source == "report" and m.out is not None
    assert (m.back.loss_pct, m.back.late_pct, m.back.jitter_ms) == (5.0, 2.0, 2.0)
    assert (m.back.r_factor, m.back.mos, m.out.mos) == (90.0, 4.2, 4.3)
    assert m.back_report.round_trip_delay_ms == 200.0 and m.back_report.mos_cq == 4.3
    assert m.back_report.gap_density_pct == 2.0 and m.back_report.jitter_buffer_max_ms == 120
    # The example's STOP is nine days before its START: no duration rather than a wrong one.
    assert m.duration_s is None and m.start == datetime(2004, 10, 10, 18, 23, 43, tzinfo=UTC)
    MEASUREMENTS["call_report"].model_validate(m.model_dump(mode="json"))


def test_a_snom_report_with_session_lines_between_its_metrics_reads() -> None:
    # The Snom wiki's sample (Settings/rtcp_xr); the page lost its line breaks and addresses,
    # put back here (in the order Gigaset's FAQ prints the same report) with documentation
    # addresses.
    r = _read("snom360.txt")
    assert r.kind == "session" and r.event is None
    assert r.field("CallID") == "3c26a8de500f-12ct7zov3kjs"
    assert r.field("x-SIPmetrics") == "SVA=RG SRD=310 SFC=0"
    m = measurement(r, phone_address="192.0.2.31", phone="desk", user_agent=None,
                    account="sip:446@192.0.2.20")  # fmt: skip
    assert m.local_id == "sip:446@192.0.2.20"  # no LocalID: the PUBLISH's From
    assert m.codec == "G.711U" and m.duration_s == 4.0
    assert (m.back.loss_pct, m.back.jitter_ms, m.back.mos) == (0.0, 4.0, None)
    assert m.out is not None and m.out.jitter_ms == 2.0
    assert m.back_report.gap_duration_ms == 6569


def test_a_gigaset_report_as_its_faq_prints_it_reads() -> None:
    # Gigaset's FAQ "vq_report_collector" (teamwork.gigaset.com), line for line
    r = _read("gigaset.txt")
    assert (r.kind, r.event, r.field("x-UserAgent")) == ("session", "CallTerm", "Gigaset360/8.2.sf")
    m = measurement(r, phone_address="192.168.5.251", phone="desk", user_agent=None,
                    account="sip:446@intern.Gigaset.de")  # fmt: skip
    assert m.local_id == "sip:446@intern.Gigaset.de" and m.remote_id is None
    assert (m.back.loss_pct, m.back.late_pct, m.back.jitter_ms) == (0.0, 0.0, 4.0)
    assert m.out is not None and m.out.jitter_ms == 2.0 and m.out_report is not None
    assert m.out_report.gap_duration_ms == 4677 and m.back_report.jitter_buffer_max_ms == 65535


def test_linphones_own_report_reads_and_has_no_far_end_figures() -> None:
    r = _read("linphone-5.1.65-session.txt")
    m = measurement(r, phone_address="127.0.0.1", phone="soft", user_agent="Linphonec/5.1.65")
    assert m.codec == "PCMU" and m.back.loss_pct == 0.0 and m.back.mos == 5.0
    assert m.out is None  # its RemoteMetrics holds only Timestamps and SessionDesc
    assert m.duration_s == 13.0


@pytest.mark.parametrize(
    "name", ["rfc6035-4.7.3.txt", "snom360.txt", "gigaset.txt", "linphone-5.1.65-session.txt"]
)
def test_samples_round_trip(name: str) -> None:
    r = _read(name)
    again = VqReport.parse(bytes(r))
    assert again == r and bytes(again) == bytes(r)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"", "report is empty"),
        (b"VQAlertReport: Type=MOSQ\r\n", "VQAlertReport is not read"),
        (b"Hello\r\n", "first line 'Hello' is not VQSessionReport or VQIntervalReport"),
        (b"VQIntervalReport\r\nCallID: x\r\nLocalMetrics:\r\n", "report has no LocalAddr line"),
        (b"VQIntervalReport\r\nCallID: x\r\nLocalAddr: IP=1\r\n", "no LocalMetrics block"),
        (b"VQIntervalReport\r\nCallID x\r\n", "line 2 'CallID x' is not 'Name: value'"),
        (b"VQIntervalReport\r\nLocalMetrics:\r\nPacketLoss: NLR\r\n",
         "line 3 (PacketLoss): 'NLR' is not KEY=value"),
        (b"VQIntervalReport\r\nCallID: \x00\r\n", "control character"),
        (b"\xff", "report is not UTF-8"),
        (b"VQIntervalReport\r\n" + b"x: y\r\n" * 300, "report has 301 lines (at most 200)"),
    ],
)  # fmt: skip
def test_a_bad_report_is_refused_naming_what_is_wrong(body: bytes, message: str) -> None:
    with pytest.raises(VqReportError) as exc:
        VqReport.parse(body)
    assert message in str(exc.value)


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("PacketLoss: NLR=150", "PacketLoss: NLR=150 is outside 0..100"),
        ("PacketLoss: NLR=five", "PacketLoss: NLR='five' is not a number"),
        ("QualityEst: MOSLQ=7", "QualityEst: MOSLQ=7 is outside 1..5"),
        (
            "Timestamps: START=yesterday",
            "Timestamps: START='yesterday' is not an ISO 8601 UTC time",
        ),
    ],
)
def test_a_figure_out_of_its_range_is_refused(line: str, message: str) -> None:
    body = f"VQIntervalReport\r\nCallID: c\r\nLocalAddr: IP=1\r\nLocalMetrics:\r\n{line}\r\n"
    report = VqReport.parse(body.encode())
    with pytest.raises(VqReportError) as exc:
        measurement(report, phone_address="192.0.2.1", phone=None, user_agent=None)
    assert str(exc.value) == message


LINES = st.sampled_from([
    "VQSessionReport: CallTerm", "VQIntervalReport", "VQAlertReport", "CallID: a",
    "LocalID: <sip:a@b>",
    "LocalAddr: IP=1 PORT=2", "LocalMetrics:", "RemoteMetrics:", "DialogID: x", "x-Foo: 1",
    "PacketLoss: NLR=5.0 JDR=x", "Delay: IAJ=99999999999", "QualityEst: MOSLQ=4.1 RLQ=-3",
    "Timestamps: START=2024-01-01T00:00:00Z STOP=2023-01-01T00:00:00+01:00", "  FMTP=\"a b\"",
    "SessionDesc: PT=0 PD=PCMU SR=0", "BurstGapLoss: BLD=1e9", ":", "=", "",
])  # fmt: skip


def _any_outcome(data: bytes) -> None:
    try:
        r = VqReport.parse(data)
    except VqReportError:
        return
    assert VqReport.parse(bytes(r)) == r
    try:
        measurement(r, phone_address="192.0.2.1", phone=None, user_agent=None)
    except VqReportError:
        pass


@settings(max_examples=400 * SCALE, deadline=None)
@given(st.lists(LINES | st.text(max_size=40), max_size=25))
def test_the_parser_never_raises_anything_else_on_lines(lines: list[str]) -> None:
    _any_outcome("\r\n".join(lines).encode())


@settings(max_examples=300 * SCALE, deadline=None)
@given(st.binary(max_size=400))
def test_the_parser_never_raises_anything_else_on_bytes(data: bytes) -> None:
    _any_outcome(data)


# ------------------------------------------------------------------ the listener


PHONES = [
    PhoneConfig(name="office", address="127.0.0.0/8"),
    PhoneConfig(name="alice", account="sip:alice@example.org"),
]


def test_a_phone_matches_by_address_or_by_account() -> None:
    assert match_phone(PHONES, "127.0.0.9", "sip:x@y").name == "office"  # type: ignore[union-attr]
    assert match_phone(PHONES, "192.0.2.7", "sip:Alice@example.org;transport=udp").name == "alice"  # type: ignore[union-attr]
    assert match_phone(PHONES, "192.0.2.7", "sip:bob@example.org") is None
    both = [PhoneConfig(name="b", address="192.0.2.0/24", account="sip:a@b")]
    assert match_phone(both, "192.0.2.1", "sip:c@b") is None


def test_the_config_refuses_a_phone_without_a_key_and_a_listener_without_phones() -> None:
    with pytest.raises(ValueError, match="a phone needs an address or an account"):
        PhoneConfig(name="x")
    with pytest.raises(ValueError, match="is not an address or a network"):
        PhoneConfig(name="x", address="10.0.0.0/33")
    with pytest.raises(ValueError, match="name at least one phone"):
        CallReportsConfig(port=5070)


def _publish(body: bytes, *, ctype: str = "application/vq-rtcpxr", event: str = "vq-rtcpxr",
             cseq: int = 1, frm: str = "<sip:alice@example.org>;tag=1") -> bytes:  # fmt: skip
    msg = SipMessage.request("PUBLISH", "sip:collector@127.0.0.1")
    for k, v in [("Via", f"SIP/2.0/UDP 127.0.0.1:5999;branch=z9hG4bK{cseq}x"), ("From", frm),
                 ("To", "<sip:collector@127.0.0.1>"), ("Call-ID", "pub-1"),
                 ("CSeq", f"{cseq} PUBLISH"), ("Event", event), ("Content-Type", ctype),
                 ("User-Agent", "test-phone/1")]:  # fmt: skip
        msg.add(k, v)
    msg.body = body
    msg.set("Content-Length", str(len(body)))
    return bytes(msg)


def _exchange(port: int, datagram: bytes) -> str:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(5.0)
        s.sendto(datagram, ("127.0.0.1", port))
        return s.recv(65535).decode()


def _exchange_tcp(port: int, message: bytes) -> str:
    with socket.create_connection(("127.0.0.1", port), timeout=5.0) as s:
        s.sendall(message)
        return s.recv(65535).decode()


def test_the_listener_stores_a_configured_phones_report_and_refuses_the_rest() -> None:
    rfc = (DATA / "rfc6035-4.7.3.txt").read_bytes()
    got: list[ProbeResult] = []

    async def main() -> list[str]:
        alice = PhoneConfig(name="alice", account="sip:alice@example.org")
        cfg = CallReportsConfig(port=None, address="127.0.0.1", phones=[alice])
        listener = CallReportListener(cfg, got.append)
        await listener.start()
        assert listener.port is not None
        try:
            cases = [
                _publish(rfc),
                _publish(rfc),  # a retransmission: answered, stored once
                _publish(rfc.replace(b"alice@", b"mallory@"), cseq=2),
                _publish(rfc, ctype="application/sdp", cseq=3),
                _publish(rfc, event="presence", cseq=4),
                _publish(b"VQIntervalReport\r\n", cseq=5),
                _publish(rfc.replace(b"NLR=5.0", b"NLR=500"), cseq=6),
            ]
            got_udp = [
                (await asyncio.to_thread(_exchange, listener.port, c)).split("\r\n")[0]
                for c in cases
            ]
            tcp = _publish(rfc.replace(b"6dg37f1890463", b"over-tcp"), cseq=7)
            tcp = tcp.replace(b"SIP/2.0/UDP", b"SIP/2.0/TCP")
            answer = await asyncio.to_thread(_exchange_tcp, listener.port, tcp)
            return [*got_udp, answer.split("\r\n")[0]]
        finally:
            await listener.stop()

    answers = asyncio.run(main())
    assert answers == [
        "SIP/2.0 200 OK",
        "SIP/2.0 200 OK",
        "SIP/2.0 403 Forbidden (not a phone of this site)",
        "SIP/2.0 415 Unsupported Media Type",
        "SIP/2.0 489 Bad Event (only vq-rtcpxr)",
        "SIP/2.0 400 Bad Request (report has no CallID line)",
        "SIP/2.0 400 Bad Request (PacketLoss: NLR=500 is outside 0..100)",
        "SIP/2.0 200 OK",  # over TCP
    ]
    assert len(got) == 2 and got[1].measurement is not None
    assert got[1].measurement["call_id"] == "over-tcp"
    res = got[0]
    assert (res.probe, res.target, res.module) == ("call_report", "sip:alice@example.org", "alice")
    assert res.measurement is not None and res.measurement["back"]["loss_pct"] == 5.0
    assert res.measurement["user_agent"] == "test-phone/1"
    # the agent's clock, not the phone's 2004 (the report arrives as what it covers ends)
    assert abs((datetime.now(UTC) - res.started_at).total_seconds()) < 300
    assert res.measurement["start"] == "2004-10-10T18:23:43Z"
    ProbeResult.model_validate(res.to_json_dict())


def test_no_job_or_profile_module_can_schedule_call_reports() -> None:
    from agent.wire.jobs import ProbeJobSpec
    from agent.wire.profiles import ProfileError, validate_modules

    with pytest.raises(ValueError, match="'call_report' results come from phones' reports"):
        ProbeJobSpec(probe="call_report", targets=["x"])
    with pytest.raises(ProfileError, match=r"modules\.m\.probe: 'call_report' results come from"):
        validate_modules({"m": {"probe": "call_report", "targets": ["x"], "interval_s": 60}})


def test_liblinphones_fraction_loss_is_read_as_percent() -> None:
    body = (DATA / "linphone-5.1.65-session.txt").read_bytes()
    r = VqReport.parse(body.replace(b"NLR=0.0 JDR=0.0", b"NLR=0.2 JDR=0.1"))
    m = measurement(r, phone_address="127.0.0.1", phone=None, user_agent=None)
    assert (m.back.loss_pct, m.back.late_pct) == (20.0, 10.0)
    assert m.reading and "10 % steps" in m.reading[0]
    with pytest.raises(VqReportError, match=r"PacketLoss: NLR=2 is outside 0\.\.1"):
        measurement(VqReport.parse(body.replace(b"NLR=0.0", b"NLR=2")), phone_address="x",
                    phone=None, user_agent=None)  # fmt: skip
    rfc = measurement(_read("rfc6035-4.7.3.txt"), phone_address="x", phone=None, user_agent=None)
    assert rfc.reading == [] and rfc.back.loss_pct == 5.0


def test_reports_beyond_the_rate_limit_are_answered_503_until_the_minute_is_over() -> None:
    now = [1000.0]
    got: list[ProbeResult] = []
    cfg = CallReportsConfig(address="127.0.0.1", max_per_minute=2, phones=PHONES)
    listener = CallReportListener(cfg, got.append, clock=lambda: now[0])
    req = SipMessage.parse(_publish((DATA / "rfc6035-4.7.3.txt").read_bytes()))
    at = datetime.now(UTC)
    codes = [listener.handle(req, ("127.0.0.1", 5999), at)[0] for _ in range(3)]
    now[0] += 60.0
    codes.append(listener.handle(req, ("127.0.0.1", 5999), at)[0])
    assert codes == [200, 200, 503, 200] and len(got) == 3
