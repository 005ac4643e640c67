"""Probe profiles over a real uvicorn, on SQLite and PostgreSQL: partner -> customer -> site
inheritance, the refusal naming the key, versions and If-Match, the agent's ETag / 304 and
its report, another partner's 404 on every route, outdated and silent agents."""

from __future__ import annotations

import time
from typing import Any

import pytest

from agent.wire import VERSION
from agent.wire.profiles import EffectiveConfig, Profile, ProfileError, merge, validate_modules
from tests.collector.conftest import new_tenant

PING = {"probe": "icmp", "targets": ["192.0.2.1"], "interval_s": 60, "options": {"count": 5}}
HOST = {"probe": "host", "targets": ["local"], "interval_s": 300}


def test_merge_by_module_name_field_by_field() -> None:
    partner = Profile.model_validate({"modules": {"ping_gw": PING, "host": HOST}})
    customer = Profile.model_validate(
        {"modules": {"ping_gw": {"interval_s": 30, "options": {"size": 200}}}}
    )
    site = Profile.model_validate(
        {
            "modules": {
                "host": {"enabled": False},
                "ping_gw": {"targets": ["198.51.100.7"], "options": {"count": None}},
                "trace": {"probe": "trace", "targets": ["198.51.100.7"], "on_loss": {}},
            }
        }
    )
    mods = validate_modules(merge([partner, customer, site]))
    assert mods["ping_gw"].interval_s == 30  # the customer's interval
    assert mods["ping_gw"].targets == ["198.51.100.7"]  # the site's targets
    assert mods["ping_gw"].options == {"size": 200}  # count removed by null, size added
    assert mods["host"].enabled is False and mods["host"].interval_s == 300
    assert mods["trace"].on_loss is not None and mods["trace"].interval_s is None
    # interval_s at a lower layer replaces an inherited on_loss (a module has one of them)
    over = Profile.model_validate({"modules": {"trace": {"interval_s": 600}}})
    again = validate_modules(merge([partner, customer, site, over]))
    assert again["trace"].interval_s == 600 and again["trace"].on_loss is None


def test_refusals_name_the_key() -> None:
    with pytest.raises(ProfileError) as bad:
        validate_modules(merge([Profile.model_validate({"modules": {"x": {"probe": "nope"}}})]))
    assert str(bad.value) == "modules.x.targets: Field required"
    with pytest.raises(ProfileError) as kind:
        validate_modules({"x": {**HOST, "probe": "nope"}})
    assert str(kind.value).startswith("modules.x.probe: unknown probe 'nope' (known: bandwidth")
    with pytest.raises(ProfileError) as ver:
        EffectiveConfig.parse({"schema_version": 9, "version": "a", "central": True})
    assert str(ver.value) == "schema_version: 9 is not a config version this agent knows (1)"


def _put(client: Any, path: str, modules: dict[str, Any], **headers: str) -> Any:
    return client.put(f"/api/v1/profiles/{path}", json={"modules": modules}, headers=headers)


