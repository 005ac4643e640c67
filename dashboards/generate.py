"""Generate the Grafana dashboards (JSON) from code, so they track the collector's metric names.

Run `python dashboards/generate.py` to rewrite `dashboards/json/*.json`; `--check` exits 1
when the committed files differ from what the code generates (the test suite runs it).
The boards read the Prometheus datasource provisioned as uid `prometheus`, but
`site-history`, which reads the collector's hourly and daily roll-ups from PostgreSQL
(uid `qos-scout-pg`, a read-only role: collector/readonly.py) so that a range longer than
Prometheus keeps still has data.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from grafana_foundation_sdk.builders import (
    bargauge,
    common,
    heatmap,
    histogram,
    prometheus,
    stat,
    table,
    timeseries,
)
from grafana_foundation_sdk.builders import dashboard as dash
from grafana_foundation_sdk.cog import builder as cogbuilder
from grafana_foundation_sdk.cog import variants as cogvariants
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.cog.runtime import UnknownDataquery
from grafana_foundation_sdk.models import common as common_model
from grafana_foundation_sdk.models import dashboard as model
from grafana_foundation_sdk.models.prometheus import PromQueryFormat

from collector.history import HOUR_MAX_S

OUT = Path(__file__).resolve().parent / "json"
PROMETHEUS = model.DataSourceRef(type_val="prometheus", uid="prometheus")
POSTGRES = model.DataSourceRef(type_val="grafana-postgresql-datasource", uid="qos-scout-pg")

# Label matchers every result series of a board is filtered by.
SCOPE = 'partner=~"$partner", customer=~"$customer", site=~"$site"'
SITE_SCOPE = f'{SCOPE}, target=~"$target"'


def q(expr: str, legend: str = "", *, instant: bool = False) -> prometheus.Dataquery:
    query = prometheus.Dataquery().expr(expr).datasource(PROMETHEUS)
    if legend:
        query = query.legend_format(legend)
    return query.instant() if instant else query.range()


def var(name: str, label: str, query: str) -> dash.QueryVariable:
    return (
        dash.QueryVariable(name)
        .label(label)
        .datasource(PROMETHEUS)
        .query({"query": query, "refId": f"var-{name}"})
        .refresh(model.VariableRefresh.ON_TIME_RANGE_CHANGED)
        .sort(model.VariableSort.ALPHABETICAL_ASC)
        .multi(True)
        .include_all(True)
        .all_value(".*")
        .current(model.VariableOption(selected=True, text="All", value="$__all"))
    )


def tenancy_vars(with_target: bool) -> list[dash.QueryVariable]:
    out = [
        var("partner", "Partner", "label_values(qos_scout_site_state, partner)"),
        var(
            "customer",
            "Customer",
            'label_values(qos_scout_site_state{partner=~"$partner"}, customer)',
        ),
        var(
            "site",
            "Site",
            'label_values(qos_scout_site_state{partner=~"$partner", customer=~"$customer"}, site)',
        ),
    ]
    if with_target:
        out.append(
            var("target", "Target", f"label_values(qos_scout_probe_success{{{SCOPE}}}, target)")
        )
    return out


def thresholds(*steps: tuple[float | None, str]) -> dash.ThresholdsConfig:
    return (
        dash.ThresholdsConfig()
        .mode(model.ThresholdsMode.ABSOLUTE)
        .steps([model.Threshold(value=v, color=c) for v, c in steps])
    )


MOS_STEPS = ((None, "red"), (3.6, "orange"), (4.0, "green"))
LOSS_STEPS = ((None, "green"), (0.5, "orange"), (1.0, "red"))
JITTER_STEPS = ((None, "green"), (20, "orange"), (30, "red"))
RTT_STEPS = ((None, "green"), (100, "orange"), (150, "red"))
# The default rules' limits (collector/rules.py), drawn as lines where a panel shows one.
DNS_STEPS = ((None, "green"), (500, "orange"), (2000, "red"))
MTU_STEPS = ((None, "red"), (1300, "green"))
NAT_STEPS = ((None, "red"), (30, "green"))
HOST_STEPS = ((None, "green"), (90, "orange"), (97, "red"))


def ts(
    title: str,
    unit: str,
    *targets: prometheus.Dataquery,
    w: int = 12,
    limits: tuple[tuple[float | None, str], ...] | None = None,
) -> timeseries.Panel:
    """A time series panel; `limits` draws the rule's thresholds as dashed lines."""
    panel = timeseries.Panel().title(title).unit(unit).datasource(PROMETHEUS).height(8).span(w)
    for t in targets:
        panel = panel.with_target(t)
    if limits:
        style = common.GraphThresholdsStyleConfig().mode(
            common_model.GraphTresholdsStyleMode.DASHED
        )
        panel = panel.thresholds(thresholds(*limits)).thresholds_style(style)
    return panel


