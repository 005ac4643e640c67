"""The pure halves of the portal: a ticket's SLA clock from its events and the targets (time
passed in), and "is this maintenance window active at t" for one-off and weekly windows
across timezones and both DST changes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from pydantic import ValidationError

from collector import maintenance, sla
from collector.maintenance import Weekly

TARGETS = sla.targets_for({"critical": sla.Target(600.0, 3600.0)})
T0 = 1_800_000_000.0


def test_an_unanswered_ticket_runs_then_breaches_its_response_target():
    running = sla.clock("critical", T0, [(T0, "opened")], TARGETS, T0 + 240)
    assert running.response.state == "running"
    assert running.response.left_s == 600 - 240
    assert running.response.due_at == T0 + 600
    late = sla.clock("critical", T0, [(T0, "opened")], TARGETS, T0 + 601)
    assert late.response.state == "breached" and late.breached
    assert sla.describe(late.response) == "breached by 1 s"


def test_acknowledged_in_time_meets_response_and_resolution_counts_open_spells_only():
    events = [
        (T0, "opened"), (T0 + 300, "acknowledged"), (T0 + 1000, "auto_resolved"),
        (T0 + 5000, "reopened"), (T0 + 7000, "resolved"),
    ]  # fmt: skip
    c = sla.clock("critical", T0, events, TARGETS, T0 + 9000)
    assert c.response.state == "met" and c.response.elapsed_s == 300
    # open 1000 s, resolved 4000 s (not counted), open again 2000 s: 3000 s of 3600
    assert c.resolution.state == "met" and c.resolution.elapsed_s == 3000
    still_open = sla.clock("critical", T0, events[:4], TARGETS, T0 + 7700)
    assert still_open.resolution.state == "breached"
    assert still_open.resolution.elapsed_s == 1000 + 2700


def test_resolved_before_any_ack_answers_the_response_clock_and_defaults_apply():
    c = sla.clock("warning", T0, [(T0 + 90, "resolved"), (T0, "opened")], TARGETS, T0 + 1e6)
    assert c.response.elapsed_s == 90 and c.response.state == "met"
    assert c.response.target_s == sla.DEFAULT_TARGETS["warning"][0]
    with pytest.raises(KeyError):
        sla.clock("info", T0, [], TARGETS, T0)


def _at(text: str, tz: str) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=ZoneInfo(tz)).timestamp()


def test_weekly_window_in_its_timezone_and_across_midnight():
    w = Weekly(kind="weekly", weekday="friday", start="22:00", duration_min=240,
               timezone="America/New_York")  # fmt: skip
    # 2026-12-04 is a Friday
    assert not w.active_at(_at("2026-12-04T21:59:59", "America/New_York"))
    assert w.active_at(_at("2026-12-04T22:00:00", "America/New_York"))
    assert w.active_at(_at("2026-12-05T01:59:59", "America/New_York"))  # Saturday, past midnight
    assert not w.active_at(_at("2026-12-05T02:00:00", "America/New_York"))
    assert w.active_at(_at("2026-12-11T23:00:00", "America/New_York"))  # the next week
    assert not w.active_at(_at("2026-12-10T23:00:00", "America/New_York"))  # a Thursday
    # the same instant read in UTC: 03:00 on Saturday
    assert w.active_at(datetime(2026, 12, 5, 3, 0, tzinfo=UTC).timestamp())


def test_weekly_window_keeps_its_wall_clock_start_across_dst_changes():
    w = Weekly(kind="weekly", weekday="sunday", start="09:00", duration_min=60,
               timezone="Europe/Berlin")  # fmt: skip
    # winter (UTC+1): 08:00 UTC; summer (UTC+2): 07:00 UTC; both are 09:00 local
    assert w.active_at(datetime(2026, 3, 22, 8, 0, tzinfo=UTC).timestamp())
    assert not w.active_at(datetime(2026, 3, 22, 7, 30, tzinfo=UTC).timestamp())
    assert w.active_at(datetime(2026, 3, 29, 7, 0, tzinfo=UTC).timestamp())  # DST day
    assert not w.active_at(datetime(2026, 3, 29, 8, 0, tzinfo=UTC).timestamp())


def test_a_start_in_the_spring_gap_begins_at_the_change_and_a_doubled_one_at_its_first():
    w = Weekly(kind="weekly", weekday="sunday", start="02:30", duration_min=60,
               timezone="Europe/Berlin")  # fmt: skip
    change = datetime(2026, 3, 29, 1, 0, tzinfo=UTC).timestamp()  # 02:00 CET -> 03:00 CEST
    assert not w.active_at(change - 1)
    assert w.active_at(change)
    assert w.active_at(change + 3599) and not w.active_at(change + 3600)  # elapsed 60 min
    # 2026-10-25: 02:30 happens twice (CEST, then CET); the window starts at the first
    first = datetime(2026, 10, 25, 0, 30, tzinfo=UTC).timestamp()
    assert not w.active_at(first - 1) and w.active_at(first)
    assert not w.active_at(first + 3600)  # the second 02:30 (CET) is not a new start


def test_once_window_and_what_is_refused():
    start = datetime(2026, 12, 4, 8, 0, tzinfo=UTC)
    end = start + timedelta(hours=2)
    s = maintenance.parse_schedule(
        {"kind": "once", "starts_at": start.isoformat(), "ends_at": end.isoformat()}
    )
    assert s.active_at(start.timestamp()) and not s.active_at(start.timestamp() - 1)
    assert not s.active_at(start.timestamp() + 7200)
    assert maintenance.active([s], start.timestamp() + 60)
    bad = [
        ({"kind": "once", "starts_at": "2026-12-04T08:00:00", "ends_at": start.isoformat()},
         "starts_at must carry a timezone"),
        ({"kind": "once", "starts_at": start.isoformat(), "ends_at": start.isoformat()},
         "ends_at must be after starts_at"),
        ({"kind": "weekly", "weekday": "sunday", "start": "9:00", "duration_min": 5,
          "timezone": "UTC"}, "String should match pattern"),
        ({"kind": "weekly", "weekday": "sunday", "start": "09:00", "duration_min": 5,
          "timezone": "Mars/Olympus"}, "unknown timezone 'Mars/Olympus'"),
        ({"kind": "weekly", "weekday": "someday", "start": "09:00", "duration_min": 5,
          "timezone": "UTC"}, "weekday"),
    ]  # fmt: skip
    for data, message in bad:
        with pytest.raises(ValidationError, match=message):
            maintenance.parse_schedule(data)
