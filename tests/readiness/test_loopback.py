"""A readiness run against a responder on this host: what loopback measures is labelled, not
reported as the customer's line (no percentage over the contract, no loopback MTU as a
finding), and the JSON and HTML reports are written by one run."""

from __future__ import annotations

import json
import re
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.cli.stack import Stack, free_port_both, tcp_open


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Stack]:
    s = Stack(tmp_path)
    try:
        yield s
    finally:
        s.close()


def test_loopback_throughput_and_mtu_are_not_meaningful_and_both_reports_are_written(
    stack: Stack, tmp_path: Path
) -> None:
    bw = free_port_both()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        twamp = s.getsockname()[1]
    stack.start_responder(
        ["--bind", "127.0.0.1", "--twamp-port", str(twamp), "--bandwidth-port", str(bw),
         "--natprobe-port", "off", "--sip-port", "off"],
        lambda: tcp_open(bw),
    )  # fmt: skip
    jf, hf = tmp_path / "r.json", tmp_path / "r.html"
    out = stack.run_cli(
        "readiness", "--responder", "127.0.0.1", "--checks", "bandwidth,mtu", "-q",
        "--bandwidth-port", str(bw), "--bandwidth-s", "1", "--down-mbps", "100",
        "--up-mbps", "20", "--json", str(jf), "--html", str(hf), check=False,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr + out.stdout
    rep = json.loads(jf.read_text())
    checks = {c["id"]: c for c in rep["checks"]}
    assert set(checks) == {"bandwidth.down", "bandwidth.up", "mtu.path"}, checks
    for c in checks.values():
        assert c["status"] == "info", c
        assert "not meaningful on this path (the responder is on this host" in c["display"]
        assert c["details"]["not_meaningful"].startswith("the responder is on this host")
    assert checks["bandwidth.down"]["details"]["throughput_bps"] > 0  # measured, shown
    for text in (out.stdout, hf.read_text()):
        assert "not meaningful on this path" in text
        assert not [p for p in re.findall(r"(\d+) %", text) if int(p) > 100], text
    assert rep["verdict"] == "skipped"  # nothing on this path could be graded
