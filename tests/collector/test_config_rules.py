"""Config file validation (exact messages) and the pure rule and hysteresis logic."""

from __future__ import annotations

import pytest

from collector.config import ConfigFileError, load_config, parse_config
from collector.hysteresis import RuleState, step
from collector.rules import apply_overrides, comparable_path, default_rules, evaluate

# A channel whose attempt could outlast the outbox lease (60 s by default).
SLOW_WEBHOOK = {"type": "webhook", "url": "http://h/", "scope": "operator", "timeout_s": 60}
INVALID = [
    ({"dbb": "x"}, "config: dbb: unknown key"),
    ({"listen": "8080"}, "config: listen: listen '8080' must be HOST:PORT"),
    ({"listen": "h:99999"}, "config: listen: listen 'h:99999': port must be a number 0-65535"),
    (
        {"notifications": [{"type": "pager"}]},
        "config: notifications.0: Input tag 'pager' found using 'type' does not match any of the "
        "expected tags: 'webhook', 'email', 'alertmanager'",
    ),
    (
        {"notifications": [{"type": "webhook"}]},
        "config: notifications.0.webhook.url: Field required",
    ),
    (
        {"notifications": [{"type": "webhook", "url": "http://x", "sekret": "s"}]},
        "config: notifications.0.webhook.sekret: unknown key",
    ),
    (
        {"notifications": [SLOW_WEBHOOK]},
        "config: notifications.0.timeout_s (60 s) must be shorter than outbox.lease_s (60 s)",
    ),
    (
        {"notifications": [{"type": "webhook", "url": "http://a"}]},
        "config: notifications.0.webhook: a channel must say whose ticket events it receives: "
        "`partners: [names]` (only those partners') or `scope: operator` (every partner's)",
    ),
    (
        {"notifications": [{"type": "email", "host": "h", "from": "a@x", "to": ["b@x"]}]},
        "config: notifications.0.email: a channel must say whose ticket events it receives: "
        "`partners: [names]` (only those partners') or `scope: operator` (every partner's)",
    ),
    (
        {"notifications": [{"type": "alertmanager", "url": "http://am", "partners": []}]},
        "config: notifications.0.alertmanager.partners: List should have at least 1 item after "
        "validation, not 0",
    ),
    (
        {
            "notifications": [
                {"type": "alertmanager", "url": "http://am", "partners": ["a"], "scope": "operator"}
            ]
        },
        "config: notifications.0.alertmanager: `partners` and `scope: operator` exclude each "
        "other: an operator channel receives every partner's events",
    ),
    (
        {"notifications": [{"type": "webhook", "url": "http://a", "scope": "all"}]},
        "config: notifications.0.webhook.scope: Input should be 'operator'",
    ),
    ({"rules": {"rtt": {"warnng": 1}}}, "config: rules: rule 'rtt': warnng: unknown key"),
    (
        {"rules": {"new": {"op": "below", "field": "x.y", "warning": 1}}},
        "config: rules: rule 'new': op 'below' needs the probes it applies to",
    ),
    (
        {"rules": {"loss_out": {"field": "forward.loss_pct"}}},
        "config: rules: rule 'loss_out': field 'forward.loss_pct': the udp measurement has no "
        "number at 'forward.loss_pct' (did you mean 'out.loss_pct'?)",
    ),
    (
        {
            "rules": {
                "new": {
                    "probes": ["icmp", "udp"],
                    "field": "jitter_ms",
                    "op": "above",
                    "warning": 30,
                }
            }
        },
        "config: rules: rule 'new': field 'jitter_ms': the udp measurement has no number at "
        "'jitter_ms' (did you mean 'out.jitter_ms'?)",
    ),
    (
        {"rules": {"new": {"probes": ["ping"], "op": "failed"}}},
        "config: rules: rule 'new': unknown probe 'ping' (known: bandwidth, call_report, dns, "
        "host, icmp, mtu, nat_binding, sip_call, sip_options, sip_register, trace, udp)",
    ),
    ({"flap_window_s": -1}, "config: flap_window_s: Input should be greater than or equal to 0"),
    ({"outbox": {"retry_base": 1}}, "config: outbox.retry_base: unknown key"),
    ([1, 2], "config: the top level must be a mapping"),
]


@pytest.mark.parametrize(("doc", "message"), INVALID)
def test_invalid_config_names_the_key(doc, message):
    with pytest.raises(ConfigFileError) as exc:
        parse_config(doc)
    assert str(exc.value) == message