def stat_panel(
    title: str,
    expr: str,
    steps: tuple[tuple[float | None, str], ...],
    w: int = 6,
    unit: str = "none",
) -> stat.Panel:
    return (
        stat.Panel()
        .title(title)
        .datasource(PROMETHEUS)
        .with_target(q(expr, instant=True))
        .unit(unit)
        .thresholds(thresholds(*steps))
        .height(4)
        .span(w)
    )


def fleet() -> dash.Dashboard:
    site_keys = "partner, customer, site"
    return (
        dash.Dashboard("qos-scout · Fleet overview")
        .uid("qos-scout-fleet")
        .tags(["qos-scout", "voip"])
        .refresh("1m")
        .time("now-6h", "now")
        .variables(tenancy_vars(with_target=False))
        .with_panel(
            stat_panel(
                "Sites OK",
                f"count(qos_scout_site_state{{{SCOPE}}} == 0) or vector(0)",
                ((None, "green"),),
            )
        )
        .with_panel(
            stat_panel(
                "Sites warning",
                f"count(qos_scout_site_state{{{SCOPE}}} == 1) or vector(0)",
                ((None, "green"), (1, "orange")),
            )
        )
        .with_panel(
            stat_panel(
                "Sites critical",
                f"count(qos_scout_site_state{{{SCOPE}}} == 2) or vector(0)",
                ((None, "green"), (1, "red")),
            )
        )
        .with_panel(
            stat_panel(
                "Agents silent > 10 min",
                f"count((time() - qos_scout_agent_last_seen_timestamp_seconds{{{SCOPE}}}) > 600)"
                " or vector(0)",
                ((None, "green"), (1, "red")),
            )
        )
        .with_panel(
            table.Panel()
            .title("Site state (0 ok, 1 warning, 2 critical)")
            .datasource(PROMETHEUS)
            .with_target(
                q(f"max by ({site_keys}) (qos_scout_site_state{{{SCOPE}}})", instant=True).format(
                    PromQueryFormat.TABLE
                )
            )
            .height(8)
            .span(12)
        )
        .with_panel(
            bargauge.Panel()
            .title("Open tickets by severity")
            .datasource(PROMETHEUS)
            .with_target(
                q(
                    'sum by (severity) (qos_scout_open_tickets{partner=~"$partner"})',
                    "{{severity}}",
                    instant=True,
                )
            )
            .height(8)
            .span(12)
        )
        .with_panel(
            bargauge.Panel()
            .title("Worst MOS per site")
            .datasource(PROMETHEUS)
            .with_target(
                q(
                    f"min by ({site_keys}) (qos_scout_mos{{{SCOPE}}})",
                    "{{customer}} / {{site}}",
                    instant=True,
                )
            )
            .min(1)
            .max(4.5)
            .thresholds(thresholds(*MOS_STEPS))
            .height(8)
            .span(8)
        )
        .with_panel(
            bargauge.Panel()
            .title("Worst loss per site (any direction)")
            .datasource(PROMETHEUS)
            .with_target(
                q(
                    f"max by ({site_keys}) (qos_scout_loss_pct{{{SCOPE}}})",
                    "{{customer}} / {{site}}",
                    instant=True,
                )
            )
            .unit("percent")
            .thresholds(thresholds(*LOSS_STEPS))
            .height(8)
            .span(8)
        )
        .with_panel(
            bargauge.Panel()
            .title("Worst jitter per site (any direction)")
            .datasource(PROMETHEUS)
            .with_target(
                q(
                    f"max by ({site_keys}) (qos_scout_jitter_ms{{{SCOPE}}})",
                    "{{customer}} / {{site}}",
                    instant=True,
                )
            )
            .unit("ms")
            .thresholds(thresholds(*JITTER_STEPS))
            .height(8)
            .span(8)
        )
        .with_panel(
            table.Panel()
            .title("Agents: seconds since last contact")
            .datasource(PROMETHEUS)
            .with_target(
                q(
                    f"time() - qos_scout_agent_last_seen_timestamp_seconds{{{SCOPE}}}", instant=True
                ).format(PromQueryFormat.TABLE)
            )
            .unit("s")
            .height(8)
            .span(24)
        )
    )


