"""`qos-scout collector ...` admin commands: objects created, keys printed once, --json."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import httpx

from collector.db import head_revision
from tests.collector.conftest import LiveServer
from tests.collector.peers import start_collector
from tests.collector.pg import free_port

EXE = str(Path(sys.executable).parent / "qos-scout")


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([EXE, "collector", *args], capture_output=True, text=True, timeout=60)


def js(*args: str) -> dict:
    p = run(*args, "--json")
    assert p.returncode == 0, p.stderr
    return json.loads(p.stdout)  # type: ignore[no-any-return]


def test_admin_commands_set_up_a_partner_end_to_end(db_url, make_store, serve):
    db = ["--db", db_url]
    assert js("migrate", *db)["revision"] == head_revision()
    p = js("partner", "create", "acme", *db)
    assert p["api_key"].startswith("qsp_")
    c = js("customer", "create", "--partner", p["partner_id"], "Contoso", *db)
    s = js(
        "site",
        "create",
        "--partner",
        p["partner_id"],
        "--customer",
        c["customer_id"],
        "HQ",
        "--down-bps",
        "100000000",
        "--up-bps",
        "20000000",
        "--sip-server",
        "sip.x",
        *db,
    )
    tok = js("token", "create", "--partner", p["partner_id"], "--site", s["site_id"], *db)
    assert tok["token"].startswith("qse_") and tok["expires_at"]
    # The site id is enough, as README.md shows it: the partner is the site's.
    tok2 = js("token", "create", "--site", s["site_id"], *db)
    assert tok2["site_id"] == s["site_id"] and tok2["token"] != tok["token"]
    gone = run("token", "create", "--site", "no-such-site", *db)
    assert gone.returncode == 2 and "site no-such-site not found" in gone.stderr
    dup = run("partner", "create", "acme", *db)
    assert dup.returncode == 2 and "partner 'acme' already exists" in dup.stderr
    bad = run("site", "create", "--partner", p["partner_id"], "--customer", "nope", "X", *db)
    assert bad.returncode == 2 and "customer nope not found" in bad.stderr
    text = run("partner", "list", *db)
    assert text.returncode == 0 and "acme" in text.stdout
    # The key and token work against a running collector on the same database.
    srv: LiveServer = serve(make_store())
    h = {"Authorization": f"Bearer {p['api_key']}"}
    site = httpx.get(f"{srv.url}/api/v1/sites/{s['site_id']}", headers=h).json()
    assert site["contracted_down_bps"] == 100_000_000 and site["customer_name"] == "Contoso"
    enr = httpx.post(f"{srv.url}/api/v1/enroll", json={"token": tok["token"], "hostname": "b"})
    assert enr.status_code == 201 and enr.json()["site_id"] == s["site_id"]


def test_bad_config_file_is_refused_with_the_key(tmp_path):
    cfg = tmp_path / "c.yml"
    cfg.write_text("db: sqlite:///x.db\nlisten_port: 80\n")
    p = run("migrate", "--config", str(cfg))
    assert p.returncode == 2
    assert p.stderr.strip() == f"qos-scout: {cfg}: listen_port: unknown key"
    p = run("serve", "--listen", "nohost", "--db", f"sqlite:///{tmp_path}/x.db")
    assert p.returncode == 2 and "listen 'nohost' must be HOST:PORT" in p.stderr
    p = run("migrate", "--db", "mysql://x")
    assert p.returncode == 2 and "use sqlite:///PATH or postgresql://" in p.stderr


def test_serve_stops_cleanly_on_sigterm_and_sigint(tmp_path):
    """A requested stop (systemd's SIGTERM, Ctrl-C) exits 0 after the graceful shutdown."""
    for sig in (signal.SIGTERM, signal.SIGINT):
        proc = start_collector(free_port(), "--db", f"sqlite:///{tmp_path}/{sig.name}.db")
        try:
            proc.send_signal(sig)
            _, raw = proc.communicate(timeout=20)
        finally:
            proc.kill()
        err = raw.decode()
        assert proc.returncode == 0, (sig.name, proc.returncode, err[-2000:])
        assert "Traceback" not in err
