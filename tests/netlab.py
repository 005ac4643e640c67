"""Test networks: namespaces joined by veth pairs, nftables loss/DSCP, tc tbf, a seeded delay relay.

Everything here needs root (network namespaces, nftables, tc). `skip_reason()` says why a
test cannot run; `NetLab` always removes what it created (context manager, plus an atexit
safety net), and every namespace and interface name carries a random suffix.

Topology (addresses are fixed: each namespace has its own stack, so they never clash)::

    NetLab(router=False):   a 10.77.1.1/24 ──veth── b 10.77.1.2/24
    NetLab(router=True):    a 10.77.1.1/24 ──veth── r 10.77.1.254
                            r 10.77.2.254 ──veth── b 10.77.2.1/24
                            (r forwards; a and b route 10.77.0.0/16 through r)

API (node names are "a", "b" and, with a router, "r")::

    with NetLab("qs", router=True) as lab:
        lab.ns("a")                     # real namespace name, e.g. "qs3f9a1c-a"
        lab.addr("b")                   # "10.77.2.1" (the node's address on its link)
        lab.iface("r", "b")             # r's interface facing b
        lab.run_in("a", ["ip", "route", "get", lab.addr("b")])     # CompletedProcess, check=True
        p = lab.popen_in("b", [sys.executable, "-m", "agent.cli.main", ...])  # killed at exit
        loss = lab.nft_loss("r", lab.iface("r", "b"), 2.0, "out", match="meta l4proto udp")
        loss.counts()                   # (packets seen, packets dropped) by nftables counters
        lab.nft_remark_dscp("r", lab.iface("r", "b"), dscp=0, direction="out")
        lab.tbf("a", lab.iface("a", "r"), "100mbit")
        relay = lab.start_relay("r", 9000, (lab.addr("b"), 862),
                                fwd=DelaySchedule(10, 10, seed=1), back=DelaySchedule(5, 0))
        relay.stop()                    # dict of counters written by the relay on exit
        lab.nft_script("r", "table ip t { ... }")   # any other nftables ruleset (NAT, ...)

    start_relay_local(port, ("127.0.0.1", 5060), fwd=...)  # the relay on loopback, no root
    free_udp_port(), free_tcp_port()                        # loopback ports for services

`nft_loss`/`nft_remark_dscp` take `direction` "out" (postrouting, oifname) or "in"
(prerouting, iifname) and an nft `match` expression such as "meta l4proto udp",
"udp dport 5060" or "icmp type destination-unreachable"; 100 % drops everything matched.
`nft_loss(..., regular=True)` drops an even, fixed pattern instead of a random draw, so a
test that asserts a loss figure sees the same loss on every run. Every namespace answers
ICMP/ICMPv6 without rate limits (`ICMP_UNLIMITED`).
`python -m agent...` inside a namespace: `lab.popen_in("b", [sys.executable, "-m", ...])`
(the virtualenv's interpreter, so the package is importable); run it with `cwd` set to the
repository when you need `tests/` modules.

The delay relay (`DelaySchedule`, `start_relay`, or `python tests/netlab.py relay ...`) is a
userspace UDP relay: packet i received in a direction is sent on at its kernel arrival time
plus `schedule.delays_ms(n)[i]`. The schedule is a pure function of its seed, so the RFC 3550
jitter a receiver should see is computable in advance (`expected_jitter_ms`). Keep
`spread_ms` below the packet interval and packets stay in order. It can also rewrite bytes
(`replace_fwd` / `replace_back`), e.g. to play a SIP ALG that rewrites addresses. This kernel
has no netem, hence the relay.

Import from a test directory below tests/: `sys.path.insert(0, str(Path(__file__).parents[1]))`
then `import netlab` (tests/net/conftest.py does this and provides a `lab` fixture).
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import ctypes
import heapq
import itertools
import json
import os
import random
import re
import secrets
import select
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]

# Set in every namespace of a lab, so that no ICMP/ICMPv6 answer (time exceeded, echo reply,
# unreachable) is ever rate limited: a probe's loss is then the lab's loss and nothing else.
# An empty ratemask takes every type out of both limiters, the per-destination one
# (icmp_ratelimit) and the global token bucket (icmp_msgs_per_sec/burst, 1000/s and 50 by
# default, which kernels before 6.12 share across all namespaces of the host, so another
# job's ICMP errors could drain it); the other settings open them too, in case a kernel
# reads them first. All are per namespace; `sysctl -e` skips those a kernel lacks (a
# sysctl that is global on an older kernel is absent inside a namespace, so the host's
# value is never written).
ICMP_UNLIMITED = (
    "net.ipv4.icmp_ratemask=0",
    "net.ipv4.icmp_ratelimit=0",
    "net.ipv4.icmp_msgs_per_sec=1000000",
    "net.ipv4.icmp_msgs_burst=1000000",
    "net.ipv6.icmp.ratemask=",
    "net.ipv6.icmp.ratelimit=0",
)


def skip_reason() -> str | None:
    """Why namespace tests cannot run here, or None when they can."""
    if os.geteuid() != 0:
        return "needs root to create network namespaces, nftables rules and tc qdiscs"
    for tool in ("ip", "nft", "tc"):
        if not any(Path(d, tool).exists() for d in ("/usr/sbin", "/sbin", "/usr/bin")):
            return f"{tool} is not installed (Debian packages iproute2, nftables)"
    return None


def _sh(
    argv: Sequence[str], *, check: bool = True, timeout: float = 30.0, input: str | None = None
):
    res = subprocess.run(
        list(argv), capture_output=True, text=True, timeout=timeout, input=input, check=False
    )
    if check and res.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed ({res.returncode}): {res.stderr.strip()}")
    return res


# --------------------------------------------------------------------------- delay schedules


@dataclass(frozen=True)
class DelaySchedule:
    """Per-packet delays: `base_ms + uniform(0, spread_ms)` from a seeded generator."""

    base_ms: float = 0.0
    spread_ms: float = 0.0
    seed: int = 0

    def delays_ms(self, n: int) -> list[float]:
        rng = random.Random(self.seed)
        return [self.base_ms + rng.uniform(0.0, self.spread_ms) for _ in range(n)]

    def arg(self) -> str:
        return f"{self.base_ms}:{self.spread_ms}:{self.seed}"

    @classmethod
    def parse(cls, text: str) -> DelaySchedule:
        base, spread, seed = text.split(":")
        return cls(float(base), float(spread), int(seed))


def expected_jitter_ms(delays_ms: Sequence[float]) -> float:
    """RFC 3550 jitter a receiver sees when packet i is delayed by delays_ms[i] (in order).

    D(i-1,i) = (R_i - R_{i-1}) - (S_i - S_{i-1}) reduces to d_i - d_{i-1}; J += (|D| - J)/16.
    """
    j = 0.0
    for prev, cur in itertools.pairwise(delays_ms):
        j += (abs(cur - prev) - j) / 16.0
    return j


# --------------------------------------------------------------------------- nftables handles


@dataclass
class NftRule:
    """An nftables table this lab added; `counts()` reads its `seen` and `hit` counters."""

    lab: NetLab
    node: str
    table: str

    def _counter(self, name: str) -> int:
        out = self.lab.run_in(self.node, ["nft", "list", "counter", "inet", self.table, name])
        m = re.search(r"packets (\d+)", out.stdout)
        if not m:
            raise RuntimeError(f"cannot read nft counter {name}: {out.stdout!r}")
        return int(m.group(1))

    def counts(self) -> tuple[int, int]:
        """(packets that matched the interface and filter, packets dropped or re-marked)."""
        return self._counter("seen"), self._counter("hit")

    def remove(self) -> None:
        self.lab.run_in(self.node, ["nft", "delete", "table", "inet", self.table], check=False)


# --------------------------------------------------------------------------- relay handle


@dataclass
class Relay:
    """A running delay relay process; `stop()` ends it and returns its counters."""

    proc: subprocess.Popen[str]
    stats_path: Path
    port: int
    stats: dict[str, Any] = field(default_factory=dict)

    def stop(self) -> dict[str, Any]:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        if self.stats_path.exists():
            self.stats = json.loads(self.stats_path.read_text())
        return self.stats


# --------------------------------------------------------------------------- the lab


class NetLab:
    """Two or three namespaces joined by veth pairs; see the module docstring for the API."""

    def __init__(self, prefix: str = "qs", *, router: bool = False, mtu: int = 1500) -> None:
        if not re.fullmatch(r"[a-z]{1,4}", prefix):
            raise ValueError("prefix must be 1 to 4 lowercase letters")
        self.tag = prefix + secrets.token_hex(3)
        self.router = router
        self.mtu = mtu
        self.nodes = ["a", "r", "b"] if router else ["a", "b"]
        self._ifaces: dict[tuple[str, str], str] = {}
        self._addrs: dict[str, str] = {}
        self._procs: list[subprocess.Popen[Any]] = []
        self._created: list[str] = []
        self._tmp = Path(tempfile.mkdtemp(prefix=f"netlab-{self.tag}-"))
        self._n = 0

    # names -------------------------------------------------------------------
    def ns(self, node: str) -> str:
        if node not in self.nodes:
            raise KeyError(f"no node {node!r} in this lab (nodes: {', '.join(self.nodes)})")
        return f"{self.tag}-{node}"

    def iface(self, node: str, peer: str | None = None) -> str:
        """Interface of `node` facing `peer` (default: its only or first neighbour)."""
        if peer is None:
            peer = "r" if self.router and node != "r" else ("b" if node == "a" else "a")
        return self._ifaces[(node, peer)]

    def addr(self, node: str) -> str:
        return self._addrs[node]

    # lifecycle ---------------------------------------------------------------
    def __enter__(self) -> NetLab:
        atexit.register(self.close)
        try:
            self._build()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _build(self) -> None:
        for node in self.nodes:
            _sh(["ip", "netns", "add", self.ns(node)])
            self._created.append(self.ns(node))
            self.run_in(node, ["ip", "link", "set", "lo", "up"])
            self.run_in(node, ["sysctl", "-qew", *ICMP_UNLIMITED])
        if self.router:
            self._link("a", "10.77.1.1", "r", "10.77.1.254", 24)
            self._link("r", "10.77.2.254", "b", "10.77.2.1", 24)
            self.run_in("r", ["sysctl", "-qw", "net.ipv4.ip_forward=1"])
            self.run_in("a", ["ip", "route", "add", "10.77.0.0/16", "via", "10.77.1.254"])
            self.run_in("b", ["ip", "route", "add", "10.77.0.0/16", "via", "10.77.2.254"])
            self._addrs["r"] = "10.77.1.254"
        else:
            self._link("a", "10.77.1.1", "b", "10.77.1.2", 24)

    def _link(self, n1: str, a1: str, n2: str, a2: str, plen: int) -> None:
        if1, if2 = f"v{self.tag}{n1}{n2}"[:15], f"v{self.tag}{n2}{n1}"[:15]
        _sh(["ip", "link", "add", if1, "netns", self.ns(n1), "type", "veth",
             "peer", "name", if2, "netns", self.ns(n2)])  # fmt: skip
        for node, ifname, addr in ((n1, if1, a1), (n2, if2, a2)):
            self.run_in(node, ["ip", "link", "set", ifname, "mtu", str(self.mtu), "up"])
            self.run_in(node, ["ip", "addr", "add", f"{addr}/{plen}", "dev", ifname])
            # Offloads make veth hand the stack 64 KB super-packets, which tbf then
            # has to account for; shaping is truer on wire-sized packets.
            self._addrs.setdefault(node, addr)
        self._ifaces[(n1, n2)] = if1
        self._ifaces[(n2, n1)] = if2

    def add_ipv6(self) -> dict[str, str]:
        """Give a router lab IPv6 too (fd77:1::/64 a-r, fd77:2::/64 r-b, r forwarding), wait
        until neighbour discovery can work (link-local addresses out of DAD, about 1 s), and
        return each node's address (r: its side facing a, which answers a's probes)."""
        if not self.router:
            raise ValueError("add_ipv6 needs a lab built with router=True")
        plan = [("a", "r", "fd77:1::1"), ("r", "a", "fd77:1::fe"), ("r", "b", "fd77:2::fe"),
                ("b", "r", "fd77:2::1")]  # fmt: skip
        for node, peer, addr in plan:
            self.run_in(node, ["ip", "-6", "addr", "add", f"{addr}/64",
                               "dev", self.iface(node, peer), "nodad"])  # fmt: skip
        self.run_in("r", ["sysctl", "-qw", "net.ipv6.conf.all.forwarding=1"])
        self.run_in("a", ["ip", "-6", "route", "add", "fd77::/16", "via", "fd77:1::fe"])
        self.run_in("b", ["ip", "-6", "route", "add", "fd77::/16", "via", "fd77:2::fe"])
        deadline = time.monotonic() + 10
        while any("tentative" in self.run_in(n, ["ip", "-6", "addr"]).stdout for n in self.nodes):
            if time.monotonic() > deadline:
                raise RuntimeError("IPv6 link-local addresses stayed tentative for 10 s")
            time.sleep(0.1)
        return {"a": "fd77:1::1", "r": "fd77:1::fe", "b": "fd77:2::1"}

    def close(self) -> None:
        for p in self._procs:
            if p.poll() is None:
                p.terminate()
        for p in self._procs:
            try:
                p.wait(5)
            except subprocess.TimeoutExpired:
                p.kill()
                with contextlib.suppress(subprocess.TimeoutExpired):
                    p.wait(5)
        self._procs.clear()
        for ns in reversed(self._created):
            _sh(["ip", "netns", "del", ns], check=False)
        self._created.clear()
        with contextlib.suppress(OSError):
            for f in self._tmp.iterdir():
                f.unlink()
            self._tmp.rmdir()
        atexit.unregister(self.close)

    # running things ----------------------------------------------------------
    def _argv(self, node: str, argv: Sequence[str]) -> list[str]:
        return ["ip", "netns", "exec", self.ns(node), *argv]

    def run_in(
        self, node: str, argv: Sequence[str], *, check: bool = True, timeout: float = 60.0
    ) -> subprocess.CompletedProcess[str]:
        """Run argv in the node's namespace and wait; raises on failure unless check=False."""
        return _sh(self._argv(node, argv), check=check, timeout=timeout)

    def popen_in(self, node: str, argv: Sequence[str], **kwargs: Any) -> subprocess.Popen[Any]:
        """Start argv in the node's namespace; the lab terminates it on close."""
        kwargs.setdefault("cwd", str(REPO))
        p = subprocess.Popen(self._argv(node, argv), **kwargs)
        self._procs.append(p)
        return p

    # impairments -------------------------------------------------------------
    def _nft(self, node: str, hook: str, rule: str) -> NftRule:
        self._n += 1
        table = f"netlab{self._n}"
        script = (
            f"table inet {table} {{\n"
            f"  counter seen {{}}\n  counter hit {{}}\n"
            f"  chain c {{ type filter hook {hook} priority -150; policy accept;\n"
            f"    {rule}\n  }}\n}}\n"
        )
        res = _sh(self._argv(node, ["nft", "-f", "-"]), input=script, check=False)
        if res.returncode != 0:
            raise RuntimeError(f"nft rejected {script!r}: {res.stderr.strip()}")
        return NftRule(self, node, table)

    def nft_script(self, node: str, script: str) -> None:
        """Load an nftables script (e.g. a NAT table) in the node's namespace."""
        res = _sh(self._argv(node, ["nft", "-f", "-"]), input=script, check=False)
        if res.returncode != 0:
            raise RuntimeError(f"nft rejected {script!r}: {res.stderr.strip()}")

    @staticmethod
    def _dir(direction: str, iface: str) -> tuple[str, str]:
        if direction == "out":
            return "postrouting", f'oifname "{iface}"'
        if direction == "in":
            return "prerouting", f'iifname "{iface}"'
        raise ValueError(f"direction must be 'in' or 'out', not {direction!r}")

    def nft_loss(
        self,
        node: str,
        iface: str,
        pct: float,
        direction: str = "out",
        *,
        match: str = "",
        regular: bool = False,
    ) -> NftRule:
        """Drop `pct` % of packets at random (nftables numgen) leaving/entering `iface`.

        `match` is an extra nft expression, e.g. "meta l4proto udp" or "udp dport 862".
        `regular` drops a fixed, evenly spread pattern instead (by the rule's packet count:
        30 % drops packets 0, 3 and 6 of every 10), so a test that asserts a loss figure
        sees the same loss on every run.
        """
        if not 0.0 <= pct <= 100.0:
            raise ValueError(f"loss {pct} % is outside 0..100")
        hook, sel = self._dir(direction, iface)
        threshold = round(pct * 10_000)
        chance = f"numgen random mod 1000000 < {threshold} " if threshold < 1_000_000 else ""
        if regular and 0 < threshold < 1_000_000:
            share = Fraction(threshold, 1_000_000).limit_denominator(1000)
            if share.numerator == 0:
                raise ValueError(f"regular loss {pct} % is below 1 in 1000 packets")
            slots = (k * share.denominator // share.numerator for k in range(share.numerator))
            chance = f"numgen inc mod {share.denominator} {{ {', '.join(map(str, slots))} }} "
        rule = f'{sel} {match} counter name "seen" {chance}counter name "hit" drop'
        return self._nft(node, hook, rule)

    def nft_remark_dscp(
        self, node: str, iface: str, dscp: int = 0, direction: str = "out", *, match: str = ""
    ) -> NftRule:
        """Rewrite the DSCP of IPv4 packets leaving/entering `iface` to `dscp`."""
        if not 0 <= dscp < 64:
            raise ValueError(f"DSCP {dscp} is outside 0..63")
        hook, sel = self._dir(direction, iface)
        rule = (
            f'{sel} meta nfproto ipv4 {match} counter name "seen" '
            f'ip dscp set {dscp} counter name "hit"'
        )
        return self._nft(node, hook, rule)

    def tbf(
        self, node: str, iface: str, rate: str, *, burst: str | None = None, latency_ms: int = 50
    ) -> None:
        """Shape egress of `iface` with a token bucket (tc tbf); rate like "100mbit"."""
        m = re.fullmatch(r"(\d+(?:\.\d+)?)(k|m|g)bit", rate)
        if not m:
            raise ValueError(f"rate {rate!r}: expected e.g. 100mbit, 512kbit, 1gbit")
        bps = float(m.group(1)) * {"k": 1e3, "m": 1e6, "g": 1e9}[m.group(2)]
        if burst is None:
            burst = str(max(32_000, int(bps / 8 / 100)))  # 10 ms of tokens
        self.run_in(node, ["ethtool", "-K", iface, "tso", "off", "gso", "off", "gro", "off"],
                    check=False)  # fmt: skip
        self.run_in(node, ["tc", "qdisc", "replace", "dev", iface, "root", "tbf", "rate", rate,
                           "burst", burst, "latency", f"{latency_ms}ms"])  # fmt: skip

    # relay -------------------------------------------------------------------
    def start_relay(
        self,
        node: str,
        listen_port: int,
        upstream: tuple[str, int],
        *,
        fwd: DelaySchedule = DelaySchedule(),
        back: DelaySchedule = DelaySchedule(),
        replace_fwd: Sequence[tuple[bytes, bytes]] = (),
        replace_back: Sequence[tuple[bytes, bytes]] = (),
        listen_host: str = "0.0.0.0",
    ) -> Relay:
        """Start the delay relay in `node` on listen_host:listen_port toward `upstream`."""
        stats = self._tmp / f"relay{listen_port}-{secrets.token_hex(2)}.json"
        argv = [sys.executable, str(Path(__file__).resolve()), "relay",
                "--listen", f"{listen_host}:{listen_port}",
                "--upstream", f"{upstream[0]}:{upstream[1]}",
                "--fwd", fwd.arg(), "--back", back.arg(), "--stats", str(stats)]  # fmt: skip
        for old, new in replace_fwd:
            argv += ["--replace-fwd", f"{old.hex()}={new.hex()}"]
        for old, new in replace_back:
            argv += ["--replace-back", f"{old.hex()}={new.hex()}"]
        proc = self.popen_in(node, argv, stdout=subprocess.PIPE, text=True)
        return _await_ready(proc, stats, listen_port)


def start_relay_local(
    listen_port: int,
    upstream: tuple[str, int],
    *,
    fwd: DelaySchedule = DelaySchedule(),
    back: DelaySchedule = DelaySchedule(),
    listen_host: str = "127.0.0.1",
) -> Relay:
    """The delay relay in the current namespace (loopback tests; no root needed)."""
    stats = Path(tempfile.mkdtemp(prefix="relay-")) / "stats.json"
    argv = [sys.executable, str(Path(__file__).resolve()), "relay",
            "--listen", f"{listen_host}:{listen_port}",
            "--upstream", f"{upstream[0]}:{upstream[1]}",
            "--fwd", fwd.arg(), "--back", back.arg(), "--stats", str(stats)]  # fmt: skip
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True)
    return _await_ready(proc, stats, listen_port)