def site() -> dash.Dashboard:
    by_target = "{{probe}} {{direction}} → {{target}}"
    return (
        dash.Dashboard("qos-scout · Site detail")
        .uid("qos-scout-site")
        .tags(["qos-scout", "voip"])
        .refresh("1m")
        .time("now-24h", "now")
        .variables(tenancy_vars(with_target=True))
        .links(
            [
                dash.DashboardLink("long range: site history")
                .type(model.DashboardLinkType.LINK)
                .url("/d/qos-scout-site-history")
                .tooltip("hourly and daily roll-ups from the collector's database, 400 days")
                .icon("dashboard")
                .include_vars(True)
                .keep_time(False)
            ]
        )
        .with_panel(
            ts(
                "Round-trip time (avg)",
                "ms",
                q(f'qos_scout_rtt_ms{{{SITE_SCOPE}, stat="avg"}}', "{{probe}} → {{target}}"),
            )
        )
        .with_panel(
            ts(
                "Round-trip time (p95)",
                "ms",
                q(f'qos_scout_rtt_ms{{{SITE_SCOPE}, stat="p95"}}', "{{probe}} → {{target}}"),
            )
        )
        .with_panel(
            ts("Jitter per direction", "ms", q(f"qos_scout_jitter_ms{{{SITE_SCOPE}}}", by_target))
        )
        .with_panel(
            ts("Loss per direction", "percent", q(f"qos_scout_loss_pct{{{SITE_SCOPE}}}", by_target))
        )
        .with_panel(ts("MOS per direction", "none", q(f"qos_scout_mos{{{SITE_SCOPE}}}", by_target)))
        .with_panel(
            ts(
                "E-model R per direction",
                "none",
                q(f"qos_scout_r_factor{{{SITE_SCOPE}}}", by_target),
            )
        )
        .with_panel(
            ts(
                "Throughput vs contracted speed",
                "bps",
                q(f"qos_scout_throughput_bps{{{SITE_SCOPE}}}", "measured {{direction}}"),
                q(f"qos_scout_contracted_bps{{{SCOPE}}}", "contracted {{direction}}"),
            )
        )
        .with_panel(
            ts(
                "Buffer delay under load (RFC 6349: loaded RTT over idle RTT)",
                "percent",
                q(f"qos_scout_buffer_delay_pct{{{SITE_SCOPE}}}", "{{direction}} → {{target}}"),
            )
        )
        .with_panel(
            ts(
                "SIP timings (RFC 6076)",
                "ms",
                q(f"qos_scout_sip_timing_ms{{{SITE_SCOPE}}}", "{{metric}} → {{target}}"),
            )
        )
        .with_panel(
            ts(
                "Probe failures",
                "none",
                q(f"sum by (probe) (1 - qos_scout_probe_success{{{SITE_SCOPE}}})", "{{probe}}"),
            )
        )
        .with_row(dash.Row("Path, DNS and host"))
        .with_panel(
            ts(
                "DNS resolution time",
                "ms",
                q(f"qos_scout_dns_resolution_ms{{{SITE_SCOPE}}}", "{{target}}"),
                w=8,
                limits=DNS_STEPS,
            )
        )
        .with_panel(
            ts(
                "Path MTU (below 1300 bytes breaks SIP over UDP)",
                "none",
                q(f"qos_scout_path_mtu_bytes{{{SITE_SCOPE}}}", "{{target}}"),
                w=8,
                limits=MTU_STEPS,
            )
        )
        .with_panel(
            ts(
                "NAT: longest idle time a UDP binding survived",
                "s",
                q(f"qos_scout_nat_binding_survived_seconds{{{SITE_SCOPE}}}", "{{target}}"),
                w=8,
                limits=NAT_STEPS,
            )
        )
        .with_panel(
            ts(
                "Trace: hops, and the first hop of persistent loss",
                "none",
                q(f"qos_scout_trace_hops{{{SITE_SCOPE}}}", "hops → {{target}}"),
                q(f"qos_scout_trace_loss_start_hop{{{SITE_SCOPE}}}", "loss from hop → {{target}}"),
            )
        )
        .with_panel(
            ts(
                "Trace: loss at the destination",
                "percent",
                q(f"qos_scout_trace_destination_loss_pct{{{SITE_SCOPE}}}", "{{target}}"),
                limits=LOSS_STEPS,
            )
        )
        .with_panel(
            ts(
                "Agent host: CPU and memory",
                "percent",
                q(f"qos_scout_host_cpu_pct{{{SITE_SCOPE}}}", "CPU {{agent}}"),
                q(f"qos_scout_host_memory_used_pct{{{SITE_SCOPE}}}", "memory {{agent}}"),
                w=24,
                limits=HOST_STEPS,
            )
        )
    )


