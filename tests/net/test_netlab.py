"""The test network itself: cleanup, nftables counters, and the relay's schedule."""

from __future__ import annotations

import socket
import subprocess
import sys
import time

import netlab
import pytest

ECHO = (
    "import socket\ns=socket.socket(2,2)\ns.bind(('0.0.0.0',7))\n"
    "while 1:\n d,a=s.recvfrom(9000)\n s.sendto(d,a)"
)
SEND = (
    "import socket,sys,time\ns=socket.socket(2,2)\ns.settimeout(0.2)\nn=0\n"
    "for i in range(int(sys.argv[3])):\n s.sendto(b'x'*100,(sys.argv[1],int(sys.argv[2])))\n"
    " try:\n  s.recv(9000)\n  n+=1\n except OSError:\n  pass\nprint(n)"
)


def _netns_names() -> set[str]:
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    return {line.split()[0] for line in out.splitlines() if line.strip()}


def test_namespaces_are_removed_even_when_the_body_fails(need_root: None) -> None:
    with pytest.raises(RuntimeError), netlab.NetLab("qs", router=True) as lab:
        names = {lab.ns(n) for n in lab.nodes}
        assert names <= _netns_names()
        raise RuntimeError("boom")
    assert not names & _netns_names()


def test_nft_counters_account_for_every_dropped_packet(rlab: netlab.NetLab) -> None:
    rlab.popen_in("b", [sys.executable, "-c", ECHO])
    time.sleep(0.3)
    loss = rlab.nft_loss("r", rlab.iface("r", "b"), 20.0, "out", match="meta l4proto udp")
    out = rlab.run_in("a", [sys.executable, "-c", SEND, rlab.addr("b"), "7", "100"]).stdout
    seen, dropped = loss.counts()
    assert seen == 100
    assert 0 < dropped < 50
    assert int(out) == 100 - dropped


def test_relay_applies_its_seeded_schedule_on_loopback() -> None:
    sched = netlab.DelaySchedule(20.0, 0.0, seed=3)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as echo:
        echo.bind(("127.0.0.1", 0))
        relay = netlab.start_relay_local(0, echo.getsockname(), fwd=sched)
        try:
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as c:
                t0 = time.monotonic()
                c.sendto(b"hello", ("127.0.0.1", relay.port))
                echo.settimeout(5)
                data, addr = echo.recvfrom(100)
                elapsed = time.monotonic() - t0
                echo.sendto(data.upper(), addr)
                c.settimeout(5)
                assert c.recv(100) == b"HELLO"
        finally:
            stats = relay.stop()
    assert data == b"hello"
    assert 0.019 <= elapsed < 0.2
    assert stats["fwd_packets"] == 1 and stats["back_packets"] == 1


def test_expected_jitter_is_rfc3550_of_delay_differences() -> None:
    # constant delay: no jitter; alternating 0/16 ms: J -> 16 ms geometrically
    assert netlab.expected_jitter_ms([5.0] * 50) == 0.0
    j = netlab.expected_jitter_ms([0.0, 16.0])
    assert j == pytest.approx(1.0)
    assert netlab.DelaySchedule(1, 2, 7).delays_ms(5) == netlab.DelaySchedule(1, 2, 7).delays_ms(5)
