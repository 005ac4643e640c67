"""Accuracy benchmark: injected impairments vs what the probes measure, beside iperf3.

Builds namespace links (needs root), injects loss (nftables), delay and jitter (the seeded
relay of tests/netlab.py) and rate limits (tc tbf), runs the udp and bandwidth probes and
iperf3 on the same links in the same run, and prints a Markdown table: injected value,
qos-scout's figure, iperf3's figure and the ratio. An Opus-paced stream under injected loss
is scored beside its expected ITU-T G.107.1 value. Run: `.venv/bin/python bench/accuracy.py`.
The `stamp` section runs TWAMP-light and STAMP on one impaired link, and Nokia's twampy
sender against our responder there when twampy is available (TWAMPY_SRC, see
tests/net/twampy_peer.py).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# the repository (netlab imports `tests.ports`), tests/ (netlab) and tests/net
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "tests" / "net"))

import netlab  # noqa: E402
import twampy_peer  # noqa: E402

PY = sys.executable
SNIPPET = (
    "import asyncio, json, sys\n"
    "from agent.probes import run_probe\n"
    "r = asyncio.run(run_probe(sys.argv[1], sys.argv[2], json.loads(sys.argv[3])))\n"
    "print(json.dumps(r.to_json_dict()))\n"
)
Row = tuple[str, str, str, str, str]
ONLY_OURS = ["--sip-port", "off", "--sip-tls-port", "off", "--natprobe-port", "off"]


def probe(lab: netlab.NetLab | None, node: str, kind: str, target: str, opts: dict) -> dict:
    argv = [PY, "-c", SNIPPET, kind, target, json.dumps(opts)]
    if lab is None:
        out = subprocess.run(argv, capture_output=True, text=True, check=True, cwd=ROOT).stdout
    else:
        out = lab.run_in(node, argv, timeout=600).stdout
    res = json.loads(out.strip().splitlines()[-1])
    if not res["success"]:
        raise RuntimeError(f"{kind} probe failed: {res['error']}")
    return res["measurement"]


def responder(lab: netlab.NetLab | None, node: str, args: list[str]) -> subprocess.Popen:
    argv = [
        PY,
        "-m",
        "agent.cli.main",
        "responder",
        "--sip-port",
        "off",
        "--sip-tls-port",
        "off",
        "--natprobe-port",
        "off",
        *args,
    ]
    if lab is None:
        p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                             cwd=ROOT)  # fmt: skip
    else:
        p = lab.popen_in(node, argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    assert p.stdout is not None
    if not p.stdout.readline().startswith("responder ready"):
        raise RuntimeError("responder did not start")
    return p


def iperf3(lab: netlab.NetLab | None, node: str, args: list[str]) -> dict:
    argv = ["iperf3", *args, "-J"]
    if lab is None:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=300).stdout
    else:
        out = lab.run_in(node, argv, timeout=300, check=False).stdout
    return json.loads(out)


def iperf3_server(lab: netlab.NetLab | None, node: str, port: int) -> subprocess.Popen:
    argv = ["iperf3", "-s", "-p", str(port)]
    if lab is None:
        p = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    else:
        p = lab.popen_in(node, argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(0.5)
    return p


def f(x: float | None, digits: int = 3) -> str:
    return "—" if x is None else f"{x:.{digits}f}"


def ratio(a: float | None, b: float | None) -> str:
    return "—" if a is None or not b else f"{a / b:.3f}"


# --------------------------------------------------------------------------- sections


def loss_rows(n: int) -> list[Row]:
    rows: list[Row] = []
    for direction in ("out", "back"):
        with netlab.NetLab("qb", router=True) as lab:
            responder(lab, "b", [])
            iface = lab.iface("r", "b") if direction == "out" else lab.iface("r", "a")
            rule = lab.nft_loss("r", iface, 2.0, "out", match="meta l4proto udp")
            m = probe(lab, "a", "udp", f"{lab.addr('b')}:862",
                      {"packet_rate": 2000, "duration_s": n / 2000, "wait_s": 2})  # fmt: skip
            seen, dropped = rule.counts()
            other = "back" if direction == "out" else "out"
            d, o = m[direction], m[other]
            got_d = f"{d['loss_pct']:.3f} ({d['lost']}/{d['packets_sent']})"
            got_o = f"{o['loss_pct']:.3f} ({o['lost']}/{o['packets_sent']})"
            rows.append(
                (
                    f"loss {direction} % (2 % injected {direction}, {n} pkts)",
                    f"{100 * dropped / seen:.3f} (nft: {dropped}/{seen})",
                    got_d,
                    "—",
                    "—",
                )
            )
            rows.append((f"loss {other} % (none injected)", "0.000", got_o, "—", "—"))
    return rows


def stamp_rows(n: int) -> list[Row]:
    """TWAMP-light and STAMP one after the other on the same impaired link: random loss both
    ways (nftables counters are the reference), then EF re-marked to 0 upstream only."""
    rows: list[Row] = []
    with netlab.NetLab("qb", router=True) as lab:
        responder(lab, "b", [])
        out_rule = lab.nft_loss("r", lab.iface("r", "b"), 2.0, "out", match="meta l4proto udp")
        back_rule = lab.nft_loss("r", lab.iface("r", "a"), 1.0, "out", match="meta l4proto udp")
        for protocol in ("twamp-light", "stamp"):
            before = (out_rule.counts(), back_rule.counts())
            m = probe(lab, "a", "udp", f"{lab.addr('b')}:862", {"packet_rate": 2000,
                      "duration_s": n / 2000, "wait_s": 2, "protocol": protocol})  # fmt: skip
            for (d, pct), rule, (seen0, dropped0) in zip(
                (("out", 2), ("back", 1)), (out_rule, back_rule), before, strict=True
            ):
                seen, dropped = rule.counts()
                seen, dropped = seen - seen0, dropped - dropped0
                x = m[d]
                rows.append((f"{protocol}: loss {d} % ({pct} % injected {d}, {n} pkts)",
                             f"{100 * dropped / seen:.3f} (nft: {dropped}/{seen})",
                             f"{x['loss_pct']:.3f} ({x['lost']}/{x['packets_sent']})", "—",
                             "—"))  # fmt: skip
        rows += twampy_rows(lab, out_rule, back_rule, n)
        out_rule.remove()
        back_rule.remove()
        lab.nft_remark_dscp("r", lab.iface("r", "b"), dscp=0, direction="out")
        for protocol in ("twamp-light", "stamp"):
            m = probe(lab, "a", "udp", f"{lab.addr('b')}:862",
                      {"duration_s": 1.0, "dscp": 46, "protocol": protocol})  # fmt: skip
            expected = "0 / 46 (reply marked DSCP1)" if protocol == "stamp" else (
                "0 / 0 (reply marked as received)")  # fmt: skip
            rows.append((f"{protocol}: DSCP out / back, EF re-marked to 0 upstream only",
                         expected, f"{m['out']['dscp_received']} / {m['back']['dscp_received']}",
                         "—", "—"))  # fmt: skip
    return rows


def twampy_rows(lab: netlab.NetLab, out_rule: netlab.NftRule, back_rule: netlab.NftRule,
                n: int) -> list[Row]:  # fmt: skip
    """twampy's sender against our responder on the same link: its own loss figures."""
    cmd = twampy_peer.command()
    if cmd is None:
        print(f"twampy rows skipped: {twampy_peer.SKIP_REASON}", file=sys.stderr)
        return []
    before = (out_rule.counts(), back_rule.counts())
    text = lab.run_in(
        "a",
        [
            *cmd,
            "sender",
            f"{lab.addr('b')}:862",
            f"{lab.addr('a')}:20000",
            "--count",
            str(n // 2),
            "--interval",
            "1",
        ],
        timeout=600,
    ).stdout
    table = twampy_peer.parse_table(text)
    rows: list[Row] = []
    for name, rule, (seen0, dropped0) in zip(
        ("Outbound", "Inbound"), (out_rule, back_rule), before, strict=True
    ):
        seen, dropped = rule.counts()
        seen, dropped = seen - seen0, dropped - dropped0
        rows.append((f"twampy sender to our responder: {name} loss % ({n // 2} pkts)",
                     f"{100 * dropped / seen:.3f} (nft: {dropped}/{seen})",
                     f"{table[name].loss_pct:.1f} (twampy's figure)", "—", "—"))  # fmt: skip
    return rows


def wideband_rows(seconds: float) -> list[Row]:
    """An Opus-paced stream (50 packets/s of 92 octets) with 2 % injected loss on one
    direction, scored on the wideband E-model, beside the G.107.1 value of the loss the
    nftables counters saw (BurstR 1: `numgen random` drops independently) at the same
    mouth-to-ear delay."""
    from agent import quality

    with netlab.NetLab("qb", router=True) as lab:
        responder(lab, "b", [])
        rule = lab.nft_loss("r", lab.iface("r", "b"), 2.0, "out", match="meta l4proto udp")
        m = probe(lab, "a", "udp", f"{lab.addr('b')}:862",
                  {"codec": "OPUS", "duration_s": seconds, "wait_s": 2})  # fmt: skip
        seen, dropped = rule.counts()
    d, b = m["out"], m["back"]
    true_loss = 100 * dropped / seen
    m2e = m["mouth_to_ear_delay_ms"]
    want = quality.emodel("OPUS", m2e, true_loss, 1.0)
    clean = quality.emodel("OPUS", m2e, 0.0)
    return [
        (f"wideband R out, Opus stream (2 % injected out, nft {dropped}/{seen})",
         f(want.r_factor, 2), f(d["r_factor"], 2), "—", "—"),
        (f"wideband MOS out (G.107.1; measured BurstR {d['burst_ratio']:.2f})",
         f(want.mos), f(d["mos"]), "—", "—"),
        (f"wideband MOS back (none injected; ceiling {clean.ceiling_mos:.3f})",
         f(clean.mos), f(b["mos"]), "—", "—"),
    ]  # fmt: skip


def jitter_rows(n: int) -> list[Row]:
    rate = 50
    fwd = netlab.DelaySchedule(10.0, 8.0, seed=21)
    back = netlab.DelaySchedule(5.0, 4.0, seed=22)
    opts = {"packet_rate": rate, "duration_s": n / rate, "wait_s": 2}
    with netlab.NetLab("qb", router=True) as lab:
        responder(lab, "b", [])
        target = (lab.addr("b"), 862)
        relay = lab.start_relay("r", 9000, target)
        idle = probe(lab, "a", "udp", f"{lab.addr('r')}:9000", opts)
        relay.stop()
        relay = lab.start_relay("r", 9001, target, fwd=fwd, back=back)
        m = probe(lab, "a", "udp", f"{lab.addr('r')}:9001", opts)
        relay_stats = relay.stop()
        # iperf3 UDP through the same relay schedule: TCP control DNAT'ed through r to b,
        # UDP data through the relay (its own fresh schedule instance, same seed)
        iperf3_server(lab, "b", 5301)
        nat = (
            "table ip benchnat {\n chain pre {\n  type nat hook prerouting priority -100;\n"
            f"  tcp dport 5301 dnat to {lab.addr('b')}\n }}\n}}\n"
        )
        lab.nft_script("r", nat)
        relay = lab.start_relay("r", 5301, (lab.addr("b"), 5301), fwd=fwd)
        ip = iperf3(lab, "a", ["-c", lab.addr("r"), "-p", "5301", "-u", "-l", "172",
                               "-b", str(rate * 172 * 8), "-t", str(n // rate)])  # fmt: skip
        relay.stop()
    ip_jitter = ip.get("end", {}).get("sum", {}).get("jitter_ms")
    delays = [a + b for a, b in zip(fwd.delays_ms(n), back.delays_ms(n), strict=True)]
    inj_rtt = sorted(delays)[n // 2 - 1 : n // 2 + 1]
    expected_rtt = sum(inj_rtt) / 2 + idle["rtt_ms"]["median"]
    ef = netlab.expected_jitter_ms(fwd.delays_ms(n))
    eb = netlab.expected_jitter_ms(back.delays_ms(n))
    return [
        (f"RTT median ms (idle {idle['rtt_ms']['median']:.3f} + relay schedule)",
         f(expected_rtt), f(m["rtt_ms"]["median"]), "—", "—"),
        ("jitter out ms (RFC 3550 of the schedule)", f(ef), f(m["out"]["jitter_ms"]),
         f(ip_jitter), ratio(m["out"]["jitter_ms"], ip_jitter)),
        ("jitter back ms (RFC 3550 of the schedule)", f(eb), f(m["back"]["jitter_ms"]),
         "—", "—"),
        ("relay lateness p99 µs (timing error of the injection)", "—",
         f(relay_stats.get("late_p99_us"), 1), "—", "—"),
    ]  # fmt: skip


def shaped_rows(seconds: float) -> list[Row]:
    rows: list[Row] = []
    with netlab.NetLab("qb") as lab:
        responder(lab, "b", [])
        iperf3_server(lab, "b", 5301)
        lab.tbf("a", lab.iface("a"), "100mbit")
        lab.tbf("b", lab.iface("b"), "100mbit")
        m = probe(lab, "a", "bandwidth", f"{lab.addr('b')}:5201",
                  {"direction": "both", "streams": 4, "duration_s": seconds})  # fmt: skip
        for d, flag in (("upload", []), ("download", ["-R"])):
            ip = iperf3(lab, "a", ["-c", lab.addr("b"), "-p", "5301", "-P", "4",
                                   "-t", str(seconds), *flag])  # fmt: skip
            ipbps = ip["end"]["sum_received"]["bits_per_second"]
            ours = m[d]["throughput_bps"]
            rows.append((f"TCP {d} Mbit/s, tbf 100 Mbit/s, 4 streams", "100.000",
                         f(ours / 1e6), f(ipbps / 1e6), ratio(ours, ipbps)))  # fmt: skip
        up = m["upload"]
        rows.append(
            (
                "TCP upload RTT ms idle → under load (tbf queue)",
                "—",
                f"{m['idle_rtt_ms']:.3f} → {up['rtt_loaded_ms']:.3f}",
                "—",
                "—",
            )
        )
        rows.append(("TCP upload buffer delay % (RFC 6349) under tbf", "—",
                     f(up["buffer_delay_pct"], 0), "—", "—"))  # fmt: skip
        ip = iperf3(lab, "a", ["-c", lab.addr("b"), "-p", "5301", "-u", "-b", "50M",
                               "-l", "1200", "-t", str(seconds)])  # fmt: skip
        uopts = {"mode": "udp", "udp_rate_kbps": 50000, "duration_s": seconds, "direction": "up"}
        u = probe(lab, "a", "bandwidth", f"{lab.addr('b')}:5201", uopts)["udp_up"]
        ipj = ip["end"]["sum"]["jitter_ms"]
        rows.append(("UDP 50 Mbit/s jitter ms under tbf", "—", f(u["jitter_ms"]), f(ipj),
                     ratio(u["jitter_ms"], ipj)))  # fmt: skip
        rows.append(("UDP 50 Mbit/s loss % under tbf", "0.000", f(u["loss_pct"]),
                     f(ip["end"]["sum"]["lost_percent"]), "—"))  # fmt: skip
    return rows


def loopback_rows(seconds: float, runs: int = 3) -> list[Row]:
    """Alternate our probe and iperf3 `runs` times each; the medians go in the table (the
    machine's other load moves loopback figures a lot, and alternating spreads it fairly)."""
    bw = netlab.free_tcp_port()
    ip_port = netlab.free_tcp_port()
    r = responder(None, "", ["--bind", "127.0.0.1", "--twamp-port", "off",
                             "--bandwidth-port", str(bw)])  # fmt: skip
    s = iperf3_server(None, "", ip_port)
    ours: list[float] = []
    theirs: list[float] = []
    try:
        for _ in range(runs):
            m = probe(None, "", "bandwidth", f"127.0.0.1:{bw}",
                      {"direction": "up", "streams": 1, "duration_s": seconds})  # fmt: skip
            ours.append(m["upload"]["throughput_bps"])
            ip = iperf3(None, "", ["-c", "127.0.0.1", "-p", str(ip_port), "-t", str(seconds)])
            theirs.append(ip["end"]["sum_received"]["bits_per_second"])
    finally:
        r.terminate()
        s.terminate()
    o, t = sorted(ours)[runs // 2], sorted(theirs)[runs // 2]
    return [(f"TCP Gbit/s, unshaped loopback, 1 stream (median of {runs})", "—", f(o / 1e9),
             f(t / 1e9), ratio(o, t))]  # fmt: skip


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--loss-packets", type=int, default=10_000)
    ap.add_argument("--jitter-packets", type=int, default=500)
    ap.add_argument("--seconds", type=float, default=5.0, help="per throughput test")
    ap.add_argument("--wideband-seconds", type=float, default=60.0,
                    help="of the Opus-paced stream (50 packets/s)")  # fmt: skip
    ap.add_argument("--only", action="append",
                    choices=["loss", "stamp", "wideband", "jitter", "shaped", "loopback"],
                    help="run only these sections (repeatable)")  # fmt: skip
    args = ap.parse_args()
    reason = netlab.skip_reason()
    if reason:
        print(f"accuracy benchmark skipped: {reason}", file=sys.stderr)
        return 2
    t0 = time.monotonic()
    sections = {
        "loss": lambda: loss_rows(args.loss_packets),
        "stamp": lambda: stamp_rows(args.loss_packets),
        "wideband": lambda: wideband_rows(args.wideband_seconds),
        "jitter": lambda: jitter_rows(args.jitter_packets),
        "shaped": lambda: shaped_rows(args.seconds),
        "loopback": lambda: loopback_rows(args.seconds),
    }
    rows = [row for name in args.only or list(sections) for row in sections[name]()]
    print("| measurement | injected / expected | qos-scout | iperf3 | qos-scout / iperf3 |")
    print("|---|---|---|---|---|")
    for row in rows:
        print("| " + " | ".join(row) + " |")
    print(f"\n{os.uname().sysname} {os.uname().release}, {os.cpu_count()} CPUs, "
          f"run took {time.monotonic() - t0:.0f} s")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
