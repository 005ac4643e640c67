"""Partner channel routes: a partner's own PSA, chat and paging channels (credentials
masked in every answer), their customer/site mappings to PSA ids, and the channel test."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool

from collector import channels
from collector.api.responses import ERRORS
from collector.api.routes_partner import PartnerDep, _read, _write
from collector.api.state import app_state
from collector.channels import ChannelIn, ChannelPatch, MappingIn
from collector.partner_delivery import test_channel
from collector.psa import forget_token
from collector.secretbox import SecretBox
from collector.timefmt import iso

router = APIRouter(prefix="/api/v1/channels", tags=["channels"], responses=ERRORS)


def _box(request: Request) -> SecretBox | None:
    return SecretBox.from_config(app_state(request).store.config.channels)


@router.get("")
async def list_channels(p: PartnerDep, request: Request) -> list[Any]:
    return await _read(app_state(request), lambda c: channels.list_(c, p["id"]))


@router.post("", status_code=201)
async def create_channel(p: PartnerDep, body: ChannelIn, request: Request) -> dict[str, Any]:
    st, box = app_state(request), _box(request)
    cfg = st.store.config.channels
    return await _write(st, lambda c: channels.create(c, cfg, box, p["id"], body, st.clock()))


@router.get("/{channel_id}")
async def get_channel(p: PartnerDep, channel_id: str, request: Request) -> dict[str, Any]:
    return await _read(app_state(request), lambda c: channels.get(c, p["id"], channel_id))


@router.patch("/{channel_id}")
async def patch_channel(
    p: PartnerDep, channel_id: str, body: ChannelPatch, request: Request
) -> dict[str, Any]:
    st, box = app_state(request), _box(request)
    cfg, changes = st.store.config.channels, dict(body.model_extra or {})
    out = await _write(
        st, lambda c: channels.update(c, cfg, box, p["id"], channel_id, changes, st.clock())
    )
    forget_token(channel_id)  # new credentials: no token of the old ones
    return out


@router.delete("/{channel_id}", status_code=204)
async def delete_channel(p: PartnerDep, channel_id: str, request: Request) -> None:
    await _write(app_state(request), lambda c: channels.delete(c, p["id"], channel_id))
    forget_token(channel_id)


@router.post("/{channel_id}/test")
async def test(p: PartnerDep, channel_id: str, request: Request) -> dict[str, Any]:
    """Send a test message (Teams, Slack, PagerDuty) or search the PSA for a test
    reference (proves its URL and credentials, creates nothing). `ok` says whether it
    worked, `error` why not."""
    st, box = app_state(request), _box(request)
    return await run_in_threadpool(
        test_channel, st.store, st.store.config, box, p["id"], channel_id, iso(st.clock()) or ""
    )


@router.get("/{channel_id}/mappings")
async def list_mappings(p: PartnerDep, channel_id: str, request: Request) -> list[Any]:
    return await _read(app_state(request), lambda c: channels.list_mappings(c, p["id"], channel_id))


@router.put("/{channel_id}/mappings/{scope_id}")
async def put_mapping(
    p: PartnerDep, channel_id: str, scope_id: str, body: MappingIn, request: Request
) -> dict[str, Any]:
    """The PSA ids of one of the partner's customers or sites (a site's override its
    customer's)."""
    st = app_state(request)
    return await _write(
        st, lambda c: channels.put_mapping(c, p["id"], channel_id, scope_id, body, st.clock())
    )


@router.delete("/{channel_id}/mappings/{scope_id}", status_code=204)
async def delete_mapping(p: PartnerDep, channel_id: str, scope_id: str, request: Request) -> None:
    await _write(
        app_state(request), lambda c: channels.delete_mapping(c, p["id"], channel_id, scope_id)
    )
