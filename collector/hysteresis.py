"""Pure hysteresis per (site, rule, target): trip after N bad evaluations, clear after M good."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from collector.rules import SEVERITY_RANK, Level, Rule

Action = Literal["trip", "escalate", "clear"]
MAX_EVIDENCE = 20


@dataclass
class RuleState:
    bad_count: int = 0
    good_count: int = 0
    active: bool = False
    level: str = "ok"  # worst level of the current bad streak or open condition
    bad_results: list[str] = field(default_factory=list)


def step(state: RuleState, rule: Rule, level: Level, result_id: str | None) -> Action | None:
    """Feed one evaluation; returns what the ticketing must do, if anything."""
    if level == "ok":
        state.bad_count = 0
        if not state.active:
            # Good evaluations only count towards clearing an active condition; a quiet
            # state stays all zero, so steady good results change (and write) nothing.
            state.good_count = 0
            state.level = "ok"
            state.bad_results = []
            return None
        state.good_count += 1
        if state.good_count >= rule.clear_after:
            state.active = False
            state.good_count = 0
            state.level = "ok"
            state.bad_results = []
            return "clear"
        return None
    state.bad_count += 1
    state.good_count = 0
    if result_id is not None:
        state.bad_results = [*state.bad_results, result_id][-MAX_EVIDENCE:]
    worse = SEVERITY_RANK[level] > SEVERITY_RANK.get(state.level, 0)
    if worse:
        state.level = level
    if not state.active:
        if state.bad_count >= rule.trip_after:
            state.active = True
            return "trip"
        return None
    return "escalate" if worse else None
