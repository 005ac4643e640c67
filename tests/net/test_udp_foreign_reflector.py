"""The udp probe against a plain RFC 5357 Appendix I reflector (not ours): what it can tell."""

from __future__ import annotations

import socket
import struct
import threading
import time
from collections.abc import Iterator

import pytest

from agent.probes import run_probe
from agent.wire.twamp import ns_to_ntp


@pytest.fixture
def stateless_reflector() -> Iterator[tuple[int, list[int]]]:
    """Copies the sender's sequence number, 41-octet replies, drops sender seq 5 on the way back."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(0.1)
    stop = threading.Event()
    seen: list[int] = []

    def run() -> None:
        while not stop.is_set():
            try:
                data, addr = sock.recvfrom(4096)
            except TimeoutError:
                continue
            rx = ns_to_ntp(time.time_ns())
            seq, ts, err = struct.unpack_from("!IQH", data)
            seen.append(seq)
            if seq == 5:
                continue
            tx = ns_to_ntp(time.time_ns())
            sock.sendto(struct.pack("!IQHHQIQHHB", seq, tx, err, 0, rx, seq, ts, err, 0, 64), addr)

    t = threading.Thread(target=run, daemon=True)
    t.start()
    yield sock.getsockname()[1], seen
    stop.set()
    t.join(5)
    sock.close()


async def test_round_trip_figures_work_and_direction_split_is_declared_unavailable(
    stateless_reflector: tuple[int, list[int]],
) -> None:
    port, seen = stateless_reflector
    res = await run_probe("udp", f"127.0.0.1:{port}", {"duration_s": 0.4, "packet_rate": 50})
    assert res.success, res.error
    m = res.measurement or {}
    assert m["sent"] == 20 and m["received"] == 19 and m["lost"] == 1
    assert m["direction_loss_method"].startswith("unavailable")
    assert m["out"]["lost"] is None and m["out"]["mos"] is None
    # no RFC 7750 octet in a 41-octet reply: the far-end DSCP is unknown, not "0"
    assert m["reflector_reports_dscp"] is False
    assert m["out"]["dscp_received"] is None
    assert m["rtt_ms"]["median"] is not None and m["out"]["jitter_ms"] is not None
    assert len(seen) == 20
