"""SDP offer/answer for audio calls (RFC 4566, RFC 3264): PCMU, PCMA, G.722, Opus,
telephone-event, ptime."""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field

from agent.sip.message import SipParseError, is_number

# Static payload types we speak, and the dynamic one we offer for DTMF events (RFC 4733).
STATIC_CODECS = {0: "PCMU", 8: "PCMA", 9: "G722"}
TELEPHONE_EVENT_PT = 101
# Opus has no static payload type: the one we offer, its rtpmap (RFC 7587 §7: always
# 48000/2) and fmtp (mono, voice at the rate we send).
OPUS_PT = 111
OPUS_RTPMAP = "opus/48000/2"
OPUS_FMTP = "useinbandfec=0; stereo=0; sprop-stereo=0; maxaveragebitrate=32000"
OPUS_FRAME_MS = (10, 20, 40, 60)  # the ptimes one Opus frame can fill (RFC 6716 §2.1.4)
# Codecs a call can offer and measure, by their SDP encoding name (upper case).
AUDIO_CODECS = ("PCMU", "PCMA", "G722", "OPUS")


@dataclass
class MediaDescription:
    """What one side says about its audio stream: where to send RTP and in which format."""

    address: str
    port: int
    payload_types: list[int]
    rtpmap: dict[int, str] = field(default_factory=dict)
    ptime_ms: int = 20
    direction: str = "sendrecv"
    rtcp_port: int | None = None
    # RTCP XR report blocks (RFC 3611 §5.1 `a=rtcp-xr`), as the attribute's value.
    rtcp_xr: str | None = None

    @property
    def codecs(self) -> list[str]:
        """Encoding names in preference order (static types without rtpmap included)."""
        out = []
        for pt in self.payload_types:
            name = self.rtpmap.get(pt, STATIC_CODECS.get(pt, str(pt))).split("/")[0]
            out.append(name.upper())
        return out

    def first_audio_codec(self, accept: tuple[str, ...] = AUDIO_CODECS) -> tuple[int, str] | None:
        """The first payload type whose codec is in `accept` (encoding names, upper case)."""
        for pt, name in zip(self.payload_types, self.codecs, strict=True):
            if name in accept:
                return pt, name
        return None


def build_sdp(
    media: MediaDescription, *, session_id: int | None = None, origin_address: str | None = None
) -> bytes:
    """An SDP body with one audio m-line (c= carries the media address)."""
    sid = session_id if session_id is not None else secrets.randbelow(2**31)
    ip = "IP6" if ":" in media.address else "IP4"
    o_addr = origin_address or media.address
    o_ip = "IP6" if ":" in o_addr else "IP4"
    lines = [
        "v=0",
        f"o=qos-scout {sid} {sid} IN {o_ip} {o_addr}",
        "s=qos-scout test call",
        f"c=IN {ip} {media.address}",
        "t=0 0",
        f"m=audio {media.port} RTP/AVP {' '.join(str(p) for p in media.payload_types)}",
    ]
    for pt in media.payload_types:
        if pt in media.rtpmap:
            lines.append(f"a=rtpmap:{pt} {media.rtpmap[pt]}")
        if media.rtpmap.get(pt, "").lower().startswith("telephone-event"):
            lines.append(f"a=fmtp:{pt} 0-16")
        if media.rtpmap.get(pt, "").lower().startswith("opus/"):
            lines.append(f"a=fmtp:{pt} {OPUS_FMTP}")
    lines.append(f"a=ptime:{media.ptime_ms}")
    if media.rtcp_xr is not None:
        lines.append(f"a=rtcp-xr:{media.rtcp_xr}")
    lines.append(f"a={media.direction}")
    return ("\r\n".join(lines) + "\r\n").encode("ascii")


def default_offer(address: str, port: int, codecs: list[str] | None = None) -> MediaDescription:
    """PCMU, PCMA (or the given codecs of `AUDIO_CODECS`, in order) and telephone-event at
    20 ms."""
    names = codecs or ["PCMU", "PCMA"]
    by_name = {v: k for k, v in STATIC_CODECS.items()}
    by_name["OPUS"] = OPUS_PT
    pts = []
    for n in names:
        if n.upper() not in by_name:
            raise SipParseError(f"codec {n!r} is not offered (known: {', '.join(AUDIO_CODECS)})")
        pts.append(by_name[n.upper()])
    rtpmap = {pt: OPUS_RTPMAP if pt == OPUS_PT else f"{STATIC_CODECS[pt]}/8000" for pt in pts}
    rtpmap[TELEPHONE_EVENT_PT] = "telephone-event/8000"
    return MediaDescription(address, port, [*pts, TELEPHONE_EVENT_PT], rtpmap)


