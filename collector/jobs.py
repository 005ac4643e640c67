"""On-demand jobs: a queue per site, handed to the site's agents by long poll.

A job's spec is validated against the wire model of its kind (agent.wire.jobs) before it
is stored; what an agent is handed is a `Job` of the current schema version.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from agent.wire.jobs import JOB_SCHEMA_VERSION, check_version, parse_spec
from collector.errors import Conflict, Invalid, NotFound
from collector.jobwake import notify_job
from collector.keys import new_id
from collector.schema import jobs
from collector.tenants import get_site
from collector.timefmt import iso

DISPATCH_LEASE_S = 120.0
FINAL_STATES = ("done", "failed")


def job_out(r: Any) -> dict[str, Any]:
    d = dict(r._mapping)
    return {
        "schema_version": JOB_SCHEMA_VERSION,
        "id": d["id"],
        "site_id": d["site_id"],
        "kind": d["kind"],
        "spec": d["spec"],
        "state": d["state"],
        "progress": d["progress"],
        "message": d["message"],
        "report": d["report"],
        "created_at": iso(d["created_at"]),
        "updated_at": iso(d["updated_at"]),
    }


def validate_spec(kind: str, spec: Any, schema_version: Any = JOB_SCHEMA_VERSION) -> dict[str, Any]:
    """The spec as stored (the wire model's JSON); Invalid names the version or the field."""
    try:
        check_version(schema_version, "this collector")
        return parse_spec(kind, spec).model_dump(mode="json")
    except ValueError as exc:
        raise Invalid(str(exc)) from None


def create_job(
    conn: sa.Connection, partner_id: str, site_id: str, kind: str, spec: dict[str, Any],
    now: float, schema_version: int = JOB_SCHEMA_VERSION,
) -> dict[str, Any]:  # fmt: skip
    spec = validate_spec(kind, spec, schema_version)
    get_site(conn, partner_id, site_id)
    jid = new_id()
    conn.execute(
        jobs.insert().values(
            id=jid, partner_id=partner_id, site_id=site_id, kind=kind, spec=spec,
            state="queued", progress=0.0, message="", report=None, created_at=now,
            updated_at=now,
        )
    )  # fmt: skip
    notify_job(conn, site_id)  # delivered to every collector process when this commits
    return get_job(conn, partner_id, jid)


def get_job(conn: sa.Connection, partner_id: str, job_id: str) -> dict[str, Any]:
    r = conn.execute(
        sa.select(jobs).where(jobs.c.id == job_id, jobs.c.partner_id == partner_id)
    ).first()
    if r is None:
        raise NotFound(f"job {job_id} not found")
    return job_out(r)


def has_queued(conn: sa.Connection, site_id: str, now: float) -> bool:
    return conn.execute(_dispatchable(site_id, now).limit(1)).first() is not None


def dispatchable_sites(conn: sa.Connection, now: float) -> set[str]:
    """The sites with a job an agent's poll would be handed now (the waker's sweep)."""
    q = (
        sa.select(jobs.c.site_id)
        .distinct()
        .where(
            jobs.c.state == "queued",
            sa.or_(jobs.c.dispatched_at.is_(None), jobs.c.dispatched_at < now - DISPATCH_LEASE_S),
        )
    )
    return {str(s) for (s,) in conn.execute(q)}


def leases(conn: sa.Connection) -> list[tuple[float, str]]:
    """(when the lease lapses, site) of every job handed out but not started yet."""
    q = sa.select(jobs.c.dispatched_at, jobs.c.site_id).where(
        jobs.c.state == "queued", jobs.c.dispatched_at.is_not(None)
    )
    return [(float(t) + DISPATCH_LEASE_S, s) for t, s in conn.execute(q)]


def _dispatchable(site_id: str, now: float) -> sa.Select[Any]:
    return sa.select(jobs).where(
        jobs.c.site_id == site_id,
        jobs.c.state == "queued",
        sa.or_(jobs.c.dispatched_at.is_(None), jobs.c.dispatched_at < now - DISPATCH_LEASE_S),
    )


def take_jobs(conn: sa.Connection, agent: dict[str, Any], now: float) -> list[dict[str, Any]]:
    """Hand the site's queued jobs to this agent, each to one poll only, whichever collector
    holds it. A job handed out but never started is offered again after a lease, so a
    crashed agent does not strand it."""
    out = []
    q = _dispatchable(agent["site_id"], now).order_by(jobs.c.created_at)
    if conn.dialect.name == "postgresql":
        # Polls of the site's agents on other collectors skip the rows this one holds
        # rather than wait for it; the update below re-checks the lease in any case.
        q = q.with_for_update(skip_locked=True)
    for r in conn.execute(q).all():
        res = conn.execute(
            jobs.update()
            .where(jobs.c.id == r.id, jobs.c.state == "queued")
            .where(
                sa.or_(
                    jobs.c.dispatched_at.is_(None), jobs.c.dispatched_at < now - DISPATCH_LEASE_S
                )
            )
            .values(agent_id=agent["id"], dispatched_at=now)
        )
        if res.rowcount == 1:
            out.append(job_out(r))
    return out


def update_status(
    conn: sa.Connection, agent: dict[str, Any], job_id: str, values: dict[str, Any], now: float
) -> dict[str, Any]:
    r = conn.execute(
        sa.select(jobs).where(jobs.c.id == job_id, jobs.c.site_id == agent["site_id"])
    ).first()
    if r is None:
        raise NotFound(f"job {job_id} not found")
    if r.state in FINAL_STATES:
        raise Conflict(f"job {job_id} is already {r.state}")
    upd: dict[str, Any] = {"state": values["state"], "updated_at": now, "agent_id": agent["id"]}
    for k in ("progress", "message", "report"):
        if values.get(k) is not None:
            upd[k] = values[k]
    if values["state"] == "done":
        upd["progress"] = 1.0
    conn.execute(jobs.update().where(jobs.c.id == job_id).values(upd))
    return job_out(conn.execute(sa.select(jobs).where(jobs.c.id == job_id)).one())
