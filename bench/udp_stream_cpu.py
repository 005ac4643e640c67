"""CPU time of one voice stream (the `udp` probe as the default schedule runs it: 30 s of G.711,
50 packets/s) in the agent's process, beside another checkout's code measured in the same run
and beside the least any Python sender could spend: a bare loop that only sleeps to the same
1,500 deadlines.

Each measurement is a fresh interpreter that runs a 1 s stream first (imports, first use),
then one full stream through `run_probe` and the result's JSON, timed with
`time.process_time()` (all threads of the process: user + system). A responder of this
checkout reflects on loopback, in its own process (its CPU is not counted).

    .venv/bin/python bench/udp_stream_cpu.py [--reference ../main] [--runs 3] [--duration 30]
"""

from __future__ import annotations

import argparse
import json
import socket
import statistics
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from agent.cli.stack import free_port

HERE = Path(__file__).resolve().parents[1]

STREAM = r"""
import asyncio, json, sys, time
sys.path.insert(0, sys.argv[1])
import msgspec
from agent.probes import run_probe
target, duration = f"127.0.0.1:{sys.argv[2]}", float(sys.argv[3])
async def main():
    await run_probe("udp", target, {"duration_s": 1})
    c, t = time.process_time(), time.monotonic()
    r = await run_probe("udp", target, {"codec": "G711_PLC", "duration_s": duration})
    # the result's JSON as the agent spools it (msgspec Structs; pydantic in older checkouts)
    r.model_dump_json() if hasattr(r, "model_dump_json") else msgspec.json.encode(r)
    cpu, wall = time.process_time() - c, time.monotonic() - t
    m = r.measurement or {}
    print(json.dumps({"cpu_s": cpu, "wall_s": wall, "sent": m.get("sent"),
                      "received": m.get("received")}))
asyncio.run(main())
"""

SLEEPS = r"""
import json, sys, time
n, rate = int(sys.argv[1]), float(sys.argv[2])
c, start = time.process_time(), time.monotonic()
for i in range(n):
    delay = start + i / rate - time.monotonic()
    if delay > 0:
        time.sleep(delay)
print(json.dumps({"cpu_s": time.process_time() - c, "wall_s": time.monotonic() - start}))
"""


def run(code: str, *args: str) -> dict[str, float]:
    out = subprocess.run(
        [sys.executable, "-c", code, *args], capture_output=True, text=True, check=True
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reference", type=Path, help="another checkout (e.g. the main branch)")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--duration", type=float, default=30.0, help="stream length, s (30)")
    args = ap.parse_args()
    port = free_port(socket.SOCK_DGRAM)
    responder = subprocess.Popen(
        [sys.executable, "-m", "agent", "responder", "--bind", "127.0.0.1", "--twamp-port",
         str(port), "--bandwidth-port", "off", "--natprobe-port", "off", "--sip-port", "off",
         "--sip-tls-port", "off"],
        cwd=HERE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )  # fmt: skip
    assert responder.stdout is not None
    packets = round(args.duration * 50)
    trees = {"this checkout": HERE}
    if args.reference:
        trees[f"reference ({args.reference})"] = args.reference.resolve()
    cpu: dict[str, list[float]] = {name: [] for name in [*trees, "sleep-only loop"]}
    try:
        line = responder.stdout.readline()
        if "ready" not in line:
            raise SystemExit(f"the responder did not start: {line!r}")
        for i in range(args.runs):
            for name, tree in trees.items():
                r = run(STREAM, str(tree), str(port), str(args.duration))
                if r["received"] != r["sent"]:
                    print(f"  ({name}: {r['received']} of {r['sent']} came back)")
                cpu[name].append(r["cpu_s"])
            cpu["sleep-only loop"].append(run(SLEEPS, str(packets), "50")["cpu_s"])
            print(f"run {i + 1}: " + ", ".join(f"{k} {v[-1]:.3f} s" for k, v in cpu.items()))
    finally:
        responder.terminate()
        responder.wait()
    print(f"\nCPU of one {args.duration:g} s G.711 stream ({packets} packets each way), "
          f"median of {args.runs} (range):")  # fmt: skip
    print(f"{'':34} {'CPU s':>7} {'µs/packet':>10} {'% of a core, every 5 min':>22}")
    for name, v in cpu.items():
        med = statistics.median(v)
        print(f"{name:34} {med:7.3f} {1e6 * med / packets:10.0f} {100 * med / 300:22.3f}"
              f"   ({min(v):.3f}-{max(v):.3f})")  # fmt: skip


if __name__ == "__main__":
    main()
