"""The responder survives random, truncated and oversized datagrams and keeps answering."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent.responder import ResponderConfig, start_services
from agent.responder.bandwidth import BandwidthServer
from agent.responder.reflector import TwampReflector
from agent.wire.stamp import ClassOfService, StampReflectorPacket, StampSenderPacket
from agent.wire.twamp import ReflectorPacket, SenderPacket, ns_to_ntp


class Running:
    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.services: list = []
        ready = threading.Event()

        def run() -> None:
            asyncio.set_event_loop(self.loop)
            cfg = ResponderConfig("127.0.0.1", 0, 0)
            self.services = self.loop.run_until_complete(start_services(cfg))
            ready.set()
            self.loop.run_forever()

        self.thread = threading.Thread(target=run, daemon=True)
        self.thread.start()
        assert ready.wait(10)

    def stop(self) -> None:
        async def stop_all() -> None:
            for s in self.services:
                await s.stop()

        asyncio.run_coroutine_threadsafe(stop_all(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


@pytest.fixture(scope="module")
def responder() -> Iterator[Running]:
    r = Running()
    yield r
    r.stop()


def _reflector(r: Running) -> TwampReflector:
    return next(s for s in r.services if isinstance(s, TwampReflector))


def _good_exchange(addr: tuple[str, int], seq: int) -> ReflectorPacket:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(2)
        s.sendto(bytes(SenderPacket(seq, ns_to_ntp(time.time_ns()), padding=bytes(30))), addr)
        return ReflectorPacket.parse(s.recv(4096))


junk = st.one_of(
    st.binary(max_size=13),  # truncated: shorter than a sender packet
    st.binary(min_size=14, max_size=1500),  # random (any 14+ octets parse as a sender packet)
    st.binary(min_size=9000, max_size=65000),  # oversized
    st.just(b"QSBU\x01"),  # truncated bandwidth datagram
    st.binary(max_size=40).map(lambda b: b"QSBU" + b),
    # STAMP-shaped: zero MBZ, then random octets where the TLVs go
    st.tuples(st.binary(min_size=16, max_size=16), st.binary(max_size=200)).map(
        lambda t: t[0] + bytes(28) + t[1]
    ),
)


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(junk)
def test_fuzzed_datagrams_never_stop_the_reflector(responder: Running, data: bytes) -> None:
    refl = _reflector(responder)
    bw = next(s for s in responder.services if isinstance(s, BandwidthServer))
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.sendto(data, refl.address)
        s.sendto(data, bw.address)


def test_good_packets_are_answered_after_the_fuzz(responder: Running) -> None:
    refl = _reflector(responder)
    before = refl.malformed
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.sendto(b"short", refl.address)
    reply = _good_exchange(refl.address, 42)
    assert reply.sender_seq == 42 and reply.signed
    assert refl.malformed >= before + 1
    assert responder.thread.is_alive()


def test_stamp_packets_are_answered_as_stamp_after_the_fuzz(responder: Running) -> None:
    refl = _reflector(responder)
    before = refl.reflected_stamp
    pkt = StampSenderPacket(5, ns_to_ntp(time.time_ns()), ssid=77, tlvs=(
        ClassOfService(dscp1=26).tlv(),))  # fmt: skip
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(2)
        s.sendto(bytes(pkt), refl.address)
        raw = s.recv(4096)
    reply = StampReflectorPacket.parse(raw)
    assert len(raw) == len(bytes(pkt))
    assert (reply.ssid, reply.sender_seq) == (77, 5)
    cos = reply.cos()
    assert cos is not None and cos.dscp1 == 26 and cos.dscp2 == 0
    # The reflector counts the packet after sending its reply: wait for the count.
    deadline = time.monotonic() + 10
    while refl.reflected_stamp != before + 1 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert refl.reflected_stamp == before + 1
