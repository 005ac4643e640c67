"""What rule evaluation and ticketing need to know about a site, loaded in one query."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from collector.errors import NotFound
from collector.schema import SITE_FIELDS, customers, partners, sites


@dataclass(frozen=True)
class SiteContext:
    site: dict[str, Any]
    partner_id: str
    partner_name: str
    partner_overrides: dict[str, Any]
    customer_id: str
    customer_name: str

    @property
    def site_id(self) -> str:
        return str(self.site["id"])

    @property
    def contracted(self) -> dict[str, int | None]:
        return {
            "down": self.site.get("contracted_down_bps"),
            "up": self.site.get("contracted_up_bps"),
        }

    def site_info(self) -> dict[str, Any]:
        """The site's gathered information, as attached to tickets."""
        info = {k: self.site.get(k) for k in ("id", *SITE_FIELDS)}
        info["customer"] = self.customer_name
        info["partner"] = self.partner_name
        return info


def load_site_context(conn: sa.Connection, site_id: str) -> SiteContext:
    q = (
        sa.select(
            sites,
            partners.c.name.label("partner_name"),
            partners.c.rule_overrides.label("partner_overrides"),
            customers.c.name.label("customer_name"),
        )
        .join(partners, partners.c.id == sites.c.partner_id)
        .join(customers, customers.c.id == sites.c.customer_id)
        .where(sites.c.id == site_id)
    )
    r = conn.execute(q).first()
    if r is None:
        raise NotFound(f"site {site_id} not found")
    m = dict(r._mapping)
    return SiteContext(
        site={k: m[k] for k in sites.c.keys()},
        partner_id=m["partner_id"],
        partner_name=m["partner_name"],
        partner_overrides=m["partner_overrides"] or {},
        customer_id=m["customer_id"],
        customer_name=m["customer_name"],
    )
