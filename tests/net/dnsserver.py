"""A small authoritative DNS server on loopback (dnspython) serving a zone text, for dns tests."""

from __future__ import annotations

import socket
import threading
import time

import dns.flags
import dns.message
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.zone


class ZoneServer:
    """Answers UDP queries for one zone from a thread; `delay_s` delays every answer."""

    def __init__(self, origin: str, text: str, delay_s: float = 0.0) -> None:
        self.zone = dns.zone.from_text(text, origin=origin, relativize=False)
        self.delay_s = delay_s
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.queries = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> ZoneServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)
        self.sock.close()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                data, addr = self.sock.recvfrom(4096)
            except TimeoutError:
                continue
            self.queries += 1
            q = dns.message.from_wire(data)
            r = dns.message.make_response(q)
            r.flags |= dns.flags.AA
            question = q.question[0]
            node = self.zone.get_node(question.name)
            if node is None:
                r.set_rcode(dns.rcode.NXDOMAIN)
            else:
                rds = node.get_rdataset(dns.rdataclass.IN, question.rdtype)
                if rds is not None:
                    rrset = r.find_rrset(r.answer, question.name, rds.rdclass, rds.rdtype,
                                         create=True)  # fmt: skip
                    rrset.update(rds)
            if self.delay_s:
                time.sleep(self.delay_s)
            self.sock.sendto(r.to_wire(), addr)
