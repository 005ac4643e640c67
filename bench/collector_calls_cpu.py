"""CPU time of the idle agent's calls to the collector (the job long-poll and the config fetch,
each once a minute on the default schedule), over http and https, in the agent's process,
beside another checkout's code measured in the same run.

Each measurement is a fresh interpreter with the checkout's `CollectorClient`: one warm-up
round, then `--rounds` rounds of one job poll (answered at once with no job) and one config
fetch (answered 304: unchanged), timed with `time.process_time()`. The server is a stand-in
for the collector in a process of its own (uvicorn, as `collector serve` runs it, with its
keep-alive timeout; its CPU is not counted) answering those two routes as the collector
does; https uses a self-signed certificate, so the client runs with verification off (the
client context is made the same way, with the system's CA store loaded).

    .venv/bin/python bench/collector_calls_cpu.py [--reference ../main] [--runs 3] [--rounds 100]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from agent.cli.stack import free_port
from agent.sip.tlsutil import self_signed_pem

HERE = Path(__file__).resolve().parents[1]

SERVER = r"""
import sys, uvicorn
EMPTY = b'{"jobs":[]}'

async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    if scope["path"] == "/api/v1/agent/jobs":
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"application/json"),
                                (b"content-length", str(len(EMPTY)).encode())]})
        await send({"type": "http.response.body", "body": EMPTY})
    else:  # the config, unchanged since the agent's ETag
        await send({"type": "http.response.start", "status": 304,
                    "headers": [(b"etag", b'"v1"')]})
        await send({"type": "http.response.body", "body": b""})

port, cert, key = int(sys.argv[1]), sys.argv[2], sys.argv[3]
tls = {"ssl_certfile": cert, "ssl_keyfile": key} if cert else {}
uvicorn.run(app, host="127.0.0.1", port=port, log_config=None, access_log=False, **tls)
"""

CALLS = r"""
import asyncio, json, sys, time
sys.path.insert(0, sys.argv[1])
from agent.runtime.client import CollectorClient
url, rounds = sys.argv[2], int(sys.argv[3])

async def main():
    client = CollectorClient(url, "qsa_bench", verify=False)
    async def one_round():
        assert await client.poll_jobs(0) == []
        assert await client.get_config("v1") is None
    await one_round()
    c = time.process_time()
    for _ in range(rounds):
        await one_round()
    cpu = time.process_time() - c
    await client.aclose()
    print(json.dumps({"cpu_s": cpu}))
asyncio.run(main())
"""


def wait_listening(port: int, deadline_s: float = 20.0) -> None:
    import socket

    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise SystemExit(f"the stand-in collector did not listen on port {port}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reference", type=Path, help="another checkout (e.g. the main branch)")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--rounds", type=int, default=100, help="poll + config fetch rounds (100)")
    args = ap.parse_args()
    trees = {"this checkout": HERE}
    if args.reference:
        trees[f"reference ({args.reference})"] = args.reference.resolve()
    work = Path(tempfile.mkdtemp(prefix="calls-bench-"))
    cert, key = self_signed_pem()
    (work / "cert.pem").write_bytes(cert)
    (work / "key.pem").write_bytes(key)
    servers = []
    urls = {}
    try:
        for scheme in ("http", "https"):
            port = free_port()
            files = [str(work / f) if scheme == "https" else "" for f in ("cert.pem", "key.pem")]
            servers.append(subprocess.Popen([sys.executable, "-c", SERVER, str(port), *files],
                                            stderr=subprocess.DEVNULL))  # fmt: skip
            wait_listening(port)
            urls[scheme] = f"{scheme}://127.0.0.1:{port}"
        cpu: dict[tuple[str, str], list[float]] = {(n, s): [] for n in trees for s in urls}
        for i in range(args.runs):
            for (name, scheme), got in cpu.items():
                out = subprocess.run(
                    [sys.executable, "-c", CALLS, str(trees[name]), urls[scheme], str(args.rounds)],
                    capture_output=True, text=True, check=True,
                )  # fmt: skip
                got.append(json.loads(out.stdout.strip().splitlines()[-1])["cpu_s"] / args.rounds)
            print(f"run {i + 1}: " + ", ".join(f"{n} {s} {1e3 * v[-1]:.2f} ms"
                                               for (n, s), v in cpu.items()))  # fmt: skip
    finally:
        for p in servers:
            p.terminate()
            p.wait()
    print(f"\nCPU of one job poll + one config fetch (304), median of {args.runs} runs of "
          f"{args.rounds} rounds (range):")  # fmt: skip
    print(f"{'':34} {'scheme':>6} {'ms per round':>13} {'% of a core, once a minute':>27}")
    for (name, scheme), v in cpu.items():
        med = statistics.median(v)
        print(f"{name:34} {scheme:>6} {1e3 * med:13.2f} {100 * med / 60:27.4f}"
              f"   ({1e3 * min(v):.2f}-{1e3 * max(v):.2f})")  # fmt: skip


if __name__ == "__main__":
    main()
