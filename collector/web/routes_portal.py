"""The portal's support pages (/ui): the partner home (worst sites first, agents silent or
outdated, tickets out of SLA), a customer's roll-up, a site's measurements (current state,
charts per direction), "the bad call" window and maintenance windows.

Authentication and forms as in web/routes.py (`_partner`, `_form`, `guarded`); every query
goes through the same store functions as the API (collector/portal.py, badcall.py,
maintenance.py) with the partner's id and, once the principal knows it, a customer id.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any
from urllib.parse import quote, urlencode
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response
from pydantic import ValidationError

from collector import badcall, maintenance, portal, tickets
from collector.api.routes_partner import _read, _write
from collector.api.state import AppState, app_state
from collector.errors import CollectorError, Invalid
from collector.web import charts
from collector.web.routes import _form, _may, _partner, _to_login, guarded, render

router = APIRouter(prefix="/ui", include_in_schema=False)


def _restriction(p: dict[str, Any]) -> str | None:
    """The customer a logged-in person is restricted to (None: the partner's every one):
    a customer viewer's one customer."""
    who = p.get("principal")
    return who.customer_id if who is not None else None


# --------------------------------------------------------------------------- roll-up


@router.get("/home")
@guarded
async def home(request: Request) -> Response:
    p = await _partner(request)
    if p is None:
        return _to_login(request)
    _may(p, "read")
    st = app_state(request)
    cfg = st.store.config
    data = await _read(st, lambda c: portal.rollup(c, cfg, p["id"], st.clock(),
                                                   _restriction(p)))  # fmt: skip
    return render(request, "portal_home.html", partner=p, r=data)


@router.get("/customers/{customer_id}")
@guarded
async def customer_page(request: Request, customer_id: str) -> Response:
    p = await _partner(request)
    if p is None:
        return _to_login(request)
    _may(p, "read")
    st = app_state(request)
    cfg = st.store.config
    restricted = _restriction(p)
    if restricted is not None and restricted != customer_id:
        customer_id = "-"  # not found, as another partner's
    data = await _read(st, lambda c: portal.rollup(c, cfg, p["id"], st.clock(), customer_id))
    return render(request, "portal_home.html", partner=p, r=data)


# --------------------------------------------------------------------------- a site


def site_section(st: AppState, c: Any, pid: str, site_id: str, span: str) -> dict[str, Any]:
    """What the site page shows of the site's measurements (web/routes.py includes it)."""
    span = span if span in portal.SPANS else "24h"
    now = st.clock()
    cs = portal.charts(c, st.book, site_id, span, now)
    drawn = []
    for i, ch in enumerate(cs):
        drawn.append({**ch, "title": charts.title(ch), "svg": charts.svg(ch, f"chart{i}"),
                      "summary": charts.summary(ch)})  # fmt: skip
    open_tickets = tickets.list_tickets(c, pid, "open", site_id)
    return {
        "sla": portal.clocks(c, pid, open_tickets, now),
        "span": span, "spans": list(portal.SPANS), "current": portal.current(c, st.book, site_id),
        "charts": drawn, "windows": maintenance.list_windows(c, pid, now, site_id=site_id),
    }  # fmt: skip


# --------------------------------------------------------------------------- the bad call


def _when(at: str, tz: str) -> float:
    """A local date and time (the form's datetime-local) in the named timezone."""
    try:
        zone = ZoneInfo(tz)
    except (ValueError, KeyError, OSError):
        raise Invalid(f"unknown timezone {tz!r} (an IANA name such as Europe/Berlin)") from None
    try:
        local = datetime.fromisoformat(at)
    except ValueError:
        raise Invalid(f"the call's time {at!r} is not a date and time (YYYY-MM-DDTHH:MM)") from None
    if local.tzinfo is None:
        local = local.replace(tzinfo=zone)
    return local.timestamp()


def _minutes(v: str) -> int:
    try:
        n = int(v)
    except ValueError:
        raise Invalid(f"the window {v!r} is not a number of minutes") from None
    if not 1 <= n <= badcall.MAX_WINDOW_MIN:
        raise Invalid(f"the window must be between 1 and {badcall.MAX_WINDOW_MIN} minutes")
    return n


@router.get("/sites/{site_id}/badcall")
@guarded
async def bad_call_page(
    request: Request,
    site_id: str,
    at: str = "",
    tz: str = "UTC",
    window: str = "30",
    notice: str = "",
) -> Response:
    p = await _partner(request)
    if p is None:
        return _to_login(request)
    _may(p, "read")
    st = app_state(request)
    restricted = _restriction(p)

    def run(c: Any) -> dict[str, Any]:
        site = portal.check_site(c, p["id"], site_id, restricted)
        out: dict[str, Any] = {"site": site, "win": None, "error": None}
        out["open"] = tickets.list_tickets(c, p["id"], "open", site_id)
        if at:
            try:
                t, w = _when(at, tz), _minutes(window)
                out["win"] = badcall.window(c, st.book, p["id"], site_id, t, w, w, restricted)
            except CollectorError as exc:
                out["error"] = exc.message
        return out

    data = await _read(st, run)
    form = {"at": at, "tz": tz, "window": window}
    status = 400 if data["error"] else 200
    return render(request, "portal_badcall.html", status, partner=p, form=form, notice=notice,
                  **data)  # fmt: skip


@router.post("/sites/{site_id}/badcall")
@guarded
async def bad_call_attach(request: Request, site_id: str) -> Response:
    p = await _partner(request)
    if p is None:
        return _to_login(request)
    _may(p, "tickets.write")
    form = await _form(request)
    st = app_state(request)
    at, tz, window = form.get("at", ""), form.get("tz", "UTC"), form.get("window", "30")
    ticket = form.get("ticket", "new")
    actor, cfg, restricted = tickets.web_actor(p), st.store.config, _restriction(p)
    try:
        t, w = _when(at, tz), _minutes(window)
        out = await _write(st, lambda c: badcall.attach(
            c, cfg, st.book, p["id"], site_id, t, w, w, None if ticket == "new" else ticket,
            actor, st.clock(), restricted))  # fmt: skip
    except CollectorError as exc:
        q = urlencode({"at": at, "tz": tz, "window": window})
        return RedirectResponse(f"/ui/sites/{site_id}/badcall?{q}&notice={quote(exc.message)}",
                                status_code=303)  # fmt: skip
    return RedirectResponse(f"/ui/tickets/{out['id']}", status_code=303)


# --------------------------------------------------------------------------- maintenance


@router.get("/maintenance")
@guarded
async def maintenance_page(request: Request, notice: str = "") -> Response:
    p = await _partner(request)
    if p is None:
        return _to_login(request)
    _may(p, "sites.write")
    st = app_state(request)

    def run(c: Any) -> dict[str, Any]:
        from collector import tenants

        return {
            "windows": maintenance.list_windows(c, p["id"], st.clock(),
                                                customer_id=_restriction(p)),
            "customers": tenants.list_customers(c, p["id"]),
            "sites": tenants.list_sites(c, p["id"], _restriction(p)),
        }  # fmt: skip

    data = await _read(st, run)
    return render(request, "portal_maintenance.html", partner=p, notice=notice,
                  weekdays=maintenance.WEEKDAYS, **data)  # fmt: skip


def _window_from_form(form: dict[str, str]) -> maintenance.WindowIn:
    scope, _, scope_id = form.get("target", "").partition(":")
    kind = form.get("kind", "once")
    tz = form.get("tz", "UTC").strip() or "UTC"
    if kind == "weekly":
        schedule: dict[str, Any] = {
            "kind": "weekly", "weekday": form.get("weekday", ""), "start": form.get("start", ""),
            "duration_min": form.get("duration_min", ""), "timezone": tz,
        }  # fmt: skip
    else:
        schedule = {"kind": "once", "starts_at": _local_iso(form.get("starts_at", ""), tz),
                    "ends_at": _local_iso(form.get("ends_at", ""), tz)}  # fmt: skip
    return maintenance.WindowIn.model_validate({
        "scope": scope, "scope_id": scope_id, "schedule": schedule,
        "reason": form.get("reason", "").strip(),
    })  # fmt: skip


def _local_iso(v: str, tz: str) -> str:
    try:
        return datetime.fromtimestamp(_when(v, tz), ZoneInfo(tz)).isoformat()
    except CollectorError:
        return v  # refused by the model, with the field named


@router.post("/maintenance")
@guarded
async def maintenance_create(request: Request) -> Response:
    p = await _partner(request)
    if p is None:
        return _to_login(request)
    _may(p, "sites.write")
    form = await _form(request)
    st = app_state(request)
    actor = tickets.web_actor(p)
    try:
        w = _window_from_form(form)
        await _write(st, lambda c: maintenance.create(c, p["id"], w, actor, st.clock()))
    except ValidationError as exc:
        from agent.wire.errors import format_validation_error

        msg = format_validation_error(exc, root=None)
        return RedirectResponse(f"/ui/maintenance?notice={quote(msg)}", status_code=303)
    except CollectorError as exc:
        return RedirectResponse(f"/ui/maintenance?notice={quote(exc.message)}", status_code=303)
    return RedirectResponse("/ui/maintenance?notice=Maintenance+window+created.", status_code=303)


@router.post("/maintenance/{window_id}/delete")
@guarded
async def maintenance_delete(request: Request, window_id: str) -> Response:
    p = await _partner(request)
    if p is None:
        return _to_login(request)
    _may(p, "sites.write")
    await _form(request)
    st = app_state(request)
    actor = tickets.web_actor(p)
    try:
        await _write(st, lambda c: maintenance.delete(c, p["id"], window_id, actor, st.clock()))
    except CollectorError as exc:
        return RedirectResponse(f"/ui/maintenance?notice={quote(exc.message)}", status_code=303)
    return RedirectResponse("/ui/maintenance?notice=Maintenance+window+deleted.", status_code=303)


# --------------------------------------------------------------------------- SLA clocks


def ticket_clocks(
    st: AppState, c: Any, pid: str, rows: list[dict[str, Any]]
) -> dict[str, dict[str, Any]]:
    """The SLA clock of each ticket (web/routes.py shows them on the lists and pages)."""
    return portal.clocks(c, pid, rows, st.clock())
