"""The contract of `call_report` against a real phone: linphonec (linphone-cli) at the site
calls our responder across a namespace lab that drops RTP on its way to the phone, and sends
its RFC 6035 quality reports by SIP PUBLISH to the agent's listener. The session report's
loss from the far end matches the injected loss within 3 binomial sigma, and through the
collector's ingest it opens `loss_back` with the reports as evidence, shows in /metrics per
direction and in the dashboard panel of loss per direction."""

from __future__ import annotations

import json
import math
import queue
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import IO, Any

import netlab
import pytest

from tests.contract.harness import Contract, measured

LOSS_PCT = 20.0
# liblinphone reports NLR as a fraction with one decimal: 10 % steps (see docs/sip.md)
LINPHONE_STEP_PCT = 10.0
CALL_S = 20.0
PHONE_SIP, PHONE_RTP, LISTENER = 5196, 7078, 5070
RESPONDER_SIP = 5060


def _lines(stream: IO[str]) -> queue.Queue[str]:
    """Lines of a child's output as they come (read on a thread, so waits have deadlines)."""
    q: queue.Queue[str] = queue.Queue()

    def pump() -> None:
        for line in stream:
            q.put(line)

    threading.Thread(target=pump, daemon=True).start()
    return q


def _wait_line(q: queue.Queue[str], want: str, deadline_s: float, seen: list[str]) -> str:
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        try:
            line = q.get(timeout=max(0.0, end - time.monotonic()))
        except queue.Empty:
            break
        seen.append(line)
        if want in line:
            return line
    raise AssertionError(f"no {want!r} within {deadline_s} s; got: {''.join(seen)[-2000:]}")


def _linphonerc(home: Path, phone: str, collector: str) -> Path:
    rc = home / "linphonerc"
    rc.write_text(
        "[sip]\n"
        f"sip_port={PHONE_SIP}\nsip_tcp_port=-1\ndefault_proxy=0\n"
        "[rtp]\n"
        f"audio_rtp_port={PHONE_RTP}\n"
        # RTCP XR VoIP metrics: linphone fills its reports' LocalMetrics from them
        "rtcp_xr_enabled=1\nrtcp_xr_voip_metrics_enabled=1\nrtcp_xr_stat_summary_enabled=1\n"
        "rtcp_xr_rcvr_rtt_mode=all\nrtcp_xr_rcvr_rtt_max_size=10000\n"
        "[proxy_0]\n"
        f"reg_proxy=sip:{phone}:{PHONE_SIP}\nreg_identity=sip:reception@{phone}\n"
        "reg_sendregister=0\npublish=0\n"
        f"quality_reporting_collector={collector}\n"
        "quality_reporting_enabled=1\nquality_reporting_interval=5\n"
    )
    (home / ".local" / "share" / "linphone").mkdir(parents=True, exist_ok=True)
    return rc


