"""Deployment files pass the tools that own their formats: promtool, docker-compose,
hadolint and systemd-analyze. Each check is also shown to fail on a broken file."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
BIN = Path(os.environ.get("VIRTUAL_ENV", ROOT / ".venv")) / "bin"


def _tool(name: str) -> str:
    path = shutil.which(name) or (str(BIN / name) if (BIN / name).exists() else None)
    if path is None:
        pytest.skip(f"{name} is not installed (.ci/run installs it)")
    return path


def _run(*argv: str, cwd: Path | None = None, env: dict[str, str] | None = None):
    return subprocess.run(argv, capture_output=True, text=True, cwd=cwd, env=env, timeout=120)


def test_promtool_check_config() -> None:
    out = _run(_tool("promtool"), "check", "config", "prometheus.yml", cwd=DEPLOY / "prometheus")
    assert out.returncode == 0, out.stdout + out.stderr


def test_promtool_check_and_test_rules() -> None:
    promtool = _tool("promtool")
    out = _run(promtool, "check", "rules", "rules.yml", cwd=DEPLOY / "prometheus")
    assert out.returncode == 0, out.stdout + out.stderr
    out = _run(promtool, "test", "rules", "rules_test.yml", cwd=DEPLOY / "prometheus")
    assert out.returncode == 0, out.stdout + out.stderr


def test_promtool_rejects_a_broken_rule(tmp_path: Path) -> None:
    bad = tmp_path / "rules.yml"
    bad.write_text("groups:\n  - name: x\n    rules:\n      - record: a:b\n        expr: sum(\n")
    out = _run(_tool("promtool"), "check", "rules", str(bad))
    assert out.returncode != 0


def _compose_env() -> dict[str, str]:
    return {**os.environ, "POSTGRES_PASSWORD": "test-pw", "GRAFANA_ADMIN_PASSWORD": "test-pw"}


def test_docker_compose_config() -> None:
    out = _run(
        _tool("docker-compose"),
        "-f",
        "docker-compose.yml",
        "config",
        cwd=DEPLOY,
        env=_compose_env(),
    )
    assert out.returncode == 0, out.stderr
    for service in ("collector", "postgres", "prometheus", "grafana", "responder"):
        assert f"  {service}:" in out.stdout


def test_docker_compose_refuses_missing_secrets() -> None:
    env = {k: v for k, v in os.environ.items() if "PASSWORD" not in k}
    out = _run(_tool("docker-compose"), "-f", "docker-compose.yml", "config", cwd=DEPLOY, env=env)
    assert out.returncode != 0 and "POSTGRES_PASSWORD" in out.stderr


@pytest.mark.parametrize("name", ["Dockerfile.collector", "Dockerfile.agent"])
def test_hadolint(name: str) -> None:
    out = _run(_tool("hadolint"), str(DEPLOY / "docker" / name))
    assert out.returncode == 0, out.stdout + out.stderr


def test_hadolint_flags_a_root_image(tmp_path: Path) -> None:
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN pip install requests\n")
    assert _run(_tool("hadolint"), str(bad)).returncode != 0


def test_dockerfiles_run_as_non_root_with_healthcheck() -> None:
    for name in ("Dockerfile.collector", "Dockerfile.agent"):
        text = (DEPLOY / "docker" / name).read_text()
        assert "\nUSER 10001:10001\n" in text
        assert "\nHEALTHCHECK " in text


def _units_for(tmp_path: Path, prefix: Path) -> list[Path]:
    out = []
    for unit in sorted((DEPLOY / "systemd").glob("*.service")):
        dest = tmp_path / unit.name
        dest.write_text(unit.read_text().replace("/opt/qos-scout/venv", str(prefix)))
        out.append(dest)
    return out


def test_systemd_units_verify(tmp_path: Path) -> None:
    tool = _tool("systemd-analyze")
    units = _units_for(tmp_path, BIN.parent)
    out = _run(tool, "verify", *map(str, units))
    assert out.returncode == 0 and out.stderr.strip() == "", out.stderr


def test_systemd_verify_catches_a_bad_unit(tmp_path: Path) -> None:
    tool = _tool("systemd-analyze")
    (unit,) = [u for u in _units_for(tmp_path, BIN.parent) if "agent" in u.name]
    unit.write_text(unit.read_text().replace("Restart=on-failure", "Restart=sometimes"))
    out = _run(tool, "verify", str(unit))
    assert "restart specifier" in out.stderr