def parse_sdp(body: bytes) -> MediaDescription:
    """The first audio stream of an SDP body; raises SipParseError naming what is missing."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise SipParseError("SDP body is not UTF-8") from None
    session_c: str | None = None
    session_xr: str | None = None
    media: MediaDescription | None = None
    media_c: str | None = None
    in_audio = False
    for raw in text.splitlines():
        line = raw.strip()
        if len(line) < 2 or line[1] != "=":
            continue
        kind, value = line[0], line[2:]
        if kind == "m":
            if media is not None:
                break  # only the first audio stream
            parts = value.split()
            in_audio = len(parts) >= 4 and parts[0] == "audio"
            if in_audio:
                port = parts[1].split("/")[0]
                if not is_number(port) or int(port) > 65535:
                    raise SipParseError(f"SDP m= port {parts[1]!r} is not a port number")
                pts = [int(p) for p in parts[3:] if is_number(p)]
                media = MediaDescription("", int(port), pts)
        elif kind == "c":
            parts = value.split()
            if len(parts) < 3:
                raise SipParseError(f"SDP c= line {value!r} is not 'IN IP4 address'")
            addr = parts[2].split("/")[0]
            if media is None:
                session_c = addr
            elif in_audio:
                media_c = addr
        elif kind == "a" and value.startswith("rtcp-xr:") and (media is None or in_audio):
            xr = value.partition(":")[2].strip()[:200]  # session level, or the stream's own
            if media is None:
                session_xr = xr
            else:
                media.rtcp_xr = xr
        elif kind == "a" and media is not None and in_audio:
            name, _, arg = value.partition(":")
            if name == "rtpmap":
                pt, _, enc = arg.partition(" ")
                if is_number(pt):
                    media.rtpmap[int(pt)] = enc.strip()
            elif name == "ptime" and is_number(arg.strip()) and len(arg.strip()) < 4:
                if 10 <= int(arg.strip()) <= 120:  # other values are ignored (default 20)
                    media.ptime_ms = int(arg.strip())
            elif name in ("sendrecv", "sendonly", "recvonly", "inactive"):
                media.direction = name
            elif name == "rtcp" and arg.split() and is_number(arg.split()[0]):
                rtcp = int(arg.split()[0])
                media.rtcp_port = rtcp if 0 < rtcp < 65536 else None
    if media is None:
        raise SipParseError("SDP has no audio m= line")
    address = media_c or session_c
    if not address:
        raise SipParseError("SDP has no c= connection address for the audio stream")
    media.address = address
    if media.rtcp_xr is None:
        media.rtcp_xr = session_xr
    return media


def answer(offer: MediaDescription, address: str, port: int) -> MediaDescription:
    """Our answer to an offer (RFC 3264 §6): its first G.711 codec, plus telephone-event."""
    chosen = offer.first_audio_codec(("PCMU", "PCMA"))
    if chosen is None:
        raise SipParseError(f"offer has no PCMU or PCMA (offered: {', '.join(offer.codecs)})")
    pt, name = chosen
    pts = [pt]
    rtpmap = {pt: f"{name}/8000"}
    for opt, enc in offer.rtpmap.items():
        if enc.lower().startswith("telephone-event"):
            pts.append(opt)
            rtpmap[opt] = enc
    direction = {"sendonly": "recvonly", "recvonly": "sendonly"}.get(
        offer.direction, offer.direction
    )
    ans = MediaDescription(address, port, pts, rtpmap, offer.ptime_ms, direction)
    # An offer of RTCP XR VoIP metrics (RFC 3611 §4.7) is accepted: the caller then reports
    # its own receive quality (phones fill their RFC 6035 call reports from it).
    if offer.rtcp_xr is not None and "voip-metrics" in offer.rtcp_xr.split():
        ans.rtcp_xr = "voip-metrics"
    return ans
