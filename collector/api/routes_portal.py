"""Partner routes of the portal: SLA targets, maintenance windows, a site's "bad call"
window (and attaching it to a ticket) and the account roll-up (collector/portal.py,
collector/maintenance.py, collector/badcall.py)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Request
from pydantic import BaseModel, ConfigDict, Field, model_validator

from collector import badcall, maintenance, portal, sla, tickets
from collector.api.responses import ERRORS
from collector.api.routes_partner import _read, _write
from collector.api.state import app_state, current_partner
from collector.errors import Invalid

router = APIRouter(prefix="/api/v1", tags=["portal"], responses=ERRORS)
PartnerDep = Annotated[dict[str, Any], Depends(current_partner)]
Id = Annotated[str, Path(max_length=64)]
MAX_TARGET_S = 365 * 86400.0


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TargetIn(_In):
    response_s: float = Field(gt=0, le=MAX_TARGET_S, description="acknowledge within (s)")
    resolution_s: float = Field(gt=0, le=MAX_TARGET_S, description="resolve within (s)")

    @model_validator(mode="after")
    def _order(self) -> TargetIn:
        if self.resolution_s < self.response_s:
            raise ValueError("resolution_s must not be shorter than response_s")
        return self


class TargetsIn(_In):
    targets: dict[sla.Severity, TargetIn] = Field(
        description="per severity (critical, warning); one left out takes the default"
    )


def _targets_out(t: dict[str, sla.Target]) -> dict[str, Any]:
    return {
        "targets": {k: {"response_s": v.response_s, "resolution_s": v.resolution_s}
                    for k, v in t.items()},
        "defaults": {k: {"response_s": r, "resolution_s": s}
                     for k, (r, s) in sla.DEFAULT_TARGETS.items()},
    }  # fmt: skip


@router.get("/sla/targets")
async def get_sla_targets(p: PartnerDep, request: Request) -> dict[str, Any]:
    """The partner's ticket SLA targets per severity: acknowledge within `response_s`,
    resolve within `resolution_s` (the defaults where the partner set none)."""
    return _targets_out(await _read(app_state(request),
                                    lambda c: portal.get_targets(c, p["id"])))  # fmt: skip


@router.put("/sla/targets")
async def put_sla_targets(p: PartnerDep, body: TargetsIn, request: Request) -> dict[str, Any]:
    """Replace the partner's SLA targets."""
    st = app_state(request)
    values: dict[str, sla.Target] = {
        k: sla.Target(v.response_s, v.resolution_s) for k, v in body.targets.items()
    }
    return _targets_out(
        await _write(st, lambda c: portal.put_targets(c, p["id"], values, st.clock()))
    )


# -- maintenance windows --------------------------------------------------------------


@router.get("/maintenance")
async def list_maintenance(
    p: PartnerDep,
    request: Request,
    site_id: Annotated[str | None, Query(max_length=64)] = None,
    customer_id: Annotated[str | None, Query(max_length=64)] = None,
) -> list[Any]:
    """The partner's maintenance windows (those covering a site or a customer's sites when
    asked), each with `active` now."""
    st = app_state(request)
    return await _read(st, lambda c: maintenance.list_windows(
        c, p["id"], st.clock(), customer_id=customer_id, site_id=site_id))  # fmt: skip


@router.post("/maintenance", status_code=201)
async def create_maintenance(
    p: PartnerDep, body: maintenance.WindowIn, request: Request
) -> dict[str, Any]:
    """A maintenance window for the partner, a customer or a site: one-off (`kind: once`,
    `starts_at`, `ends_at`) or weekly (`kind: weekly`, `weekday`, `start` HH:MM,
    `duration_min`, `timezone`). While it is active the affected sites open no tickets and
    send no notifications (what tripped is kept as a site event marked in maintenance)."""
    st = app_state(request)
    actor = tickets.partner_actor(p)
    return await _write(st, lambda c: maintenance.create(c, p["id"], body, actor, st.clock()))


@router.delete("/maintenance/{window_id}", status_code=204)
async def delete_maintenance(p: PartnerDep, window_id: Id, request: Request) -> None:
    st = app_state(request)
    actor = tickets.partner_actor(p)
    await _write(st, lambda c: maintenance.delete(c, p["id"], window_id, actor, st.clock()))


# -- the bad call ---------------------------------------------------------------------


def _at(at: datetime) -> float:
    if at.tzinfo is None:
        raise Invalid("at must carry a timezone (e.g. 2026-01-01T09:30:00+01:00)")
    return at.timestamp()


Minutes = Annotated[int, Query(ge=0, le=badcall.MAX_WINDOW_MIN)]


@router.get("/sites/{site_id}/badcall")
async def bad_call(
    p: PartnerDep,
    request: Request,
    site_id: Id,
    at: Annotated[datetime, Query(description="the reported call's time, with its timezone")],
    before_min: Minutes = badcall.DEFAULT_WINDOW_MIN,
    after_min: Minutes = badcall.DEFAULT_WINDOW_MIN,
) -> dict[str, Any]:
    """Every result of the site from `before_min` before `at` to `after_min` after it, each
    figure graded by the site's rules (`checks`: value, limits, level) and `worst`."""
    st = app_state(request)
    t = _at(at)
    return await _read(st, lambda c: badcall.window(c, st.book, p["id"], site_id, t,
                                                     before_min, after_min))  # fmt: skip


class AttachIn(_In):
    at: datetime = Field(description="the reported call's time, with its timezone")
    before_min: int = Field(badcall.DEFAULT_WINDOW_MIN, ge=0, le=badcall.MAX_WINDOW_MIN)
    after_min: int = Field(badcall.DEFAULT_WINDOW_MIN, ge=0, le=badcall.MAX_WINDOW_MIN)
    ticket_id: str | None = Field(
        None, max_length=64, description="an open ticket of the site; left out: a new ticket"
    )


@router.post("/sites/{site_id}/badcall/attach", status_code=201)
async def attach_bad_call(
    p: PartnerDep, request: Request, site_id: Id, body: AttachIn
) -> dict[str, Any]:
    """Attach the bad-call window to an open ticket of the site, or to a new one; the
    ticket answered holds it in `evidence.bad_calls[<at>]`."""
    st = app_state(request)
    t, actor, cfg = _at(body.at), tickets.partner_actor(p), st.store.config
    return await _write(st, lambda c: badcall.attach(
        c, cfg, st.book, p["id"], site_id, t, body.before_min, body.after_min,
        body.ticket_id, actor, st.clock()))  # fmt: skip


# -- the roll-up ----------------------------------------------------------------------


@router.get("/rollup")
async def partner_rollup(p: PartnerDep, request: Request) -> dict[str, Any]:
    """Every site worst first (state, open tickets, last readiness verdict, maintenance),
    agents silent or outdated, and the open tickets with their SLA clocks."""
    st = app_state(request)
    cfg = st.store.config
    return await _read(st, lambda c: portal.rollup(c, cfg, p["id"], st.clock()))


@router.get("/customers/{customer_id}/rollup")
async def customer_rollup(p: PartnerDep, request: Request, customer_id: Id) -> dict[str, Any]:
    """The roll-up of one customer's sites."""
    st = app_state(request)
    cfg = st.store.config
    return await _read(st, lambda c: portal.rollup(c, cfg, p["id"], st.clock(), customer_id))
