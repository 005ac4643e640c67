"""The portal in a real browser: an admin logs in, invites a user (the e-mail arrives at a
real SMTP server; the invitee sets a password and logs in), sets the brand, schedules a
maintenance window and looks over the portal's pages (home, a site's measurements, the bad
call, reports); a customer viewer logs in, sees only their customer's sites and gets 404
for another customer's site by URL. axe-core finds no serious or critical violation on any
page visited; screenshots at laptop and phone sizes (the directory is printed)."""

from __future__ import annotations

import re
import uuid
from typing import Any

from tests.browser.conftest import Portal, new_tenant, web_user


def _login(portal: Portal, page: Any, email: str, password: str) -> None:
    page.goto(f"{portal.url}/ui/login")
    page.get_by_label("E-mail").fill(email)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Log in").click()
    page.get_by_role("heading", name="Sites").wait_for()


def test_admin_invites_and_brands_customer_viewer_sees_only_their_sites(portal: Portal) -> None:
    t = new_tenant(portal.srv, "acme")
    key = str(t.partner.headers["authorization"]).split()[1]
    other = t.partner.post("/api/v1/customers", json={"name": "Other Customer"}).json()
    theirs = t.partner.post("/api/v1/sites", json={"customer_id": other["id"], "name": "elsewhere"})
    admin_mail, admin_pw = web_user(portal.srv, key, "admin")

    page = portal.new_page()
    page.goto(f"{portal.url}/ui/")
    assert "/ui/login" in page.url
    portal.check(page, "1-login")
    _login(portal, page, admin_mail, admin_pw)
    portal.check(page, "2-sites-admin")

    # The admin invites a customer viewer of the first customer.
    invitee = f"viewer-{uuid.uuid4().hex[:6]}@customer.example"
    page.get_by_role("link", name="Users").click()
    page.get_by_role("heading", name="Users").wait_for()
    portal.check(page, "3-users")
    page.get_by_label("E-mail", exact=True).fill(invitee)
    page.get_by_label("Role", exact=True).select_option("customer")
    page.get_by_label("Customer (customer viewers only)").select_option(t.customer_id)
    page.get_by_role("button", name="Send invitation").click()
    page.get_by_text(f"Invitation sent to {invitee}.").wait_for()

    # The brand.
    page.get_by_role("link", name="Brand").click()
    page.get_by_label("Name").fill("Acme Voice Care")
    page.get_by_label("Main colour").fill("#1b5e20")
    page.get_by_label("Support contact").fill("help@acme.example")
    page.get_by_role("button", name="Save").click()
    page.get_by_role("heading", name="Brand").wait_for()
    portal.check(page, "4-brand")

    # The admin schedules a weekly maintenance window for the first site, and looks over the
    # portal's own pages: home, the site's measurements, the bad-call window, reports.
    page.get_by_role("link", name="Maintenance").click()
    page.get_by_label("Applies to").select_option(f"site:{t.site_id}")
    page.get_by_label("Kind").select_option("weekly")
    page.get_by_label("Timezone (IANA name)").fill("Europe/Berlin")
    page.get_by_label("Weekday").select_option("sunday")
    page.get_by_label("Start (HH:MM)").fill("02:30")
    page.get_by_label("Duration (minutes)").fill("90")
    page.get_by_label("Reason").fill("carrier works")
    page.get_by_role("button", name="Create").click()
    page.get_by_text("Maintenance window created.").wait_for()
    assert page.get_by_text("carrier works").count() >= 1
    portal.check(page, "4a-maintenance")
    page.get_by_role("link", name="Home").click()
    portal.check(page, "4b-home")
    page.goto(f"{portal.url}/ui/sites/{t.site_id}")
    portal.check(page, "4c-site-measurements")
    page.goto(f"{portal.url}/ui/sites/{t.site_id}/badcall?at=2026-12-01T09:30&tz=UTC&window=30")
    portal.check(page, "4d-bad-call")
    page.get_by_role("link", name="Reports").click()
    portal.check(page, "4e-reports")
    page.close()
    windows = t.partner.get("/api/v1/maintenance").json()
    assert [(w["scope_id"], w["reason"]) for w in windows] == [(t.site_id, "carrier works")]

    # The invitee follows the e-mailed link, sets a password and logs in.
    raw = portal.inbox.to(invitee)
    link = re.search(r"(/ui/invite/\S+)", raw)
    assert link and "Your acme support portal account" in raw, raw  # the brand then
    viewer = portal.new_page("phone")
    viewer.goto(portal.url + link.group(1))
    viewer.get_by_role("heading", name="Set your password").wait_for()
    portal.check(viewer, "5-invitation")
    password = "a long pass phrase"
    viewer.get_by_label("New password").fill(password)
    viewer.get_by_label("The same again").fill(password)
    viewer.get_by_role("button", name="Set password").click()
    viewer.wait_for_url("**/ui/login**")
    _login(portal, viewer, invitee, password)
    assert "Acme Voice Care" in viewer.title()
    assert viewer.get_by_role("link", name="acme-hq").count() == 1
    assert viewer.get_by_role("link", name="elsewhere").count() == 0
    assert viewer.get_by_role("link", name="Users").count() == 0
    portal.check(viewer, "6-sites-customer")
    viewer.get_by_role("link", name="acme-hq").click()
    viewer.get_by_role("heading", name="acme-hq").first.wait_for()
    portal.check(viewer, "7-site-customer")
    # Another customer's site by URL: not found.
    answer = viewer.goto(f"{portal.url}/ui/sites/{theirs.json()['id']}")
    assert answer is not None and answer.status == 404
    portal.check(viewer, "8-not-found")
    viewer.close()
    mine = ["1-login", "2-sites-admin", "3-users", "4-brand", "4a-maintenance", "4b-home",
            "4c-site-measurements", "4d-bad-call", "4e-reports", "5-invitation",
            "6-sites-customer", "7-site-customer", "8-not-found"]  # fmt: skip
    assert [v for v in portal.visited if v in mine] == mine  # the module's other tests add theirs


