"""Readiness tests on the collector: queue the agent's "readiness" suite for a site, read
its progress and report, and open a ticket with the report attached when it fails.

Storage is the jobs table (kind "suite", spec.suite "readiness"); the report is the
agent's job report under "readiness" (agent.wire.readiness.ReadinessReport, versioned).
A failed test opens one ticket (rule "readiness", target "readiness:<job id>") when the
job asked for it (spec.open_ticket, default true); any failed or warned test can open one
by hand. Call info gathered for a ticket is stored in its evidence and as an event.
"""

from __future__ import annotations

import logging
from typing import Any

import sqlalchemy as sa
from pydantic import ValidationError

from agent.wire.errors import format_validation_error
from agent.wire.readiness import CallInfo, ReadinessOptions, ReadinessReport
from agent.wire.report import load_json
from collector import jobs, tickets
from collector.config import CollectorConfig
from collector.context import load_site_context
from collector.errors import Conflict, Invalid, NotFound
from collector.schema import jobs as jobs_table
from collector.schema import tickets as tickets_table
from collector.tenants import get_site

log = logging.getLogger(__name__)
RULE_ID = "readiness"
SITE_CALL_INFO_KEYS = tuple(CallInfo.model_fields)


def _validate_options(options: dict[str, Any]) -> None:
    probe = {"responder": "placeholder.invalid", **options}
    try:
        ReadinessOptions.model_validate(probe)
    except ValidationError as exc:
        raise Invalid(
            f"readiness options: {format_validation_error(exc, first_only=True)}"
        ) from None


def site_call_info(site: dict[str, Any]) -> dict[str, Any]:
    """The site's gathered call info, plus firewall and circuit speed from its fields."""
    info = {k: v for k, v in (site.get("call_info") or {}).items() if k in SITE_CALL_INFO_KEYS}
    fw = " ".join(x for x in (site.get("firewall_make"), site.get("firewall_model")) if x)
    if fw and not info.get("firewall"):
        info["firewall"] = fw
    down, up = site.get("contracted_down_bps"), site.get("contracted_up_bps")
    if (down or up) and not info.get("circuit_speed"):
        info["circuit_speed"] = f"{(down or 0) / 1e6:g}/{(up or 0) / 1e6:g} Mbit/s down/up"
    return {k: v for k, v in info.items() if v}


def queue(
    conn: sa.Connection, partner_id: str, site_id: str, options: dict[str, Any],
    call_info: dict[str, Any] | None, open_ticket: bool, now: float,
) -> dict[str, Any]:  # fmt: skip
    """Queue a readiness job; the site's contract, SIP server and call info fill the gaps."""
    site = get_site(conn, partner_id, site_id)
    opts = dict(options)
    if site.get("contracted_down_bps") and "contracted_down_mbps" not in opts:
        opts["contracted_down_mbps"] = site["contracted_down_bps"] / 1e6
    if site.get("contracted_up_bps") and "contracted_up_mbps" not in opts:
        opts["contracted_up_mbps"] = site["contracted_up_bps"] / 1e6
    if site.get("sip_server") and "sip_server" not in opts:
        opts["sip_server"] = site["sip_server"]
    opts["call_info"] = {**site_call_info(site), **(call_info or {})}
    _validate_options(opts)
    spec = {"suite": "readiness", "options": opts, "open_ticket": open_ticket}
    return jobs.create_job(conn, partner_id, site_id, "suite", spec, now)


def _is_readiness(job: dict[str, Any]) -> bool:
    return job["kind"] == "suite" and (job["spec"] or {}).get("suite") == "readiness"


def report_of(job: dict[str, Any]) -> ReadinessReport | None:
    """The job's readiness report, None while it has none. A report this collector cannot
    read is an error, not a missing report: ValueError (ReportVersionError for an unknown
    `report_version`) with the reason, naming the version and the known ones."""
    rep = (job.get("report") or {}).get("readiness")
    if not rep:
        return None
    return load_json(rep)


def _report_or_error(job: dict[str, Any]) -> tuple[ReadinessReport | None, str | None]:
    try:
        return report_of(job), None
    except ValueError as exc:
        return None, str(exc)


def _ticket_for(conn: sa.Connection, job: dict[str, Any]) -> str | None:
    return conn.execute(
        sa.select(tickets_table.c.id).where(
            tickets_table.c.site_id == job["site_id"],
            tickets_table.c.rule_id == RULE_ID,
            tickets_table.c.target == f"readiness:{job['id']}",
        )
    ).scalar()