def voice() -> dash.Dashboard:
    def hm(title: str, metric: str, direction: str, unit: str) -> heatmap.Panel:
        return (
            heatmap.Panel()
            .title(title)
            .datasource(PROMETHEUS)
            .with_target(q(f'{metric}{{{SCOPE}, direction="{direction}"}}', "{{site}}"))
            .calculate(True)
            .y_axis(heatmap.YAxisConfig().unit(unit))
            .height(8)
            .span(12)
        )

    return (
        dash.Dashboard("qos-scout · Voice quality")
        .uid("qos-scout-voice")
        .tags(["qos-scout", "voip"])
        .refresh("1m")
        .time("now-24h", "now")
        .variables(tenancy_vars(with_target=False))
        .with_panel(
            histogram.Panel()
            .title("MOS distribution (latest per stream)")
            .datasource(PROMETHEUS)
            .with_target(q(f"qos_scout_mos{{{SCOPE}}}", "{{site}} {{direction}}", instant=True))
            .bucket_size(0.1)
            .height(8)
            .span(12)
        )
        .with_panel(
            ts(
                "Lowest MOS over time",
                "none",
                q(f"min by (site, direction) (qos_scout_mos{{{SCOPE}}})", "{{site}} {{direction}}"),
            )
        )
        .with_panel(hm("Loss heatmap, site → far end", "qos_scout_loss_pct", "out", "percent"))
        .with_panel(hm("Loss heatmap, far end → site", "qos_scout_loss_pct", "back", "percent"))
        .with_panel(hm("Jitter heatmap, site → far end", "qos_scout_jitter_ms", "out", "ms"))
        .with_panel(hm("Jitter heatmap, far end → site", "qos_scout_jitter_ms", "back", "ms"))
    )


def tickets() -> dash.Dashboard:
    return (
        dash.Dashboard("qos-scout · Tickets")
        .uid("qos-scout-tickets")
        .tags(["qos-scout", "voip"])
        .refresh("1m")
        .time("now-7d", "now")
        .variables(tenancy_vars(with_target=False)[:1])
        .with_panel(
            stat_panel(
                "Open critical",
                "sum(qos_scout_open_tickets"
                '{partner=~"$partner", severity="critical"}) or vector(0)',
                ((None, "green"), (1, "red")),
                w=8,
            )
        )
        .with_panel(
            stat_panel(
                "Open warning",
                'sum(qos_scout_open_tickets{partner=~"$partner", severity="warning"}) or vector(0)',
                ((None, "green"), (1, "orange")),
                w=8,
            )
        )
        .with_panel(
            stat_panel(
                "Sites with an open ticket",
                'count(qos_scout_site_state{partner=~"$partner"} > 0) or vector(0)',
                ((None, "green"), (1, "orange")),
                w=8,
            )
        )
        .with_panel(
            ts(
                "Open tickets over time",
                "none",
                q(
                    'sum by (severity) (qos_scout_open_tickets{partner=~"$partner"})',
                    "{{severity}}",
                ),
                w=24,
            )
        )
        .with_panel(
            ts(
                "Results ingested per second",
                "reqps",
                q("sum by (status) (rate(qos_scout_ingest_results_total[5m]))", "{{status}}"),
                w=24,
            )
        )
    )


