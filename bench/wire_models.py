"""Wire models in pydantic against msgspec, for the agent's side of the contract: resident
memory of the library and of the models an idle agent uses, and the time to build one
result and serialise it.

The msgspec Structs are the agent's own, agent/wire/lite.py, generated from the pydantic
models (`python -m agent.wire.codegen`: names, types, defaults, constraints), so both sides
describe the same shapes. Each variant runs in a fresh
interpreter that has already imported asyncio (as the agent has) and reports the growth of
its RSS from /proc/self/statm; three interpreters per variant (`--runs`), the median is printed.

    .venv/bin/python bench/wire_models.py
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# The models an idle agent on the default schedule builds: the result, the default probes'
# measurements and what they nest (found by the footprint test, agent.wire.*).
COMMON = r"""
import sys, time
from agent.tls import keep_openssl_out  # as `agent run` does
keep_openssl_out()
def rss():
    return int(open("/proc/self/statm").read().split()[1]) * 4096
KINDS = ("icmp", "host", "udp", "trace", "sip_options")
SAMPLE = {"probe": "icmp", "target": "192.0.2.1", "module": "ping",
          "started_at": "2026-12-04T07:00:00+00:00", "duration_ms": 1012.5, "success": True,
          "measurement": None, "tags": {}}
"""

PYDANTIC = (
    COMMON
    + r"""
r0 = rss()
import pydantic
r1 = rss()
from pydantic._internal._config import config_defaults
config_defaults["defer_build"] = True  # built below, one by one
import types  # no plugin lookup (it imports importlib.metadata), as the agent once did
stub = types.ModuleType("pydantic.plugin._loader"); stub.get_plugins = tuple
sys.modules["pydantic.plugin._loader"] = stub
from agent.wire.results import ProbeResult
from agent.wire.measurements import MEASUREMENTS
r2 = rss()
models = [ProbeResult] + [MEASUREMENTS[k] for k in KINDS]
for m in models:
    m.model_rebuild()  # built now (the agent builds on first use)
r3 = rss()
t = time.perf_counter()
for _ in range(2000):
    ProbeResult.model_validate(SAMPLE).model_dump_json()
us = (time.perf_counter() - t) / 2000 * 1e6
print({"library": r1 - r0, "modules": r2 - r1, "models": r3 - r2, "us_per_result": us})
"""
)

MSGSPEC = (
    COMMON
    + r"""
r0 = rss()
import msgspec
r1 = rss()
from agent.wire import lite  # generated from the pydantic models (python -m agent.wire.codegen)
r2 = rss()
made = [lite.ProbeResult] + [lite.MEASUREMENTS[k] for k in KINDS]
dec = msgspec.json.Decoder(lite.ProbeResult); enc = msgspec.json.Encoder()
decs = [msgspec.json.Decoder(m) for m in made]
raw = msgspec.json.encode(SAMPLE)
dec.decode(raw)
r3 = rss()
t = time.perf_counter()
for _ in range(2000):
    enc.encode(dec.decode(raw))
us = (time.perf_counter() - t) / 2000 * 1e6
print({"library": r1 - r0, "modules": r2 - r1, "models": r3 - r2, "us_per_result": us})
"""
)


def run(code: str) -> dict[str, float]:
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True
    )
    return dict(json.loads(out.stdout.strip().splitlines()[-1].replace("'", '"')))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=3, help="interpreters per variant")
    runs = ap.parse_args().runs
    for name, code in (("pydantic", PYDANTIC), ("msgspec", MSGSPEC)):
        try:
            got = [run(code) for _ in range(max(1, runs))]
        except subprocess.CalledProcessError as exc:
            print(f"{name}: not measured ({exc.stderr.strip().splitlines()[-1]})")
            continue
        lib = statistics.median(g["library"] for g in got) / 2**20
        mods = statistics.median(g["modules"] for g in got) / 2**20
        models = statistics.median(g["models"] for g in got) / 2**20
        us = statistics.median(g["us_per_result"] for g in got)
        print(f"{name:<9} library {lib:5.1f} MiB  wire modules {mods:5.1f} MiB"
              f"  models built {models:5.1f} MiB"
              f"  validate+serialise one result {us:6.1f} µs")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
