"""Cost of the security middleware (collector/api/security.py) per request, beside the
same trivial ASGI app called without it in the same run: a partner's request (headers,
credential hash, partner bucket), a failed authentication (401: the address's budget spent)
and a request refused 429. Run: `.venv/bin/python bench/security.py [N]`.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from typing import Any

from collector.api.security import Security
from collector.config import WebConfig
from collector.stats import Stats


def app_answering(status: int) -> Any:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": status, "headers": []})
        await send({"type": "http.response.body", "body": b"{}"})

    return app


def scope(i: int, key: str) -> dict[str, Any]:
    return {
        "type": "http", "path": "/api/v1/customers", "client": (f"198.51.100.{i % 250}", 1),
        "headers": [(b"authorization", f"Bearer {key}".encode()), (b"host", b"collector")],
    }  # fmt: skip


async def run(app: Any, n: int, key: str) -> float:
    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b""}

    async def send(_m: Any) -> None:
        return None

    t0 = time.perf_counter()
    for i in range(n):
        await app(scope(i, key), receive, send)
    return (time.perf_counter() - t0) / n * 1e6


async def main(n: int) -> None:
    cfg = WebConfig(partner_requests_per_s=1e9, partner_burst=10**9)
    ok, bad = app_answering(200), app_answering(401)
    rows = [
        ("partner request (200)", await run(ok, n, "qsp_k"),
         await run(Security(ok, cfg, Stats()), n, "qsp_k")),
        ("failed authentication (401)", await run(bad, n, "qsp_guess"),
         await run(Security(bad, WebConfig(auth_failures_max=10**9), Stats()), n, "qsp_guess")),
    ]  # fmt: skip
    blocked = Security(bad, WebConfig(auth_failures_max=1), Stats())
    await run(blocked, 250, "qsp_guess")  # every address spends its one try
    rows.append(("refused 429", await run(bad, n, "qsp_guess"), await run(blocked, n, "qsp_x")))
    print(f"{n} requests each, microseconds per request")
    print("| case | bare app | with Security | added |\n|---|---|---|---|")
    for name, bare, with_mw in rows:
        print(f"| {name} | {bare:.1f} | {with_mw:.1f} | {with_mw - bare:.1f} |")


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("n", nargs="?", type=int, default=50_000, help="requests per case")
    asyncio.run(main(ap.parse_args().n))
