"""Partner routes for SLA and quality reports (collector/reports.py): make one on demand
(a calendar month in a timezone, or any range), list them, fetch one's figures, page or PDF,
and set a customer's monthly schedule (day of month, recipients, timezone)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, Response
from pydantic import BaseModel, ConfigDict, Field, model_validator

from collector import reports, rollups
from collector.api.responses import ERRORS
from collector.api.state import app_state, current_partner
from collector.timefmt import iso

router = APIRouter(prefix="/api/v1", tags=["reports"], responses=ERRORS)
PartnerDep = Annotated[dict[str, Any], Depends(current_partner)]
IdPath = Annotated[str, Path(min_length=1, max_length=64)]
Tz = Annotated[str, Field(min_length=1, max_length=64, description="an IANA timezone name")]
Email = Annotated[
    str, Field(min_length=3, max_length=254, pattern=r"^[^@\s,;<>\"]+@[^@\s,;<>\"]+$")
]


class ReportIn(BaseModel):
    """A month (`month`, in `timezone`), or a range (`since`, `until`, with a timezone)."""

    model_config = ConfigDict(extra="forbid")
    customer_id: str = Field(min_length=1, max_length=64)
    site_id: str | None = Field(
        default=None, min_length=1, max_length=64,
        description="one site of the customer; left out: all its sites",
    )  # fmt: skip
    month: str | None = Field(default=None, pattern=r"^\d{4}-\d{2}$", description="YYYY-MM")
    since: datetime | None = None
    until: datetime | None = None
    timezone: Tz | None = Field(default=None, description="default: the partner's (UTC)")

    @model_validator(mode="after")
    def _one_period(self) -> ReportIn:
        if (self.month is None) == (self.since is None or self.until is None):
            raise ValueError("give either month, or since and until")
        for name in ("since", "until"):
            v = getattr(self, name)
            if v is not None and v.tzinfo is None:
                raise ValueError(f"{name} must carry a timezone (e.g. 2024-01-01T00:00:00Z)")
        return self


class ReportMeta(BaseModel):
    id: str
    customer_id: str
    site_id: str | None
    kind: str = Field(description="on_demand or monthly")
    title: str
    since: str
    until: str
    timezone: str
    created_at: str
    emailed_to: list[str]


class Report(ReportMeta):
    data: dict[str, Any] = Field(description="the report's figures (docs/collector.md)")


class ScheduleIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    day_of_month: int = Field(ge=1, le=28, description="the day of the month after")
    recipients: list[Email] = Field(min_length=1, max_length=20)
    timezone: Tz | None = Field(default=None, description="default: the partner's (UTC)")
    enabled: bool = True


class ScheduleOut(ScheduleIn):
    customer_id: str
    updated_at: str


@router.post("/reports", status_code=201, response_model=Report)
async def create_report(p: PartnerDep, body: ReportIn, request: Request) -> dict[str, Any]:
    """Make a report now, of a customer (all its sites) or one of its sites, and keep it."""
    st = app_state(request)
    base = rollups.base_rules(st.store)

    def run() -> dict[str, Any]:
        now = st.clock()
        with st.store.read() as c:
            tz = body.timezone or reports.partner_timezone(c, p["id"])
            if body.month is not None:
                year, month = int(body.month[:4]), int(body.month[5:])
                since, until = reports.month_range(year, month, tz)
            else:
                assert body.since is not None and body.until is not None
                since, until = body.since.timestamp(), body.until.timestamp()
            data, html = reports.generate(c, p["id"], body.customer_id, body.site_id, since,
                                          until, tz, now, base)  # fmt: skip
        with st.store.write() as c:
            rid = reports.store_report(c, data, html, "on_demand", now)
            return dict(reports.get_report(c, p["id"], rid))

    return await run_in_threadpool(run)


@router.get("/reports", response_model=list[ReportMeta])
async def list_reports(
    p: PartnerDep,
    request: Request,
    customer_id: Annotated[str | None, Query(max_length=64)] = None,
    site_id: Annotated[str | None, Query(max_length=64)] = None,
) -> list[dict[str, Any]]:
    st = app_state(request)
    mine = p["principal"].customer_id
    if mine is not None and customer_id not in (None, mine):
        return []  # another customer's: none of theirs is this viewer's

    def run() -> list[dict[str, Any]]:
        with st.store.read() as c:
            return reports.list_reports(c, p["id"], mine or customer_id, site_id)

    return await run_in_threadpool(run)


@router.get("/reports/{report_id}", response_model=Report)
async def get_report(p: PartnerDep, report_id: IdPath, request: Request) -> dict[str, Any]:
    st = app_state(request)

    def run() -> dict[str, Any]:
        with st.store.read() as c:
            return dict(reports.get_report(c, p["id"], report_id))

    return await run_in_threadpool(run)


@router.get(
    "/reports/{report_id}/report.{fmt}",
    response_class=Response,
    responses={200: {"content": {"text/html": {}, "application/pdf": {}}}},
)
async def get_report_file(
    p: PartnerDep, report_id: IdPath, fmt: Literal["html", "pdf"], request: Request
) -> Response:
    """The report as one self-contained HTML page, or as PDF."""
    return await report_file(request, p["id"], report_id, fmt)


async def report_file(
    request: Request, partner_id: str, report_id: str, fmt: str, customer_id: str | None = None
) -> Response:
    """A report's page or PDF (the PDF is rendered from the page on first request and kept)."""
    from collector.reportpage import to_pdf

    st = app_state(request)

    def run() -> tuple[bytes | str, str]:
        with st.store.read() as c:
            meta = reports.get_report(c, partner_id, report_id, customer_id)
            body = reports.get_report(c, partner_id, report_id, customer_id, fmt)
        if fmt == "pdf" and body is None:
            with st.store.read() as c:
                html = reports.get_report(c, partner_id, report_id, customer_id, "html")
            body = to_pdf(html)
            with st.store.write() as c:
                reports.set_pdf(c, report_id, body)
        return body, str(meta["since"])[:10]

    body, day = await run_in_threadpool(run)
    name = f"sla-report-{day}-{report_id[:8]}.{fmt}"
    headers = {"Content-Disposition": f'attachment; filename="{name}"'}
    if fmt == "html":
        return HTMLResponse(body, headers=headers)
    return Response(body, media_type="application/pdf", headers=headers)


