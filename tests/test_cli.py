"""The command line: clear one-line errors, exit codes that mean something, a light start."""

from __future__ import annotations

import subprocess
import sys


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "agent.cli.main", *args], capture_output=True, text=True, timeout=60
    )


def test_help_lists_probe_command() -> None:
    out = _cli("--help")
    assert out.returncode == 0
    assert "probe" in out.stdout


def test_probe_command_offers_every_network_probe() -> None:
    out = _cli("probe", "--help")
    assert out.returncode == 0
    for kind in ("icmp", "udp", "bandwidth", "trace", "dns", "mtu"):
        assert f"    {kind}" in out.stdout, kind


def test_bad_option_value_is_one_line_exit_2() -> None:
    out = _cli("probe", "icmp", "127.0.0.1", "--count", "0")
    assert out.returncode == 2
    assert out.stderr.strip() == (
        "qos-scout: icmp options: count: Input should be greater than or equal to 1"
    )
    assert "Traceback" not in out.stderr


def test_unparseable_option_is_exit_2() -> None:
    out = _cli("probe", "icmp", "127.0.0.1", "--count", "many")
    assert out.returncode == 2
    assert "invalid int value: 'many'" in out.stderr


def test_unknown_host_is_exit_1_with_reason() -> None:
    out = _cli("probe", "icmp", "no-such-host.invalid", "--count", "1")
    assert out.returncode == 1
    assert "host name 'no-such-host.invalid' does not resolve" in out.stderr
    assert "Traceback" not in out.stderr


def test_start_up_does_not_load_heavy_modules() -> None:
    code = (
        "import sys; from agent.cli.main import build_parser; build_parser(); "
        "heavy = [m for m in ('scapy', 'aiortc', 'fastapi', 'sqlalchemy', 'numpy') "
        "if m in sys.modules]; print(','.join(heavy))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_tables_show_assumptions_and_evidence_but_not_sample_lists() -> None:
    from agent.cli.output import flatten

    m = {"codec": "OPUS", "out": {"mos": 4.2, "assumed": ["Ie,WB = 13", "Bpl = 25.1"]},
         "response_codes": [100, 200], "alg_evidence": []}  # fmt: skip
    assert flatten(m) == {"codec": "OPUS", "out.mos": 4.2, "out.assumed": "Ie,WB = 13; Bpl = 25.1"}
