"""Every shell block of README.md and docs/*.md marked `<!-- runnable -->` runs, verbatim but
for its placeholders, against a local stack: a collector on the default SQLite file and
address in the working directory, a responder on its default ports on loopback, and a
partner, customer, site and enrollment token made through the documented CLI. So the docs
cannot drift from the commands again.

A block is runnable when the line before its fence is `<!-- runnable -->` (invisible when
the page is rendered). Lines of a block that start with `$ ` are commands and the others
their example output (ignored); a block with no `$ ` line is all commands. Placeholders are
the documentation's own names (PARTNER_ID, SITE_ID, TOKEN, collector.example.net, ...):
see PLACEHOLDERS. Example addresses (192.0.2.0/24, *.example.*) become loopback, so no test
traffic leaves the machine.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from agent.cli.stack import tcp_open, wait_for

ROOT = Path(__file__).resolve().parents[2]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
MARK = "<!-- runnable -->"
COLLECTOR_PORT = 8080  # `qos-scout collector serve`'s default listen address, as documented
# `qos-scout responder`'s defaults: TWAMP-light/STAMP, SIP (UDP and TCP), bandwidth
RESPONDER_PORTS = [("udp", 862), ("udp", 5060), ("tcp", 5060), ("tcp", 5201)]

pytestmark = pytest.mark.slow


@dataclass(frozen=True)
class Block:
    path: Path
    line: int  # of the opening fence, 1-based
    commands: str

    @property
    def name(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line}"


def runnable_blocks(path: Path) -> list[Block]:
    """The marked blocks of one page, commands only (prompts stripped, output dropped)."""
    lines = path.read_text().splitlines()
    out: list[Block] = []
    i = 0
    while i < len(lines):
        if lines[i].strip() == MARK:
            fence = i + 1
            if fence >= len(lines) or not lines[fence].startswith("```"):
                raise AssertionError(f"{path}:{i + 1}: {MARK} is not followed by a code fence")
            end = next((j for j in range(fence + 1, len(lines)) if lines[j].startswith("```")),
                       None)  # fmt: skip
            if end is None:
                raise AssertionError(f"{path}:{fence + 1}: the code fence is never closed")
            body = lines[fence + 1 : end]
            if any(x.startswith("$ ") for x in body):
                body = _prompted(body)
            out.append(Block(path, fence + 1, "\n".join(body) + "\n"))
            i = end
        i += 1
    return out


def _prompted(body: list[str]) -> list[str]:
    """`$ ` lines and their continuation lines (after a trailing backslash)."""
    keep: list[str] = []
    going = False
    for x in body:
        if x.startswith("$ "):
            keep.append(x[2:])
            going = x.endswith("\\")
        elif going:
            keep.append(x)
            going = x.endswith("\\")
    return keep


ALL_BLOCKS = [b for page in DOCS for b in runnable_blocks(page)]


def test_there_are_runnable_blocks_and_every_marker_is_placed_right() -> None:
    pages = {b.path.name for b in ALL_BLOCKS}
    assert "README.md" in pages and len(ALL_BLOCKS) >= 4, [b.name for b in ALL_BLOCKS]


@dataclass
class Lab:
    workdir: Path
    env: dict[str, str]
    values: dict[str, str]

    def fill(self, text: str) -> str:
        for pattern, key in PLACEHOLDERS:
            text = re.sub(pattern, lambda _m, k=key: self.values[k], text)  # type: ignore[misc]
        return text

    def sh(self, script: str, timeout_s: float = 300) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["bash", "-euo", "pipefail", "-c", script], cwd=self.workdir,
                              env=self.env, capture_output=True, text=True,
                              timeout=timeout_s)  # fmt: skip


# (regex, value key): the documentation's placeholders and example names, most specific first
PLACEHOLDERS: list[tuple[str, str]] = [
    (r"https?://collector\.example\.net", "collector_url"),
    (r"\bPARTNER_KEY\b", "partner_key"),
    (r"\b(PARTNER_ID|PID)\b", "partner_id"),
    (r"\b(CUSTOMER_ID|CID)\b", "customer_id"),
    (r"\b(SITE_ID|SID)\b", "site_id"),
    (r"\bTOKEN\b", "token"),
    (r"sip:pbx\.customer\.example", "sip_server"),
    (r"\b192\.0\.2\.\d+\b", "loopback"),
    (r"\b[a-z0-9.-]+\.(example\.net|example\.com|example|local)\b", "loopback"),
]


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    if os.geteuid() != 0:
        pytest.skip("the documented commands use the responder's default ports (862, 5060): root")
    if tcp_open(COLLECTOR_PORT):
        pytest.skip(f"port {COLLECTOR_PORT} (the collector's default) is in use here")
    for kind, port in RESPONDER_PORTS:
        if _taken(kind, port):
            # (another run's responder would answer the documented commands in its place)
            pytest.skip(f"{kind} port {port} (the responder's default) is in use here")
    work = tmp_path_factory.mktemp("docs")
    (work / ".venv").symlink_to(Path(sys.executable).parents[1])  # `.venv/bin/...` verbatim
    bindir = str(Path(sys.executable).parent)
    env = {**os.environ, "PATH": f"{bindir}:{os.environ['PATH']}", "PYTHONUNBUFFERED": "1"}
    procs: list[subprocess.Popen[bytes]] = []

    def spawn(name: str, *args: str) -> subprocess.Popen[bytes]:
        log = open(work / f"{name}.log", "ab")
        p = subprocess.Popen(["qos-scout", *args], cwd=work, env=env, stdout=log,
                             stderr=subprocess.STDOUT)  # fmt: skip
        log.close()
        procs.append(p)
        return p

    try:
        collector = spawn("collector", "collector", "serve")
        wait_for("the collector on its default address",
                 lambda: (collector.poll() is None and tcp_open(COLLECTOR_PORT)) or
                 _dead(collector, work / "collector.log"), 60)  # fmt: skip
        responder = spawn("responder", "responder", "--bind", "127.0.0.1")
        wait_for("the responder on its default ports",
                 lambda: (responder.poll() is None and tcp_open(5201)) or
                 _dead(responder, work / "responder.log"), 60)  # fmt: skip

        def cli(*args: str) -> dict[str, str]:
            cmd = ["qos-scout", "collector", *args, "--json"]
            out = subprocess.run(cmd, cwd=work, env=env, capture_output=True, text=True,
                                 check=True, timeout=60)  # fmt: skip
            return dict(json.loads(out.stdout))

        partner = cli("partner", "create", "Docs MSP")
        customer = cli("customer", "create", "--partner", partner["partner_id"], "Docs Dental")
        site = cli("site", "create", "--partner", partner["partner_id"], "--customer",
                   customer["customer_id"], "Docs office")  # fmt: skip
        token = cli("token", "create", "--site", site["site_id"])
        values = {
            "collector_url": f"http://127.0.0.1:{COLLECTOR_PORT}",
            "partner_key": partner["api_key"], "partner_id": partner["partner_id"],
            "customer_id": customer["customer_id"], "site_id": site["site_id"],
            "token": token["token"], "sip_server": "sip:127.0.0.1:5060",
            "loopback": "127.0.0.1",
        }  # fmt: skip
        yield Lab(work, env, values)
    finally:
        for p in reversed(procs):
            p.terminate()
            try:
                p.wait(20)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


def _taken(kind: str, port: int) -> bool:
    """Whether something on this host holds the port (TCP: listening; UDP: bound)."""
    if kind == "tcp":
        return tcp_open(port)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return True
    return False


def _dead(proc: subprocess.Popen[bytes], log: Path) -> bool:
    if proc.poll() is not None:
        raise RuntimeError(f"exited ({proc.returncode}):\n{log.read_text()[-2000:]}")
    return False


@pytest.mark.parametrize("block", ALL_BLOCKS, ids=[b.name for b in ALL_BLOCKS])
def test_runnable_block_works_verbatim(block: Block, lab: Lab) -> None:
    script = lab.fill(block.commands)
    out = lab.sh(script)
    assert out.returncode == 0, (
        f"{block.name} failed ({out.returncode}):\n{script}\n--- stdout\n{out.stdout[-3000:]}"
        f"\n--- stderr\n{out.stderr[-3000:]}"
    )
    assert "Traceback" not in out.stderr, out.stderr
