"""RTP pacing benchmark: send-interval error of our RTP at 1, 10, 50 and 100 concurrent calls,
measured on the wire (tcpdump capture timestamps on loopback), beside SIPp's own RTP streaming
(`exec rtp_stream`) at the same counts in the same run.

Both senders are pinned to CPU 0 (`taskset -c 0`), the far end (`qos-scout responder`, media
in sink mode: it only sends RTCP) to CPU 1. For each stream the interval between consecutive
packets on the wire is compared with the 20 ms ptime; p50/p99 of |interval - 20 ms| over all
streams are printed as a Markdown table. Needs root (tcpdump) and sipp.
Run: `sudo .venv/bin/python bench/rtp_pacing.py [--counts 1,10,50,100] [--duration 10]`.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
PY = sys.executable
PIN = ["taskset", "-c", "0"]  # both senders on CPU 0; --rt adds a real-time priority

SCENARIO = """<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="qos-scout pacing bench: UAC streaming PCMU with rtp_stream">
  <send retrans="500"><![CDATA[
INVITE sip:[service]@[remote_ip]:[remote_port] SIP/2.0
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
From: sipp <sip:sipp@[local_ip]:[local_port]>;tag=[call_number]
To: <sip:[service]@[remote_ip]:[remote_port]>
Call-ID: [call_id]
CSeq: 1 INVITE
Contact: <sip:sipp@[local_ip]:[local_port]>
Max-Forwards: 70
X-Scout-Media: sink
Content-Type: application/sdp
Content-Length: [len]

v=0
o=sipp 1 1 IN IP[local_ip_type] [local_ip]
s=-
c=IN IP[media_ip_type] [media_ip]
t=0 0
m=audio [rtpstream_audio_port] RTP/AVP 0
a=rtpmap:0 PCMU/8000
a=ptime:20
]]></send>
  <recv response="100" optional="true"/>
  <recv response="180" optional="true"/>
  <recv response="200" rrs="true"/>
  <send><![CDATA[
ACK [next_url] SIP/2.0
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
From: sipp <sip:sipp@[local_ip]:[local_port]>;tag=[call_number]
[last_To:]
Call-ID: [call_id]
CSeq: 1 ACK
Max-Forwards: 70
Content-Length: 0

]]></send>
  <nop><action><exec rtp_stream="@FILE@,-1,0"/></action></nop>
  <pause milliseconds="@PAUSE@"/>
  <nop><action><exec rtp_stream="pause"/></action></nop>
  <send retrans="500"><![CDATA[
BYE [next_url] SIP/2.0
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
From: sipp <sip:sipp@[local_ip]:[local_port]>;tag=[call_number]
[last_To:]
Call-ID: [call_id]
CSeq: 2 BYE
Max-Forwards: 70
Content-Length: 0

]]></send>
  <recv response="200"/>
