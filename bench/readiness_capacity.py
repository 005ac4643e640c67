"""Capacity-ramp accuracy: `qos-scout readiness --checks capacity` on tbf-capped links.

Needs root (network namespaces). For each cap, the upstream of a routed path a -> r -> b is
shaped with `tc tbf` (burst 4000 B, latency 50 ms), the ramp runs with 3 s steps, and the
call count found is printed beside what the cap allows at G.711's wire rate
(floor(cap / 87.2 kbit/s)) and at the rate tbf itself counts on a veth (IP + 14 B MAC
header: 214 B x 50/s = 85.6 kbit/s).

    sudo .venv/bin/python bench/readiness_capacity.py [CAP_KBIT ...]
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import netlab

from agent.readiness.thresholds import G711_ETHERNET_BPS, G711_IP_PACKET_BYTES
from tests.readiness.nethelpers import readiness_in, start_responder

TBF_BPS_PER_CALL = (G711_IP_PACKET_BYTES + 14) * 8 * 50


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("caps", nargs="*", type=int, metavar="CAP_KBIT",
                    help="tbf caps in kbit/s (default 300 470 1000 2000)")  # fmt: skip
    caps = ap.parse_args(argv).caps or [300, 470, 1000, 2000]
    reason = netlab.skip_reason()
    if reason:
        print(f"cannot run: {reason}")
        return 2
    print("| tbf cap | allowed at 87.2 kbit/s | allowed at tbf's 85.6 kbit/s | ramp found "
          "| steps (calls: ok/fail) | ramp time |")  # fmt: skip
    print("|---|---|---|---|---|---|")
    for kbit in caps:
        with netlab.NetLab("qb", router=True) as lab:
            start_responder(lab, "b")
            lab.tbf("a", lab.iface("a", "r"), f"{kbit}kbit", burst="4000", latency_ms=50)
            ceiling = max(4, 2 * math.ceil(kbit * 1000 / G711_ETHERNET_BPS))
            t0 = time.monotonic()
            rep = readiness_in(lab, "a", "--responder", lab.addr("b"), "--checks", "capacity",
                               "--calls", "1", "--max-calls", str(ceiling),
                               "--ramp-step-s", "3")  # fmt: skip
            took = time.monotonic() - t0
        steps = ", ".join(f"{s['calls']}:{'ok' if s['ok'] else 'fail'}" for s in rep["ramp"])
        print(f"| {kbit} kbit/s | {math.floor(kbit * 1000 / G711_ETHERNET_BPS)} "
              f"| {math.floor(kbit * 1000 / TBF_BPS_PER_CALL)} | {rep['capacity_calls']} "
              f"| {steps} | {took:.0f} s |", flush=True)  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