def _await_ready(proc: subprocess.Popen[str], stats: Path, port: int) -> Relay:
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line.startswith("ready"):
        proc.kill()
        raise RuntimeError(f"delay relay did not start (exit {proc.wait()}): {line!r}")
    return Relay(proc, stats, int(line.split()[1]) if len(line.split()) > 1 else port)


def free_udp_port(host: str = "127.0.0.1") -> int:
    if host == "127.0.0.1":
        from tests.ports import free_port

        return free_port(socket.SOCK_DGRAM)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def free_tcp_port(host: str = "127.0.0.1") -> int:
    if host == "127.0.0.1":
        from tests.ports import free_port

        return free_port(socket.SOCK_STREAM)
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


# --------------------------------------------------------------------------- relay process

_SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)


def _kernel_time_ns(ancdata: list[tuple[int, int, bytes]]) -> int:
    for level, kind, data in ancdata:
        if level == socket.SOL_SOCKET and kind == _SO_TIMESTAMPNS and len(data) >= 16:
            sec, nsec = struct.unpack("qq", data[:16])
            return sec * 1_000_000_000 + nsec
    return time.time_ns()


def _udp(bind: tuple[str, int] | None = None) -> socket.socket:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, _SO_TIMESTAMPNS, 1)
    try:  # SO_RCVBUFFORCE passes net.core.rmem_max (root)
        s.setsockopt(socket.SOL_SOCKET, 33, 4 << 20)
    except OSError:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    s.setblocking(False)
    if bind is not None:
        s.bind(bind)
    return s


