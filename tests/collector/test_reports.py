"""SLA and quality reports on a real server, on SQLite and PostgreSQL: a month of voice
results sent through real ingest (one every 15 minutes, with loss on known days, a slow
hour and an unmeasured morning), half of it rolled up; the report's availability, not
measured time, percentiles, MOS bands and worst hours equal figures computed here from the
generated values; the PDF's first page, rendered by pdftoppm, is an A4 page with ink on it;
another partner gets 404; the monthly schedule makes the report once, however often and
from however many threads it is asked, and e-mails it with the PDF to a real SMTP server."""

from __future__ import annotations

import copy
import email
import email.policy
import io
import json
import math
import random
import shutil
import subprocess
import threading
import uuid
from collections import defaultdict
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import pytest
import sqlalchemy as sa
from aiosmtpd.controller import Controller

from collector import reports, rollups
from collector.config import CollectorConfig
from collector.errors import NotFound
from collector.schema import results
from collector.store import Store
from collector.worker import deliver_due
from tests.collector.conftest import LiveServer, Tenant, new_tenant
from tests.collector.pg import PgCluster, free_port

HOUR = 3600.0
DAY = 86400.0
STEP = 15 * 60.0
MIX = json.loads((Path(__file__).parents[1] / "data" / "results_default_mix.json").read_text())
UDP = next(m for m in MIX if m["probe"] == "udp")
# The default rules' warning limits (docs/collector.md), written out here on purpose.
LIMITS_ABOVE = {("out", "loss_pct"): 1.0, ("back", "loss_pct"): 1.0,
                ("out", "jitter_ms"): 30.0, ("back", "jitter_ms"): 30.0}  # fmt: skip
MOS_BELOW = 4.0
RTT_ABOVE = 150.0
LOSS_DAYS = (5, 17)  # loss 3 % out, 09:00-11:00 UTC
SLOW_HOUR = (20, 14)  # day 20, 14:00: two of the four tests with a 200 ms round trip
UNMEASURED = (10, 0, 6)  # day 10, 00:00-06:00: no test ran
BANDS = [(4.34, 99.0), (4.03, 4.34), (3.60, 4.03), (3.10, 3.60), (2.58, 3.10), (0.0, 2.58)]


class Inbox:
    def __init__(self) -> None:
        self.messages: list[tuple[list[str], bytes]] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append((list(envelope.rcpt_tos), envelope.content))
        return "250 accepted"


def _month() -> tuple[int, int, float, float]:
    year, month = reports.previous_month(datetime.now(UTC).timestamp(), "UTC")
    since, until = reports.month_range(year, month, "UTC")
    return year, month, since, until


def _generate(since: float, until: float) -> list[dict[str, Any]]:
    """One udp result per 15 minutes over the month: the figures the report must show."""
    rng = random.Random(16)
    out = []
    t = since
    while t < until:
        dt = datetime.fromtimestamp(t, UTC)
        day, hour = dt.day, dt.hour
        t0 = t
        t += STEP
        if (day, 0) == UNMEASURED[:2] and hour < UNMEASURED[2]:
            continue
        loss_out = 3.0 if day in LOSS_DAYS and 9 <= hour < 11 else round(rng.uniform(0, 0.5), 3)
        slow = (day, hour) == SLOW_HOUR and dt.minute < 30
        v = {
            ("out", "loss_pct"): loss_out,
            ("back", "loss_pct"): round(rng.uniform(0, 0.8), 3),
            ("out", "jitter_ms"): round(rng.uniform(0.5, 12), 3),
            ("back", "jitter_ms"): round(rng.uniform(0.5, 25), 3),
            ("out", "mos"): 3.55 if loss_out > 1 else round(rng.uniform(4.05, 4.41), 2),
            ("back", "mos"): round(rng.uniform(4.05, 4.41), 2),
            ("rtt", "avg"): 200.0 if slow else round(rng.uniform(15, 80), 3),
        }
        out.append({"t": t0, "v": v})
    return out


def _item(g: dict[str, Any]) -> dict[str, Any]:
    m = copy.deepcopy(UDP["measurement"])
    m["rtt_samples_ms"] = m["rtt_samples_ms"][:3]
    for (d, f), x in g["v"].items():
        (m["rtt_ms"] if d == "rtt" else m[d])[f] = x
    return {**UDP, "id": str(uuid.uuid4()), "measurement": m, "target": "responder:862",
            "started_at": datetime.fromtimestamp(g["t"], UTC).isoformat()}  # fmt: skip


