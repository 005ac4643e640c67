"""`agent.sip.rtp` against aiortc and FFmpeg: the same bytes out, the same fields in, the same
packets refused; G.711 identical to FFmpeg's encoders over every 16-bit sample; and a G.711
call's media path loads none of aiortc, PyAV or numpy."""

from __future__ import annotations

import fractions
import subprocess
import sys

import av
import numpy as np
from aiortc import rtp as ref
from aiortc.codecs.g711 import PcmaEncoder, PcmuEncoder
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.sip import rtp
from agent.sip.media import g711_payloads


def test_rtp_packet_bytes_and_fields_as_aiortc() -> None:
    data = rtp.rtp_packet(8, 65535, 0xFFFFFFFF, 0x12345678, b"\x55" * 160, marker=1)
    want = ref.RtpPacket(payload_type=8, marker=1, sequence_number=65535, timestamp=0xFFFFFFFF,
                         ssrc=0x12345678, payload=b"\x55" * 160).serialize()  # fmt: skip
    assert data == want
    # CSRCs, a header extension and padding are skipped as aiortc skips them
    fancy = ref.RtpPacket(payload_type=0, sequence_number=7, timestamp=160, ssrc=9, payload=b"abc")
    fancy.csrc, fancy.padding_size = [1, 2], 5
    raw = bytearray(fancy.serialize())
    raw[0] |= 0x10  # an extension header of one word after the CSRCs
    raw[20:20] = b"\xbe\xde\x00\x01\x10\xff\x00\x00"
    got, theirs = rtp.parse_rtp(bytes(raw)), ref.RtpPacket.parse(bytes(raw))
    assert (got.payload_type, got.sequence_number, got.timestamp, got.ssrc, got.payload) == (
        theirs.payload_type, theirs.sequence_number, theirs.timestamp, theirs.ssrc,
        theirs.payload,
    )  # fmt: skip
    assert got.payload == b"abc"


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=40).map(lambda b: (b"\x80" if len(b) % 3 else b"\xb3") + b))
def test_rtp_parse_refuses_what_aiortc_refuses(data: bytes) -> None:
    try:
        theirs = ref.RtpPacket.parse(data)
    except ValueError:
        theirs = None
    try:
        got = rtp.parse_rtp(data)
    except ValueError:
        got = None
    assert (got is None) == (theirs is None)
    if got is not None and theirs is not None:
        assert (got.ssrc, got.sequence_number, got.payload) == (
            theirs.ssrc, theirs.sequence_number, theirs.payload,
        )  # fmt: skip


def test_rtcp_reports_as_aiortc() -> None:
    blocks = [rtp.ReportBlock(0xA, 12, -3, 70000, 42, 0x1234, 0x10000),
              rtp.ReportBlock(0xB, 0, 0x7FFFFF, 1, 0, 0, 0)]  # fmt: skip
    infos = [
        ref.RtcpReceiverInfo(
            ssrc=b.ssrc,
            fraction_lost=b.fraction_lost,
            packets_lost=b.packets_lost,
            highest_sequence=b.highest_sequence,
            jitter=b.jitter,
            lsr=b.lsr,
            dlsr=b.dlsr,
        )
        for b in blocks
    ]
    sender = (0xE1234567_89ABCDEF, 160, 50, 8000)
    sr = bytes(rtp.Report(0x77, sender, blocks))
    want_sr = bytes(ref.RtcpSrPacket(ssrc=0x77, sender_info=ref.RtcpSenderInfo(
        ntp_timestamp=sender[0], rtp_timestamp=sender[1], packet_count=sender[2],
        octet_count=sender[3]), reports=infos))  # fmt: skip
    assert sr == want_sr
    rr = bytes(rtp.Report(0x77, None, blocks[:1]))
    assert rr == bytes(ref.RtcpRrPacket(ssrc=0x77, reports=infos[:1]))
    assert rtp.rtcp_bye([0x77]) == bytes(ref.RtcpByePacket(sources=[0x77]))
    # a compound packet with an SDES between: the reports come back, the rest is skipped
    sdes = bytes(ref.RtcpSdesPacket(chunks=[ref.RtcpSourceInfo(ssrc=0x77, items=[(1, b"x")])]))
    got = rtp.parse_rtcp(sr + sdes + rr + rtp.rtcp_bye([0x77]))
    assert got == [rtp.Report(0x77, sender, blocks), rtp.Report(0x77, None, blocks[:1])]
    for bad in (sr[:-4], b"\x40" + sr[1:], sr[:3]):
        try:
            rtp.parse_rtcp(bad)
        except ValueError:
            continue
        raise AssertionError(f"accepted {bad.hex()}")


def _ffmpeg(name: str, samples: np.ndarray) -> bytes:
    ctx = av.CodecContext.create(name, "w")
    ctx.sample_rate, ctx.layout, ctx.format = 8000, "mono", "s16"
    ctx.time_base = fractions.Fraction(1, 8000)
    frame = av.AudioFrame.from_ndarray(samples.reshape(1, -1), format="s16", layout="mono")
    frame.sample_rate, frame.pts, frame.time_base = 8000, 0, fractions.Fraction(1, 8000)
    return b"".join(bytes(p) for p in [*ctx.encode(frame), *ctx.encode(None)])


def test_g711_as_ffmpeg_for_every_sample_and_the_tone_as_aiortc() -> None:
    every = np.arange(-32768, 32768, dtype=np.int16)
    assert rtp.g711_encode(every.tolist(), 0) == _ffmpeg("pcm_mulaw", every)
    assert rtp.g711_encode(every.tolist(), 8) == _ffmpeg("pcm_alaw", every)
    # the test tone and its frames, as aiortc's encoders made them before
    t = np.arange(8000) / 8000.0
    tone = (np.sin(2 * np.pi * 440.0 * t) * 3276).astype(np.int16)
    assert rtp.tone(8000, 1.0) == tone.tolist()
    for pt, enc in ((0, PcmuEncoder()), (8, PcmaEncoder())):
        frame = av.AudioFrame.from_ndarray(tone.reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate, frame.pts, frame.time_base = 8000, 0, fractions.Fraction(1, 8000)
        data = b"".join(enc.encode(frame)[0])
        assert g711_payloads(pt, 20) == [data[i : i + 160] for i in range(0, len(data), 160)]


def test_g711_media_path_loads_no_aiortc_pyav_or_numpy() -> None:
    code = (
        "import sys\n"
        "from agent.sip import media, rtp, sender\n"
        "media.codec_payloads('PCMA', 20); media.codec_payloads('PCMU', 20)\n"
        "rtp.parse_rtcp(bytes(rtp.Report(1, (1, 2, 3, 4), [])))\n"
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'aiortc', 'av', 'numpy'}))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
