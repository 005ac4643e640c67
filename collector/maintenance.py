"""Maintenance windows: when a partner's, customer's or site's tickets and notifications are
held back (planned work on a line), one-off or weekly in a named timezone.

`Schedule.active_at(t)` is pure. A weekly window starts on its weekday at its wall-clock
start time in its timezone, and lasts `duration_min` minutes of elapsed time:
- across a DST change the start stays at the wall-clock time (09:00 stays 09:00 local);
- a start that does not exist that day (in the spring-forward gap) begins at the instant
  of the change (02:30 Europe/Berlin on the last Sunday of March is 03:00 CEST);
- a start that exists twice (the fall-back hour) is its first occurrence.
The store side (windows of a partner, the ones covering a site now) is below; every
change is recorded through `record` (the one place an audit log plugs in).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date, datetime, time, timedelta
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

import sqlalchemy as sa
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from collector import tenants
from collector.errors import NotFound
from collector.keys import new_id
from collector.schema import maintenance_windows, site_events, sites
from collector.timefmt import iso

Scope = Literal["partner", "customer", "site"]
WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
MAX_DURATION_MIN = 7 * 24 * 60
MAX_ONCE_S = 31 * 86400.0
ACTOR_MAX = 200


def _zone(name: str) -> ZoneInfo:
    if name not in _ZONES:
        raise ValueError(f"unknown timezone {name!r} (an IANA name such as Europe/Berlin)")
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown timezone {name!r}") from None


_ZONES = available_timezones() | {"UTC"}


class Once(BaseModel):
    """A one-off window: [starts_at, ends_at)."""

    model_config = ConfigDict(extra="forbid")
    kind: Literal["once"]
    starts_at: datetime = Field(description="with its timezone (ISO 8601)")
    ends_at: datetime = Field(description="with its timezone; at most 31 days after the start")

    @model_validator(mode="after")
    def _check(self) -> Once:
        for name in ("starts_at", "ends_at"):
            if getattr(self, name).tzinfo is None:
                raise ValueError(f"{name} must carry a timezone (e.g. 2026-01-01T08:00:00Z)")
        span = (self.ends_at - self.starts_at).total_seconds()
        if span <= 0:
            raise ValueError("ends_at must be after starts_at")
        if span > MAX_ONCE_S:
            raise ValueError("a one-off window lasts at most 31 days")
        return self

    def active_at(self, t: float) -> bool:
        return self.starts_at.timestamp() <= t < self.ends_at.timestamp()

    def describe(self) -> str:
        return f"{self.starts_at.isoformat()} to {self.ends_at.isoformat()}"


class Weekly(BaseModel):
    """Every week: `weekday` at `start` (HH:MM wall clock in `timezone`), `duration_min`."""

    model_config = ConfigDict(extra="forbid")
    kind: Literal["weekly"]
    weekday: Literal[WEEKDAYS]  # type: ignore[valid-type]
    start: str = Field(pattern=r"^([01]\d|2[0-3]):[0-5]\d$", description="HH:MM, 24 h")
    duration_min: int = Field(ge=1, le=MAX_DURATION_MIN)
    timezone: str = Field(max_length=64, description="an IANA name, e.g. Europe/Berlin")

    @field_validator("timezone")
    @classmethod
    def _tz(cls, v: str) -> str:
        _zone(v)
        return v

    def _start_on(self, day: date) -> float:
        """The UTC instant of this window's start on `day` (local calendar date)."""
        tz = _zone(self.timezone)
        hh, mm = (int(x) for x in self.start.split(":"))
        local = datetime.combine(day, time(hh, mm), tzinfo=tz)  # fold=0: the first of two
        ts = local.timestamp()
        back = datetime.fromtimestamp(ts, tz)
        if back.replace(tzinfo=None) != local.replace(tzinfo=None):
            # In the spring-forward gap: begin at the change, the first second whose
            # offset is the new one (read under the old offset, the start lies after it;
            # under the new one, before it).
            after = back.utcoffset()
            lo, hi = int(local.replace(fold=1).timestamp()), int(ts)
            while hi - lo > 1:
                mid = (lo + hi) // 2
                if datetime.fromtimestamp(mid, tz).utcoffset() == after:
                    hi = mid
                else:
                    lo = mid
            ts = float(hi)
        return ts

    def active_at(self, t: float) -> bool:
        tz = _zone(self.timezone)
        today = datetime.fromtimestamp(t, tz).date()
        wd = WEEKDAYS.index(self.weekday)
        span_days = self.duration_min // (24 * 60) + 2
        for back in range(span_days + 1):
            day = today - timedelta(days=back)
            if day.weekday() != wd:
                continue
            start = self._start_on(day)
            if start <= t < start + self.duration_min * 60:
                return True
        return False

    def describe(self) -> str:
        return (f"every {self.weekday.capitalize()} {self.start} {self.timezone} "
                f"for {self.duration_min} min")  # fmt: skip


