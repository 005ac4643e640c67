"""A readiness report of a version the collector does not know is an error, shown as one:
the API answers 409 naming the version and the known ones (not "no report yet"), no ticket
is opened from it, and the support page says so where the report would be."""

from __future__ import annotations

from datetime import UTC, datetime

from agent.wire.readiness import Check, ReadinessReport
from tests.collector.conftest import new_tenant, web_login

KNOWN = "(known: 1)"


def _report(version: int) -> dict:
    rep = ReadinessReport(
        verdict="fail", started_at=datetime(2030, 1, 1, tzinfo=UTC), duration_s=30.0,
        responder="192.0.2.7",
        checks=[Check(id="voice.jitter.out", group="voice", name="Jitter", status="fail")],
    )  # fmt: skip
    return {**rep.model_dump(mode="json"), "report_version": version}


def test_a_report_of_an_unknown_version_is_an_error_not_a_missing_report(make_store, serve):
    srv = serve(make_store())
    t = new_tenant(srv, "acme")
    queued = t.partner.post(
        f"/api/v1/sites/{t.site_id}/readiness", json={"options": {"responder": "192.0.2.7"}}
    )
    assert queued.status_code == 201, queued.text
    jid = queued.json()["id"]
    done = t.agent.post(
        f"/api/v1/agent/jobs/{jid}/status",
        json={"state": "done", "report": {"readiness": _report(7)}},
    )
    assert done.status_code == 200, done.text  # stored as sent; the agent's job is done
    why = "readiness report: report_version 7 is not supported " + KNOWN

    view = t.partner.get(f"/api/v1/readiness/{jid}").json()
    assert (view["state"], view["report"], view["verdict"]) == ("done", None, None)
    assert view["report_error"] == why and view["ticket_id"] is None  # a failed test, no ticket
    for fmt in ("json", "html"):
        r = t.partner.get(f"/api/v1/readiness/{jid}/report.{fmt}")
        assert (r.status_code, r.json()["detail"]) == (409, f"readiness test {jid}: {why}")
    r = t.partner.post(f"/api/v1/readiness/{jid}/ticket")
    assert (r.status_code, r.json()["detail"]) == (409, f"readiness test {jid}: {why}")

    key = str(t.partner.headers["Authorization"]).removeprefix("Bearer ")
    ui = web_login(srv, key)
    page = ui.get(f"/ui/readiness/{jid}")
    assert page.status_code == 200
    assert f"This test's report cannot be shown: {why}" in page.text
    assert 'role="alert" id="report-error"' in page.text
    download = ui.get(f"/ui/readiness/{jid}/report.json")
    assert download.status_code == 409 and "report_version 7 is not supported" in download.text


def test_a_report_of_a_known_version_still_reads(make_store, serve):
    srv = serve(make_store())
    t = new_tenant(srv, "acme")
    body = {"options": {"responder": "192.0.2.7"}, "open_ticket": False}
    jid = t.partner.post(f"/api/v1/sites/{t.site_id}/readiness", json=body).json()["id"]
    t.agent.post(
        f"/api/v1/agent/jobs/{jid}/status",
        json={"state": "done", "report": {"readiness": _report(1)}},
    )
    view = t.partner.get(f"/api/v1/readiness/{jid}").json()
    assert view["verdict"] == "fail" and view["report_error"] is None
    assert t.partner.get(f"/api/v1/readiness/{jid}/report.json").json()["report_version"] == 1
