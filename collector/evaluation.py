"""Rule evaluation as results arrive, and the periodic silent-agent check.

One batch costs a constant number of queries: the site's rule states are read at once,
updated in memory, and written back with one executemany.

The states live in the database (`rule_state`), so every collector evaluating a site sees
the same streaks. Collectors behind one load balancer evaluate a site one at a time: on
PostgreSQL a transaction-scoped advisory lock per site is taken before its states are read
(two batches of one site on two collectors would otherwise each count from the same state
and lose one's count); on SQLite the write transaction already admits one writer.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import Any

import sqlalchemy as sa

from collector import tickets
from collector.config import CollectorConfig
from collector.context import SiteContext, load_site_context
from collector.hysteresis import RuleState, step
from collector.locks import lock_site, take_silent_check
from collector.rules import (
    Level,
    Rule,
    apply_overrides,
    default_rules,
    effective_rules,
    evaluate,
    silence_level,
)
from collector.schema import agents, rule_state


@dataclass(frozen=True)
class StoredResult:
    id: str
    probe: str
    target: str
    started_at: float
    success: bool
    measurement: dict[str, Any] | None


QUIET = RuleState()


class RuleBook:
    """Effective rules: defaults and config overrides computed once, then partner and site."""

    CONTEXT_TTL_S = 300.0

    def __init__(self, config: CollectorConfig) -> None:
        self.config = config
        self.base = apply_overrides(default_rules(config.silent_agent_timeout_s), config.rules)
        self._contexts: dict[str, tuple[float, SiteContext]] = {}
        self._by_probe: dict[int, tuple[SiteContext, dict[str, list[Rule]]]] = {}
        self._lock = threading.Lock()

    def site_context(self, conn: sa.Connection, site_id: str) -> SiteContext:
        """The site's context, cached (changes made through this process invalidate it at
        once; every other process at its next rules epoch read, within EPOCH_CHECK_S)."""
        now = time.monotonic()
        with self._lock:
            hit = self._contexts.get(site_id)
        if hit and hit[0] > now:
            return hit[1]
        ctx = load_site_context(conn, site_id)
        with self._lock:
            if len(self._contexts) > 50_000:
                self._contexts.clear()
            self._contexts[site_id] = (now + self.CONTEXT_TTL_S, ctx)
        return ctx

    def invalidate(self) -> None:
        with self._lock:
            self._contexts.clear()
            self._by_probe.clear()

    def by_probe(self, ctx: SiteContext) -> dict[str, list[Rule]]:
        """Enabled result rules of the site by probe name (memoised per context object)."""
        with self._lock:
            hit = self._by_probe.get(id(ctx))
        if hit is not None and hit[0] is ctx:
            return hit[1]
        out: dict[str, list[Rule]] = {}
        for rule in self.for_site(ctx).values():
            if rule.enabled and rule.op != "silent":
                for p in rule.probes:
                    out.setdefault(p, []).append(rule)
        with self._lock:
            if len(self._by_probe) > 50_000:
                self._by_probe.clear()
            self._by_probe[id(ctx)] = (ctx, out)
        return out

    def for_site(self, ctx: SiteContext) -> dict[str, Rule]:
        return effective_rules(self.base, ctx.partner_overrides, ctx.site.get("rule_overrides"))


def _load_states(
    conn: sa.Connection, site_id: str, rule_ids: Iterable[str]
) -> dict[tuple[str, str], RuleState]:
    q = sa.select(rule_state).where(
        rule_state.c.site_id == site_id, rule_state.c.rule_id.in_(list(rule_ids))
    )
    return {
        (r.rule_id, r.target): RuleState(
            r.bad_count, r.good_count, r.active, r.level, list(r.bad_results or [])
        )
        for r in conn.execute(q)
    }


def _save_states(
    conn: sa.Connection,
    store_insert: Any,
    site_id: str,
    states: dict[tuple[str, str], RuleState],
    now: float,
) -> None:
    if not states:
        return
    rows = [
        {
            "site_id": site_id,
            "rule_id": rid,
            "target": target,
            "bad_count": s.bad_count,
            "good_count": s.good_count,
            "active": s.active,
            "level": s.level,
            "bad_results": s.bad_results,
            "updated_at": now,
        }
        for (rid, target), s in states.items()
    ]
    stmt = store_insert(rule_state)
    stmt = stmt.on_conflict_do_update(
        index_elements=["site_id", "rule_id", "target"],
        set_={
            k: stmt.excluded[k]
            for k in ("bad_count", "good_count", "active", "level", "bad_results", "updated_at")
        },
    )
    conn.execute(stmt, rows)


def _apply(
    conn: sa.Connection, config: CollectorConfig, ctx: SiteContext, rule: Rule, target: str,
    state: RuleState, action: str, now: float,
) -> None:  # fmt: skip
    if action == "trip":
        if tickets.trip(conn, config, ctx, rule, target, state.level, state.bad_results,
                        now) is None:  # fmt: skip
            # suppressed in a maintenance window: the streak starts over, so a condition
            # still there when the window ends trips (and opens its ticket) then
            state.active, state.bad_count, state.good_count = False, 0, 0
            state.level, state.bad_results = "ok", []
    elif action == "escalate":
        tickets.escalate(conn, config, ctx, rule, target, state.level, now)
    elif action == "clear":
        tickets.clear(conn, config, ctx, rule, target, now)


def evaluate_results(
    conn: sa.Connection, store_insert: Any, book: RuleBook, ctx: SiteContext,
    stored: list[StoredResult], now: float,
) -> int:  # fmt: skip
    """Feed newly stored results to the site's rules; returns the number of evaluations."""
    by_probe = book.by_probe(ctx)
    contracted = ctx.contracted
    evals: list[tuple[Rule, str, Level, str]] = []
    for r in sorted(stored, key=lambda x: x.started_at):
        for rule in by_probe.get(r.probe, ()):
            level, _value = evaluate(rule, r.success, r.measurement, contracted)
            if level is not None:
                evals.append((rule, r.target, level, r.id))
    if not evals:
        return 0
    lock_site(conn, ctx.site_id)
    states = _load_states(conn, ctx.site_id, {e[0].id for e in evals})
    before = {k: replace(v, bad_results=list(v.bad_results)) for k, v in states.items()}
    for rule, target, level, rid in evals:
        st = states.setdefault((rule.id, target), RuleState())
        action = step(st, rule, level, rid)
        if action:
            _apply(conn, book.config, ctx, rule, target, st, action, now)
    # Write only what changed (a quiet key that stays good is never written).
    changed = {k: v for k, v in states.items() if v != before.get(k, QUIET)}
    _save_states(conn, store_insert, ctx.site_id, changed, now)
    return len(evals)


