"""Central config on loopback with real collector and agent processes: a site profile changed
at the collector runs on the agent within one fetch, without a restart; a locally pinned
module stays; an invalid profile is refused with the key named; a config the agent cannot
run is refused by the agent, which keeps the running one and reports why."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from agent.cli.stack import Stack, wait_for
from agent.wire import VERSION

pytestmark = pytest.mark.slow

HOST = {"probe": "host", "targets": ["local"], "interval_s": 1, "options": {"sample_s": 0.1}}


def ping(target: str, **extra: Any) -> dict[str, Any]:
    opts = {"count": 1, "interval_s": 0.05, "timeout_s": 0.5}
    return {"probe": "icmp", "targets": [target], "interval_s": 1, "options": opts, **extra}


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Stack]:
    s = Stack(tmp_path)
    try:
        yield s
    finally:
        s.close()


def by_module(stack: Stack) -> Counter[str]:
    return Counter(r["module"] for r in stack.results())


def agent_row(stack: Stack) -> dict[str, Any]:
    rows = stack.api("GET", "/api/v1/agents", params={"site_id": stack.site_id})
    assert len(rows) == 1
    return dict(rows[0])


def put_site(stack: Stack, modules: dict[str, Any], scope: str = "site") -> httpx.Response:
    scope_id = stack.site_id if scope == "site" else stack.customer_id
    return httpx.put(
        f"{stack.collector_url}/api/v1/profiles/{scope}/{scope_id}",
        json={"modules": modules},
        headers={"Authorization": f"Bearer {stack.partner_key}"},
        timeout=30,
    )


def test_site_profile_change_runs_on_the_agent_without_restart(stack: Stack) -> None:
    stack.start_collector()
    token = stack.create_tenancy()
    # the local file pins `pinned_host`; the rest of the schedule comes from the collector
    config = stack.write_agent_config({"pinned_host": HOST}, central={"interval_s": 1})
    stack.enroll(config, token)
    first = put_site(stack, {"ping_a": ping("127.0.0.1")}, scope="customer")
    assert first.status_code == 200, first.text
    proc = stack.start_agent(config)

    wait_for("ping_a and the pinned module", lambda: {"ping_a", "pinned_host"} <= set(
        by_module(stack)), 60)  # fmt: skip
    v1 = stack.api("GET", f"/api/v1/sites/{stack.site_id}/config")["version"]
    row = wait_for("the agent's report", lambda: (r := agent_row(stack))["config_version"] == v1
                   and r, 30)  # fmt: skip
    assert row["version"] == VERSION and row["outdated"] is False and row["config_error"] is None

    bad = put_site(stack, {"ping_a": {"interval_s": 0}})
    assert bad.status_code == 422
    assert bad.json()["detail"] == (
        "modules.ping_a.interval_s: Input should be greater than or equal to 1"
    )

    # the site disables the customer's module and adds one: taken on the next fetch, in the
    # same process
    changed = put_site(stack, {"ping_a": {"enabled": False}, "ping_b": ping("127.0.0.2")})
    assert changed.status_code == 200, changed.text
    v2 = stack.api("GET", f"/api/v1/sites/{stack.site_id}/config")["version"]
    wait_for("ping_b results", lambda: by_module(stack)["ping_b"] >= 1, 30)
    wait_for("the agent's report of v2", lambda: agent_row(stack)["config_version"] == v2, 30)
    before = by_module(stack)
    wait_for("three more ping_b runs",
             lambda: by_module(stack)["ping_b"] >= before["ping_b"] + 3, 30)  # fmt: skip
    after = by_module(stack)
    assert after["ping_a"] <= before["ping_a"] + 1  # at most a run already in flight
    assert after["pinned_host"] > before["pinned_host"]  # the pinned module kept running
    assert proc.poll() is None
    log = stack.log_tail("agent", 400)
    assert log.count("started; modules:") == 1  # never restarted
    assert "config fetch failed" not in log
    assert f"config {v2} applied; modules: ping_b(icmp), pinned_host(host)" in log

    # options are the agent's to check: it refuses the config, keeps running v2, says why
    refused = put_site(stack, {"ping_b": ping("127.0.0.2", options={"count": "many"})})
    assert refused.status_code == 200, refused.text
    row = wait_for("the agent's refusal", lambda: (r := agent_row(stack))["config_error"] and r, 30)
    assert row["config_error"].startswith(
        "collector config: modules.ping_b.options: icmp options: count: "
    )
    assert row["config_version"] == v2
    assert stack.stop("agent") == 0
