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
from agent.cli import build_parser
build_parser()
from agent.client import Credentials
from agent.config import parse_config
from agent.probes import PROBE_MODULES
from agent.runtime import Agent
mods = {
    "ping": {"probe": "icmp", "targets": ["127.0.0.1"], "interval_s": 1, "options": {"count": 2}},
    "host": {"probe": "host", "targets": ["local"], "interval_s": 1, "options": {"sample_s": 0.1}},
}
if "udp" in PROBE_MODULES:
    mods["voice"] = {"probe": "udp", "targets": ["127.0.0.1:9"], "interval_s": 1,
                     "options": {"duration_s": 0.2, "wait_s": 0.2}}
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
    from agent.stack import free_port

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
