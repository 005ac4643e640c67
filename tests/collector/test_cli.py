"""`qos-scout collector ...` admin commands: objects created, keys printed once, --json."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
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
        "--down-mbps",
        "100",
        "--up-mbps",
        "20",
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
    speed = run("site", "create", "--partner", p["partner_id"], "--customer", c["customer_id"],
                "Y", "--down-mbps", "100000000", *db)  # fmt: skip
    assert speed.returncode == 2
    assert "100000000 Mbit/s: expected more than 0, at most 1000000" in speed.stderr
    text = run("partner", "list", *db)
    assert text.returncode == 0 and "acme" in text.stdout
    kept = js("partner", "retention", p["partner_id"], "--days", "90", *db)
    assert kept == {"partner_id": p["partner_id"], "raw_retention_days": 90}
    zero = run("partner", "retention", p["partner_id"], "--days", "0", *db)
    assert zero.returncode == 2 and "raw_retention_days: 0 is not a number of days" in zero.stderr
    # The key and token work against a running collector on the same database.
    srv: LiveServer = serve(make_store())
    h = {"Authorization": f"Bearer {p['api_key']}"}
    site = httpx.get(f"{srv.url}/api/v1/sites/{s['site_id']}", headers=h).json()
    assert site["contracted_down_bps"] == 100_000_000 and site["customer_name"] == "Contoso"
    enr = httpx.post(f"{srv.url}/api/v1/enroll", json={"token": tok["token"], "hostname": "b"})
    assert enr.status_code == 201 and enr.json()["site_id"] == s["site_id"]
    me = httpx.get(f"{srv.url}/api/v1/partner", headers=h).json()
    assert me["raw_retention_days"] == 90


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


def test_profile_commands_and_agent_list_columns(tmp_path):
    db = ["--db", f"sqlite:///{tmp_path}/c.sqlite3"]
    pid = js("partner", "create", "acme", *db)["partner_id"]
    cid = js("customer", "create", "--partner", pid, "Contoso", *db)["customer_id"]
    sid = js("site", "create", "--partner", pid, "--customer", cid, "HQ", *db)["site_id"]
    cust = tmp_path / "customer.yml"
    cust.write_text(
        "modules:\n  ping_gw:\n    probe: icmp\n    targets: [$gateway]\n    interval_s: 60\n"
    )
    site = tmp_path / "site.yml"
    site.write_text("modules:\n  ping_gw: {interval_s: 0}\n")
    c = js("profile", "set", "--partner", pid, "--customer", cid, "--file", str(cust), *db)
    assert c["version"] == 1 and c["modules"]["ping_gw"]["interval_s"] == 60
    bad = run("profile", "set", "--partner", pid, "--site", sid, "--file", str(site), *db)
    assert bad.returncode == 2
    assert bad.stderr.strip() == (
        "qos-scout: modules.ping_gw.interval_s: Input should be greater than or equal to 1"
    )
    site.write_text("modules:\n  ping_gw: {interval_s: 10}\n")
    s = js("profile", "set", "--partner", pid, "--site", sid, "--file", str(site), *db)
    assert s["version"] == 1
    stale = run(
        "profile", "set", "--partner", pid, "--site", sid, "--file", str(site),
        "--if-version", "5", *db,
    )  # fmt: skip
    assert stale.returncode == 2 and "is at version 1, not 5" in stale.stderr
    eff = js("profile", "effective", "--partner", pid, "--site", sid, *db)
    assert eff["layers"] == ["customer", "site"] and eff["modules"]["ping_gw"]["interval_s"] == 10
    shown = run("profile", "show", "--partner", pid, "--site", sid, *db)
    assert shown.returncode == 0 and "interval_s: 10" in shown.stdout
    other = js("partner", "create", "globex", *db)["partner_id"]
    gone = run("profile", "show", "--partner", other, "--site", sid, *db)
    assert gone.returncode == 2 and f"site {sid} not found" in gone.stderr
    assert js("profile", "delete", "--partner", pid, "--site", sid, *db)["deleted"]
    listing = run("agent", "list", "--partner", pid, *db)
    assert listing.returncode == 0
    assert listing.stdout.splitlines()[0].split("\t") == [
        "id", "hostname", "site_id", "state", "version", "outdated", "silent",
        "config_version", "last_seen_at",
    ]  # fmt: skip


def test_user_create_prints_an_invitation_link_or_sets_a_password(tmp_path):
    """The bootstrap of the first admin: a link to follow, or a password from stdin."""
    from collector.config import CollectorConfig
    from collector.store import Store
    from collector.users import authenticate, invitation_user

    db = f"sqlite:///{tmp_path}/c.sqlite3"
    pid = js("partner", "create", "Example MSP", "--db", db)["partner_id"]
    doc = js("user", "create", "--partner", pid, "--email", "Ops@Example.net", "--role",
             "admin", "--portal-url", "https://support.example.net", "--db", db)  # fmt: skip
    link = doc["invitation_link"]
    assert doc["email"] == "ops@example.net" and link.startswith(
        "https://support.example.net/ui/invite/"
    )
    args = [EXE, "collector", "user", "create", "--partner", pid, "--email", "t1@example.net",
            "--role", "technician", "--password-stdin", "--db", db]  # fmt: skip
    p = subprocess.run(args, input="a long pass phrase\n", capture_output=True, text=True,
                       timeout=60)  # fmt: skip
    assert p.returncode == 0 and "password set" in p.stdout, p.stderr
    again = run("user", "create", "--partner", pid, "--email", "t1@example.net", "--role",
                "technician", "--db", db)  # fmt: skip
    assert again.returncode != 0 and "t1@example.net exists already" in again.stderr
    bad = run("user", "create", "--partner", pid, "--email", "x@example.net", "--role",
              "customer", "--db", db)  # fmt: skip
    assert bad.returncode != 0 and "customer_id: a customer viewer needs" in bad.stderr
    store = Store(CollectorConfig(db=db))
    try:
        with store.write() as c:
            assert invitation_user(c, link.rsplit("/", 1)[1], time.time())["role"] == "admin"
            assert authenticate(c, "t1@example.net", "a long pass phrase")["partner_id"] == pid
    finally:
        store.dispose()