def test_profiles_api_inheritance_versions_and_agent_fetch(make_store, serve):
    srv = serve(make_store(api_docs=True))
    t = new_tenant(srv, "acme")
    p, agent = t.partner, t.agent

    none = agent.get("/api/v1/agent/config")
    assert none.status_code == 200 and none.json()["central"] is False

    r = _put(p, f"partner/{t.partner_id}", {"ping_gw": PING, "host": HOST})
    assert r.status_code == 200, r.text
    assert r.headers["etag"] == '"1"' and r.json()["version"] == 1
    bad = _put(p, f"site/{t.site_id}", {"ping_gw": {"interval_s": 0.5}})
    assert bad.status_code == 422
    assert bad.json()["detail"] == (
        "modules.ping_gw.interval_s: Input should be greater than or equal to 1"
    )
    partial = _put(p, f"customer/{t.customer_id}", {"voice": {"interval_s": 60}})
    assert partial.status_code == 422
    assert partial.json()["detail"] == "modules.voice.probe: Field required; " + (
        "modules.voice.targets: Field required"
    )
    site = _put(p, f"site/{t.site_id}", {"ping_gw": {"interval_s": 10}, "host": {"enabled": False}})
    assert site.status_code == 200, site.text
    # a partner change that would break the site's layer names the site
    broken = _put(p, f"partner/{t.partner_id}", {"host": HOST})
    assert broken.status_code == 422
    assert broken.json()["detail"].startswith(f"site {t.site_id}: modules.ping_gw.probe: ")

    cfg = agent.get("/api/v1/agent/config")
    assert cfg.status_code == 200
    eff = EffectiveConfig.parse(cfg.json())
    assert eff.central and eff.layers == ["partner", "site"]
    assert eff.modules["ping_gw"].interval_s == 10 and eff.modules["host"].enabled is False
    etag = cfg.headers["etag"]
    assert etag == f'"{eff.version}"'
    same = agent.get("/api/v1/agent/config", headers={"If-None-Match": etag})
    assert same.status_code == 304 and same.content == b""
    assert p.get(f"/api/v1/sites/{t.site_id}/config").json() == cfg.json()

    # optimistic concurrency: If-Match must name the current version
    stale = _put(p, f"site/{t.site_id}", {"ping_gw": {"interval_s": 20}}, **{"If-Match": '"9"'})
    assert stale.status_code == 412
    ok = _put(p, f"site/{t.site_id}", {"ping_gw": {"interval_s": 20}}, **{"If-Match": '"1"'})
    assert ok.status_code == 200 and ok.json()["version"] == 2
    changed = agent.get("/api/v1/agent/config", headers={"If-None-Match": etag})
    assert changed.status_code == 200 and changed.headers["etag"] != etag
    assert changed.json()["modules"]["host"]["enabled"] is True  # the site's disable is gone
    # the partner's layer cannot go while the site's needs it
    assert p.delete(f"/api/v1/profiles/partner/{t.partner_id}").status_code == 422
    assert p.delete(f"/api/v1/profiles/site/{t.site_id}").status_code == 204
    assert p.get(f"/api/v1/profiles/site/{t.site_id}").status_code == 404
    assert p.delete(f"/api/v1/profiles/partner/{t.partner_id}").status_code == 204

    rep = agent.post(
        "/api/v1/agent/config/status",
        json={"config_version": eff.version, "software_version": "0.0.9", "error": None},
    )
    assert rep.status_code == 204, rep.text
    a = p.get(f"/api/v1/agents/{t.agent_id}").json()
    assert a["config_version"] == eff.version and a["version"] == "0.0.9"
    assert a["outdated"] is True and a["silent"] is False
    bad_rep = agent.post("/api/v1/agent/config/status", json={"software_version": ""})
    assert bad_rep.status_code == 422


def test_another_partner_gets_404_on_every_profile_route(make_store, serve):
    srv = serve(make_store())
    t = new_tenant(srv, "acme")
    other = new_tenant(srv, "globex")
    assert _put(t.partner, f"site/{t.site_id}", {"ping": PING}).status_code == 200
    assert _put(t.partner, f"customer/{t.customer_id}", {"h": HOST}).status_code == 200
    assert _put(t.partner, f"partner/{t.partner_id}", {"h2": HOST}).status_code == 200
    for path in (f"site/{t.site_id}", f"customer/{t.customer_id}", f"partner/{t.partner_id}"):
        url = f"/api/v1/profiles/{path}"
        assert other.partner.get(url).status_code == 404
        assert _put(other.partner, path, {"ping": PING}).status_code == 404
        assert other.partner.delete(url).status_code == 404
        assert t.partner.get(url).status_code == 200  # untouched
    assert other.partner.get(f"/api/v1/sites/{t.site_id}/config").status_code == 404
    # an agent sees its own site's config only
    assert other.agent.get("/api/v1/agent/config").json()["central"] is False


