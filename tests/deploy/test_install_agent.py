"""install-agent.sh installs a working agent into a fresh prefix, and the agent runs under the
systemd unit's own command line: enrolls, ships results, stops cleanly on the unit's signal."""

from __future__ import annotations

import getpass
import os
import shlex
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from agent.cli.stack import Stack, wait_for

ROOT = Path(__file__).resolve().parents[2]


def _unit_value(unit: Path, key: str) -> str:
    for line in unit.read_text().splitlines():
        if line.startswith(f"{key}="):
            return line.split("=", 1)[1]
    raise AssertionError(f"{unit.name} has no {key}=")


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("install")
    paths = {
        "prefix": base / "opt",
        "confdir": base / "etc",
        "statedir": base / "state",
        "unitdir": base / "units",
    }
    # From a copy of the tree: pip builds the wheel inside its source (build/), and the
    # checkout is shared with everything else running (a full run saw two builds collide).
    source = base / "src"
    shutil.copytree(
        ROOT,
        source,
        ignore=shutil.ignore_patterns(
            ".git", ".venv", "build", "*.egg-info", "__pycache__", ".*_cache", "node_modules"
        ),
    )
    argv = ["sh", str(source / "deploy/install-agent.sh"), "--source", str(source)]
    for key, path in paths.items():
        argv += [f"--{key}", str(path)]
    argv += ["--user", getpass.getuser()]
    env = {**os.environ, "PYTHON": sys.executable}
    env.pop("VIRTUAL_ENV", None)
    out = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=900)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "qos-scout 0." in out.stdout
    return paths


def test_install_lays_out_prefix_config_and_units(installed: dict[str, Path]) -> None:
    assert (installed["prefix"] / "venv/bin/qos-scout").exists()
    assert (installed["prefix"] / "share/docs/deploy.md").exists()
    config = installed["confdir"] / "agent.yml"
    text = config.read_text()
    assert str(installed["statedir"]) in text and "/var/lib/qos-scout" not in text
    unit = installed["unitdir"] / "qos-scout-agent.service"
    assert _unit_value(unit, "ExecStart") == (
        f"{installed['prefix']}/venv/bin/qos-scout agent run --config {config}"
    )
    assert _unit_value(unit, "User") == getpass.getuser()


def test_installed_example_config_is_valid(installed: dict[str, Path]) -> None:
    out = subprocess.run(
        [
            str(installed["prefix"] / "venv/bin/qos-scout"),
            "agent",
            "check-config",
            str(installed["confdir"] / "agent.yml"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr


def test_installed_units_verify(installed: dict[str, Path]) -> None:
    tool = "/usr/bin/systemd-analyze"
    if not Path(tool).exists():
        pytest.skip("systemd-analyze is not installed (.ci/run installs systemd)")
    units = sorted(installed["unitdir"].glob("*.service"))
    out = subprocess.run([tool, "verify", *map(str, units)], capture_output=True, text=True)
    assert out.returncode == 0 and not out.stderr.strip(), out.stderr


def test_agent_runs_under_the_units_command_line(
    installed: dict[str, Path], tmp_path: Path
) -> None:
    stack = Stack(tmp_path)
    try:
        stack.start_collector()
        token = stack.create_tenancy(partner="install-partner", site="install-site")
        config = installed["confdir"] / "agent.yml"
        cfg = yaml.safe_load(config.read_text())
        # The site's own targets: loopback only in a test.
        cfg["collector"]["url"] = stack.collector_url
        cfg["site"] = {"responder": "127.0.0.1"}
        cfg.pop("metrics", None)  # the example's fixed port may be taken on a test machine
        # Start each module at once instead of at a random offset within its interval.
        cfg["scheduler"] = {**cfg.get("scheduler", {}), "first_run_within_s": 1}
        cfg["modules"] = {
            "host": {"probe": "host", "targets": ["local"], "interval_s": 600},
            "ping": {
                "probe": "icmp",
                "targets": ["$responder"],
                "interval_s": 600,
                "options": {"count": 3, "interval_s": 0.05},
            },
        }
        config.write_text(yaml.safe_dump(cfg, sort_keys=False))
        qos = str(installed["prefix"] / "venv/bin/qos-scout")
        enroll = subprocess.run(
            [qos, "agent", "enroll", "--collector", stack.collector_url, "--token", token,
             "--config", str(config)],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert enroll.returncode == 0, enroll.stderr
        creds = Path(cfg["collector"]["credentials_file"])
        assert creds.exists() and (creds.stat().st_mode & 0o777) == 0o600

        unit = installed["unitdir"] / "qos-scout-agent.service"
        argv = shlex.split(_unit_value(unit, "ExecStart"))
        log = open(tmp_path / "unit-agent.log", "wb")
        proc = subprocess.Popen(
            argv, cwd=installed["statedir"], stdout=log, stderr=subprocess.STDOUT
        )
        try:
            wait_for(
                "results from the installed agent",
                lambda: {r["probe"] for r in stack.results()} >= {"host", "icmp"},
                90.0,
                every_s=1.0,
            )
        finally:
            sig = getattr(signal, _unit_value(unit, "KillSignal"))
            proc.send_signal(sig)
            rc = proc.wait(float(_unit_value(unit, "TimeoutStopSec")))
            log.close()
        assert rc == 0, (tmp_path / "unit-agent.log").read_text()[-2000:]
    finally:
        stack.close()