def test_config_file_loads_channels_and_defaults(tmp_path):
    p = tmp_path / "c.yml"
    p.write_text(
        "db: postgresql://u@h/db\nlisten: 0.0.0.0:9000\nflap_window_s: 600\n"
        "notifications:\n"
        "  - {type: email, host: smtp.example.net, from: a@x, to: [b@x], scope: operator}\n"
        "  - {type: alertmanager, url: 'http://am:9093', partners: [acme]}\n"
        "rules:\n  rtt: {warning: 100}\n"
    )
    cfg = load_config(p)
    assert cfg.listen == "0.0.0.0:9000" and cfg.flap_window_s == 600
    assert [c.type for c in cfg.notifications] == ["email", "alertmanager"]
    assert cfg.notifications[0].port == 25 and cfg.silent_agent_timeout_s == 600
    assert cfg.notifications[0].takes("globex") and cfg.notifications[1].takes("acme")
    assert not cfg.notifications[1].takes("globex")
    with pytest.raises(ConfigFileError, match="cannot read"):
        load_config(tmp_path / "missing.yml")
    (tmp_path / "bad.yml").write_text("a: [1\n")
    with pytest.raises(ConfigFileError, match="not valid YAML"):
        load_config(tmp_path / "bad.yml")


def test_defaults_follow_voip_readiness_limits():
    r = default_rules()
    assert (r["rtt"].warning, r["jitter"].warning, r["loss"].warning) == (150, 30, 1)
    assert (r["mos_out"].warning, r["mos_out"].critical) == (4.0, 3.6)
    assert r["bandwidth_down"].warning == 80 and r["bandwidth_down"].contracted == "down"
    assert r["sip_registration"].op == "failed" and r["agent_silent"].op == "silent"


def test_evaluate_reads_dotted_paths_and_skips_absent_fields():
    r = default_rules()
    assert evaluate(r["mos_back"], True, {"back": {"mos": 3.9}}) == ("warning", 3.9)
    assert evaluate(r["mos_back"], True, {"back": {"mos": 3.5}}) == ("critical", 3.5)
    assert evaluate(r["mos_back"], True, {"back": {"mos": 4.2}}) == ("ok", 4.2)
    assert evaluate(r["mos_back"], True, {"out": {"mos": 1}}) == (None, None)
    assert evaluate(r["rtt"], False, None) == (None, None)
    assert evaluate(r["sip_call_setup"], False, None) == ("critical", None)
    assert evaluate(r["sip_call_setup"], True, None) == ("ok", None)
    bw = {"download": {"throughput_bps": 70e6}}
    assert evaluate(r["bandwidth_down"], True, bw, {"down": 100_000_000}) == ("warning", 70.0)
    assert evaluate(r["bandwidth_down"], True, bw, {"down": None}) == (None, None)
    assert evaluate(r["loss"], True, {"loss_pct": True}) == (None, None)  # not a number


def test_overrides_patch_fields_and_reject_unknown_keys():
    rules = apply_overrides(default_rules(), {"rtt": {"warning": 90, "enabled": False}})
    assert rules["rtt"].warning == 90 and not rules["rtt"].enabled
    assert rules["rtt"].critical == 300
    with pytest.raises(ValueError, match="rule 'rtt': trip: unknown key"):
        apply_overrides(default_rules(), {"rtt": {"trip": 2}})


def test_hysteresis_trips_after_n_and_clears_after_m():
    rule = default_rules()["rtt"].model_copy(update={"trip_after": 3, "clear_after": 2})
    st = RuleState()
    seq = [
        "warning",
        "ok",
        "warning",
        "warning",
        "critical",
        "critical",
        "ok",
        "warning",
        "ok",
        "ok",
        "ok",
    ]
    actions = [step(st, rule, lvl, f"r{i}") for i, lvl in enumerate(seq)]  # type: ignore[arg-type]
    assert actions == [None, None, None, None, "trip", None, None, None, None, "clear", None]
    assert not st.active and st.bad_results == []
    st2 = RuleState()
    for i in range(3):
        step(st2, rule, "warning", f"w{i}")
    assert st2.active and st2.bad_results == ["w0", "w1", "w2"]
    assert step(st2, rule, "critical", "c") == "escalate" and st2.level == "critical"


def test_a_wideband_mos_is_compared_on_the_narrowband_scale():
    r = default_rules()
    # A wideband call at R 100 on the extended scale is as good as any narrowband call can
    # be, yet its MOS_CQEW (R / 1.29) is 3.93: compared raw it would warn. The rule reads
    # its narrowband-scale MOS, 4.5.
    wb = {"scale": "wideband", "mos": 3.93, "r_factor": 100.0, "mos_narrowband": 4.5}
    assert evaluate(r["mos_back"], True, {"back": wb}) == ("ok", 4.5)
    # at R 75 it is as poor as a narrowband call at R 75 (MOS 3.82): a warning, where its
    # MOS_CQEW (3.00) compared raw would have been critical
    wb = {"scale": "wideband", "mos": 3.0, "r_factor": 75.0, "mos_narrowband": 3.8}
    assert evaluate(r["mos_back"], True, {"back": wb}) == ("warning", 3.8)
    # narrowband directions (and results from agents before wideband scoring) read `mos`
    nb = {"scale": "narrowband", "mos": 3.5, "mos_narrowband": 3.5}
    assert evaluate(r["mos_back"], True, {"back": nb}) == ("critical", 3.5)
    assert comparable_path({"back": {"mos": 4.0}}, "back.mos") == "back.mos"
    assert comparable_path({"out": wb}, "out.r_factor") == "out.r_factor"