# ---------------------------------------------------------------- site history (SQL)
# Ranges up to HOUR_MAX_S (31 days) read the hourly roll-ups, longer ones the daily ones,
# at the same limit as the history API.
RESOLUTION = f"""WITH res (period, size) AS (
  SELECT 'hour', 3600 WHERE $__unixEpochTo() - $__unixEpochFrom() <= {HOUR_MAX_S:.0f}
  UNION ALL
  SELECT 'day', 86400 WHERE $__unixEpochTo() - $__unixEpochFrom() > {HOUR_MAX_S:.0f}
)"""
# The roll-ups of the chosen sites and targets whose bucket overlaps the range.
ROLLED = """FROM rollups r
JOIN res ON res.period = r.period
JOIN sites s ON s.id = r.site_id
JOIN customers c ON c.id = s.customer_id
JOIN partners p ON p.id = s.partner_id
WHERE p.name IN ($partner) AND c.name IN ($customer) AND s.name IN ($site)
  AND r.target IN ($target)
  AND r.bucket > $__unixEpochFrom() - res.size AND r.bucket <= $__unixEpochTo()"""
SITE_CHAIN = """JOIN customers c ON c.id = s.customer_id
JOIN partners p ON p.id = s.partner_id"""


class SqlQuery(cogbuilder.Builder[cogvariants.Dataquery]):
    """A raw SQL target of Grafana's PostgreSQL datasource (the SDK has no builder for it)."""

    def __init__(self, sql: str, fmt: str = "time_series") -> None:
        self.data: dict[str, Any] = {
            "datasource": {"type": POSTGRES.type_val, "uid": POSTGRES.uid},
            "editorMode": "code",
            "format": fmt,
            "rawQuery": True,
            "rawSql": sql,
        }

    def build(self) -> cogvariants.Dataquery:
        return UnknownDataquery(dict(self.data))


def rolled(where: str, metric: str, *values: tuple[str, str]) -> SqlQuery:
    """One value column per (expression, name) per bucket, a series per `metric`."""
    cols = ",\n       ".join(f'{expr} AS "{name}"' for expr, name in values)
    return SqlQuery(
        f"""{RESOLUTION}
SELECT to_timestamp(r.bucket) AS "time",
       {metric} AS metric,
       {cols}
{ROLLED}
  AND {where}
ORDER BY 1, 2"""
    )


def sql_var(name: str, label: str, query: str, *, multi: bool) -> dash.QueryVariable:
    out = (
        dash.QueryVariable(name)
        .label(label)
        .datasource(POSTGRES)
        .query(query)
        .refresh(model.VariableRefresh.ON_TIME_RANGE_CHANGED)
        .sort(model.VariableSort.ALPHABETICAL_ASC)
        .multi(multi)
        .include_all(multi)
    )
    if multi:
        out = out.current(model.VariableOption(selected=True, text="All", value="$__all"))
    return out


def sql_ts(title: str, unit: str, query: SqlQuery, w: int = 12, **kw: Any) -> timeseries.Panel:
    panel = (
        timeseries.Panel()
        .title(title)
        .unit(unit)
        .datasource(POSTGRES)
        .with_target(query)
        .height(8)
        .span(w)
    )
    if "limits" in kw:
        panel = panel.thresholds(thresholds(*kw["limits"]))
    if "lo" in kw:
        panel = panel.min(kw["lo"]).max(kw["hi"])
    return panel


