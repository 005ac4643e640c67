"""A partner's brand (white-label): name, logo, colours, support contact and an optional
custom domain (matched by the Host header). `for_partner(conn, partner_id)` is what pages,
reports and e-mails call; a partner without a brand gets the defaults (its own name,
neutral colours), never the product's name."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from collector import tenants
from collector.errors import Conflict, Invalid, PayloadTooLarge
from collector.schema import brands

LOGO_MAX_BYTES = 256 * 1024
HEX = re.compile(r"^#[0-9a-fA-F]{6}$")
DOMAIN = re.compile(r"^(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$")
DEFAULT_PRIMARY = "#0d47a1"  # the pages' own blue (ui.css)
DEFAULT_ACCENT = "#2e7d32"
# Raster images only (an SVG can carry script): the type is read from the bytes.
LOGO_TYPES = (
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"GIF87a", "image/gif"),
    (b"GIF89a", "image/gif"),
)


@dataclass(frozen=True, slots=True)
class Brand:
    partner_id: str
    name: str
    primary_color: str = DEFAULT_PRIMARY
    accent_color: str = DEFAULT_ACCENT
    support_contact: str = ""
    domain: str | None = None
    has_logo: bool = False

    @property
    def logo_url(self) -> str | None:
        return f"/ui/brand/{self.partner_id}/logo" if self.has_logo else None

    def issuer_line(self) -> str:
        """Who issued a report, as a line at its top."""
        contact = f" · Support: {self.support_contact}" if self.support_contact else ""
        return f"{self.name}{contact}"

    def metadata(self) -> dict[str, Any]:
        """What a report's JSON metadata says of who issued it."""
        return {"name": self.name, "support_contact": self.support_contact}


def _from_row(partner_id: str, partner_name: str, r: Any) -> Brand:
    if r is None:
        return Brand(partner_id, partner_name)
    return Brand(partner_id, r.name, r.primary_color, r.accent_color, r.support_contact,
                 r.domain, r.logo is not None)  # fmt: skip


def for_partner(conn: sa.Connection, partner_id: str) -> Brand:
    """The partner's brand, or the defaults (named after the partner)."""
    p = tenants.get_partner(conn, partner_id)
    r = conn.execute(sa.select(brands).where(brands.c.partner_id == partner_id)).first()
    return _from_row(partner_id, p["name"], r)


def for_host(conn: sa.Connection, host: str) -> Brand | None:
    """The brand whose custom domain is this Host header (port ignored), or None."""
    name = host.rsplit(":", 1)[0].strip().lower() if host else ""
    if not name:
        return None
    r = conn.execute(sa.select(brands).where(brands.c.domain == name)).first()
    return _from_row(r.partner_id, r.name, r) if r is not None else None


def logo(conn: sa.Connection, partner_id: str) -> tuple[bytes, str] | None:
    r = conn.execute(
        sa.select(brands.c.logo, brands.c.logo_type).where(brands.c.partner_id == partner_id)
    ).first()
    return (r.logo, r.logo_type) if r is not None and r.logo is not None else None


def logo_type(data: bytes) -> str:
    if len(data) > LOGO_MAX_BYTES:
        raise PayloadTooLarge(f"logo: {len(data)} bytes, at most {LOGO_MAX_BYTES}")
    for magic, kind in LOGO_TYPES:
        if data.startswith(magic):
            return kind
    raise Invalid("logo: not a PNG, JPEG or GIF image")


def set_brand(
    conn: sa.Connection, partner_id: str, now: float, *, name: str, primary_color: str,
    accent_color: str, support_contact: str = "", domain: str | None = None,
    logo_data: bytes | None = None, clear_logo: bool = False,
) -> Brand:  # fmt: skip
    """Validate and store the brand; each invalid field is refused naming it."""
    name = name.strip()
    if not 1 <= len(name) <= 200:
        raise Invalid("name: 1 to 200 characters")
    for field, v in (("primary_color", primary_color), ("accent_color", accent_color)):
        if not HEX.match(v):
            raise Invalid(f"{field}: {v[:20]!r} is not a colour like #0d47a1")
    if len(support_contact) > 300:
        raise Invalid("support_contact: at most 300 characters")
    dom = (domain or "").strip().lower() or None
    if dom is not None and not DOMAIN.match(dom):
        raise Invalid(f"domain: {dom[:80]!r} is not a host name like support.example.com")
    if dom is not None:
        other = conn.execute(sa.select(brands.c.partner_id).where(brands.c.domain == dom)).scalar()
        if other is not None and other != partner_id:
            raise Conflict(f"domain: {dom} is taken")
    values: dict[str, Any] = {
        "name": name, "primary_color": primary_color.lower(),
        "accent_color": accent_color.lower(), "support_contact": support_contact.strip(),
        "domain": dom, "updated_at": now,
    }  # fmt: skip
    if logo_data:
        values.update(logo=logo_data, logo_type=logo_type(logo_data))
    elif clear_logo:
        values.update(logo=None, logo_type=None)
    tenants.get_partner(conn, partner_id)
    exists = conn.execute(sa.select(brands.c.partner_id).where(brands.c.partner_id == partner_id))
    if exists.first() is None:
        conn.execute(brands.insert().values(partner_id=partner_id, **values))
    else:
        conn.execute(brands.update().where(brands.c.partner_id == partner_id).values(**values))
    return for_partner(conn, partner_id)