def _schedule_out(row: dict[str, Any]) -> dict[str, Any]:
    return {k: row[k] for k in ("customer_id", "day_of_month", "recipients", "timezone",
                                "enabled")} | {"updated_at": iso(row["updated_at"])}  # fmt: skip


@router.get("/customers/{customer_id}/report-schedule", response_model=ScheduleOut)
async def get_schedule(p: PartnerDep, customer_id: IdPath, request: Request) -> dict[str, Any]:
    st = app_state(request)

    def run() -> dict[str, Any]:
        with st.store.read() as c:
            return _schedule_out(reports.get_schedule(c, p["id"], customer_id))

    return await run_in_threadpool(run)


@router.put("/customers/{customer_id}/report-schedule", response_model=ScheduleOut)
async def put_schedule(
    p: PartnerDep, customer_id: IdPath, body: ScheduleIn, request: Request
) -> dict[str, Any]:
    """Make the customer's report of each month on `day_of_month` of the month after (in
    `timezone`) and e-mail it, PDF attached, to `recipients`."""
    st = app_state(request)
    values = body.model_dump()

    def run() -> dict[str, Any]:
        with st.store.write() as c:
            row = reports.put_schedule(c, p["id"], customer_id, values, st.clock())
            return _schedule_out(row)

    return await run_in_threadpool(run)


@router.delete("/customers/{customer_id}/report-schedule", status_code=204)
async def delete_schedule(p: PartnerDep, customer_id: IdPath, request: Request) -> None:
    st = app_state(request)

    def run() -> None:
        with st.store.write() as c:
            reports.delete_schedule(c, p["id"], customer_id)

    await run_in_threadpool(run)
