"""The support pages of a partner's own channels (/ui/channels), for partner admins: each
channel, where its tickets go, what waits to be delivered and why, a test button; forms to
create a channel of each type, change its settings, routing and PSA mappings, disable or
delete it. The forms go through the API's models and checks (collector/channels.py), so a
bad field gets the API's message, shown next to the field; credentials are never shown
back (a stored one reads "set" and a blank field keeps it)."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import sqlalchemy as sa
from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import RedirectResponse, Response
from pydantic import TypeAdapter, ValidationError

from agent.wire.errors import VALUE_ERROR_PREFIX, format_validation_error
from collector import channels, tenants
from collector.api.routes_partner import _read, _write
from collector.api.state import app_state
from collector.channels import MODELS, PSA_TYPES, SECRET_FIELDS, ChannelIn, MappingIn
from collector.errors import CollectorError, Invalid
from collector.partner_delivery import test_channel
from collector.psa import forget_token
from collector.secretbox import SecretBox
from collector.timefmt import iso
from collector.web.routes import _form, _may, _partner, _to_login, guarded, render

router = APIRouter(prefix="/ui", include_in_schema=False)

TYPE_NAMES = {
    "connectwise": "ConnectWise PSA", "autotask": "Autotask", "halo": "HaloPSA",
    "teams": "Microsoft Teams", "slack": "Slack", "pagerduty": "PagerDuty",
}  # fmt: skip
LABELS = {
    "url": "URL", "zone_url": "Zone information URL", "api_url": "API URL (resource server)",
    "auth_url": "Authorisation server URL", "company": "Company id (login)",
    "client_id": "Client id", "public_key": "Public key", "private_key": "Private key",
    "board": "Board", "username": "API user name", "integration_code": "API integration code",
    "secret": "Secret", "client_secret": "Client secret", "tenant": "Tenant (hosted Halo)",
    "routing_key": "Routing key (integration key)", "queue_id": "Queue id",
    "priority": "Priority id", "tickettype_id": "Ticket type id",
    "status_new": "Status of a new ticket", "status_closed": "Status when resolved",
    "status_reopened": "Status when reopened", "company_id": "Company id",
    "site_id": "Site id",
}  # fmt: skip
HELP = {
    ("connectwise", "url"): "The API base, e.g. https://api-eu.myconnectwise.net/v4_6_release/apis/3.0",
    ("teams", "url"): "The Workflows webhook URL (it is the credential).",
    ("slack", "url"): "The incoming webhook URL (it is the credential).",
}  # fmt: skip
MAPPING_FIELDS = {
    "connectwise": ("company", "board"), "autotask": ("company_id", "queue_id"),
    "halo": ("client_id", "site_id"),
}  # fmt: skip
COMMON = ("name", "enabled", "routing", "type")
MAX_FIELD = 2000
_channel_in: TypeAdapter[Any] = TypeAdapter(ChannelIn)


def _settings(kind: str) -> list[str]:
    return [f for f in MODELS[kind].model_fields if f not in COMMON]


def _is_int(kind: str, name: str) -> bool:
    return "int" in repr(MODELS[kind].model_fields[name].annotation)


def _fields(
    kind: str, values: dict[str, Any], errors: dict[str, str], stored: set[str]
) -> list[dict[str, Any]]:
    """The settings inputs of a channel type: what the template draws."""
    out = []
    for name in _settings(kind):
        info = MODELS[kind].model_fields[name]
        secret = name in SECRET_FIELDS[kind]
        value = values.get(name)
        if value is None and name not in values and not info.is_required():
            value = info.default  # a new form shows what a field left alone means
        out.append({
            "name": name, "label": LABELS.get(name, name.replace("_", " ").capitalize()),
            "kind": "password" if secret else "number" if _is_int(kind, name) else "text",
            "value": "" if secret or value is None else str(value),
            "required": info.is_required() and not (secret and name in stored),
            "set": secret and name in stored, "error": errors.get(name, ""),
            "help": HELP.get((kind, name), ""),
        })  # fmt: skip
    return out


def _field_errors(kind: str, exc: ValidationError) -> dict[str, str]:
    """Each problem under the field it names (the union's tag left out of the path)."""
    known = {*_settings(kind), *COMMON}
    out: dict[str, str] = {}
    for err in exc.errors():
        loc = [str(p) for p in err["loc"] if not str(p).startswith("function-")]
        if loc and loc[0] == kind:
            loc = loc[1:]
        name = loc[0] if loc and loc[0] in known else ""
        msg = str(err["msg"]).removeprefix(VALUE_ERROR_PREFIX)
        if name == "routing" and len(loc) > 1:
            msg = f"{'.'.join(loc[1:])}: {msg}"
        out.setdefault(name, msg)
    return out


def _error_field(kind: str, message: str) -> str:
    """The field a store error names (`url: the URL ...`, `routing.customers: ...`)."""
    head = message.split(":", 1)[0].split(".", 1)[0]
    if head in {*_settings(kind), *COMMON}:
        return head
    return "name" if "named" in message else ""


def _routing_from(form: dict[str, str], customer_ids: list[str]) -> dict[str, Any]:
    sev = [s for s in ("warning", "critical") if form.get(f"sev_{s}")]
    cust = [c for c in customer_ids if form.get(f"cust_{c}")]
    rules = [r.strip() for r in form.get("rules", "")[:MAX_FIELD].split(",") if r.strip()]
    return {"severities": sev or None, "customers": cust or None, "rules": rules or None}


def _data_from(form: dict[str, str], kind: str, stored: set[str] | None) -> dict[str, Any]:
    """The channel as the API would take it from the form. `stored`: the credentials the
    channel has (editing; a blank one keeps its value), None when creating."""
    data: dict[str, Any] = {"name": form.get("name", "").strip()[:MAX_FIELD],
                            "enabled": bool(form.get("enabled"))}  # fmt: skip
    for name in _settings(kind):
        value = form.get(name, "").strip()[:MAX_FIELD]
        if value:
            data[name] = value
        elif stored is not None and name not in SECRET_FIELDS[kind]:
            info = MODELS[kind].model_fields[name]
            data[name] = "" if info.is_required() else info.default  # cleared: back to default
    return data


async def _lists(request: Request, partner_id: str) -> dict[str, Any]:
    def run(c: sa.Connection) -> dict[str, Any]:
        return {"customers": tenants.list_customers(c, partner_id),
                "sites": tenants.list_sites(c, partner_id)}  # fmt: skip

    return await _read(app_state(request), run)


async def _form_page(
    request: Request, p: dict[str, Any], kind: str, *, ch: dict[str, Any] | None = None,
    values: dict[str, Any] | None = None, routing: dict[str, Any] | None = None,
    errors: dict[str, str] | None = None, error: str = "", status: int = 200,
    notice: str = "",
) -> Response:  # fmt: skip
    lists = await _lists(request, p["id"])
    stored = set(SECRET_FIELDS[kind]) if ch is not None else set()
    values = values if values is not None else (ch or {"enabled": True})
    routing = routing if routing is not None else ((ch or {}).get("routing") or {})
    mappings: list[dict[str, Any]] = []
    if ch is not None and kind in PSA_TYPES:
        st = app_state(request)
        mappings = await _read(st, lambda c: channels.list_mappings(c, p["id"], ch["id"]))
        names = {c["id"]: f"customer {c['name']}" for c in lists["customers"]}
        names |= {s["id"]: f"site {s['name']}" for s in lists["sites"]}
        for m in mappings:
            m["scope"] = names.get(m["scope_id"], m["scope_id"])
    errors = errors or {}
    return render(
        request, "channel_form.html", status, partner=p, kind=kind, type_name=TYPE_NAMES[kind],
        ch=ch, ch_name=values.get("name", ""), enabled=bool(values.get("enabled")),
        fields=_fields(kind, values, errors, stored), errors=errors, error=error,
        routing=routing, customers=lists["customers"], sites=lists["sites"],
        mappings=mappings, mapping_fields=[
            {"name": f, "label": LABELS[f], "number": f != "company" and f != "board"}
            for f in MAPPING_FIELDS.get(kind, ())
        ], notice=notice,
    )  # fmt: skip


def _admin(p: dict[str, Any]) -> None:
    _may(p, "credentials")


@router.get("/channels")
@guarded
async def channels_page(request: Request, notice: str = "") -> Response:
    p = await _partner(request)
    if p is None:
        return _to_login(request)
    _admin(p)
    st = app_state(request)

    def load(c: sa.Connection) -> list[dict[str, Any]]:
        return [channels.get(c, p["id"], ch["id"]) for ch in channels.list_(c, p["id"])]

    rows = await _read(st, load)
    return render(request, "channels.html", partner=p, channels=rows, notice=notice,
                  types=TYPE_NAMES)  # fmt: skip


@router.get("/channels/new")
@guarded
async def new_channel_page(request: Request, type: str = "") -> Response:
    p = await _partner(request)
    if p is None:
        return _to_login(request)
    _admin(p)
    if not type:
        return render(request, "channel_new.html", partner=p, types=TYPE_NAMES)
    if type not in MODELS:
        raise Invalid(f"type: choose one of {', '.join(MODELS)}")
    return await _form_page(request, p, type)


@router.post("/channels")
@guarded
async def create_channel(request: Request) -> Response:
    p = await _partner(request)
    if p is None:
        return _to_login(request)
    _admin(p)
    form = await _form(request)
    kind = form.get("type", "")
    if kind not in MODELS:
        raise Invalid(f"type: choose one of {', '.join(MODELS)}")
    lists = await _lists(request, p["id"])
    routing = _routing_from(form, [c["id"] for c in lists["customers"]])
    data = {"type": kind, **_data_from(form, kind, None), "routing": routing}
    try:
        body = _channel_in.validate_python(data)
    except ValidationError as exc:
        return await _form_page(request, p, kind, values=data, routing=routing, status=422,
                                errors=_field_errors(kind, exc),
                                error=format_validation_error(exc, root=None,
                                                              strip_value_error=True))  # fmt: skip
    st = app_state(request)
    box = SecretBox.from_config(st.store.config.channels)
    cfg = st.store.config.channels
    try:
        ch = await _write(st, lambda c: channels.create(c, cfg, box, p["id"], body, st.clock()))
    except CollectorError as exc:
        if exc.status in (403, 404):
            raise
        return await _form_page(request, p, kind, values=data, routing=routing,
                                status=exc.status, error=exc.message,
                                errors={_error_field(kind, exc.message): exc.message})  # fmt: skip
    msg = quote(f"Channel {ch['name']} created.")
    return RedirectResponse(f"/ui/channels/{ch['id']}?notice={msg}", status_code=303)


async def _own(request: Request, p: dict[str, Any], channel_id: str) -> dict[str, Any]:
    return await _read(app_state(request), lambda c: channels.get(c, p["id"], channel_id))


@router.get("/channels/{channel_id}")
@guarded
async def channel_page(request: Request, channel_id: str, notice: str = "") -> Response:
    p = await _partner(request)
    if p is None:
        return _to_login(request)
    _admin(p)
    ch = await _own(request, p, channel_id)
    return await _form_page(request, p, ch["type"], ch=ch, notice=notice)


@router.post("/channels/{channel_id}")
@guarded
async def update_channel(request: Request, channel_id: str) -> Response:
    p = await _partner(request)
    if p is None:
        return _to_login(request)
    _admin(p)
    ch = await _own(request, p, channel_id)
    form = await _form(request)
    kind = ch["type"]
    lists = await _lists(request, p["id"])
    routing = _routing_from(form, [c["id"] for c in lists["customers"]])
    changes = {**_data_from(form, kind, set(SECRET_FIELDS[kind])), "routing": routing}
    st = app_state(request)
    box = SecretBox.from_config(st.store.config.channels)
    cfg = st.store.config.channels
    try:
        await _write(st, lambda c: channels.update(c, cfg, box, p["id"], channel_id, changes,
                                                   st.clock()))  # fmt: skip
    except CollectorError as exc:
        if exc.status in (403, 404):
            raise
        errors: dict[str, str] = {}
        for part in exc.message.split("; "):
            errors.setdefault(_error_field(kind, part), part.split(": ", 1)[-1])
        return await _form_page(request, p, kind, ch=ch, values=changes, routing=routing,
                                status=exc.status, error=exc.message, errors=errors)  # fmt: skip
    forget_token(channel_id)  # new credentials: no token of the old ones
    return RedirectResponse(f"/ui/channels/{channel_id}?notice=Saved.", status_code=303)


@router.post("/channels/{channel_id}/delete")
@guarded
async def delete_channel(request: Request, channel_id: str) -> Response:
    p = await _partner(request)
    if p is None:
        return _to_login(request)
    _admin(p)
    await _form(request)
    ch = await _own(request, p, channel_id)
    await _write(app_state(request), lambda c: channels.delete(c, p["id"], channel_id))
    forget_token(channel_id)
    msg = quote(f"Channel {ch['name']} deleted.")
    return RedirectResponse(f"/ui/channels?notice={msg}", status_code=303)


@router.post("/channels/{channel_id}/mappings")
@guarded
async def put_mapping(request: Request, channel_id: str) -> Response:
    p = await _partner(request)
    if p is None:
        return _to_login(request)
    _admin(p)
    ch = await _own(request, p, channel_id)
    form = await _form(request)
    scope = form.get("scope_id", "")[:64]
    values = {f: v for f in MAPPING_FIELDS.get(ch["type"], ())
              if (v := form.get(f, "").strip()[:MAX_FIELD])}  # fmt: skip
    st = app_state(request)
    try:
        try:
            m = MappingIn.model_validate(values)
        except ValidationError as exc:
            raise Invalid(format_validation_error(exc, root=None, strip_value_error=True)) from None
        await _write(st, lambda c: channels.put_mapping(c, p["id"], channel_id, scope, m,
                                                        st.clock()))  # fmt: skip
    except CollectorError as exc:
        if exc.status == 403 or (exc.status == 404 and "channel" in exc.message):
            raise
        return await _form_page(request, p, ch["type"], ch=ch, status=exc.status,
                                error=f"Mapping not saved: {exc.message}")  # fmt: skip
    return RedirectResponse(f"/ui/channels/{channel_id}?notice=Mapping%20saved.", status_code=303)


@router.post("/channels/{channel_id}/mappings/{scope_id}/delete")
@guarded
async def delete_mapping(request: Request, channel_id: str, scope_id: str) -> Response:
    p = await _partner(request)
    if p is None:
        return _to_login(request)
    _admin(p)
    await _form(request)
    await _write(
        app_state(request), lambda c: channels.delete_mapping(c, p["id"], channel_id, scope_id)
    )
    return RedirectResponse(f"/ui/channels/{channel_id}?notice=Mapping%20removed.",
                            status_code=303)  # fmt: skip


@router.post("/channels/{channel_id}/test")
@guarded
async def channel_test(request: Request, channel_id: str) -> Response:
    p = await _partner(request)
    if p is None:
        return _to_login(request)
    _admin(p)
    form = await _form(request)
    st = app_state(request)
    box = SecretBox.from_config(st.store.config.channels)
    out = await run_in_threadpool(
        test_channel, st.store, st.store.config, box, p["id"], channel_id, iso(st.clock()) or ""
    )
    msg = quote("Test sent: it worked." if out["ok"] else f"Test failed: {out['error']}")
    back = f"/ui/channels/{channel_id}" if form.get("back") == "channel" else "/ui/channels"
    return RedirectResponse(f"{back}?notice={msg}", status_code=303)
