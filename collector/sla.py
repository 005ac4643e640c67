"""Ticket SLA clocks: a ticket's response and resolution clocks computed from its events and
the partner's targets per severity, at a time passed in (pure: no I/O, no clock read).

- **Response**: from the ticket's opening to its first acknowledgement (a ticket resolved
  before anyone acknowledged it counts as answered when it was resolved).
- **Resolution**: the time the ticket spent not resolved, summed over its open spells (it
  stops at each resolution and runs again from a reopening), against the resolution target.

A clock is `met` (stopped within its target), `running` (within it, `left_s` to go),
`breached` (running past its target, or stopped after it). The severity read is the
ticket's current one (an escalated ticket is held to the tighter target).
The store side (targets per partner, the clocks of a list of tickets) is in
collector/portal.py.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

ClockState = Literal["met", "running", "breached"]
Severity = Literal["critical", "warning"]

# Defaults for a partner that set none (seconds): acknowledge / resolve.
DEFAULT_TARGETS: dict[str, tuple[float, float]] = {
    "critical": (3600.0, 8 * 3600.0),
    "warning": (4 * 3600.0, 3 * 86400.0),
}
SEVERITIES = tuple(DEFAULT_TARGETS)
OPENING = frozenset({"opened", "reopened"})
ANSWER = frozenset({"acknowledged"})
CLOSING = frozenset({"resolved", "auto_resolved"})


@dataclass(frozen=True)
class Target:
    response_s: float
    resolution_s: float


@dataclass(frozen=True)
class Clock:
    """One clock: how long it ran (`elapsed_s`), against `target_s`; `left_s` < 0 once
    breached; `due_at`: when a running clock breaches (None when stopped)."""

    state: ClockState
    elapsed_s: float
    target_s: float
    left_s: float
    due_at: float | None

    def as_dict(self) -> dict[str, Any]:
        return {
            "state": self.state,
            "elapsed_s": round(self.elapsed_s, 3),
            "target_s": self.target_s,
            "left_s": round(self.left_s, 3),
            "due_at": self.due_at,
        }


@dataclass(frozen=True)
class SlaClock:
    severity: str
    response: Clock
    resolution: Clock

    @property
    def breached(self) -> bool:
        return "breached" in (self.response.state, self.resolution.state)

    def as_dict(self) -> dict[str, Any]:
        return {
            "severity": self.severity,
            "breached": self.breached,
            "response": self.response.as_dict(),
            "resolution": self.resolution.as_dict(),
        }


def targets_for(overrides: Mapping[str, Target] | None = None) -> dict[str, Target]:
    """The defaults with a partner's targets over them."""
    out = {sev: Target(r, s) for sev, (r, s) in DEFAULT_TARGETS.items()}
    out.update(overrides or {})
    return out


def _clock(elapsed: float, target: float, running: bool, now: float) -> Clock:
    left = target - elapsed
    if running:
        return Clock("breached" if left < 0 else "running", elapsed, target, left,
                     now + left if left >= 0 else None)  # fmt: skip
    return Clock("breached" if left < 0 else "met", elapsed, target, left, None)


def clock(
    severity: str,
    opened_at: float,
    events: Iterable[tuple[float, str]],
    targets: Mapping[str, Target],
    now: float,
) -> SlaClock:
    """The SLA clock of a ticket opened at `opened_at` whose events are (at, kind) pairs
    (in any order; kinds as collector/tickets.py writes them), at `now`.

    Raises KeyError when `targets` has no entry for the severity."""
    target = targets[severity]
    answered: float | None = None
    spell_start: float | None = opened_at
    spent = 0.0
    for at, kind in sorted(events, key=lambda e: e[0]):
        if at < opened_at:
            continue
        if kind in ANSWER or kind in CLOSING:
            if answered is None:
                answered = at
        if kind in CLOSING and spell_start is not None:
            spent += at - spell_start
            spell_start = None
        elif kind in OPENING and spell_start is None:
            spell_start = at
    running = spell_start is not None
    if running:
        assert spell_start is not None
        spent += max(0.0, now - spell_start)
    response = (
        _clock(answered - opened_at, target.response_s, False, now)
        if answered is not None
        else _clock(max(0.0, now - opened_at), target.response_s, True, now)
    )
    return SlaClock(severity, response, _clock(spent, target.resolution_s, running, now))


def describe(c: Clock) -> str:
    """A clock for a person: "met (12 min of 1 h)", "2 h 5 min left", "breached by 3 h"."""
    if c.state == "met":
        return f"met ({duration(c.elapsed_s)} of {duration(c.target_s)})"
    if c.state == "running":
        return f"{duration(c.left_s)} left"
    return f"breached by {duration(-c.left_s)}"


def duration(s: float) -> str:
    s = max(0.0, s)
    if s < 60:
        return f"{s:.0f} s"
    if s < 3600:
        return f"{s // 60:.0f} min"
    if s < 86400:
        h, m = divmod(s // 60, 60)
        return f"{h:.0f} h {m:.0f} min" if m else f"{h:.0f} h"
    d, h = divmod(s // 3600, 24)
    return f"{d:.0f} d {h:.0f} h" if h else f"{d:.0f} d"