def test_admin_sets_up_an_autotask_channel_with_a_form(portal: Portal) -> None:
    """The channel form, its error state (a field the server refuses, named next to it)
    and the channel's page with its mapping form: axe finds nothing serious on any."""
    t = new_tenant(portal.srv, "channels-partner")
    key = str(t.partner.headers["authorization"]).split()[1]
    page = portal.new_page()
    _login(portal, page, *web_user(portal.srv, key, "admin"))
    page.goto(f"{portal.url}/ui/channels")
    page.get_by_role("link", name="Autotask").click()
    page.get_by_role("heading", name="New Autotask channel").wait_for()
    portal.check(page, "9a-channel-new")
    page.get_by_label("Name", exact=True).fill("Autotask")
    page.get_by_label("Zone information URL").fill("http://webservices.autotask.net/zone")
    page.get_by_label("API user name").fill("api@acme.example")
    page.get_by_label("API integration code").fill("INTCODE")
    page.get_by_label("Secret", exact=True).fill("s3cret")
    page.get_by_role("button", name="Create").click()
    err = page.locator("#err-zone_url")
    err.wait_for()
    assert "must be https://" in err.inner_text()
    assert page.get_by_label("API user name").input_value() == "api@acme.example"
    portal.check(page, "9b-channel-error")
    page.get_by_label("Zone information URL").fill(
        "https://webservices.autotask.net/atservicesrest/v1.0/zoneInformation"
    )
    page.get_by_label("API integration code").fill("INTCODE")
    page.get_by_label("Secret", exact=True).fill("s3cret")
    page.get_by_role("button", name="Create").click()
    page.get_by_text("Channel Autotask created.").wait_for()
    assert page.get_by_label("Secret (set)").input_value() == ""
    portal.check(page, "9c-channel-edit")
