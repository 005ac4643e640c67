"""Sharded scrapes and the shared exposition: `?shard=i&shards=n` splits /metrics (and a
partner's /api/v1/metrics) by site so that the n scrapes together hold every series exactly
once, a site's series all in one shard and the process's counters in shard 0; bad shard
parameters are refused with a message naming them; scrapes that arrive together share one
build, and `metrics.cache_s` keeps it for the scrapes that follow."""

from __future__ import annotations

import asyncio

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from collector.metrics import ExpositionCache, shard_buckets
from tests.collector.conftest import icmp, new_tenant

Sample = tuple[str, tuple[tuple[str, str], ...], float]


def _samples(text: str) -> set[Sample]:
    return {
        (s.name, tuple(sorted(s.labels.items())), s.value)
        for f in text_string_to_metric_families(text)
        for s in f.samples
    }


def _scrape(srv, params: dict[str, int] | None = None) -> set[Sample]:
    r = httpx.get(f"{srv.url}/metrics", headers=srv.scrape_headers, params=params, timeout=30)
    assert r.status_code == 200, r.text
    return _samples(r.text)


def test_shards_partition_the_scrape_by_site(make_store, serve):
    srv = serve(make_store())
    tenants = [new_tenant(srv, f"p{i}") for i in range(8)]
    for i, t in enumerate(tenants):
        t.post(icmp(10.0 + i, target="192.0.2.10"), icmp(20.0 + i, target="192.0.2.11"))
    whole = _scrape(srv)
    shards = [_scrape(srv, {"shard": i, "shards": 3}) for i in range(3)]
    assert set().union(*shards) == whole
    assert sum(len(s) for s in shards) == len(whole)  # no series in two shards
    sites_in = [{dict(lab).get("site") for _, lab, _ in s} - {None} for s in shards]
    assert sum(len(s) for s in sites_in) == len(tenants)  # each site in exactly one shard
    own = {name for name, _, _ in whole if name.startswith("qos_scout_ingest_results")}
    assert own and own <= {name for name, _, _ in shards[0]}
    assert not own & {name for s in shards[1:] for name, _, _ in s}
    # The shard of a site is its id's last two hex digits modulo the number of shards.
    for i, t in enumerate(tenants):
        mine = next(k for k in range(3) if t.site_id[-2:] in shard_buckets(k, 3))
        assert f"p{i}-hq" in sites_in[mine]


def test_a_partner_scrape_shards_its_own_sites_only(make_store, serve):
    srv = serve(make_store())
    a, b = new_tenant(srv, "alpha"), new_tenant(srv, "beta")
    a.post(icmp(11.0, target="192.0.2.20"))
    b.post(icmp(12.0, target="192.0.2.21"))
    whole = a.partner.get("/api/v1/metrics")
    assert whole.status_code == 200
    parts = [a.partner.get("/api/v1/metrics", params={"shard": i, "shards": 2}) for i in (0, 1)]
    assert all(p.status_code == 200 for p in parts)
    assert _samples(parts[0].text) | _samples(parts[1].text) == _samples(whole.text)
    partners = {dict(lab).get("partner") for p in parts for _, lab, _ in _samples(p.text)}
    assert partners <= {"alpha", None}


@pytest.mark.parametrize(
    ("params", "detail"),
    [
        ({"shard": 1}, "shard and shards go together: ?shard=0&shards=4 is the first of 4"),
        ({"shards": 4}, "shard and shards go together: ?shard=0&shards=4 is the first of 4"),
        ({"shard": 4, "shards": 4}, "shard 4 of 4: shards are numbered 0 to 3"),
    ],
)
def test_bad_shard_parameters_are_refused_with_the_reason(make_store, serve, params, detail):
    srv = serve(make_store())
    t = new_tenant(srv, "gamma")
    r = httpx.get(f"{srv.url}/metrics", headers=srv.scrape_headers, params=params)
    assert r.status_code == 422 and r.json()["detail"] == detail
    r = t.partner.get("/api/v1/metrics", params=params)
    assert r.status_code == 422 and r.json()["detail"] == detail


OUT_OF_RANGE = [
    {"shard": 0, "shards": 0},
    {"shard": 0, "shards": 257},
    {"shard": -1, "shards": 2},
    {"shard": "x", "shards": 2},
]


@pytest.mark.parametrize("params", OUT_OF_RANGE)
def test_out_of_range_shard_parameters_name_the_parameter(make_store, serve, params):
    srv = serve(make_store())
    r = httpx.get(f"{srv.url}/metrics", headers=srv.scrape_headers, params=params)
    assert r.status_code == 422
    assert any(e["loc"][-1] in ("shard", "shards") for e in r.json()["detail"])


def test_shard_buckets_cover_every_suffix_once():
    for n in (1, 2, 3, 7, 256):
        got = [b for i in range(n) for b in shard_buckets(i, n)]
        assert sorted(got) == [f"{b:02x}" for b in range(256)]
    with pytest.raises(ValueError, match="need 0 <= shard < shards <= 256"):
        shard_buckets(2, 2)


def test_scrapes_arriving_together_share_one_build():
    async def run() -> tuple[list[bytes], int]:
        cache = ExpositionCache(0.0)
        gate = asyncio.Event()

        async def build() -> bytes:
            await gate.wait()
            return b"exposition %d" % cache.builds

        waiting = [asyncio.ensure_future(cache.get("all", build)) for _ in range(5)]
        await asyncio.sleep(0)
        gate.set()
        got = await asyncio.gather(*waiting)
        again = await cache.get("all", build)  # ttl 0: a later scrape builds anew
        return [*got, again], cache.builds

    got, builds = asyncio.run(run())
    assert got[:5] == [b"exposition 1"] * 5 and got[5] == b"exposition 2" and builds == 2


def test_cache_keeps_a_build_for_its_ttl_and_not_a_failure():
    now = [100.0]

    async def run() -> list[object]:
        cache = ExpositionCache(10.0, clock=lambda: now[0])
        calls = []

        async def build() -> bytes:
            calls.append(now[0])
            if len(calls) == 2:
                raise RuntimeError("database gone")
            return b"built at %d" % now[0]

        out: list[object] = [await cache.get("k", build)]
        now[0] = 109.9
        out.append(await cache.get("k", build))  # within the ttl: the same text
        now[0] = 110.0
        try:
            await cache.get("k", build)
        except RuntimeError as exc:
            out.append(str(exc))
        out.append(await cache.get("k", build))  # the failure was not kept
        out.append(len(calls))
        return out

    assert asyncio.run(run()) == [b"built at 100", b"built at 100", "database gone",
                                  b"built at 110", 3]  # fmt: skip
