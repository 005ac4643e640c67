"""Agent routes: enrollment, result ingest, job long poll and job status, the effective
config (ETag / If-None-Match) and the config report."""

from __future__ import annotations

import time
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, Response

from agent.wire.profiles import ConfigReport
from collector import jobs, profiles, readiness, tenants
from collector.api.fastconfig import names_version
from collector.api.fastpoll import wait_for_jobs
from collector.api.limits import too_large as body_too_large
from collector.api.models import EnrollIn, JobStatusIn
from collector.api.responses import ERRORS
from collector.api.state import app_state, current_agent
from collector.errors import CollectorError, PayloadTooLarge
from collector.ingest import decode_body, ingest

router = APIRouter(prefix="/api/v1", tags=["agents"], responses=ERRORS)
AgentDep = Annotated[dict[str, Any], Depends(current_agent)]


@router.post("/enroll", status_code=201)
async def enroll(body: EnrollIn, request: Request) -> dict[str, Any]:
    """Spend a one-time enrollment token; answers the agent's key (shown only once)."""
    st = app_state(request)

    def run() -> dict[str, Any]:
        with st.store.write() as conn:
            return tenants.enroll(conn, body.token, body.hostname, body.version, st.clock())

    return await run_in_threadpool(run)


@router.post("/results")
async def post_results(agent: AgentDep, request: Request) -> dict[str, Any]:
    """Ingest a batch `{"results": [...]}`; per-item status, idempotent by result id."""
    st = app_state(request)
    t0 = time.perf_counter()
    limits = st.store.config.limits
    try:
        too_large = body_too_large(limits.max_body_bytes, "limits.max_body_bytes")
        length = int(request.headers.get("content-length") or 0)
        if length > limits.max_body_bytes:
            raise PayloadTooLarge(too_large)
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > limits.max_body_bytes:
                raise PayloadTooLarge(too_large)
        encoding = request.headers.get("content-encoding")

        def run() -> dict[str, Any]:
            batch = decode_body(bytes(body), encoding, limits.max_body_bytes)
            now = st.clock()
            out = ingest(
                st.store, st.book, agent, batch.items, now, touch_agent=False, finite=batch.finite
            )
            st.note_seen(agent["id"], now)
            return out.as_dict()

        async with st.ingest_slots:  # bounded: more threads would only contend for locks
            out = await run_in_threadpool(run)
    except CollectorError as exc:
        st.stats.ingest_error(exc.status)
        raise
    st.stats.ingest(out["stored"], out["duplicates"], out["rejected"])
    st.stats.observe_latency(time.perf_counter() - t0)
    return out


@router.get("/agent/jobs")
async def poll_jobs(
    agent: AgentDep,
    request: Request,
    wait: float = 0.0,
    spool: Annotated[int | None, Query(ge=0, le=1_000_000_000)] = None,
) -> dict[str, Any]:
    """Long poll: answers as soon as a job is queued for the agent's site, or after `wait` s
    (at most 60). A waiting poll queries once when it starts and once when woken
    (collector/jobwake.py), and at its deadline only if a notification may have been lost.
    The ordinary poll is answered by `collector.api.fastpoll.FastJobPoll`, the same way."""
    found = await wait_for_jobs(app_state(request), agent, wait, spool, request.is_disconnected)
    return {"jobs": found}


@router.post("/agent/jobs/{job_id}/status")
async def job_status(
    agent: AgentDep, job_id: str, body: JobStatusIn, request: Request
) -> dict[str, Any]:
    st = app_state(request)

    def run() -> dict[str, Any]:
        with st.store.write() as conn:
            job = jobs.update_status(conn, agent, job_id, body.model_dump(), st.clock())
            readiness.on_job_update(conn, st.store.config, job, st.clock())
            return job

    return await run_in_threadpool(run)


NOT_MODIFIED: dict[int | str, dict[str, Any]] = {
    304: {"description": "`If-None-Match` names the current version: nothing changed."}
}


@router.get("/agent/config", responses=NOT_MODIFIED)
async def agent_config(
    agent: AgentDep,
    request: Request,
    if_none_match: Annotated[str | None, Header(max_length=200)] = None,
) -> dict[str, Any]:
    """The agent's effective config (`agent.wire.profiles.EffectiveConfig`: its partner's,
    customer's and site's profiles merged) with its version as ETag; 304 without a body when
    `If-None-Match` names that version. The version is kept in memory for
    `collector.api.fastconfig.FastConfig`, which answers the ordinary 304 itself."""
    st = app_state(request)
    gen = st.config_gen

    def run() -> dict[str, Any]:
        with st.store.read() as conn:
            cfg = profiles.effective(conn, agent["partner_id"], agent["site_id"])
        return cfg.model_dump(mode="json")

    doc = await run_in_threadpool(run)
    st.keep_config_version(agent["site_id"], doc["version"], gen)
    etag = f'"{doc["version"]}"'
    if if_none_match is not None and names_version(if_none_match, etag):
        return Response(status_code=304, headers={"ETag": etag})  # type: ignore[return-value]
    return JSONResponse(doc, headers={"ETag": etag})  # type: ignore[return-value]


@router.post("/agent/config/status", status_code=204)
async def agent_config_status(agent: AgentDep, body: ConfigReport, request: Request) -> Response:
    """What the agent runs: the config version (`local`: its own schedule), its software
    version, and why it refused the last config it received (null when it did not)."""
    st = app_state(request)

    def run() -> None:
        with st.store.write() as conn:
            profiles.record_report(conn, agent["id"], body, st.clock())

    await run_in_threadpool(run)
    st.note_seen(agent["id"], st.clock())
    return Response(status_code=204)