def _good(v: dict[tuple[str, str], float]) -> bool:
    return (
        all(v[k] <= lim for k, lim in LIMITS_ABOVE.items())
        and v[("out", "mos")] >= MOS_BELOW
        and v[("back", "mos")] >= MOS_BELOW
        and v[("rtt", "avg")] <= RTT_ABOVE
    )


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def world(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, Any]]:
    """One server, a month ingested through the API, the hours before day 15 rolled up."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path_factory.mktemp('reports')}/c.sqlite3"
    else:
        cluster: PgCluster = request.getfixturevalue("pg_cluster")
        name = "t_" + uuid.uuid4().hex[:12]
        admin = sa.create_engine(cluster.url(), isolation_level="AUTOCOMMIT")
        with admin.connect() as c:
            c.exec_driver_sql(f"CREATE DATABASE {name} TEMPLATE qs_template")
        admin.dispose()
        url = cluster.url(name)
    inbox = Inbox()
    smtpd = Controller(inbox, hostname="127.0.0.1", port=free_port())
    smtpd.start()
    ch = {"type": "email", "host": "127.0.0.1", "port": smtpd.port, "from": "noc@example.net",
          "to": ["noc@example.net"], "partners": ["rep"]}  # fmt: skip
    store = Store(CollectorConfig(db=url, notifications=[ch], metrics={"token": "t" * 32}))
    store.migrate()
    srv = LiveServer(store, background=False).start()
    try:
        t = new_tenant(srv, "rep")
        other = new_tenant(srv, "rep-other")
        year, month, since, until = _month()
        gen = _generate(since, until)
        items = [_item(g) for g in gen]
        for i in range(0, len(items), 500):
            assert t.post(*items[i : i + 500])["stored"] == len(items[i : i + 500])
        rolled_until = since + 15 * DAY
        rollups.roll_due(store, rolled_until + store.config.retention.grace_s)
        # As if retention had expired them: the first half of the month exists only as
        # roll-ups from here on, the second half only as raw results.
        with store.write() as c:
            gone = c.execute(
                results.delete().where(results.c.site_id == t.site_id,
                                       results.c.started_at < rolled_until)
            ).rowcount  # fmt: skip
        assert gone == sum(g["t"] < rolled_until for g in gen)
        yield {"srv": srv, "t": t, "other": other, "gen": gen, "month": f"{year:04d}-{month:02d}",
               "since": since, "until": until, "inbox": inbox}  # fmt: skip
    finally:
        srv.stop()
        smtpd.stop()
        store.dispose()


def _expected(gen: list[dict[str, Any]], since: float, until: float) -> dict[str, Any]:
    hours: dict[float, list[bool]] = defaultdict(list)
    for g in gen:
        if not since <= g["t"] < until:
            continue
        hours[math.floor(g["t"] / HOUR) * HOUR].append(_good(g["v"]))
    total = (until - since) / HOUR
    good = sum(sum(x) / len(x) for x in hours.values())
    return {
        "pct": 100.0 * good / len(hours),
        "measured_h": float(len(hours)),
        "not_measured_h": total - len(hours),
        "bad_hours": sorted(h for h, x in hours.items() if not any(x)),
        "half_hours": sorted(h for h, x in hours.items() if 0 < sum(x) < len(x)),
    }


def test_report_figures_equal_those_computed_from_the_generated_month(world):
    t: Tenant = world["t"]
    gen = world["gen"]
    want = _expected(gen, world["since"], world["until"])
    assert want["not_measured_h"] == UNMEASURED[2]  # the generator did what it says
    r = t.partner.post("/api/v1/reports", json={"customer_id": t.customer_id,
                                                "month": world["month"]})  # fmt: skip
    assert r.status_code == 201, r.text
    rep = r.json()
    d = rep["data"]
    a = d["availability"]
    assert a["pct"] == pytest.approx(want["pct"], abs=1e-9)
    assert a["measured_h"] == want["measured_h"]
    assert a["not_measured_h"] == want["not_measured_h"]
    assert a["total_h"] == (world["until"] - world["since"]) / HOUR
    # Percentiles: nearest rank of the generated values (to the report's 0.01 resolution).
    figures = [("out", "loss_pct"), ("back", "loss_pct"), ("out", "jitter_ms"),
               ("back", "jitter_ms"), ("out", "mos"), ("back", "mos")]  # fmt: skip
    for (direction, field), key in [*((k, k) for k in figures),
                                    (("rtt", "rtt_ms.avg"), ("rtt", "avg"))]:  # fmt: skip
        values = np.array([g["v"][key] for g in gen])
        got = d["percentiles"][direction][field]
        assert got["n"] == len(gen)
        for name, q in (("p50", 50), ("p95", 95), ("p99", 99)):
            exact = float(np.percentile(values, q, method="inverted_cdf"))
            assert abs(got[name] - exact) <= 0.005 + 1e-9, (direction, field, name, exact)
    for direction in ("out", "back"):
        mos = [g["v"][(direction, "mos")] for g in gen]
        counts = [sum(lo <= m < hi for m in mos) for lo, hi in BANDS]
        assert [b["count"] for b in d["mos"][direction]] == counts
    assert sum(b["count"] for b in d["mos"]["out"][2:]) == 2 * 2 * 4  # the loss hours
    # Worst hours: the loss hours (nothing inside), then the slow hour (half inside).
    worst = d["worst_hours"]
    assert [w["hour"] for w in worst[:4]] == want["bad_hours"]
    assert [w["good_pct"] for w in worst[:4]] == [0.0] * 4
    assert worst[4]["hour"] == want["half_hours"][0] and worst[4]["good_pct"] == 50.0
    # A month in another timezone: other hours, some of them not measured.
    ny = t.partner.post("/api/v1/reports", json={"customer_id": t.customer_id,
                        "month": world["month"], "timezone": "America/New_York"})  # fmt: skip
    assert ny.status_code == 201, ny.text
    y, m = map(int, world["month"].split("-"))
    lo = datetime(y, m, 1, tzinfo=ZoneInfo("America/New_York")).timestamp()
    hi = datetime(y + m // 12, m % 12 + 1, 1, tzinfo=ZoneInfo("America/New_York")).timestamp()
    want_ny = _expected(gen, lo, hi)
    got_ny = ny.json()["data"]["availability"]
    assert got_ny["pct"] == pytest.approx(want_ny["pct"], abs=1e-9)
    assert got_ny["total_h"] == (hi - lo) / HOUR
    assert got_ny["not_measured_h"] == want_ny["not_measured_h"] > UNMEASURED[2]
    # The same figures for the one site.
    s = t.partner.post(
        "/api/v1/reports",
        json={"customer_id": t.customer_id, "site_id": t.site_id, "month": world["month"]},
    )
    assert s.status_code == 201, s.text
    assert s.json()["data"]["availability"] == a
    # The page says it; the PDF's first page is an A4 page with something on it.
    page = t.partner.get(f"/api/v1/reports/{rep['id']}/report.html")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert f"{want['pct']:.3f} %" in page.text and "not measured 6 h" in page.text
    low = page.text.lower()
    assert "<script" not in low and "src=" not in low and "url(" not in low  # self-contained
    pdf = t.partner.get(f"/api/v1/reports/{rep['id']}/report.pdf")
    assert pdf.status_code == 200 and pdf.content.startswith(b"%PDF")
    _check_first_page(pdf.content)


def _check_first_page(pdf: bytes) -> None:
    from PIL import Image

    if shutil.which("pdftoppm") is None:
        pytest.skip("pdftoppm (Debian poppler-utils) is not installed")
    dpi = 40
    png = subprocess.run(
        ["pdftoppm", "-f", "1", "-l", "1", "-r", str(dpi), "-png", "-"],
        input=pdf,
        capture_output=True,
        check=True,
        timeout=60,
    ).stdout
    img = Image.open(io.BytesIO(png)).convert("L")
    a4 = (210 / 25.4 * dpi, 297 / 25.4 * dpi)  # A4 in pixels at this resolution
    assert abs(img.width - a4[0]) <= 1 and abs(img.height - a4[1]) <= 1, img.size
    pixels = np.asarray(img)
    ink = float((pixels < 200).mean())
    assert 0.01 < ink < 0.6, f"{ink:.3f} of the page is ink"


def test_another_partner_gets_404_and_bad_input_is_named(world):
    t: Tenant = world["t"]
    other: Tenant = world["other"]
    made = t.partner.post("/api/v1/reports", json={"customer_id": t.customer_id,
                                                   "month": world["month"]})  # fmt: skip
    assert made.status_code == 201, made.text
    rid = made.json()["id"]
    for path in (f"/api/v1/reports/{rid}", f"/api/v1/reports/{rid}/report.html",
                 f"/api/v1/reports/{rid}/report.pdf",
                 f"/api/v1/customers/{t.customer_id}/report-schedule"):  # fmt: skip
        assert other.partner.get(path).status_code == 404, path
    assert other.partner.get("/api/v1/reports").json() == []
    mine = {"customer_id": t.customer_id, "month": world["month"]}
    assert other.partner.post("/api/v1/reports", json=mine).status_code == 404
    cross = {"customer_id": other.customer_id, "site_id": t.site_id, "month": world["month"]}
    assert other.partner.post("/api/v1/reports", json=cross).status_code == 404
    for body, words in [
        ({**mine, "timezone": "Mars/Olympus"}, "timezone 'Mars/Olympus' is unknown"),
        ({**mine, "month": "2026-13"}, "month 2026-13 is out of range"),
        ({"customer_id": t.customer_id}, "give either month, or since and until"),
        ({"customer_id": t.customer_id, "since": "2026-01-01T00:00:00Z",
          "until": "2026-09-01T00:00:00Z"}, "a report covers at most 93 days"),
    ]:  # fmt: skip
        r = t.partner.post("/api/v1/reports", json=body)
        assert r.status_code == 422 and words in r.text, r.text
    # A customer's view (customer viewers): only that customer's reports.
    srv: LiveServer = world["srv"]
    with srv.store.read() as c:
        assert reports.list_reports(c, t.partner_id, t.customer_id)
        assert reports.list_reports(c, t.partner_id, other.customer_id) == []
        with pytest.raises(NotFound):
            reports.get_report(c, t.partner_id, rid, other.customer_id, "html")
    sched = {"day_of_month": 2, "recipients": ["a@example.net"], "timezone": "UTC"}
    path = f"/api/v1/customers/{t.customer_id}/report-schedule"
    assert other.partner.put(path, json=sched).status_code == 404
    bad = t.partner.put(path, json={**sched, "recipients": ["a@example.net\r\nBcc: x@y"]})
    assert bad.status_code == 422 and "recipients" in bad.text


def test_monthly_report_made_once_and_emailed_with_the_pdf(world):
    t: Tenant = world["t"]
    srv: LiveServer = world["srv"]
    path = f"/api/v1/customers/{t.customer_id}/report-schedule"
    sched = {"day_of_month": 3, "recipients": ["cfo@example.net", "it@example.net"]}
    r = t.partner.put(path, json=sched)
    assert r.status_code == 200, r.text
    assert t.partner.get(path).json()["recipients"] == sched["recipients"]
    due_at = world["until"] + 2 * DAY  # the 3rd of the month after, 00:00 UTC
    assert reports.send_monthly(srv.store, due_at - 1) == 0  # not yet due
    made: list[int] = []
    threads = [
        threading.Thread(target=lambda: made.append(reports.send_monthly(srv.store, due_at)))
        for _ in range(3)
    ]
    for th in threads:
        th.start()
    for th in threads:
        th.join(timeout=120)
    assert sum(made) == 1, made
    assert reports.send_monthly(srv.store, due_at + DAY) == 0  # a restart sends nothing more
    monthly = [x for x in t.partner.get("/api/v1/reports").json() if x["kind"] == "monthly"]
    assert len(monthly) == 1 and monthly[0]["emailed_to"] == sched["recipients"]
    deliver_due(srv.state)  # the report, and the e-mails of the tickets the loss opened
    inbox: Inbox = world["inbox"]
    msgs = [(r, email.message_from_bytes(raw, policy=email.policy.default))
            for r, raw in inbox.messages]  # fmt: skip
    [(rcpts, msg)] = [(r, m) for r, m in msgs if "SLA and" in m["Subject"]]
    assert rcpts == sched["recipients"]
    assert msg["Subject"].strip().startswith("SLA and quality report: rep-customer, ")
    want = _expected(world["gen"], world["since"], world["until"])
    body = msg.get_body(("plain",)).get_content()
    assert f"{want['pct']:.3f} %" in body
    signed = t.partner.get("/api/v1/brand").json()["name"]  # the partner's brand signs it
    assert body.rstrip().endswith(signed) and "qos-scout" not in body.lower()
    [att] = list(msg.iter_attachments())
    assert att.get_filename() == f"sla-report-{world['month']}.pdf"
    assert att.get_content().startswith(b"%PDF")
    assert deliver_due(srv.state) == 0


def test_ticket_sla_against_targets():
    targets = reports.DEFAULT_SLA_TARGETS
    crit = targets["critical"]
    t0 = 1_000_000.0
    met = {"severity": "critical", "opened_at": t0, "acked_at": t0 + crit["ack_s"] / 2,
           "resolved_at": t0 + crit["resolve_s"] / 2}  # fmt: skip
    assert reports.ticket_sla(met, targets, t0 + DAY)["out_of_sla"] is False
    late = {**met, "acked_at": t0 + crit["ack_s"] + 1}
    assert reports.ticket_sla(late, targets, t0 + DAY)["why"] == "acknowledged late"
    running = {**met, "acked_at": None, "resolved_at": None}
    got = reports.ticket_sla(running, targets, t0 + crit["resolve_s"] + 1)
    assert got["why"] == "not acknowledged in time, not resolved in time"
    assert got["ack_s"] is None and got["resolve_s"] is None
    # Resolved without an acknowledgement: the resolution is the acknowledgement.
    quick = {**met, "acked_at": None, "resolved_at": t0 + 60}
    assert reports.ticket_sla(quick, targets, t0 + DAY) == {
        "ack_s": 60.0,
        "resolve_s": 60.0,
        "out_of_sla": False,
        "why": "",
    }


def test_web_page_lists_the_partners_reports_only(world):
    from tests.collector.test_web_security import _key, _login

    t: Tenant = world["t"]
    other: Tenant = world["other"]
    srv: LiveServer = world["srv"]
    # its own report: under xdist this test may run without the module's earlier tests
    made = t.partner.post("/api/v1/reports", json={"customer_id": t.customer_id,
                                                   "month": world["month"]})  # fmt: skip
    assert made.status_code == 201, made.text
    mine = t.partner.get("/api/v1/reports").json()
    assert made.json()["id"] in {r["id"] for r in mine}
    ui = _login(srv, _key(t.partner))
    page = ui.get("/ui/reports")
    assert page.status_code == 200
    for r in mine:
        assert f"/ui/reports/{r['id']}/report.pdf" in page.text
    html = ui.get(f"/ui/reports/{mine[0]['id']}/report.html")
    assert html.status_code == 200 and "Availability of voice quality" in html.text
    assert "style-src 'unsafe-inline'" in html.headers["content-security-policy"]
    theirs = _login(srv, _key(other.partner))
    assert mine[0]["id"] not in theirs.get("/ui/reports").text
    assert theirs.get(f"/ui/reports/{mine[0]['id']}/report.pdf").status_code == 404


def test_tickets_and_readiness_tests_of_the_period(world):
    """The tickets the loss opened (this month, as ingest ran now) with their times, against
    the tickets API; a readiness test queued in the month, with its state as verdict."""
    from collector import readiness

    t: Tenant = world["t"]
    srv: LiveServer = world["srv"]
    with srv.store.write() as c:
        job = readiness.queue(c, t.partner_id, t.site_id, {"responder": "r.example.net"},
                              None, False, world["since"] + 3 * DAY)  # fmt: skip
    month = t.partner.post("/api/v1/reports", json={"customer_id": t.customer_id,
                                                    "month": world["month"]}).json()  # fmt: skip
    [test] = month["data"]["readiness"]
    assert test["id"] == job["id"] and test["verdict"] == "queued"
    now = datetime.now(UTC)
    start = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    until = now.replace(minute=0, second=0, microsecond=0) + timedelta(hours=1)
    body = {"customer_id": t.customer_id, "since": start.isoformat(), "until": until.isoformat()}
    r = t.partner.post("/api/v1/reports", json=body)
    assert r.status_code == 201, r.text
    got = {x["id"]: x for x in r.json()["data"]["tickets"]}
    api = t.partner.get("/api/v1/tickets", params={"site_id": t.site_id, "state": "resolved"})
    want = api.json()
    assert want and set(got) == {x["id"] for x in want}
    for x in want:
        opened = datetime.fromisoformat(x["opened_at"]).timestamp()
        resolved = datetime.fromisoformat(x["resolved_at"]).timestamp()
        assert got[x["id"]]["resolve_s"] == pytest.approx(resolved - opened, abs=1e-5)  # ISO: µs
        assert got[x["id"]]["out_of_sla"] is False  # resolved by the next good results


def test_title_is_one_line_whatever_the_names():
    since, until = reports.month_range(2026, 2, "Europe/Berlin")
    data = {"customer": {"name": "Acme\r\nBcc: x@example.net"}, "site": {"name": "HQ\n"},
            "since": since, "until": until, "timezone": "Europe/Berlin"}  # fmt: skip
    title = reports.title_of(data)
    assert title.isprintable() and "Bcc: x@example.net" in title
    assert title.endswith("2026-02-01 00:00 to 2026-03-01 00:00")


def test_nearest_rank_of_a_histogram_is_numpys_inverted_cdf():
    rng = random.Random(5)
    for n in (1, 2, 20, 100, 101, 1000):
        values = [round(rng.uniform(0, 5), 2) for _ in range(n)]
        hist: dict[float, int] = defaultdict(int)
        for v in values:
            hist[v] += 1
        for pct in (50, 95, 99):
            want = float(np.percentile(values, pct, method="inverted_cdf"))
            assert reports.hist_quantile(hist, pct) == want, (n, pct)