def check_silent_agents(conn: sa.Connection, store_insert: Any, book: RuleBook, now: float) -> int:
    """Evaluate `agent_silent` for agents that are silent, or whose condition is active.
    One collector at a time runs it (another one running it now: nothing to do); sites are
    locked in one order, so it never deadlocks with ingest."""
    if not take_silent_check(conn):
        return 0
    base_limit = min(
        (r.critical if r.critical is not None else r.warning or 0.0)
        for r in [book.base["agent_silent"]]
    )
    tracked = {
        (r.site_id, r.target)
        for r in conn.execute(
            sa.select(rule_state.c.site_id, rule_state.c.target).where(
                rule_state.c.rule_id == "agent_silent"
            )
        )
    }
    rows = conn.execute(
        sa.select(agents.c.id, agents.c.site_id, agents.c.last_seen_at).order_by(
            agents.c.site_id, agents.c.id
        )
    ).all()
    changes = 0
    ctx_cache: dict[str, SiteContext] = {}
    for agent_id, site_id, last_seen in rows:
        silent_s = now - (last_seen or 0.0)
        # Quick skip for the common case: a healthy agent with no state (site overrides
        # may lower the limit, so only skip below a generous fraction of the default).
        if (site_id, agent_id) not in tracked and silent_s < min(base_limit, 60.0):
            continue
        ctx = ctx_cache.get(site_id) or load_site_context(conn, site_id)
        ctx_cache[site_id] = ctx
        rule = book.for_site(ctx).get("agent_silent")
        if rule is None or not rule.enabled:
            continue
        level = silence_level(rule, silent_s)
        if level == "ok" and (site_id, agent_id) not in tracked:
            continue
        lock_site(conn, site_id)
        states = _load_states(conn, site_id, ["agent_silent"])
        st = states.get(("agent_silent", agent_id), RuleState())
        action = step(st, rule, level, None)
        if action:
            _apply(conn, book.config, ctx, rule, agent_id, st, action, now)
            changes += 1
        if not st.active and st.bad_count == 0:
            conn.execute(
                rule_state.delete().where(
                    rule_state.c.site_id == site_id,
                    rule_state.c.rule_id == "agent_silent",
                    rule_state.c.target == agent_id,
                )
            )
        else:
            _save_states(conn, store_insert, site_id, {("agent_silent", agent_id): st}, now)
    return changes