def history() -> dash.Dashboard:
    to_target = "r.probe || ' → ' || r.target"
    per_direction = "r.probe || ' ' || r.direction || ' → ' || r.target"
    return (
        dash.Dashboard("qos-scout · Site history (roll-ups)")
        .uid("qos-scout-site-history")
        .tags(["qos-scout", "voip"])
        .time("now-90d", "now")
        .variables(
            [
                sql_var(
                    "partner", "Partner", "SELECT p.name FROM partners p ORDER BY 1", multi=False
                ),
                sql_var(
                    "customer",
                    "Customer",
                    "SELECT c.name FROM customers c JOIN partners p ON p.id = c.partner_id\n"
                    "WHERE p.name IN ($partner) ORDER BY 1",
                    multi=False,
                ),
                sql_var(
                    "site",
                    "Site",
                    f"SELECT s.name FROM sites s\n{SITE_CHAIN}\n"
                    "WHERE p.name IN ($partner) AND c.name IN ($customer) ORDER BY 1",
                    multi=False,
                ),
                sql_var(
                    "target",
                    "Target",
                    f"SELECT DISTINCT r.target FROM rollups r\nJOIN sites s ON s.id = r.site_id\n"
                    f"{SITE_CHAIN}\n"
                    "WHERE p.name IN ($partner) AND c.name IN ($customer) AND s.name IN ($site)\n"
                    "  AND r.bucket > $__unixEpochFrom() - 86400 "
                    "AND r.bucket <= $__unixEpochTo()\nORDER BY 1",
                    multi=True,
                ),
            ]
        )
        .with_panel(
            sql_ts(
                "Round-trip time: median and p95 of the tests' average RTT",
                "ms",
                rolled(
                    "r.field = 'rtt_ms.avg' AND r.direction = ''",
                    to_target,
                    ("r.p50", "median"),
                    ("r.p95", "p95"),
                ),
                limits=RTT_STEPS,
            )
        )
        .with_panel(
            sql_ts(
                "Jitter per direction: median and p95",
                "ms",
                rolled(
                    "r.field = 'jitter_ms'", per_direction, ("r.p50", "median"), ("r.p95", "p95")
                ),
                limits=JITTER_STEPS,
            )
        )
        .with_panel(
            sql_ts(
                "Loss per direction: p95 and worst",
                "percent",
                rolled("r.field = 'loss_pct'", per_direction, ("r.p95", "p95"), ("r.max", "worst")),
                limits=LOSS_STEPS,
            )
        )
        .with_panel(
            sql_ts(
                "MOS per direction: median and lowest",
                "none",
                rolled("r.field = 'mos'", per_direction, ("r.p50", "median"), ("r.min", "lowest")),
                limits=MOS_STEPS,
                lo=1,
                hi=4.5,
            )
        )
        .with_panel(
            sql_ts(
                "Availability: tests that succeeded",
                "percent",
                rolled("r.field = ''", to_target, ("100.0 * r.ok / r.count", "availability")),
                w=24,
                lo=0,
                hi=100,
            )
        )
    )


BOARDS: dict[str, Callable[[], dash.Dashboard]] = {
    "fleet-overview": fleet,
    "site-detail": site,
    "voice-quality": voice,
    "tickets": tickets,
    "site-history": history,
}


def render(builder: dash.Dashboard) -> dict[str, Any]:
    """The dashboard as a JSON-ready dict, with panels laid out and numbered from 1."""
    data: dict[str, Any] = json.loads(json.dumps(builder.build(), cls=JSONEncoder))
    for i, panel in enumerate(data.get("panels", []), start=1):
        panel["id"] = i
        for n, target in enumerate(panel.get("targets", [])):
            target["refId"] = chr(ord("A") + n)
    data["schemaVersion"] = 39
    return data


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="exit 1 if the files are stale")
    args = ap.parse_args(argv)
    stale = []
    OUT.mkdir(exist_ok=True)
    for name, make in BOARDS.items():
        text = json.dumps(render(make()), indent=2, sort_keys=True) + "\n"
        path = OUT / f"{name}.json"
        if args.check:
            if not path.exists() or path.read_text() != text:
                stale.append(path.name)
        else:
            path.write_text(text)
    if stale:
        print(f"stale dashboards (run dashboards/generate.py): {', '.join(stale)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