@pytest.mark.netns
def test_linphones_reports_of_a_lossy_call_open_loss_back(
    lab: netlab.NetLab, contract: Contract, tmp_path: Path
) -> None:
    if shutil.which("linphonec") is None:
        pytest.skip("linphonec is not installed (Debian package linphone-cli)")
    phone, far = lab.addr("a"), lab.addr("b")
    # linphone finds its own address by the default route (else it offers 127.0.0.1)
    lab.run_in("a", ["ip", "route", "add", "default", "via", far])
    resp = lab.popen_in("b", [sys.executable, "-m", "agent.cli.main", "responder",
                              "--twamp-port", "off", "--bandwidth-port", "off",
                              "--natprobe-port", "off", "--sip-port", str(RESPONDER_SIP),
                              "--sip-tls-port", "off"],
                        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)  # fmt: skip
    assert resp.stdout is not None
    assert resp.stdout.readline().startswith("responder ready")
    listener = lab.popen_in("a", [sys.executable, "-m", "agent.cli.main", "call-reports",
                                  "--bind", phone, "--port", str(LISTENER),
                                  "--phone", f"reception={phone}/32", "--json"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
    assert listener.stdout is not None
    reports = _lines(listener.stdout)
    # RTP from the far end to the phone loses LOSS_PCT % (random, nftables counts the truth)
    loss = lab.nft_loss("a", lab.iface("a"), LOSS_PCT, "in", match=f"udp dport {PHONE_RTP}")
    rc = _linphonerc(tmp_path, phone, f"sip:collector@{phone}:{LISTENER}")
    lin = lab.popen_in("a", ["linphonec", "-c", str(rc)], env={"HOME": str(tmp_path),
                       "PATH": "/usr/bin:/bin"}, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, text=True, bufsize=1)  # fmt: skip
    assert lin.stdin is not None and lin.stdout is not None
    out = _lines(lin.stdout)
    seen: list[str] = []

    def say(cmd: str) -> None:
        assert lin.stdin is not None
        lin.stdin.write(cmd + "\n")
        lin.stdin.flush()

    say("soundcard use files")  # read once the core is up
    _wait_line(out, "Using wav files instead of soundcard", 30.0, seen)
    say(f"call sip:echo@{far}:{RESPONDER_SIP}")
    _wait_line(out, "connected", 30.0, seen)
    time.sleep(CALL_S)  # the call's length: what is measured, not a synchronisation
    say("terminate")
    _wait_line(out, "ended", 30.0, seen)
    got: list[dict[str, Any]] = []
    while not got or got[-1]["measurement"]["report"] != "session":
        line = _wait_line(reports, "call_report", 30.0, [])
        got.append(json.loads(line))
    say("quit")
    seen_pkts, dropped = loss.counts()

    session = got[-1]
    back = session["measurement"]["back"]
    assert session["probe"] == "call_report" and session["module"] == "reception"
    assert session["target"] == f"sip:reception@{phone}"
    assert session["measurement"]["codec"] in ("PCMU", "PCMA")
    assert back["source"] == "report" and back["loss_pct"] is not None
    assert session["measurement"]["reading"], "linphone's fraction NLR was not recognised"
    p = LOSS_PCT / 100.0
    sigma_pct = 100.0 * math.sqrt(p * (1 - p) / seen_pkts)
    true_pct = 100.0 * dropped / seen_pkts
    tolerance = 3 * sigma_pct + LINPHONE_STEP_PCT / 2
    print(f"linphone: {len(got)} reports; nft saw {seen_pkts} RTP packets to the phone, dropped "
          f"{dropped} ({true_pct:.2f} %); the phone reports {back['loss_pct']} % "
          f"(injected {LOSS_PCT} %, 3 sigma {3 * sigma_pct:.2f} % + half its 10 % step), "
          f"MOS-LQ {back['mos']}")  # fmt: skip
    assert seen_pkts > 0.8 * CALL_S * 50
    assert abs(back["loss_pct"] - LOSS_PCT) <= tolerance, (back, seen_pkts, dropped)
    # and against what nftables counted: the phone's rounding plus a point for the packets
    # after its last RTCP XR
    assert abs(back["loss_pct"] - true_pct) <= LINPHONE_STEP_PCT / 2 + 1.0, (back, true_pct)

    site = contract.site("call-reports")
    target = session["target"]
    sent = site.ship(*got)
    tickets = {t["rule_id"]: t for t in site.tickets() if t["target"] == target}
    assert "loss_back" in tickets, site.tickets()
    ticket = site.contract.stack.api("GET", f"/api/v1/tickets/{tickets['loss_back']['id']}")
    assert ticket["severity"] == "critical" and ticket["state"] == "open"
    evidence = ticket["evidence"]["results"]
    assert len(evidence) == 3  # the rule's trip_after: three reports in a row
    assert {r["id"] for r in evidence} <= {str(r["id"]) for r in sent}
    assert all(r["probe"] == "call_report" and r["measurement"]["back"]["loss_pct"] > 1
               for r in evidence)  # fmt: skip
    value = site.series("qos_scout_loss_pct", "call_report", target, direction="back")
    assert value == measured(session, "back.loss_pct")
    site.panel("site-detail", "Loss per direction", "call_report", target, [value],
               direction="back")  # fmt: skip
