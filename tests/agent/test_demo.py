"""`qos-scout demo` (what `make demo` runs) completes: every piece starts, a ticket opens and
resolves by itself, the agent stops cleanly, and the summary carries measured figures."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from agent.cli.demo import run_demo

pytestmark = pytest.mark.slow


def test_demo_runs_end_to_end(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc = run_demo(tmp_path / "demo", keep=False, timeout_s=120)
    out = capsys.readouterr().out
    assert rc == 0, out
    assert re.search(r"ticket \S+ opened by rule demo_strict_rtt", out)
    assert re.search(r"ticket \S+ resolved automatically", out)
    assert "agent stopped with SIGTERM, exit status 0" in out
    assert re.search(r"on-demand job \S+: done", out)
    # the on-demand job (a voice stream: no root needed) measured something
    assert re.search(r"On-demand job \S+ \(probe\): done; report \{'results': 1, 'failed': 0", out)
    rows = dict(re.findall(r"^  (icmp|udp|sip_call|host) +(\d+) +\d+ ", out, re.M))
    assert {"icmp", "host"} <= set(rows), out
    assert all(int(n) >= 1 or p == "icmp" for p, n in rows.items()), out
    assert "evidence: " in out and "/docs" in out and "/metrics" in out
    assert not (tmp_path / "demo").exists()  # cleaned up
