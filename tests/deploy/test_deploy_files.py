"""Deployment files pass the tools that own their formats: promtool, docker-compose,
hadolint and systemd-analyze. Each check is also shown to fail on a broken file."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any, cast

import pytest
import yaml

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


SECRET = "/run/secrets/metrics_token"


def _prometheus_copy(tmp_path: Path) -> Path:
    """deploy/prometheus with the scrape token's Docker secret path pointed at a real file
    (promtool checks that the credentials file exists)."""
    work = tmp_path / "prometheus"
    shutil.copytree(DEPLOY / "prometheus", work)
    token = tmp_path / "metrics_token"
    token.write_text("0123456789abcdef0123\n")
    cfg = work / "prometheus.yml"
    text = cfg.read_text()
    assert SECRET in text, "the collector is scraped with the token from the Docker secret"
    cfg.write_text(text.replace(SECRET, str(token)))
    return work


def test_promtool_check_config(tmp_path: Path) -> None:
    work = _prometheus_copy(tmp_path)
    out = _run(_tool("promtool"), "check", "config", "prometheus.yml", cwd=work)
    assert out.returncode == 0, out.stdout + out.stderr


def test_promtool_check_config_rejects_a_missing_token_file(tmp_path: Path) -> None:
    work = _prometheus_copy(tmp_path)
    (tmp_path / "metrics_token").unlink()
    out = _run(_tool("promtool"), "check", "config", "prometheus.yml", cwd=work)
    assert out.returncode != 0 and "metrics_token" in out.stdout + out.stderr


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


def _compose(path: Path) -> dict[str, Any]:
    """The compose file as docker-compose itself resolves it."""
    out = _run(_tool("docker-compose"), "-f", path.name, "config", cwd=path.parent)
    assert out.returncode == 0, out.stderr
    return cast(dict[str, Any], yaml.safe_load(out.stdout))


# Services whose whole point is to be reached from the internet.
PUBLIC = {"haproxy", "responder"}
URL_PASSWORD = re.compile(r"://[^/@\s]+:[^/@\s]+@")
SECRETISH = re.compile(r"password|passwd|secret|token|://[^/@\s]+:[^/@\s]+@", re.I)


def exposure_problems(compose: dict[str, Any]) -> list[str]:
    """What in a resolved compose file is reachable without authentication from outside,
    or carries a secret where `ps`, `docker inspect` or the logs show it."""
    problems = []
    for name, svc in compose["services"].items():
        for port in svc.get("ports", []):
            host_ip = port.get("host_ip", "") if isinstance(port, dict) else ""
            if isinstance(port, str):
                host_ip = port.rsplit(":", 2)[0] if port.count(":") == 2 else ""
            if name not in PUBLIC and host_ip != "127.0.0.1":
                problems.append(f"{name} publishes {port} on every interface")
        command = svc.get("command") or []
        words = command.split() if isinstance(command, str) else command
        problems += [
            f"{name}: a secret on the command line: {w}" for w in words if SECRETISH.search(w)
        ]
        for key, value in (svc.get("environment") or {}).items():
            named = SECRETISH.search(key) is not None and not key.endswith("_FILE")
            if named or URL_PASSWORD.search(str(value or "")):
                problems.append(f"{name}: a secret in the environment: {key}")
    return problems


def test_docker_compose_config() -> None:
    compose = _compose(DEPLOY / "docker-compose.yml")
    for service in ("collector", "postgres", "prometheus", "grafana", "responder", "haproxy"):
        assert service in compose["services"]
    assert exposure_problems(compose) == []
    assert set(compose["secrets"]) >= {"postgres_password", "metrics_token", "collector.pem"}


def test_docker_compose_exposure_check_catches_the_old_file(tmp_path: Path) -> None:
    """The file as it was: collector (and its /metrics), Prometheus and Alertmanager on every
    interface, the database password on the collector's command line."""
    old = tmp_path / "docker-compose.yml"
    old.write_text(
        "version: '3.8'\nservices:\n"
        "  collector:\n    image: c\n    ports: ['8080:8080']\n"
        "    command: [collector, serve, --db, 'postgresql://qos_scout:pw@postgres/qos_scout']\n"
        "  prometheus:\n    image: p\n    ports: ['9090:9090']\n"
        "  postgres:\n    image: pg\n    environment: {POSTGRES_PASSWORD: pw}\n"
    )
    problems = exposure_problems(_compose(old))
    assert any(p.startswith("collector publishes") for p in problems), problems
    assert any(p.startswith("prometheus publishes") for p in problems), problems
    assert any("command line" in p and "qos_scout:pw@" in p for p in problems), problems
    assert "postgres: a secret in the environment: POSTGRES_PASSWORD" in problems


def test_collector_config_of_the_compose_file_loads() -> None:
    from collector.config import load_config

    cfg = load_config(DEPLOY / "collector" / "collector.yml")
    assert cfg.metrics.listen and cfg.metrics.listen.endswith(":9100")
    assert cfg.metrics.token_file is not None and not cfg.api_docs
    compose = (DEPLOY / "docker-compose.yml").read_text()
    assert f"ipv4_address: {cfg.web.trusted_proxies[0]}" in compose
    assert "collector:9100" in (DEPLOY / "prometheus" / "prometheus.yml").read_text()


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
