"""ICMP probe against the loopback interface: real sockets, real replies."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from agent.probes import run_probe

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="raw ICMP sockets need root")


def _unprivileged_ping_allowed() -> bool:
    try:
        with open("/proc/sys/net/ipv4/ping_group_range") as fh:
            lo, hi = (int(x) for x in fh.read().split())
    except OSError:
        return False
    return lo <= os.getegid() <= hi


@needs_root
async def test_loopback_ping_privileged() -> None:
    r = await run_probe("icmp", "127.0.0.1", {"count": 20, "interval_s": 0.01})
    assert r.success, r.error
    m = r.measurement
    assert m is not None
    assert (m["sent"], m["received"], m["loss_pct"]) == (20, 20, 0.0)
    assert m["privileged"] is True
    rtt = m["rtt_ms"]
    assert 0 < rtt["min"] <= rtt["median"] <= rtt["p95"] <= rtt["max"] < 100
    assert len(m["rtts_ms"]) == 20 and all(x is not None for x in m["rtts_ms"])
    deltas = [abs(b - a) for a, b in zip(m["rtts_ms"], m["rtts_ms"][1:], strict=False)]
    assert m["jitter_ms"] == pytest.approx(sum(deltas) / len(deltas))


@pytest.mark.skipif(not _unprivileged_ping_allowed(), reason="ping_group_range excludes us")
async def test_loopback_ping_unprivileged_datagram_socket() -> None:
    r = await run_probe("icmp", "127.0.0.1", {"count": 5, "interval_s": 0.01, "privileged": False})
    assert r.success, r.error
    assert r.measurement and r.measurement["privileged"] is False


@pytest.mark.skipif(_unprivileged_ping_allowed(), reason="unprivileged ICMP is allowed here")
async def test_unprivileged_socket_refused_says_why() -> None:
    r = await run_probe("icmp", "127.0.0.1", {"count": 2, "privileged": False})
    assert not r.success and r.error is not None
    assert r.error.category == "privilege"
    assert "ping_group_range" in r.error.message


@needs_root
async def test_dscp_marking_and_ipv6_loopback() -> None:
    r = await run_probe("icmp", "::1", {"count": 3, "interval_s": 0.01, "dscp": 46})
    if not r.success and r.error and r.error.category == "network":
        pytest.skip(f"no IPv6 loopback here: {r.error.message}")
    assert r.success, r.error
    assert r.measurement and r.measurement["dscp"] == 46 and r.measurement["received"] == 3


def _ping_in_fresh_netns(nft_rule: str | None, count: int, hook: str = "input") -> dict:
    """Run the CLI inside a new network namespace whose loopback drops what `nft_rule` says."""
    ns = f"qsicmp{os.getpid() % 100000}"
    subprocess.run(["ip", "netns", "add", ns], check=True)
    try:
        subprocess.run(["ip", "-n", ns, "link", "set", "lo", "up"], check=True)
        if nft_rule:
            script = (
                f"table inet t {{\n chain c {{\n  type filter hook {hook} priority 0;\n"
                f"  {nft_rule}\n }}\n}}\n"
            )
            subprocess.run(
                ["ip", "netns", "exec", ns, "nft", "-f", "-"], input=script, text=True, check=True
            )
        out = subprocess.run(
            [
                "ip",
                "netns",
                "exec",
                ns,
                sys.executable,
                "-m",
                "agent.cli.main",
                "probe",
                "icmp",
                "127.0.0.1",
                "--count",
                str(count),
                "--interval",
                "0.005",
                "--timeout",
                "0.3",
                "--json",
            ],
            capture_output=True,
            text=True,
            timeout=60,
        )
        return json.loads(out.stdout)
    finally:
        subprocess.run(["ip", "netns", "del", ns], check=False)


@needs_root
def test_loss_is_counted_per_request() -> None:
    # nftables drops every other echo request (deterministic counter), so loss is exactly 50 %.
    res = _ping_in_fresh_netns("icmp type echo-request numgen inc mod 2 == 0 drop", 40)
    m = res["measurement"]
    assert res["success"] is True
    assert (m["sent"], m["received"], m["loss_pct"]) == (40, 20, 50.0)
    assert [x is None for x in m["rtts_ms"]] == [i % 2 == 0 for i in range(40)]


@needs_root
def test_no_reply_at_all_fails_but_keeps_the_measurement() -> None:
    res = _ping_in_fresh_netns("icmp type echo-request drop", 5)
    assert res["success"] is False
    assert res["error"]["message"] == "127.0.0.1 (127.0.0.1): no reply to 5 echo requests"
    assert res["measurement"]["loss_pct"] == 100.0


@needs_root
def test_locally_refused_sends_are_reported_not_crashed() -> None:
    res = _ping_in_fresh_netns("icmp type echo-request drop", 3, hook="output")
    assert res["success"] is False
    assert res["error"]["category"] == "network"
    assert "refused to send" in res["error"]["message"]
    assert res["measurement"]["send_errors"] == 3


async def test_unknown_host_is_a_dns_error() -> None:
    r = await run_probe("icmp", "no-such-host.invalid", {"count": 1})
    assert not r.success and r.error is not None
    assert r.error.category == "dns"
    assert "no-such-host.invalid" in r.error.message


@needs_root
def test_cli_json_contract() -> None:
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "agent.cli.main",
            "probe",
            "icmp",
            "127.0.0.1",
            "--count",
            "5",
            "--interval",
            "0.01",
            "--json",
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    lines = out.stdout.strip().splitlines()
    assert len(lines) == 1
    res = json.loads(lines[0])
    assert res["success"] is True
    assert res["probe"] == "icmp" and res["target"] == "127.0.0.1"
    m = res["measurement"]
    assert (m["sent"], m["received"], m["loss_pct"]) == (5, 5, 0)