Schedule = Annotated[Once | Weekly, Field(discriminator="kind")]


class WindowIn(BaseModel):
    """A maintenance window as created through the API or the web page."""

    model_config = ConfigDict(extra="forbid")
    scope: Scope
    scope_id: str = Field(min_length=1, max_length=64)
    schedule: Schedule
    reason: str = Field("", max_length=500)


def parse_schedule(data: Any) -> Once | Weekly:
    return WindowIn.model_validate({"scope": "site", "scope_id": "x", "schedule": data}).schedule


def active(schedules: Iterable[Once | Weekly], t: float) -> bool:
    """Is any of these schedules active at `t` (Unix seconds)?"""
    return any(s.active_at(t) for s in schedules)


# -- store ----------------------------------------------------------------------------


def record(
    conn: sa.Connection, partner_id: str, scope: str, scope_id: str, kind: str, actor: str,
    data: dict[str, Any], now: float,
) -> None:  # fmt: skip
    """Record a change for the audit trail: the one place an audit log plugs in. Until
    there is one, it is a site event on every site the scope covers (the site's own trail,
    collector/audit.py)."""
    q = sa.select(sites.c.id).where(sites.c.partner_id == partner_id)
    if scope == "customer":
        q = q.where(sites.c.customer_id == scope_id)
    elif scope == "site":
        q = q.where(sites.c.id == scope_id)
    rows = [
        {"site_id": sid, "partner_id": partner_id, "at": now, "kind": kind[:32],
         "actor": actor[:ACTOR_MAX], "data": data}
        for (sid,) in conn.execute(q)
    ]  # fmt: skip
    if rows:
        conn.execute(site_events.insert(), rows)
    from collector import audit

    audit.record(conn, partner_id, actor, f"maintenance.{kind.rsplit('_', 1)[-1]}", now,
                 f"{scope}_id={scope_id}", data)  # fmt: skip


def _view(r: Any, now: float | None = None) -> dict[str, Any]:
    sched = parse_schedule(r.schedule)
    out = {
        "id": r.id, "scope": r.scope, "scope_id": r.scope_id, "schedule": r.schedule,
        "description": sched.describe(), "reason": r.reason, "created_at": iso(r.created_at),
        "created_by": r.created_by,
    }  # fmt: skip
    if now is not None:
        out["active"] = sched.active_at(now)
    return out


def _check_scope(conn: sa.Connection, partner_id: str, scope: str, scope_id: str) -> None:
    if scope == "partner":
        if scope_id != partner_id:
            raise NotFound(f"partner {scope_id} not found")
    elif scope == "customer":
        tenants.get_customer(conn, partner_id, scope_id)
    else:
        tenants.get_site(conn, partner_id, scope_id)


def create(
    conn: sa.Connection, partner_id: str, w: WindowIn, actor: str, now: float
) -> dict[str, Any]:
    _check_scope(conn, partner_id, w.scope, w.scope_id)
    wid = new_id()
    schedule = w.schedule.model_dump(mode="json")
    conn.execute(
        maintenance_windows.insert().values(
            id=wid, partner_id=partner_id, scope=w.scope, scope_id=w.scope_id,
            schedule=schedule, reason=w.reason, created_at=now, created_by=actor[:ACTOR_MAX],
        )
    )  # fmt: skip
    out = get(conn, partner_id, wid, now)
    record(conn, partner_id, w.scope, w.scope_id, "maintenance_created", actor, out, now)
    return out


