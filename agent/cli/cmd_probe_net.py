"""`qos-scout probe udp|bandwidth|trace|dns|mtu ...`: the network probes on the command line.

`add_probe_commands(kinds)` adds the subcommands to `qos-scout probe`; output follows
`agent.cli.output` (a table, or one ProbeResult JSON object per line with `--json`).
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import Any

from agent.cli.output import fmt, run_and_emit
from agent.wire.lite import ProbeResult
from agent.wire.voice import DIRECTIONS, VoiceDirection


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="one JSON result per line")
    p.add_argument("--concurrency", type=int, default=4, help="targets probed at once (4)")


def add_probe_commands(kinds: argparse._SubParsersAction) -> None:
    udp = kinds.add_parser(
        "udp", help="voice-like TWAMP-light or STAMP stream: loss/jitter/MOS per direction"
    )
    udp.add_argument("hosts", nargs="+", metavar="HOST[:PORT]",
                     help="TWAMP-light or STAMP reflector")  # fmt: skip
    udp.add_argument("--port", type=int, default=862, help="reflector port (862)")
    udp.add_argument(
        "--codec",
        default="G711_PLC",
        help="pacing and E-model codec: G711_PLC, G711, G729A, or wideband G722, OPUS",
    )
    udp.add_argument("--ptime", type=float, default=20.0, help="ms of audio per packet (20)")
    udp.add_argument("--rate", type=float, default=None, help="packets/s (default 1000/ptime)")
    udp.add_argument("--size", type=int, default=None, help="UDP payload bytes (codec + RTP)")
    udp.add_argument("--duration", "-t", type=float, default=10.0, help="seconds (10)")
    udp.add_argument("--dscp", type=int, default=46, help="DSCP of test packets (46 = EF)")
    udp.add_argument("--jitter-buffer", type=float, default=60.0, help="ms, for MOS (60)")
    udp.add_argument("--synchronized-clocks", action="store_true",
                     help="both ends run NTP/PTP: report one-way delays")  # fmt: skip
    udp.add_argument("--protocol", choices=["twamp-light", "stamp", "auto"],
                     default="twamp-light", help="test packets (twamp-light)")  # fmt: skip
    _common(udp)
    udp.set_defaults(func=_udp)

    bw = kinds.add_parser("bandwidth", help="TCP throughput up/down, or UDP at a constant rate")
    bw.add_argument("hosts", nargs="+", metavar="HOST[:PORT]", help="qos-scout responder")
    bw.add_argument("--port", type=int, default=5201, help="responder bandwidth port (5201)")
    bw.add_argument("--direction", choices=["up", "down", "both"], default="both")
    bw.add_argument("--streams", "-P", type=int, default=4, help="parallel TCP streams (4)")
    bw.add_argument("--duration", "-t", type=float, default=10.0, help="seconds per direction")
    bw.add_argument("--udp", type=float, default=None, metavar="KBPS",
                    help="UDP mode at this many kbit/s (--direction applies)")  # fmt: skip
    bw.add_argument("--udp-size", type=int, default=1200, help="UDP payload bytes (1200)")
    _common(bw)
    bw.set_defaults(func=_bandwidth)

    tr = kinds.add_parser("trace", help="mtr-style path: per-hop address, RTT and loss")
    tr.add_argument("hosts", nargs="+", metavar="HOST")
    tr.add_argument("--mode", choices=["icmp", "udp", "tcp"], default="icmp")
    tr.add_argument("--port", type=int, default=443, help="TCP mode port (443)")
    tr.add_argument("--rounds", "-c", type=int, default=10, help="probes per hop (10)")
    tr.add_argument("--max-hops", type=int, default=30)
    tr.add_argument("--interval", type=float, default=0.5, help="seconds between rounds")
    tr.add_argument("--timeout", type=float, default=1.0, help="seconds to wait per round")
    _common(tr)
    tr.set_defaults(func=_trace)

    dn = kinds.add_parser("dns", help="resolution time and answers; SIP server discovery")
    dn.add_argument("hosts", nargs="+", metavar="NAME", help="name (or SIP domain with --sip)")
    dn.add_argument("--type", "-q", action="append", dest="types", help="record type (A, AAAA)")
    dn.add_argument("--sip", action="store_true", help="RFC 3263 NAPTR/SRV discovery")
    dn.add_argument("--server", default=None, help="name server address (default: system)")
    dn.add_argument("--server-port", type=int, default=53)
    dn.add_argument("--tcp", action="store_true", help="query over TCP")
    dn.add_argument("--timeout", type=float, default=3.0, help="seconds per query")
    _common(dn)
    dn.set_defaults(func=_dns)

    mt = kinds.add_parser("mtu", help="path MTU with DF set (IPv4/IPv6, needs root)")
    mt.add_argument("hosts", nargs="+", metavar="HOST")
    mt.add_argument("--min", type=int, default=576, dest="min_size", help="smallest size (576)")
    mt.add_argument("--max", type=int, default=None, dest="max_size", help="default: local MTU")
    mt.add_argument("--timeout", type=float, default=1.0, help="seconds per echo request")
    _common(mt)
    mt.set_defaults(func=_mtu)


def _emit(probe: str, args: argparse.Namespace, options: dict[str, Any], table: Any) -> int:
    return run_and_emit(
        probe, args.hosts, options, args.json, table, concurrency=max(1, args.concurrency)
    )


# --------------------------------------------------------------------------- udp


def _udp(args: argparse.Namespace) -> int:
    options = {
        "port": args.port, "codec": args.codec, "ptime_ms": args.ptime,
        "packet_rate": args.rate, "payload_bytes": args.size, "duration_s": args.duration,
        "dscp": args.dscp, "jitter_buffer_ms": args.jitter_buffer,
        "synchronized_clocks": args.synchronized_clocks, "protocol": args.protocol,
    }  # fmt: skip
    return _emit("udp", args, options, udp_table)


def udp_table(results: Sequence[ProbeResult]) -> tuple[list[str], list[list[str]]]:
    headers = ["target", "direction", "packets", "lost", "loss %", "jitter ms", "DSCP rx"]
    headers += ["R", "MOS", "scale (codec ceiling MOS)", "RTT median ms", "RTT p95 ms"]
    rows = []
    for r in results:
        m = r.measurement or {}
        rtt = m.get("rtt_ms") or {}
        for d in DIRECTIONS:
            x = VoiceDirection.model_validate(m[d]) if m.get(d) else VoiceDirection(source="stream")
            rows.append([
                r.target, d, fmt(x.packets_sent), fmt(x.lost), fmt(x.loss_pct, 2),
                fmt(x.jitter_ms, 3), fmt(x.dscp_received), fmt(x.r_factor, 1), fmt(x.mos, 2),
                _scale(x),
                fmt(rtt.get("median"), 3), fmt(rtt.get("p95"), 3),
            ])  # fmt: skip
    return headers, rows


def _scale(x: VoiceDirection) -> str:
    if not x.scale or x.ceiling_mos is None:
        return "—"
    assumed = f"; {len(x.assumed)} codec value(s) assumed, see --json" if x.assumed else ""
    return f"{x.scale} ({x.ceiling_mos:.2f}{assumed})"


# --------------------------------------------------------------------------- bandwidth


def _bandwidth(args: argparse.Namespace) -> int:
    options: dict[str, Any] = {
        "port": args.port, "direction": args.direction, "streams": args.streams,
        "duration_s": args.duration,
    }  # fmt: skip
    if args.udp is not None:
        options.update(mode="udp", udp_rate_kbps=args.udp, udp_packet_bytes=args.udp_size)
    return _emit("bandwidth", args, options, bandwidth_table)


def bandwidth_table(results: Sequence[ProbeResult]) -> tuple[list[str], list[list[str]]]:
    headers = ["target", "test", "Mbit/s", "retransmits", "RTT idle ms", "RTT load ms"]
    headers += ["buffer delay %", "loss %", "jitter ms"]
    rows = []
    for r in results:
        m = r.measurement or {}
        for d in ("upload", "download"):
            x = m.get(d)
            if x:
                rows.append([
                    r.target, f"tcp {d} x{x['streams']}", fmt(x["throughput_bps"] / 1e6, 2),
                    fmt(x.get("retransmits")), fmt(m.get("idle_rtt_ms"), 3),
                    fmt(x.get("rtt_loaded_ms"), 3), fmt(x.get("buffer_delay_pct"), 0), "", "",
                ])  # fmt: skip
        for u in (m.get("udp_up"), m.get("udp_down")):
            if not u:
                continue
            recv = u.get("receive_kbps")
            rows.append([
                r.target, f"udp {u['direction']} {u['target_kbps']:g} kbit/s",
                fmt(recv / 1000 if recv is not None else None, 2), "", "", "", "",
                fmt(u["loss_pct"], 2), fmt(u["jitter_ms"], 3),
            ])  # fmt: skip
    return headers, rows


# --------------------------------------------------------------------------- trace


def _trace(args: argparse.Namespace) -> int:
    options = {
        "mode": args.mode, "port": args.port, "rounds": args.rounds, "max_hops": args.max_hops,
        "interval_s": args.interval, "timeout_s": args.timeout,
    }  # fmt: skip
    return _emit("trace", args, options, trace_table)


def trace_table(results: Sequence[ProbeResult]) -> tuple[list[str], list[list[str]]]:
    headers = ["target", "hop", "address", "sent", "loss %", "median ms", "avg ms", "max ms"]
    headers += ["note"]
    rows = []
    for r in results:
        m = r.measurement or {}
        start = m.get("loss_starts_at_hop")
        for h in m.get("hops") or []:
            rtt = h["rtt_ms"]
            note = "loss starts here" if h["ttl"] == start else ""
            if h["is_destination"]:
                note = (note + ", destination").lstrip(", ")
            rows.append([
                r.target, str(h["ttl"]), fmt(h["address"]), str(h["sent"]),
                fmt(h["loss_pct"], 1), fmt(rtt.get("median"), 3), fmt(rtt.get("avg"), 3),
                fmt(rtt.get("max"), 3), note,
            ])  # fmt: skip
    return headers, rows


# --------------------------------------------------------------------------- dns


def _dns(args: argparse.Namespace) -> int:
    options: dict[str, Any] = {
        "mode": "sip" if args.sip else "resolve", "server": args.server,
        "server_port": args.server_port, "tcp": args.tcp, "timeout_s": args.timeout,
    }  # fmt: skip
    if args.types:
        options["record_types"] = [t.upper() for t in args.types]
    return _emit("dns", args, options, dns_table)


def dns_table(results: Sequence[ProbeResult]) -> tuple[list[str], list[list[str]]]:
    headers = ["target", "query", "rcode", "time ms", "answers"]
    rows = []
    for r in results:
        m = r.measurement or {}
        for q in m.get("queries") or []:
            rows.append([r.target, f"{q['name']} {q['type']}", q["rcode"],
                         fmt(q["time_ms"], 2), " ".join(q["answers"])])  # fmt: skip
        for s in m.get("sip_servers") or []:
            rows.append([r.target, f"SIP {s['transport']} via {s['via']}", "",
                         "", f"{s['host']}:{s['port']} {' '.join(s['addresses'])}"])  # fmt: skip
    return headers, rows


# --------------------------------------------------------------------------- mtu


def _mtu(args: argparse.Namespace) -> int:
    options = {"min_size": args.min_size, "max_size": args.max_size, "timeout_s": args.timeout}
    return _emit("mtu", args, options, mtu_table)


def mtu_table(results: Sequence[ProbeResult]) -> tuple[list[str], list[list[str]]]:
    headers = ["target", "path MTU", "local MTU", "frag-needed MTU", "from", "black hole"]
    rows = []
    for r in results:
        m = r.measurement or {}
        rows.append([r.target, fmt(m.get("path_mtu")), fmt(m.get("local_mtu")),
                     fmt(m.get("frag_needed_mtu")), fmt(m.get("frag_needed_from")),
                     fmt(m.get("pmtu_blackhole"))])  # fmt: skip
    return headers, rows
