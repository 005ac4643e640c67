"""Helpers for the readiness namespace tests: a responder and the readiness CLI in a namespace."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import netlab


def start_responder(lab: netlab.NetLab, node: str) -> None:
    """`qos-scout responder` with default ports (TWAMP 862, bandwidth 5201, NAT test 8620)."""
    argv = [sys.executable, "-m", "agent.cli.main", "responder"]
    p = lab.popen_in(node, argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    assert p.stdout is not None
    line = p.stdout.readline()
    assert line.startswith("responder ready"), f"responder did not start: {line!r}"


def readiness_in(lab: netlab.NetLab, node: str, *args: str) -> dict[str, Any]:
    """Run `qos-scout readiness ... --json` in a namespace; returns the JSON report."""
    argv = [sys.executable, "-m", "agent.cli.main", "readiness", "--json", "-q", *args]
    res = lab.run_in(node, argv, check=False, timeout=300)
    assert res.returncode in (0, 1), f"readiness exited {res.returncode}: {res.stderr}"
    report = json.loads(res.stdout)
    assert (report["verdict"] == "fail") == (res.returncode == 1)
    return report


def check(report: dict[str, Any], check_id: str) -> dict[str, Any]:
    for c in report["checks"]:
        if c["id"] == check_id:
            return c
    raise AssertionError(f"no check {check_id} in {[c['id'] for c in report['checks']]}")


def masquerade(lab: netlab.NetLab, node: str, iface: str) -> None:
    """Source-NAT everything `node` forwards out of `iface` to its own address."""
    script = (
        "table ip qsnat {\n  chain post { type nat hook postrouting priority 100;\n"
        f'    oifname "{iface}" masquerade\n  }}\n}}\n'
    )
    argv = ["ip", "netns", "exec", lab.ns(node), "nft", "-f", "-"]
    res = subprocess.run(argv, input=script, capture_output=True, text=True, check=False)
    if res.returncode != 0:
        raise RuntimeError(f"nft rejected the NAT table: {res.stderr.strip()}")