def get(conn: sa.Connection, partner_id: str, window_id: str, now: float) -> dict[str, Any]:
    r = conn.execute(
        sa.select(maintenance_windows).where(
            maintenance_windows.c.id == window_id, maintenance_windows.c.partner_id == partner_id
        )
    ).first()
    if r is None:
        raise NotFound(f"maintenance window {window_id} not found")
    return _view(r, now)


def delete(conn: sa.Connection, partner_id: str, window_id: str, actor: str, now: float) -> None:
    w = get(conn, partner_id, window_id, now)
    conn.execute(maintenance_windows.delete().where(maintenance_windows.c.id == window_id))
    record(conn, partner_id, w["scope"], w["scope_id"], "maintenance_deleted", actor, w, now)


def list_windows(
    conn: sa.Connection, partner_id: str, now: float, *, customer_id: str | None = None,
    site_id: str | None = None,
) -> list[dict[str, Any]]:  # fmt: skip
    """The partner's windows; with `site_id` those covering that site (its own, its
    customer's, the partner's); with `customer_id` those covering any of its sites."""
    q = sa.select(maintenance_windows).where(maintenance_windows.c.partner_id == partner_id)
    if site_id is not None:
        site = tenants.get_site(conn, partner_id, site_id)
        if customer_id is not None and site["customer_id"] != customer_id:
            raise NotFound(f"site {site_id} not found")
        q = q.where(_covering(partner_id, site["customer_id"], site_id))
    elif customer_id is not None:
        tenants.get_customer(conn, partner_id, customer_id)
        site_ids = sa.select(sites.c.id).where(sites.c.customer_id == customer_id)
        q = q.where(
            sa.or_(
                maintenance_windows.c.scope == "partner",
                sa.and_(maintenance_windows.c.scope == "customer",
                        maintenance_windows.c.scope_id == customer_id),
                sa.and_(maintenance_windows.c.scope == "site",
                        maintenance_windows.c.scope_id.in_(site_ids)),
            )
        )  # fmt: skip
    q = q.order_by(maintenance_windows.c.created_at)
    return [_view(r, now) for r in conn.execute(q)]


def _covering(partner_id: str, customer_id: str, site_id: str) -> Any:
    w = maintenance_windows.c
    return sa.and_(
        w.partner_id == partner_id,
        sa.or_(
            w.scope == "partner",
            sa.and_(w.scope == "customer", w.scope_id == customer_id),
            sa.and_(w.scope == "site", w.scope_id == site_id),
        ),
    )


def active_window(
    conn: sa.Connection, partner_id: str, customer_id: str, site_id: str, now: float
) -> dict[str, Any] | None:
    """The first window covering the site that is active at `now`, or None."""
    rows = conn.execute(
        sa.select(maintenance_windows).where(_covering(partner_id, customer_id, site_id))
    ).all()
    for r in rows:
        if parse_schedule(r.schedule).active_at(now):
            return {"id": r.id, "scope": r.scope, "reason": r.reason,
                    "description": parse_schedule(r.schedule).describe()}  # fmt: skip
    return None


def active_sites(conn: sa.Connection, partner_id: str, now: float) -> set[str]:
    """Ids of the partner's sites in maintenance at `now`."""
    rows = conn.execute(
        sa.select(maintenance_windows).where(maintenance_windows.c.partner_id == partner_id)
    ).all()
    live = [r for r in rows if parse_schedule(r.schedule).active_at(now)]
    if not live:
        return set()
    q = sa.select(sites.c.id, sites.c.customer_id).where(sites.c.partner_id == partner_id)
    out = set()
    for sid, cid in conn.execute(q):
        for r in live:
            if (
                r.scope == "partner"
                or (r.scope == "customer" and r.scope_id == cid)
                or (r.scope == "site" and r.scope_id == sid)
            ):
                out.add(sid)
    return out
