"""The audit trail of a site's call info: each change through the API (PATCH of the site)
or the site page's form is an event naming the authenticated credential (a user), whatever the
request says; another partner sees none of it. On SQLite and PostgreSQL."""

from __future__ import annotations

import time

import httpx

from collector.tenants import create_partner
from tests.collector.conftest import new_tenant, web_login_as, web_user
from tests.collector.test_tickets import _web_submit


def _events(t, site_id: str) -> list[dict]:
    r = t.partner.get(f"/api/v1/sites/{site_id}/call_info/events")
    assert r.status_code == 200, r.text
    return r.json()  # type: ignore[no-any-return]


def test_a_call_info_change_over_the_api_names_the_partner_key(make_store, serve):
    srv = serve(make_store())
    t = new_tenant(srv, "acme")
    site = f"/api/v1/sites/{t.site_id}"
    r = t.partner.patch(site, json={"call_info": {"user": "Alice"}, "actor": "someone-else"})
    assert r.status_code == 422 and ["body", "actor"] in [e["loc"] for e in r.json()["detail"]]
    assert _events(t, t.site_id) == []
    info = {"user": "Alice", "actor": "someone-else"}  # free-form call info: data, not who
    assert t.partner.patch(site, json={"call_info": info}).status_code == 200
    assert t.partner.patch(site, json={"call_info": info}).status_code == 200  # no change
    assert t.partner.patch(site, json={"address": "Main St 1"}).status_code == 200  # not it
    assert t.partner.patch(site, json={"call_info": {"user": "Bob"}}).status_code == 200
    got = _events(t, t.site_id)
    assert [(e["kind"], e["actor"]) for e in got] == [
        ("call_info", "partner:acme"), ("call_info", "partner:acme")]  # fmt: skip
    assert got[0]["data"] == {"before": info, "after": {"user": "Bob"}}
    assert got[1]["data"] == {"before": {}, "after": info}


def test_a_call_info_change_on_the_site_page_names_the_logged_in_user(make_store, serve):
    srv = serve(make_store())
    t = new_tenant(srv, "acme")
    email, password = web_user(srv, t.partner.headers["authorization"].split()[1], "technician")
    ui = web_login_as(srv, email, password)
    page = f"/ui/sites/{t.site_id}"
    form = {"user": "Carol", "caller_number": "+4930123", "actor": "someone-else"}
    _web_submit(ui, page, f"{page}/call_info", form)
    [e] = _events(t, t.site_id)
    assert (e["kind"], e["actor"]) == ("call_info", f"user:{email}")
    [entry] = [e for e in t.partner.get("/api/v1/audit").json() if e["action"] == "site.update"]
    assert (entry["actor"], entry["target"]) == (f"user:{email}", t.site_id)
    assert e["data"]["after"] == {"user": "Carol", "caller_number": "+4930123"}


def test_another_partner_reaches_no_site_events(make_store, serve):
    srv = serve(make_store())
    t = new_tenant(srv, "acme")
    assert t.partner.patch(f"/api/v1/sites/{t.site_id}", json={"call_info": {"user": "A"}})
    with srv.store.write() as c:
        _, key = create_partner(c, "globex", time.time())
    other = httpx.Client(base_url=srv.url, headers={"Authorization": f"Bearer {key}"})
    r = other.get(f"/api/v1/sites/{t.site_id}/call_info/events")
    assert r.status_code == 404 and t.site_id in r.json()["detail"]
    r = other.patch(f"/api/v1/sites/{t.site_id}", json={"call_info": {"user": "X"}})
    assert r.status_code == 404
    assert len(_events(t, t.site_id)) == 1
    assert t.partner.get(f"/api/v1/sites/{t.site_id}/call_info/events?limit=0").status_code == 422
    assert "/api/v1/sites/{site_id}/call_info/events" in srv.app.openapi()["paths"]
