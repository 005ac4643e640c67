"""The idle agent's memory budget, guarded by what it loads rather than by timing: a real
`qos-scout agent run` (enrolled at a real collector, the default schedule's probe kinds sped
up) holds no OpenSSL (neither ssl nor hashlib's _hashlib) for an http:// collector, no
collector code, no numpy, only its own command's parser, and no pydantic (its wire models are
the msgspec Structs of agent/wire/lite.py); and TLS still works once it is wanted after asyncio
was imported without `ssl`."""

from __future__ import annotations

import ast
import signal
import subprocess
import sys
from collections.abc import Iterator

import pytest

from agent.cli.stack import Stack, wait_for

pytestmark = pytest.mark.slow

# `python -c DUMP OUT qos-scout-args...`: the agent as `qos-scout` runs it, writing its loaded
# modules to OUT on SIGUSR1. The handler imports nothing (signal and builtins only).
DUMP = r"""
import os, signal, sys
out = sys.argv.pop(1)
def dump(*_):
    with open(out + ".part", "w") as f:
        loaded = sorted(k for k, v in sys.modules.items() if v is not None)  # None: kept out
        f.write(repr({"modules": loaded}))
    os.replace(out + ".part", out)
signal.signal(signal.SIGUSR1, dump)
from agent.cli.main import main
sys.exit(main())
"""

# The default schedule's probe kinds (icmp, host, udp, trace, sip_options), sped up, aimed at
# loopback ports where nothing answers: each module runs and fails or succeeds in a second.
MODULES = {
    "ping": {"probe": "icmp", "targets": ["127.0.0.1"], "interval_s": 2,
             "options": {"count": 2, "interval_s": 0.05, "timeout_s": 0.5}},
    "host": {"probe": "host", "targets": ["local"], "interval_s": 2, "options": {"sample_s": 0.1}},
    "voice": {"probe": "udp", "targets": ["127.0.0.1:9"], "interval_s": 10,
              "options": {"duration_s": 0.2, "wait_s": 0.2}},
    "trace": {"probe": "trace", "targets": ["127.0.0.1"], "on_loss": {}},
    "sip": {"probe": "sip_options", "targets": ["sip:127.0.0.1:9"], "interval_s": 2,
            "timeout_s": 1},
}  # fmt: skip


@pytest.fixture(scope="module")
def idle_agent(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, object]]:
    stack = Stack(tmp_path_factory.mktemp("footprint"))
    try:
        stack.start_collector()
        token = stack.create_tenancy()
        config = stack.write_agent_config(MODULES, metrics=None, jobs={"wait_s": 1})
        stack.enroll(config, token)
        out = stack.workdir / "loaded.txt"
        log = open(stack.workdir / "agent.log", "ab")
        proc = subprocess.Popen(
            [sys.executable, "-c", DUMP, str(out), "agent", "run", "--config", str(config)],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        stack.procs["agent"] = proc
        # every module ran and its results were shipped; a job long-poll has come and gone
        kinds = {"icmp", "host", "udp", "sip_options"}

        def shipped() -> bool:
            assert proc.poll() is None, stack.log_tail("agent")
            return kinds <= {r["probe"] for r in stack.results()}

        wait_for("results of every probe kind", shipped, 60, every_s=0.5)
        proc.send_signal(signal.SIGUSR1)
        wait_for("the agent's list of loaded modules", out.exists, 30)
        yield ast.literal_eval(out.read_text())
    finally:
        stack.close()


def test_idle_agent_loads_no_tls_collector_or_other_commands(idle_agent: dict) -> None:
    modules = set(idle_agent["modules"])
    assert "agent.runtime.loop" in modules and "agent.probes.sip_options" in modules
    tops = {m.split(".")[0] for m in modules}
    unwanted = {"ssl", "_ssl", "_hashlib", "numpy", "collector", "email", "fastapi",
                "sqlalchemy", "httpx", "scapy", "aiortc", "prometheus_client"}  # fmt: skip
    assert sorted(tops & unwanted) == [], "the idle agent loaded these"
    # the CLI built only the `agent` command's parser
    commands = sorted(m for m in modules if m.startswith("agent.cli.cmd_"))
    assert commands == ["agent.cli.cmd_agent"]


def test_idle_agent_loads_no_pydantic(idle_agent: dict) -> None:
    modules = set(idle_agent["modules"])
    tops = {m.split(".")[0] for m in modules}
    assert sorted(tops & {"pydantic", "pydantic_core", "annotated_types"}) == []
    # its wire models are the generated Structs; the pydantic ones stay the collector's
    assert {"msgspec", "agent.wire.lite"} <= modules
    pydantic_wire = {"agent.wire.results", "agent.wire.measurements", "agent.wire.net",
                     "agent.wire.voice", "agent.wire.profiles", "agent.wire.jobs",
                     "agent.wire.ingest"}  # fmt: skip
    assert sorted(modules & pydantic_wire) == []


TLS_AFTER_LAZY_SSL = r"""
import sys
from agent.tls import keep_openssl_out
keep_openssl_out()
assert "ssl" not in sys.modules and "asyncio" in sys.modules
import hashlib  # on its built-in hashes
assert hashlib.sha256(b"x").hexdigest().startswith("2d711642") and sys.modules["_hashlib"] is None
import asyncio
from agent.runtime.http import HttpError, request
from agent.sip.tlsutil import server_context

async def main():
    async def handle(reader, writer):
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        await writer.drain()
        writer.close()
    server = await asyncio.start_server(handle, "127.0.0.1", 0, ssl=server_context())
    port = server.sockets[0].getsockname()[1]
    async with server:
        try:
            await request("GET", f"https://127.0.0.1:{port}/", timeout_s=10)
        except HttpError as exc:
            print("verify:", exc.kind)
        resp = await request("GET", f"https://127.0.0.1:{port}/", timeout_s=10, verify=False)
        print("insecure:", resp.status, resp.body.decode())
asyncio.run(main())
"""


def test_tls_works_after_asyncio_was_imported_without_ssl() -> None:
    out = subprocess.run(
        [sys.executable, "-c", TLS_AFTER_LAZY_SSL], capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    # a self-signed certificate is refused as untrusted, and accepted when verify is off
    assert out.stdout.splitlines() == ["verify: tls-verify", "insecure: 200 ok"]
