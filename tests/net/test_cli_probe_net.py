"""`qos-scout responder` and the network probe subcommands, end to end on loopback."""

from __future__ import annotations

import argparse
import json
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator

import netlab
import pytest

from agent.cli.cmd_probe_net import add_probe_commands

ONLY_OURS = ["--sip-port", "off", "--sip-tls-port", "off", "--natprobe-port", "off"]


class Responder:
    """`qos-scout responder` on loopback, ports of its own; `stop()` returns its log."""

    def __init__(self) -> None:
        self.twamp, self.bw = netlab.free_udp_port(), netlab.free_tcp_port()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "agent.cli.main", "responder", "--bind", "127.0.0.1",
             "--twamp-port", str(self.twamp), "--bandwidth-port", str(self.bw),
             *ONLY_OURS],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        assert line.startswith("responder ready"), line

    def stop(self) -> str:
        if self.proc.poll() is None:
            self.proc.terminate()
        _, err = self.proc.communicate(timeout=10)
        return str(err)


@pytest.fixture
def responder() -> Iterator[Responder]:
    """One per test (each checks the log line of its own client test: a module-wide one
    was split between xdist workers, and each half missed the other's line)."""
    r = Responder()
    yield r
    r.stop()


def run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    add_probe_commands(parser.add_subparsers(dest="kind"))
    args = parser.parse_args(argv)
    return int(args.func(args))


def test_probe_udp_json_is_one_probe_result_per_line(
    responder: Responder, capsys: pytest.CaptureFixture[str]
) -> None:
    rc = run(["udp", f"127.0.0.1:{responder.twamp}", "-t", "1", "--json"])
    lines = capsys.readouterr().out.strip().splitlines()
    assert rc == 0 and len(lines) == 1
    res = json.loads(lines[0])
    assert res["probe"] == "udp" and res["success"]
    assert res["measurement"]["sent"] == 50 and res["measurement"]["payload_bytes"] == 172
    assert "twamp client 127.0.0.1" in responder.stop()  # one log line per client test


def test_probe_bandwidth_table_shows_both_directions(
    responder: Responder, capsys: pytest.CaptureFixture[str]
) -> None:
    rc = run(["bandwidth", f"127.0.0.1:{responder.bw}", "-t", "0.5", "-P", "2"])
    out = capsys.readouterr().out
    assert rc == 0
    assert "tcp upload x2" in out and "tcp download x2" in out
    assert "bandwidth test" in responder.stop()  # one log line per client test


def test_probe_udp_to_a_closed_port_fails_with_a_readable_reason(
    capsys: pytest.CaptureFixture[str],
) -> None:
    port = netlab.free_udp_port()
    rc = run(["udp", f"127.0.0.1:{port}", "-t", "0.2"])
    err = capsys.readouterr().err
    assert rc == 1
    assert f"no TWAMP-light reflection came back from 127.0.0.1 port {port}" in err
    assert "port unreachable" in err
    assert "start `qos-scout responder` on that host or check the port" in err


def test_probe_udp_to_a_port_that_swallows_everything_says_what_to_check(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sink:  # bound, never answers
        sink.bind(("127.0.0.1", 0))
        port = sink.getsockname()[1]
        rc = run(["udp", f"127.0.0.1:{port}", "-t", "0.2"])
    err = capsys.readouterr().err
    assert rc == 1
    assert f"the reflector is down or a firewall drops UDP port {port} on the way" in err
    assert f"UDP {port} is open both ways" in err


def test_probe_udp_to_a_port_that_answers_garbage_counts_what_it_could_not_read(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as echo:
        echo.bind(("127.0.0.1", 0))
        port = echo.getsockname()[1]
        stop = threading.Event()

        def answer() -> None:
            echo.settimeout(0.05)
            while not stop.is_set():
                try:
                    _, peer = echo.recvfrom(2048)
                except TimeoutError:
                    continue
                echo.sendto(b"not a reflection", peer)

        t = threading.Thread(target=answer, daemon=True)
        t.start()
        try:
            rc = run(["udp", f"127.0.0.1:{port}", "-t", "0.2"])
        finally:
            stop.set()
            t.join()
    err = capsys.readouterr().err
    assert rc == 1
    assert "replies came back that are not TWAMP-light reflections" in err, err


def test_responder_rejects_a_bad_port_with_a_clear_message() -> None:
    p = subprocess.run(
        [sys.executable, "-m", "agent.cli.main", "responder", "--twamp-port", "http"],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert p.returncode == 2
    assert "port 'http' is not a number from 0 to 65535 or 'off'" in p.stderr
