"""Which series exist, and a check that a PromQL expression names only those.

Result families, their labels and the label values each probe gives them come from the
measurement models (`agent.wire.exposition.FAMILIES`, `agent.wire.measurements.exported_series`);
the families the collector builds itself (site state, tickets, ingest counters ...) come
from `collector.metrics.StoreCollector`, run on a small store with one partner, site, agent,
result and notification channel so that every family has a sample to read its labels from.

`problems(expr, known)` reads the selectors of an expression (`name{label op "value", ...}`),
the labels of `by`/`without` clauses and of `label_values(selector, label)`, and returns one
sentence per thing no declaration matches: an unknown family, a label the family lacks, a
label value (`direction`, `stat`, `metric`, `probe`) no measurement declares for it, or a
combination no single probe declares (`qos_scout_loss_pct{probe="sip_call", direction="rtt"}`).
"""

from __future__ import annotations

import difflib
import re
import time
from dataclasses import dataclass
from pathlib import Path

from agent.wire.exposition import FAMILIES
from agent.wire.measurements import PROBE_KINDS, exported_series
from agent.wire.results import SCHEMA_VERSION
from collector import tenants
from collector.config import CollectorConfig
from collector.evaluation import RuleBook
from collector.ingest import ingest
from collector.metrics import RESULT_LABELS, StoreCollector
from collector.stats import Stats
from collector.store import Store

PREFIX = "qos_scout_"


@dataclass(frozen=True)
class Family:
    """A series name as a query spells it (with `_total`, `_bucket` ... where exposed)."""

    name: str
    labels: frozenset[str]
    # Result families: the label sets the models declare (probe and the family's own
    # labels, e.g. {"probe": "udp", "direction": "out"}); None for the collector's own.
    declared: tuple[dict[str, str], ...] | None


def result_families() -> dict[str, Family]:
    """The families declared on the measurement models, with their probes and label values."""
    declared: dict[str, list[dict[str, str]]] = {name: [] for name in FAMILIES}
    for probe in PROBE_KINDS:
        for s in exported_series(probe):
            declared[s.family].append({"probe": probe, **dict(s.labels)})
    return {
        PREFIX + name: Family(
            PREFIX + name, frozenset([*RESULT_LABELS, *fam.labels]), tuple(declared[name])
        )
        for name, fam in FAMILIES.items()
    }


def _sample_names(name: str, kind: str) -> list[str]:
    if kind == "counter":
        return [f"{name}_total"]
    if kind == "histogram":
        return [f"{name}_bucket", f"{name}_sum", f"{name}_count"]
    return [name]


def collector_families(workdir: Path) -> dict[str, Family]:
    """Every family `StoreCollector` builds, run on a store holding one of everything."""
    config = CollectorConfig(
        db=f"sqlite:///{workdir / 'families.sqlite3'}",
        notifications=[{"type": "webhook", "url": "http://127.0.0.1:9/hook", "scope": "operator"}],
    )
    store = Store(config)
    store.migrate()
    now = time.time()
    try:
        with store.write() as c:
            partner, _ = tenants.create_partner(c, "p", now)
            customer = tenants.create_customer(c, partner["id"], "c", "", now)
            values = {"name": "s", "contracted_down_bps": 10, "contracted_up_bps": 10}
            site = tenants.create_site(c, partner["id"], customer["id"], values, now)
            token = tenants.create_token(c, partner["id"], site["id"], 60, now)["token"]
            agent_id = tenants.enroll(c, token, "a", "0", now)["agent_id"]
            agent = tenants.get_agent(c, partner["id"], agent_id)
        item = {
            "schema_version": SCHEMA_VERSION,
            "probe": "icmp",
            "target": "t",
            "started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now)),
            "duration_ms": 1.0,
            "success": False,
            "error": {"class": "ProbeTimeoutError", "category": "timeout", "message": "m"},
        }
        ingest(store, RuleBook(config), agent, [item], now)
        out: dict[str, Family] = {}
        for metric in StoreCollector(store, Stats()).collect():
            for name in _sample_names(metric.name, metric.type):
                labels = {k for s in metric.samples if s.name == name for k in s.labels}
                out[name] = Family(name, frozenset(labels), None)
        return out
    finally:
        store.dispose()