def view(conn: sa.Connection, partner_id: str, job_id: str) -> dict[str, Any]:
    """The job (progress), its report and verdict when done, and its ticket if any. A report
    the collector cannot read leaves `report` None and says why in `report_error`."""
    job = jobs.get_job(conn, partner_id, job_id)
    if not _is_readiness(job):
        raise NotFound(f"readiness test {job_id} not found")
    rep, error = _report_or_error(job)
    return {
        "id": job["id"], "site_id": job["site_id"], "state": job["state"],
        "progress": job["progress"], "message": job["message"],
        "created_at": job["created_at"], "updated_at": job["updated_at"],
        "options": {k: v for k, v in (job["spec"].get("options") or {}).items()
                    if k != "sip_password"},
        "verdict": rep.verdict if rep else None,
        "report": rep.model_dump(mode="json") if rep else None,
        "report_error": error,
        "ticket_id": _ticket_for(conn, job),
    }  # fmt: skip


def list_for_site(
    conn: sa.Connection, partner_id: str, site_id: str, limit: int = 20
) -> list[dict[str, Any]]:
    get_site(conn, partner_id, site_id)
    q = (
        sa.select(jobs_table.c.id)
        .where(jobs_table.c.site_id == site_id, jobs_table.c.kind == "suite")
        .order_by(jobs_table.c.created_at.desc())
        .limit(limit * 5)
    )
    out = []
    for (jid,) in conn.execute(q):
        job = jobs.get_job(conn, partner_id, jid)
        if _is_readiness(job):
            v = view(conn, partner_id, jid)
            v.pop("report")
            out.append(v)
        if len(out) >= limit:
            break
    return out


def open_ticket(
    conn: sa.Connection, config: CollectorConfig, partner_id: str, job_id: str, now: float,
    actor: str = "collector",
) -> str:  # fmt: skip
    """Open (or return) the ticket for a finished readiness test that failed or warned."""
    job = jobs.get_job(conn, partner_id, job_id)
    if not _is_readiness(job):
        raise NotFound(f"readiness test {job_id} not found")
    existing = _ticket_for(conn, job)
    if existing:
        return str(existing)
    rep, error = _report_or_error(job)
    if error is not None:
        raise Conflict(f"readiness test {job_id}: {error}")
    if job["state"] != "done" or rep is None:
        raise Conflict(f"readiness test {job_id} has no report yet ({job['state']})")
    if rep.verdict not in ("fail", "warn"):
        raise Conflict(f"readiness test {job_id} passed: nothing to open a ticket for")
    ctx = load_site_context(conn, job["site_id"])
    bad = [c for c in rep.checks if c.status == rep.verdict]
    names = ", ".join(c.name for c in bad[:3]) + (" ..." if len(bad) > 3 else "")
    return tickets.open_manual_ticket(
        conn, config, ctx, rule_id=RULE_ID, target=f"readiness:{job_id}",
        severity="critical" if rep.verdict == "fail" else "warning",
        title=f"{ctx.site['name']}: VoIP readiness test {rep.verdict}ed ({names})",
        evidence={
            "readiness_job_id": job_id, "readiness": rep.model_dump(mode="json"),
            "failed_checks": [c.model_dump(mode="json") for c in bad],
            "call_info": rep.call_info.filled(), "site": ctx.site_info(),
        },
        message=f"readiness test {job_id} {rep.verdict}ed", actor=actor, now=now,
    )  # fmt: skip


def on_job_update(
    conn: sa.Connection, config: CollectorConfig, job: dict[str, Any], now: float
) -> None:
    """After an agent reports a job: a failed readiness test that asked for it opens a ticket."""
    if not _is_readiness(job) or job["state"] != "done" or not job["spec"].get("open_ticket"):
        return
    rep, error = _report_or_error(job)
    if error is not None:  # shown on the test's page and refused by its report routes
        log.warning("readiness test %s: %s", job["id"], error)
        return
    if rep is not None and rep.verdict == "fail":
        partner_id = conn.execute(
            sa.select(jobs_table.c.partner_id).where(jobs_table.c.id == job["id"])
        ).scalar_one()
        open_ticket(conn, config, partner_id, job["id"], now)


def add_ticket_call_info(
    conn: sa.Connection, partner_id: str, ticket_id: str, info: CallInfo, actor: str, now: float
) -> dict[str, Any]:
    """Attach gathered call info to a ticket (evidence.call_info, plus an event)."""
    text = "; ".join(f"{k}: {v}" for k, v in info.filled().items())
    return tickets.attach_evidence(
        conn, partner_id, ticket_id, "call_info", info.filled(), kind="call_info",
        message=text, actor=actor, now=now,
    )  # fmt: skip
