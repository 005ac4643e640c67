"""Serving a scrape: the `?shard=i&shards=n` parameters and the exposition of one scope
(every partner's or one partner's, whole or one shard), built through the app's
ExpositionCache so that scrapes arriving together share one build."""

from __future__ import annotations

from typing import Annotated

from fastapi import FastAPI, Query
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from collector.api.state import AppState
from collector.errors import Invalid
from collector.metrics import MAX_SHARDS, ExpositionCache, StoreCollector

ShardParam = Annotated[int | None, Query(ge=0, lt=MAX_SHARDS, description="this shard")]
ShardsParam = Annotated[
    int | None, Query(ge=1, le=MAX_SHARDS, description="the number of shards of the scrape")
]


def shard_of(shard: int | None, shards: int | None) -> tuple[int, int] | None:
    """The scrape's shard from `?shard=i&shards=n` (both or neither); Invalid otherwise."""
    if shard is None and shards is None:
        return None
    if shard is None or shards is None:
        raise Invalid("shard and shards go together: ?shard=0&shards=4 is the first of 4")
    if shard >= shards:
        raise Invalid(f"shard {shard} of {shards}: shards are numbered 0 to {shards - 1}")
    return shard, shards


async def scrape(app: FastAPI, partner_id: str | None, shard: tuple[int, int] | None) -> Response:
    """The exposition of one scope (every partner's or one partner's, whole or one shard),
    built once for the scrapes that ask for it at the same time (ExpositionCache)."""
    st: AppState = app.state.qs
    cache: ExpositionCache = app.state.metrics_cache
    if partner_id is None and shard is None:
        reg: CollectorRegistry = app.state.registry
    else:
        reg = CollectorRegistry(auto_describe=False)
        reg.register(
            StoreCollector(st.store, st.stats, st.clock, before=st.flush_seen,
                           partner_id=partner_id, shard=shard)
        )  # fmt: skip

    async def build() -> bytes:
        return await run_in_threadpool(generate_latest, reg)

    body = await cache.get((partner_id, shard), build)
    return Response(body, media_type=CONTENT_TYPE_LATEST)