def test_outdated_and_silent_agents(make_store, serve):
    srv = serve(make_store(min_agent_version="0.2", silent_agent_timeout_s=60))
    t = new_tenant(srv, "acme")
    a = t.partner.get("/api/v1/agents").json()[0]
    assert a["version"] == VERSION and a["outdated"] is True  # below min_agent_version 0.2
    assert a["silent"] is False  # enrolled just now
    t.agent.post("/api/v1/agent/config/status", json={"software_version": "0.2.1"})
    a = t.partner.get("/api/v1/agents").json()[0]
    assert (a["outdated"], a["silent"], a["config_version"]) == (False, False, None)
    srv.state.clock = lambda: time.time() + 120
    assert t.partner.get("/api/v1/agents").json()[0]["silent"] is True


async def test_agent_sync_downloads_once_applies_and_reports(make_store, serve):
    """The agent's side against the real routes: the first fetch applies and reports, the
    next ones are 304s (nothing applied, nothing re-reported) until the profile changes."""
    import asyncio
    import random

    from agent.runtime.central import LOCAL, ConfigSync
    from agent.runtime.client import CollectorClient
    from agent.runtime.config import parse_config
    from agent.runtime.scheduler import Scheduler

    srv = serve(make_store())
    t = new_tenant(srv, "acme")
    key = str(t.agent.headers["Authorization"]).removeprefix("Bearer ")
    client = CollectorClient(srv.url, key, timeout_s=10)
    cfg = parse_config({"modules": {"pinned": HOST}}, check_probes=True)
    sched = Scheduler(cfg.enabled_modules(), lambda r: None, rng=random.Random(1))
    sync = ConfigSync(client, sched, cfg, rng=random.Random(1))

    assert await sync.sync_once() is True  # no profile yet: the local schedule, reported
    assert sync.version == LOCAL and set(sched.modules) == {"pinned"}
    assert t.partner.get(f"/api/v1/agents/{t.agent_id}").json()["config_version"] == LOCAL
    assert await sync.sync_once() is False  # 304

    put = await asyncio.to_thread(
        _put, t.partner, f"site/{t.site_id}", {"ping_gw": PING, "pinned": {**HOST, "interval_s": 5}}
    )
    assert put.status_code == 200, put.text
    assert await sync.sync_once() is True
    assert set(sched.modules) == {"ping_gw", "pinned"}
    assert sched.modules["pinned"].interval_s == 300  # the local file's pinned module wins
    assert sched.plan.intervals == {"ping_gw": 60, "pinned": 300}
    row = t.partner.get(f"/api/v1/agents/{t.agent_id}").json()
    assert row["config_version"] == sync.version != LOCAL and row["version"] == VERSION
    assert await sync.sync_once() is False
    assert sync.applied == 2


def test_a_site_moved_under_another_customer_gets_a_conflict_not_a_crash(make_store, serve):
    srv = serve(make_store())
    t = new_tenant(srv, "acme")
    p = t.partner
    assert _put(p, f"customer/{t.customer_id}", {"ping_gw": PING}).status_code == 200
    assert _put(p, f"site/{t.site_id}", {"ping_gw": {"interval_s": 10}}).status_code == 200
    other = p.post("/api/v1/customers", json={"name": "second"}).json()["id"]
    moved = p.patch(f"/api/v1/sites/{t.site_id}", json={"customer_id": other})
    assert moved.status_code == 200, moved.text
    got = t.agent.get("/api/v1/agent/config")
    assert got.status_code == 409
    assert got.json()["detail"] == (
        f"the profiles of site {t.site_id} (site) do not make a valid config: "
        "modules.ping_gw.probe: Field required; modules.ping_gw.targets: Field required"
    )
    # deleting a customer takes its profile with it
    lone = p.post("/api/v1/customers", json={"name": "third"}).json()["id"]
    assert _put(p, f"customer/{lone}", {"h": HOST}).status_code == 200
    assert p.delete(f"/api/v1/customers/{lone}").status_code == 204
    with srv.store.read() as c:
        from collector.schema import probe_profiles

        left = c.execute(probe_profiles.select().where(probe_profiles.c.scope_id == lone))
        assert left.first() is None
