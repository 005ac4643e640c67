"""`qos-scout demo` (what `make demo` runs) completes: every piece starts, a ticket opens and
resolves by itself, the agent stops cleanly, and the summary carries measured figures."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from agent.cli.demo import run_demo
from agent.cli.stack import Stack

pytestmark = pytest.mark.slow


def test_demo_runs_end_to_end(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc = run_demo(tmp_path / "demo", keep=False, timeout_s=120)
    out = capsys.readouterr().out
    assert rc == 0, out
    assert re.search(r"ticket \S+ opened by rule demo_strict_rtt", out)
    assert re.search(r"ticket \S+ resolved automatically", out)
    assert "agent stopped with SIGTERM, exit status 0" in out
    assert re.search(r"on-demand job \S+: done", out)
    # the on-demand job (a voice stream: no root needed) measured something
    assert re.search(r"On-demand job \S+ \(probe\): done; report \{'results': 1, 'failed': 0", out)
    rows = dict(re.findall(r"^  (icmp|udp|sip_call|host) +(\d+) +\d+ ", out, re.M))
    assert {"icmp", "host"} <= set(rows), out
    assert all(int(n) >= 1 or p == "icmp" for p, n in rows.items()), out
    assert "evidence: " in out
    assert not (tmp_path / "demo").exists()  # cleaned up
    assert "Everything the demo started is stopped now. Next:" in out
    assert "qos-scout demo --serve" in out
    assert "/docs" not in out.split("stopped now")[-1]  # no dead links after the stop


def test_demo_serve_keeps_every_printed_url_answering_until_stopped(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import httpx

    seen: dict[str, int] = {}

    def visit(stack: Stack) -> None:
        out = capsys.readouterr().out
        key, token = stack.partner_key, stack.metrics_token
        login_as = f"(log in as {stack.admin_email}, password {stack.admin_password})"
        assert login_as in out, out
        portal = re.search(r"Support portal: +(\S+)", out)
        assert portal, out
        with httpx.Client(timeout=10) as c:
            page = c.get(portal.group(1) + "login").text
            csrf = re.search(r'name="csrf" value="([^"]*)"', page)
            assert csrf, page
            login = c.post(portal.group(1) + "login", follow_redirects=True,
                           data={"csrf": csrf.group(1), "email": stack.admin_email,
                                 "password": stack.admin_password, "next": "/ui/"})  # fmt: skip
            seen["portal"] = login.status_code
            assert "demo-site" in login.text, login.text[:500]
            for name, pattern, headers in (
                ("docs", r"API docs: +(\S+)", {}),
                ("partner metrics", r"Partner metrics: +(\S+)", {"Authorization": f"Bearer {key}"}),
                ("collector metrics", r"Collector metrics: +(\S+)",
                 {"Authorization": f"Bearer {token}"}),
                ("agent metrics", r"Agent metrics: +(\S+)", {}),
            ):  # fmt: skip
                m = re.search(pattern, out)
                assert m, (name, out)
                seen[name] = c.get(m.group(1), headers=headers).status_code

    rc = run_demo(tmp_path / "demo", timeout_s=120, serve=True, until_stopped=visit)
    out = capsys.readouterr().out
    assert rc == 0, out
    assert seen == {"portal": 200, "docs": 200, "partner metrics": 200,
                    "collector metrics": 200, "agent metrics": 200}  # fmt: skip
    assert "agent stopped with SIGTERM, exit status 0" in out
