"""The support pages' view of a partner's own channels (/ui/channels): each channel, where
its tickets go, what waits to be delivered and why, and a test button. Channels are set up
through the API (docs/collector.md, "Partner channels")."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import sqlalchemy as sa
from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import RedirectResponse, Response

from collector import channels
from collector.api.routes_partner import _read
from collector.api.state import app_state
from collector.partner_delivery import test_channel
from collector.secretbox import SecretBox
from collector.timefmt import iso
from collector.web.routes import _form, _may, _partner, _to_login, guarded, render

router = APIRouter(prefix="/ui", include_in_schema=False)


@router.get("/channels")
@guarded
async def channels_page(request: Request, notice: str = "") -> Response:
    p = await _partner(request)
    if p is None:
        return _to_login(request)
    _may(p, "credentials")
    st = app_state(request)

    def load(c: sa.Connection) -> list[dict[str, Any]]:
        return [channels.get(c, p["id"], ch["id"]) for ch in channels.list_(c, p["id"])]

    rows = await _read(st, load)
    return render(request, "channels.html", partner=p, channels=rows, notice=notice)


@router.post("/channels/{channel_id}/test")
@guarded
async def channel_test(request: Request, channel_id: str) -> Response:
    p = await _partner(request)
    if p is None:
        return _to_login(request)
    _may(p, "credentials")
    await _form(request)
    st = app_state(request)
    box = SecretBox.from_config(st.store.config.channels)
    out = await run_in_threadpool(
        test_channel, st.store, st.store.config, box, p["id"], channel_id, iso(st.clock()) or ""
    )
    msg = "Test sent: it worked." if out["ok"] else f"Test failed: {out['error']}"
    return RedirectResponse(f"/ui/channels?notice={quote(msg)}", status_code=303)