def _replace(data: bytes, pairs: list[tuple[bytes, bytes]]) -> bytes:
    for old, new in pairs:
        data = data.replace(old, new)
    return data


def relay_main(argv: Sequence[str] | None = None) -> int:
    """Relay UDP between clients and one upstream, delaying each packet by its schedule."""
    ap = argparse.ArgumentParser(prog="netlab relay")
    ap.add_argument("--listen", required=True)
    ap.add_argument("--upstream", required=True)
    ap.add_argument("--fwd", default="0:0:0", help="base_ms:spread_ms:seed")
    ap.add_argument("--back", default="0:0:0")
    ap.add_argument("--stats", required=True)
    ap.add_argument("--replace-fwd", action="append", default=[])
    ap.add_argument("--replace-back", action="append", default=[])
    args = ap.parse_args(argv)
    lhost, lport = args.listen.rsplit(":", 1)
    uhost, uport = args.upstream.rsplit(":", 1)
    upstream = (uhost, int(uport))
    fwd, back = DelaySchedule.parse(args.fwd), DelaySchedule.parse(args.back)
    rng = {"fwd": random.Random(fwd.seed), "back": random.Random(back.seed)}
    sched = {"fwd": fwd, "back": back}
    repl = {
        d: [tuple(bytes.fromhex(x) for x in r.split("=")) for r in rs]
        for d, rs in (("fwd", args.replace_fwd), ("back", args.replace_back))
    }
    with contextlib.suppress(OSError):  # 1 ns timer slack: wake-ups on time (PR_SET_TIMERSLACK)
        ctypes.CDLL(None, use_errno=True).prctl(29, 1, 0, 0, 0)
    with contextlib.suppress(OSError, AttributeError):
        # Real-time priority (root): the relay sleeps in select() and never spins, so this
        # only makes its wake-ups punctual while other processes load the CPUs.
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(10))
    listen = _udp((lhost, int(lport)))
    clients: dict[tuple[str, int], socket.socket] = {}
    owner: dict[socket.socket, tuple[str, int]] = {}
    heap: list[tuple[int, int, socket.socket, bytes, tuple[str, int], str, int]] = []
    counters = {"fwd": 0, "back": 0}
    late_ns: list[int] = []
    # The delay each packet really got (kernel receive stamp to sendto), in arrival order per
    # direction: the ground truth when the relay itself ran late on a loaded machine.
    applied: dict[str, list[float]] = {"fwd": [], "back": []}
    received: dict[tuple[str, int], int] = {}
    stop = False

    def on_term(*_: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)
    print(f"ready {listen.getsockname()[1]}", flush=True)
    seq = 0
    while not stop:
        socks = [listen, *owner]
        timeout = None
        if heap:
            timeout = max(0.0, (heap[0][0] - time.time_ns()) / 1e9)
        try:
            readable, _, _ = select.select(socks, [], [], timeout if timeout is not None else 0.5)
        except InterruptedError:
            continue
        for s in readable:
            while True:
                try:
                    data, anc, _, src = s.recvmsg(65535, 256)
                except (BlockingIOError, InterruptedError):
                    break
                except OSError:
                    break  # ICMP errors from upstream (port unreachable) surface here
                t = _kernel_time_ns(anc)
                if s is listen:
                    d, out, dest = "fwd", clients.get(src), upstream
                    if out is None:
                        out = _udp(("0.0.0.0", 0))
                        clients[src], owner[out] = out, src
                else:
                    d, out, dest = "back", listen, owner[s]
                delay = sched[d].base_ms + rng[d].uniform(0.0, sched[d].spread_ms)
                index = counters[d]
                counters[d] += 1
                applied[d].append(0.0)
                seq += 1
                payload = _replace(data, repl[d])  # type: ignore[arg-type]
                heapq.heappush(heap, (t + int(delay * 1e6), seq, out, payload, dest, d, index))
                received[(d, index)] = t
        now = time.time_ns()
        while heap and heap[0][0] <= now:
            due, _, out, data, dest, d, index = heapq.heappop(heap)
            with contextlib.suppress(OSError):
                out.sendto(data, dest)
            sent = time.time_ns()
            late_ns.append(sent - due)
            applied[d][index] = (sent - received.pop((d, index))) / 1e6
            now = time.time_ns()
    late = sorted(late_ns) or [0]
    Path(args.stats).write_text(
        json.dumps(
            {
                "fwd_packets": counters["fwd"],
                "back_packets": counters["back"],
                "late_median_us": late[len(late) // 2] / 1000,
                "late_p99_us": late[int(len(late) * 0.99)] / 1000,
                "late_max_us": late[-1] / 1000,
                "fwd_delays_ms": applied["fwd"],
                "back_delays_ms": applied["back"],
            }
        )
    )
    return 0


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "relay":
        sys.exit(relay_main(sys.argv[2:]))
    print("usage: netlab.py relay --listen H:P --upstream H:P --stats FILE [...]", file=sys.stderr)
    sys.exit(2)
