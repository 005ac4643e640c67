"""The agent process stays light: running its schedule never imports scapy, aiortc or the
collector's web stack."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

HEAVY = ("scapy", "aiortc", "av", "fastapi", "starlette", "uvicorn", "sqlalchemy", "alembic")

SCRIPT = """
import asyncio, json, sys
from agent.cli.main import build_parser
build_parser()
from agent.runtime.client import Credentials
from agent.runtime.config import parse_config
from agent.probes import PROBE_MODULES
from agent.runtime.loop import Agent
from agent.runtime.config import SiteConfig, default_modules
# The default schedule of a site (every probe kind it uses is imported by validation),
# sped up, with loopback stand-ins for the gateway and the far end.
mods = default_modules(SiteConfig(responder="127.0.0.1", sip_server="sip:127.0.0.1:9"))
mods = {k: m for k, m in mods.items() if m["probe"] in PROBE_MODULES}
for m in mods.values():
    m["targets"] = ["127.0.0.2" if t == "$gateway" else t for t in m["targets"]]
    m["targets"] = [t.replace("$responder", "127.0.0.1").replace("$sip_server", "sip:127.0.0.1:9")
                    for t in m["targets"]]
    if m.get("interval_s"):
        m["interval_s"] = 1
mods["ping"]["options"] = {"count": 2, "interval_s": 0.05, "timeout_s": 0.5}
mods["host"]["options"] = {"sample_s": 0.1}
if "voice" in mods:
    mods["voice"]["targets"] = ["127.0.0.1:9"]
    mods["voice"]["options"] = {"duration_s": 0.2, "wait_s": 0.2}
if "bandwidth" in mods:
    mods["bandwidth"]["enabled"] = False  # validated (imported), not run
if "sip" in mods:
    mods["sip"]["timeout_s"] = 1
cfg = parse_config({
    "collector": {"url": "http://127.0.0.1:9", "timeout_s": 1},
    "spool": {"path": sys.argv[1]},
    "metrics": {"port": int(sys.argv[2])},
    "scheduler": {"first_run_within_s": 0.5, "shutdown_flush_s": 0.5},
    "modules": mods,
})
agent = Agent(cfg, Credentials("http://127.0.0.1:9", "a", "k", "s"))
async def main():
    stop = asyncio.Event()
    asyncio.get_running_loop().call_later(3.0, stop.set)
    await agent.run(stop)
asyncio.run(main())
print(json.dumps({"runs": agent.produced, "modules": sorted(sys.modules)}))
"""


def test_agent_runs_its_schedule_without_heavy_imports(tmp_path: Path) -> None:
    from agent.cli.stack import free_port

    out = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(tmp_path / "spool.db"), str(free_port())],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout.strip().splitlines()[-1])
    assert data["runs"] >= 4
    heavy = sorted({m.split(".")[0] for m in data["modules"]} & set(HEAVY))
    assert heavy == [], f"the idle agent imported {heavy}"
