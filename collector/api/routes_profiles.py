"""Probe profile routes: a partner edits its own, its customers' and its sites' layers of
agent modules (GET/PUT/DELETE with the version as ETag and If-Match), and reads the
effective config a site's agents run."""

from __future__ import annotations

from typing import Annotated, Any

import sqlalchemy as sa
from fastapi import APIRouter, Depends, Header, Path, Request
from fastapi.responses import JSONResponse, Response

from agent.wire.profiles import Scope
from collector import profiles
from collector.api.models import ProfileIn
from collector.api.responses import ERRORS, PRECONDITION
from collector.api.routes_partner import _read, _write
from collector.api.state import app_state, current_partner
from collector.errors import Invalid

router = APIRouter(prefix="/api/v1", tags=["profiles"], responses=ERRORS)
PartnerDep = Annotated[dict[str, Any], Depends(current_partner)]
ScopeId = Annotated[str, Path(min_length=1, max_length=64)]
IfMatch = Annotated[
    str | None,
    Header(
        max_length=32,
        description='The profile version last read (its ETag, `"3"`); `"0"` creates only.',
    ),
]


def _if_match(value: str | None) -> int | None:
    if value is None:
        return None
    text = value.strip().removeprefix("W/").strip('"')
    if not text.isdigit() or len(text) > 9:
        raise Invalid(f'If-Match: {value[:32]!r} is not a profile version such as "3"')
    return int(text)


def _answer(doc: dict[str, Any]) -> JSONResponse:
    return JSONResponse(doc, headers={"ETag": f'"{doc["version"]}"'})


@router.get("/profiles/{scope}/{scope_id}")
async def get_profile(
    p: PartnerDep, scope: Scope, scope_id: ScopeId, request: Request
) -> dict[str, Any]:
    """One layer (`scope`: partner, with the partner's own id; customer; site), with its
    version, also in the ETag header. 404: no profile there, or not this partner's."""
    doc = await _read(
        app_state(request), lambda c: profiles.get_profile(c, p["id"], scope, scope_id)
    )
    return _answer(doc)  # type: ignore[return-value]


@router.put("/profiles/{scope}/{scope_id}", responses=PRECONDITION)
async def put_profile(
    p: PartnerDep,
    scope: Scope,
    scope_id: ScopeId,
    body: ProfileIn,
    request: Request,
    if_match: IfMatch = None,
) -> dict[str, Any]:
    """Create or replace a layer. Refused (422) with the key named when it, or the config
    it makes with the layers above or below it, is not valid for an agent; 412 when
    `If-Match` is not the current version. Agents take the change on their next fetch."""
    st = app_state(request)
    expected = _if_match(if_match)
    doc = await _write(
        st,
        lambda c: profiles.put_profile(
            c, p["id"], scope, scope_id, body.model_dump(), st.clock(), expected
        ),
    )
    return _answer(doc)  # type: ignore[return-value]


@router.delete("/profiles/{scope}/{scope_id}", status_code=204, responses=PRECONDITION)
async def delete_profile(
    p: PartnerDep, scope: Scope, scope_id: ScopeId, request: Request, if_match: IfMatch = None
) -> Response:
    """Remove a layer (refused, 422, when a layer below it would be incomplete without it)."""
    expected = _if_match(if_match)
    st = app_state(request)
    await _write(
        st,
        lambda c: profiles.delete_profile(c, p["id"], scope, scope_id, expected, now=st.clock()),
    )
    return Response(status_code=204)


@router.get("/sites/{site_id}/config")
async def site_config(p: PartnerDep, site_id: ScopeId, request: Request) -> dict[str, Any]:
    """The effective config the site's agents fetch (`agent.wire.profiles.EffectiveConfig`)."""

    def run(c: sa.Connection) -> dict[str, Any]:
        return profiles.effective(c, p["id"], site_id).model_dump(mode="json")

    return await _read(app_state(request), run)
