"""Partner routes for what is kept: the partner itself (its retention) and a site's history
of one figure over a time range (collector/history.py: raw rows for short ranges, roll-ups
for long ones)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, Field

from collector import history, tenants
from collector.api.responses import ERRORS
from collector.api.state import app_state, current_partner
from collector.errors import Invalid
from collector.timefmt import iso

router = APIRouter(prefix="/api/v1", tags=["partners"], responses=ERRORS)
PartnerDep = Annotated[dict[str, Any], Depends(current_partner)]
DAY_S = 86400.0


class PartnerOut(BaseModel):
    id: str
    name: str
    created_at: str
    raw_retention_days: int | None = Field(
        description="this partner's override of how long raw results are kept (null: none)"
    )
    effective_raw_retention_days: int = Field(description="how long they are kept")
    rollup_retention_days: int


class Point(BaseModel):
    t: str = Field(description="the result's start, or the bucket's (ISO 8601 UTC)")
    count: int = Field(description="results counted")
    availability: float = Field(description="share of them that succeeded (0-1)")
    n: int = Field(description="results that carried the figure")
    min: float | None
    p50: float | None = Field(description="nearest rank")
    p95: float | None = Field(description="nearest rank")
    max: float | None


class Series(BaseModel):
    target: str
    points: list[Point]


class History(BaseModel):
    site_id: str
    probe: str
    field: str | None
    direction: str
    resolution: str = Field(description="raw, hour or day")
    since: str
    until: str
    series: list[Series]


@router.get("/partner", response_model=PartnerOut)
async def get_partner(p: PartnerDep, request: Request) -> dict[str, Any]:
    """The calling partner and how long its results are kept (set by the operator:
    `qos-scout collector partner retention`)."""
    cfg = app_state(request).store.config.retention
    return {
        "id": p["id"],
        "name": p["name"],
        "created_at": iso(p["created_at"]),
        "raw_retention_days": p["raw_retention_days"],
        "effective_raw_retention_days": p["raw_retention_days"] or cfg.raw_days,
        "rollup_retention_days": cfg.rollup_days,
    }


@router.get("/sites/{site_id}/history", response_model=History)
async def site_history(
    p: PartnerDep,
    request: Request,
    site_id: Annotated[str, Path(max_length=64)],
    probe: Annotated[str, Query(min_length=1, max_length=64)],
    field: Annotated[
        str | None,
        Query(
            max_length=64,
            description="a figure of the probe (`mos`, `rtt_ms.p95`, `loss_pct`...); left "
            "out: availability only",
        ),
    ] = None,
    direction: Annotated[
        str, Query(max_length=8, description="`out`, `back`, `rtt`, `up`, `down`, or empty")
    ] = "",
    target: Annotated[str | None, Query(max_length=512)] = None,
    since: datetime | None = None,
    until: datetime | None = None,
    resolution: history.Resolution = "auto",
) -> dict[str, Any]:
    """One figure of a site's results over [since, until) (default: the last 24 hours), per
    target: raw results up to 2 days, hourly roll-ups up to 31 days, daily ones beyond
    (or the `resolution` asked for)."""
    st = app_state(request)
    for name, value in (("since", since), ("until", until)):
        if value is not None and value.tzinfo is None:
            raise Invalid(f"{name} must carry a timezone (e.g. 2024-01-01T00:00:00Z)")
    end = until.timestamp() if until else st.clock()
    start = since.timestamp() if since else end - DAY_S

    def run() -> dict[str, Any]:
        with st.store.read() as c:
            tenants.get_site(c, p["id"], site_id)
            return history.history(
                c, site_id, probe, field, direction, target, start, end, resolution
            )

    return await run_in_threadpool(run)