def known_families(workdir: Path) -> dict[str, Family]:
    """Result families (from the models) over the collector's families; the series every
    result has (`probe_success`, `result_timestamp_seconds`) may carry any probe kind."""
    out = collector_families(workdir)
    for name, fam in out.items():
        if "probe" in fam.labels:
            out[name] = Family(name, fam.labels, tuple({"probe": p} for p in PROBE_KINDS))
    results = result_families()
    for name, fam in results.items():
        built = out.get(name)
        if built is None or (built.labels and built.labels != fam.labels):
            raise AssertionError(f"the collector does not build {name} as declared: {built}")
    return {**out, **results}


# ------------------------------------------------------------------------- the check

SELECTOR = re.compile(r"(?<![\w:])(qos_scout[\w:]*)\s*(\{[^{}]*\})?")
MATCHER = re.compile(r'\s*([A-Za-z_]\w*)\s*(=~|!~|!=|=)\s*"((?:[^"\\]|\\.)*)"\s*(?:,|$)')
GROUPING = re.compile(r"\b(?:by|without)\s*\(([^()]*)\)")
LABEL_VALUES = re.compile(r"^label_values\((.*),\s*(\w+)\s*\)$")
ALTERNATION = re.compile(r"[\w-]+(?:\|[\w-]+)*")


def _matchers(braces: str) -> list[tuple[str, str, str]] | None:
    """(label, op, value) of `{...}`; None when something in it is not a matcher."""
    body, pos, out = braces[1:-1], 0, []
    while body[pos:].strip():
        m = MATCHER.match(body, pos)
        if m is None:
            return None
        out.append((m.group(1), m.group(2), m.group(3).replace('\\"', '"')))
        pos = m.end()
    return out


def _matches(op: str, pattern: str, value: str | None) -> bool:
    if value is None:
        return False
    return value == pattern if op == "=" else re.fullmatch(pattern, value) is not None


def _check_values(fam: Family, matchers: list[tuple[str, str, str]]) -> list[str]:
    """Label values of a result family against the label sets the models declare."""
    assert fam.declared is not None
    declared_labels = {k for d in fam.declared for k in d}
    wanted = [
        (label, op, value)
        for label, op, value in matchers
        if op in ("=", "=~") and label in declared_labels and "$" not in value
    ]
    out = []
    for label, op, value in wanted:
        values = sorted({d[label] for d in fam.declared if label in d})
        if op == "=" or ALTERNATION.fullmatch(value):
            bad = [v for v in value.split("|") if v not in values]
        else:
            bad = [] if any(_matches(op, value, v) for v in values) else [value]
        if bad:
            out.append(
                f'{fam.name}{{{label}{op}"{value}"}}: no measurement declares {label}='
                f"{', '.join(repr(b) for b in bad)} for {fam.name} (declared: {', '.join(values)})"
            )
    if out or not wanted:
        return out
    if not any(all(_matches(op, v, d.get(lab)) for lab, op, v in wanted) for d in fam.declared):
        sel = ", ".join(f'{lab}{op}"{v}"' for lab, op, v in wanted)
        out.append(f"{fam.name}{{{sel}}}: no single probe declares this combination")
    return out


def problems(
    expr: str, known: dict[str, Family], records: frozenset[str] = frozenset()
) -> list[str]:
    """What in `expr` names a series no model declares and the collector does not build."""
    out: list[str] = []
    named: list[Family] = []
    lv = LABEL_VALUES.match(expr.strip())
    if lv:
        expr, lv_label = lv.group(1), lv.group(2)
    for m in SELECTOR.finditer(expr):
        name, braces = m.group(1), m.group(2)
        if ":" in name:
            if name not in records:
                out.append(f"{name}: no recording rule defines it")
            continue
        fam = known.get(name)
        if fam is None:
            near = difflib.get_close_matches(name, list(known), n=1)
            hint = f" (did you mean {near[0]}?)" if near else ""
            out.append(f"{name}: no measurement model declares it and the collector does not "
                       f"build it{hint}")  # fmt: skip
            continue
        named.append(fam)
        matchers = _matchers(braces) if braces else []
        if matchers is None:
            out.append(f"{name}{braces}: cannot read the label matchers")
            continue
        for label, _, _ in matchers:
            if label not in fam.labels:
                have = ", ".join(sorted(fam.labels)) or "none"
                out.append(f"{name}: has no label {label!r} (labels: {have})")
        if fam.declared is not None:
            out += _check_values(fam, matchers)
    grouped = [g.strip() for m in GROUPING.finditer(expr) for g in m.group(1).split(",")]
    if lv:
        grouped.append(lv_label)
    for label in filter(None, grouped):
        if named and not any(label in f.labels for f in named):
            out.append(f"{label!r} is not a label of {', '.join(f.name for f in named)}")
    return out