</scenario>
"""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def pcmu_wav(path: Path, seconds: float = 2.0) -> None:
    """A RIFF/WAVE file of mu-law tone bytes (SIPp skips the header and streams the rest)."""
    sys.path.insert(0, str(ROOT))
    from agent.sip.media import g711_payloads

    data = b"".join(g711_payloads(0, 20, seconds))
    fmt = struct.pack("<HHIIHH", 7, 1, 8000, 8000, 1, 8)
    body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt
    body += b"data" + struct.pack("<I", len(data)) + data
    path.write_bytes(b"RIFF" + struct.pack("<I", len(body)) + body)


def read_pcap(path: Path) -> list[tuple[float, int, int, int]]:
    """(capture time s, src port, SSRC, seq) of every 172-byte PCMU RTP packet in a pcap."""
    data = path.read_bytes()
    magic = struct.unpack("<I", data[:4])[0]
    scale = 1e-9 if magic == 0xA1B23C4D else 1e-6
    linktype = struct.unpack("<I", data[20:24])[0]
    l2 = {1: 14, 113: 16, 276: 20}.get(linktype, 14)
    out = []
    pos = 24
    while pos + 16 <= len(data):
        sec, frac, incl, _ = struct.unpack("<IIII", data[pos : pos + 16])
        pkt = data[pos + 16 : pos + 16 + incl]
        pos += 16 + incl
        ip = pkt[l2:]
        if len(ip) < 28 or ip[0] >> 4 != 4 or ip[9] != 17:
            continue
        ihl = (ip[0] & 15) * 4
        sport = struct.unpack("!H", ip[ihl : ihl + 2])[0]
        rtp = ip[ihl + 8 :]
        if len(rtp) != 172 or rtp[0] >> 6 != 2 or rtp[1] & 0x7F != 0:
            continue
        seq, _, ssrc = struct.unpack("!HII", rtp[2:12])
        out.append((sec + frac * scale, sport, ssrc, seq))
    return out


def interval_errors_ms(packets: list[tuple[float, int, int, int]], ptime_ms: float) -> np.ndarray:
    streams: dict[tuple[int, int], list[tuple[int, float]]] = defaultdict(list)
    for t, sport, ssrc, seq in packets:
        streams[(sport, ssrc)].append((seq, t))
    errors = []
    for pkts in streams.values():
        pkts.sort()
        times = np.array([t for _, t in pkts])
        seqs = np.array([s for s, _ in pkts])
        ok = np.diff(seqs) == 1  # consecutive packets only
        errors.append(np.abs(np.diff(times)[ok] * 1000.0 - ptime_ms))
    return np.concatenate(errors) if errors else np.array([])


class Capture:
    def __init__(self, path: Path, host: str) -> None:
        argv = ["tcpdump", "-i", "lo", "-n", "-s", "256", "--time-stamp-precision=nano",
                "-B", "16384", "-w", str(path), f"udp and dst host {host}"]  # fmt: skip
        self.proc = subprocess.Popen(argv, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL)
        time.sleep(1.0)

    def stop(self) -> str:
        time.sleep(0.5)
        self.proc.send_signal(signal.SIGINT)
        _, err = self.proc.communicate(timeout=20)
        return err.decode(errors="replace")


def run_ours(host: str, port: int, calls: int, duration: float) -> None:
    """Child process on CPU 0: `calls` concurrent calls through the sip_call machinery."""
    code = (
        "import asyncio, sys\n"
        "from agent.sip import client\n"
        "from agent.sip.call import CallSettings, place_call\n"
        "async def main(host, port, n, d):\n"
        "    t = await client.resolve(f'sip:bench@{host}:{port}', 'udp')\n"
        "    ep = await client.open_endpoint(t)\n"
        "    s = CallSettings(duration_s=d, codecs=['PCMU'], media_mode='sink', defer_stats=True)\n"
        "    rs = await asyncio.gather(*(place_call(ep, t, s) for _ in range(n)))\n"
        "    rs = [r.finish() for r in rs]\n"
        "    bad = [r.failure for r in rs if not r.setup_ok]\n"
        "    print(f'calls ok {n - len(bad)}/{n}', bad[:3])\n"
        "asyncio.run(main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])))\n"
    )
    argv = [PY, "-c", code, host, str(port), str(calls), str(duration)]
    subprocess.run([*PIN, *argv],
                   check=True, cwd=ROOT, timeout=duration + 120)  # fmt: skip


def run_sipp(host: str, port: int, calls: int, duration: float, tmp: Path) -> None:
    wav = tmp / "tone.wav"
    if not wav.exists():
        pcmu_wav(wav)
    xml = tmp / "uac_stream.xml"
    xml.write_text(
        SCENARIO.replace("@FILE@", str(wav)).replace("@PAUSE@", str(int(duration * 1000)))
    )
    argv = [*PIN, "sipp", "-sf", str(xml), f"{host}:{port}", "-s", "bench",
            "-i", "127.0.0.1", "-p", str(free_port()), "-m", str(calls), "-l", str(calls),
            "-r", str(calls), "-rp", "1000", "-nostdin", "-timeout", f"{int(duration + 60)}s",
            "-mi", "127.0.0.1"]  # fmt: skip
    res = subprocess.run(argv, capture_output=True, cwd=tmp, timeout=duration + 120)
    if res.returncode != 0:
        print(f"  sipp exit {res.returncode}: {res.stdout.decode(errors='replace')[-400:]}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--counts", default="1,10,50,100")
    ap.add_argument("--duration", type=float, default=10.0)
    ap.add_argument("--rt", action="store_true", help="run both senders with chrt -f 10")
    args = ap.parse_args()
    if args.rt:
        PIN[:0] = ["chrt", "-f", "10"]
    if os.geteuid() != 0:
        print("needs root (tcpdump on loopback)", file=sys.stderr)
        return 2
    for tool in ("tcpdump", "sipp", "taskset"):
        if shutil.which(tool) is None:
            print(f"{tool} is not installed", file=sys.stderr)
            return 2
    counts = [int(c) for c in args.counts.split(",")]
    # A loopback address of our own: other traffic on lo stays out of the capture.
    host = f"127.0.{random.randrange(1, 255)}.{random.randrange(2, 255)}"
    sip_port = free_port()
    responder = subprocess.Popen(
        ["taskset", "-c", "1", PY, "-m", "agent.cli.main", "responder", "--bind", host,
         "--twamp-port", "off", "--bandwidth-port", "off", "--natprobe-port", "off",
         "--sip-port", str(sip_port), "--sip-tls-port", "off"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )  # fmt: skip
    assert responder.stdout is not None
    if not responder.stdout.readline().startswith("responder ready"):
        print("responder did not start", file=sys.stderr)
        return 1
    rows = []
    try:
        with tempfile.TemporaryDirectory(prefix="pacing") as tmpdir:
            tmp = Path(tmpdir)
            for n in counts:
                for who in ("qos-scout", "SIPp"):
                    pcap = tmp / f"{who}-{n}.pcap"
                    cap = Capture(pcap, host)
                    load0 = os.getloadavg()[0]
                    if who == "qos-scout":
                        run_ours(host, sip_port, n, args.duration)
                    else:
                        run_sipp(host, sip_port, n, args.duration, tmp)
                    stats = cap.stop().strip().splitlines()
                    pkts = read_pcap(pcap)
                    err = interval_errors_ms(pkts, 20.0)
                    streams = len({(p[1], p[2]) for p in pkts})
                    if err.size == 0:
                        rows.append((n, who, streams, 0, None, None, None, load0))
                        continue
                    p50, p99 = np.percentile(err, 50), np.percentile(err, 99)
                    rows.append((n, who, streams, int(err.size), float(p50), float(p99),
                                 float(err.max()), load0))  # fmt: skip
                    print(f"{who:9s} {n:3d} calls: {streams} streams, {err.size} intervals, "
                          f"p50 {rows[-1][4]:.3f} ms, p99 {rows[-1][5]:.3f} ms "
                          f"({stats[-1] if stats else ''})", flush=True)  # fmt: skip
    finally:
        responder.terminate()
        responder.wait(10)
    print()
    print("| calls | sender | streams seen | intervals | error p50 (ms) | error p99 (ms) "
          "| max (ms) | load avg |")  # fmt: skip
    print("|---:|---|---:|---:|---:|---:|---:|---:|")
    for n, who, streams, k, p50, p99, mx, load in rows:
        f = lambda v: "—" if v is None else f"{v:.3f}"  # noqa: E731
        print(f"| {n} | {who} | {streams} | {k} | {f(p50)} | {f(p99)} | {f(mx)} | {load:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
