"""Agent config: defaults for a site, placeholders, and each invalid case with its message."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.errors import ConfigError
from agent.runtime.config import GATEWAY, load_config, parse_config


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "agent.yml"
    p.write_text(text)
    return p


def test_defaults_for_a_site_ping_gateway_and_responder(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, "site:\n  responder: 192.0.2.10\n"))
    assert cfg.modules is not None
    ping = cfg.modules["ping"]
    assert ping.probe == "icmp"
    assert ping.targets == [GATEWAY, "192.0.2.10"]
    assert ping.interval_s == 60
    # Relative paths are taken from the config file's directory; absolute ones stay.
    assert cfg.spool.path == Path("/var/lib/qos-scout/spool.db")


def test_default_modules_without_check_cover_voice_sip_bandwidth_trace() -> None:
    cfg = parse_config(
        {"site": {"responder": "r.example", "sip_server": "sip:pbx.example"}}, check_probes=False
    )
    assert cfg.modules is not None
    mods = cfg.modules
    assert mods["voice"].probe == "udp" and mods["voice"].interval_s == 300
    assert mods["voice"].options["duration_s"] == 30
    assert mods["sip"].probe == "sip_options" and mods["sip"].targets == ["sip:pbx.example"]
    assert mods["bandwidth"].interval_s is not None and mods["bandwidth"].interval_s >= 3600
    assert mods["trace"].on_loss is not None and mods["trace"].interval_s is None


def test_default_modules_leave_out_probe_kinds_not_installed() -> None:
    cfg = parse_config({"site": {"responder": "r.example"}})
    assert cfg.modules is not None
    from agent.probes import PROBE_MODULES

    assert all(m.probe in PROBE_MODULES for m in cfg.modules.values())
    assert "ping" in cfg.modules


def test_placeholders_and_relative_paths(tmp_path: Path) -> None:
    cfg = load_config(
        write(
            tmp_path,
            "site: {responder: 10.1.1.1}\n"
            "spool: {path: spool.db}\n"
            "collector: {url: 'http://127.0.0.1:8080/', credentials_file: key.json}\n"
            "modules:\n"
            "  rping: {probe: icmp, targets: ['$responder', 'example.org'], interval_s: 30,"
            " options: {count: 5}}\n",
        )
    )
    assert cfg.modules is not None
    assert cfg.modules["rping"].targets == ["10.1.1.1", "example.org"]
    assert cfg.spool.path == tmp_path / "spool.db"
    assert cfg.collector.credentials_file == tmp_path / "key.json"
    assert cfg.collector.url == "http://127.0.0.1:8080"


INVALID = [
    (
        "modules:\n  m: {probe: icmp, targets: [a], interval_s: 60, colour: red}\n",
        "modules.m.colour: unknown key",
    ),
    ("spool: {max_mb: -1}\n", "spool.max_mb: Input should be greater than 0"),
    (
        "shipping: {batch_size: 0}\n",
        "shipping.batch_size: Input should be greater than or equal to 1",
    ),
    (
        "collector: {url: 'ftp://x'}\n",
        "collector.url: Value error, 'ftp://x' is not an http:// or https:// URL",
    ),
    (
        "modules:\n  m: {probe: icmp, targets: [a]}\n",
        "modules.m: Value error, set exactly one of interval_s or on_loss",
    ),
    (
        "modules:\n  m: {probe: icmp, targets: [], interval_s: 60}\n",
        "modules.m.targets: List should have at least 1 item after validation, not 0",
    ),
    (
        "modules:\n  m: {probe: nosuch, targets: [a], interval_s: 60}\n",
        "modules.m.probe: unknown probe 'nosuch' (known: ",
    ),
    (
        "modules:\n  m: {probe: icmp, targets: [a], interval_s: 60, options: {count: 0}}\n",
        "modules.m.options: icmp options: count: Input should be greater than or equal to 1",
    ),
    (
        "modules:\n  m: {probe: icmp, targets: ['$sip_server'], interval_s: 60}\n",
        "modules.m.targets: '$sip_server' uses $sip_server but site.sip_server is not set",
    ),
    (
        "modules:\n  m: {probe: icmp, targets: ['x$gateway'], interval_s: 60}\n",
        "modules.m.targets: $gateway must be the whole target, not part of 'x$gateway'",
    ),
    ("- just\n- a list\n", "the file must be a mapping of sections, not list"),
    ("site: [\n", "line 2: invalid YAML"),
    ("metrics: {port: 70000}\n", "metrics.port: Input should be less than or equal to 65535"),
    ("jobs: {wait_s: 61}\n", "jobs.wait_s: Input should be less than or equal to 60"),
    ("bogus: 1\n", "bogus: unknown key"),
    (
        "call_reports: {port: 5070}\n",
        "call_reports: Value error, phones: name at least one phone to take reports from",
    ),
    (
        "call_reports: {port: 5070, phones: [{name: desk}]}\n",
        "call_reports.phones.0: Value error, a phone needs an address or an account",
    ),
    (
        "call_reports: {port: 5070, phones: [{name: desk, address: 10.1.2.0/33}]}\n",
        "call_reports.phones.0.address: Value error, '10.1.2.0/33' is not an address or a network",
    ),
    (
        "call_reports: {port: 5070, phones: [{name: desk, adress: 10.1.2.3}]}\n",
        "call_reports.phones.0.adress: unknown key",
    ),
]


@pytest.mark.parametrize(("text", "message"), INVALID)
def test_invalid_config_is_refused_naming_file_and_key(
    tmp_path: Path, text: str, message: str
) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as exc:
        load_config(path)
    assert exc.value.message.startswith(f"{path}: ")
    assert message in exc.value.message


def test_missing_file_says_so(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"nope.yml: cannot read: No such file"):
        load_config(tmp_path / "nope.yml")


def test_example_config_in_deploy_is_valid() -> None:
    example = Path(__file__).resolve().parents[2] / "deploy" / "agent.example.yml"
    cfg = load_config(example)  # every module's options against its probe's model
    assert cfg.modules


def test_default_modules_validate_against_the_installed_probes() -> None:
    from agent.probes import PROBE_MODULES

    cfg = parse_config({"site": {"responder": "192.0.2.10", "sip_server": "sip:pbx.example"}})
    assert cfg.modules is not None
    wanted = {"ping", "host", "voice", "bandwidth", "trace", "sip"}
    installed = {n for n, m in default_modules_probe_map().items() if m in PROBE_MODULES}
    assert set(cfg.modules) == wanted & installed


def default_modules_probe_map() -> dict[str, str]:
    from agent.runtime.config import SiteConfig, default_modules

    mods = default_modules(SiteConfig(responder="r", sip_server="sip:s"))
    return {n: m["probe"] for n, m in mods.items()}
