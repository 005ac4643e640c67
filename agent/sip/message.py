"""SIP messages (RFC 3261 §7): parse and serialize requests and responses, frame streams.

A message keeps its headers in order as (canonical name, value) pairs. Compact header forms
are expanded on parse, folded lines are joined, and list headers (Via, Contact, Route, ...)
can be read value by value. Anything malformed raises `SipParseError` with a message that
says what is wrong; nothing else escapes `SipMessage.parse`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field


class SipParseError(ValueError):
    """The bytes are not a well-formed SIP message."""


COMPACT: dict[str, str] = {
    "a": "Accept-Contact",
    "b": "Referred-By",
    "c": "Content-Type",
    "d": "Request-Disposition",
    "e": "Content-Encoding",
    "f": "From",
    "i": "Call-ID",
    "j": "Reject-Contact",
    "k": "Supported",
    "l": "Content-Length",
    "m": "Contact",
    "n": "Identity-Info",
    "o": "Event",
    "r": "Refer-To",
    "s": "Subject",
    "t": "To",
    "u": "Allow-Events",
    "v": "Via",
    "x": "Session-Expires",
    "y": "Identity",
}

_SPECIAL_CASE = {
    "call-id": "Call-ID",
    "cseq": "CSeq",
    "www-authenticate": "WWW-Authenticate",
    "mime-version": "MIME-Version",
    "rseq": "RSeq",
    "rack": "RAck",
}

# Headers whose value may be a comma-separated list (RFC 3261 §7.3.1). Auth headers are
# not: their parameters are separated by commas too.
LIST_HEADERS = frozenset(
    {
        "Via",
        "Contact",
        "Route",
        "Record-Route",
        "Allow",
        "Supported",
        "Require",
        "Proxy-Require",
        "Unsupported",
        "Accept",
        "Accept-Encoding",
        "Accept-Language",
        "Allow-Events",
        "Path",
        "Service-Route",
    }
)

_TOKEN = re.compile(r"^[A-Za-z0-9\-.!%*_+`'~]+$")
_VERSION = "SIP/2.0"
MAX_MESSAGE = 65535


def is_number(text: str) -> bool:
    """ASCII digits only (str.isdigit also accepts characters int() refuses, like '²')."""
    return text.isascii() and text.isdigit()


def canonical_name(name: str) -> str:
    """`v` -> `Via`, `call-id` -> `Call-ID`, `content-length` -> `Content-Length`."""
    low = name.lower()
    if low in COMPACT:
        return COMPACT[low]
    if low in _SPECIAL_CASE:
        return _SPECIAL_CASE[low]
    return "-".join(p[:1].upper() + p[1:] for p in low.split("-"))


def split_list(value: str) -> list[str]:
    """Split a header value at commas outside quotes and angle brackets."""
    parts: list[str] = []
    cur: list[str] = []
    quoted = False
    angle = 0
    escape = False
    for ch in value:
        if escape:
            cur.append(ch)
            escape = False
            continue
        if quoted and ch == "\\":
            escape = True
        elif ch == '"':
            quoted = not quoted
        elif not quoted and ch == "<":
            angle += 1
        elif not quoted and ch == ">":
            angle = max(0, angle - 1)
        elif ch == "," and not quoted and angle == 0:
            parts.append("".join(cur).strip())
            cur = []
            continue
        cur.append(ch)
    if quoted:
        raise SipParseError(f"unterminated quoted string in header value {value[:60]!r}")
    parts.append("".join(cur).strip())
    return [p for p in parts if p]


@dataclass
class SipMessage:
    """A SIP request (`method` and `uri` set) or response (`status` and `reason` set)."""

    method: str | None = None
    uri: str | None = None
    status: int | None = None
    reason: str = ""
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""
    # Body bytes that arrived after the headers, before Content-Length cut them (ALG checks).
    wire_body_length: int | None = None

    # ------------------------------------------------------------------ construction

    @classmethod
    def request(cls, method: str, uri: str) -> SipMessage:
        return cls(method=method, uri=uri)

    @classmethod
    def response(cls, status: int, reason: str) -> SipMessage:
        return cls(status=status, reason=reason)

    @property
    def is_request(self) -> bool:
        return self.method is not None

    # ------------------------------------------------------------------ headers

    def get(self, name: str, default: str | None = None) -> str | None:
        """First value of header `name` (any spelling, compact forms included)."""
        want = canonical_name(name)
        for n, v in self.headers:
            if n == want:
                return v
        return default

    def get_all(self, name: str) -> list[str]:
        """Every value of header `name`; list headers are split at top-level commas."""
        want = canonical_name(name)
        out: list[str] = []
        for n, v in self.headers:
            if n == want:
                out.extend(split_list(v) if want in LIST_HEADERS else [v])
        return out

    def add(self, name: str, value: str) -> None:
        self.headers.append((canonical_name(name), value))

    def set(self, name: str, value: str) -> None:
        """Replace every `name` header with one value (kept at the first one's place)."""
        want = canonical_name(name)
        for i, (n, _) in enumerate(self.headers):
            if n == want:
                self.headers[i] = (want, value)
                self.headers = [h for j, h in enumerate(self.headers) if j <= i or h[0] != want]
                return
        self.headers.append((want, value))

    def remove(self, name: str) -> None:
        want = canonical_name(name)
        self.headers = [h for h in self.headers if h[0] != want]

    @property
    def cseq(self) -> tuple[int, str]:
        """(number, method) of the CSeq header."""
        value = self.get("CSeq")
        if value is None:
            raise SipParseError("CSeq header is missing")
        parts = value.split()
        if len(parts) != 2 or not is_number(parts[0]):
            raise SipParseError(f"CSeq {value!r} is not 'number METHOD'")
        return int(parts[0]), parts[1]

    @property
    def call_id(self) -> str:
        value = self.get("Call-ID")
        if not value:
            raise SipParseError("Call-ID header is missing")
        return value

    # ------------------------------------------------------------------ wire format

    def start_line(self) -> str:
        if self.method is not None:
            return f"{self.method} {self.uri} {_VERSION}"
        return f"{_VERSION} {self.status} {self.reason}"

    def __bytes__(self) -> bytes:
        lines = [self.start_line()]
        for n, v in self.headers:
            if n != "Content-Length":
                lines.append(f"{n}: {v}")
        lines.append(f"Content-Length: {len(self.body)}")
        return ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8") + self.body

    @classmethod
    def parse(cls, data: bytes, *, stream: bool = False) -> SipMessage:
        """Parse one whole message. On a stream transport Content-Length is mandatory."""
        if len(data) > MAX_MESSAGE:
            raise SipParseError(f"message of {len(data)} bytes exceeds {MAX_MESSAGE}")
        found = header_end(data)
        if found is None:
            raise SipParseError("no empty line after the headers")
        end, sep = found
        try:
            head = data[:end].decode("utf-8")
        except UnicodeDecodeError as exc:
            raise SipParseError(f"headers are not UTF-8 (byte {exc.start})") from None
        body = data[end + sep :]
        lines = head.replace("\r\n", "\n").split("\n")
        msg = _parse_start_line(lines[0])
        msg.headers = _parse_headers(lines[1:])
        n = declared_length(msg.get_all("Content-Length"))
        if n is None:
            if stream:
                raise SipParseError("Content-Length is missing on a stream transport")
        else:
            if n > len(body):
                raise SipParseError(
                    f"Content-Length {n} is larger than the {len(body)} body bytes received"
                )
            body = body[:n]
        msg.wire_body_length = len(data) - end - sep
        msg.body = body
        for required in ("Via", "CSeq", "Call-ID", "From", "To"):
            if msg.get(required) is None:
                raise SipParseError(f"{required} header is missing")
        number, method = msg.cseq
        if msg.method is not None and method != msg.method:
            raise SipParseError(f"CSeq method {method} does not match request {msg.method}")
        del number
        return msg


def header_end(data: bytes) -> tuple[int, int] | None:
    """Where the header block ends and the length of the empty line that ends it: the first
    CRLF CRLF or bare LF LF, whichever comes first (a body may hold the other one)."""
    ends = [(i, len(sep)) for sep in (b"\r\n\r\n", b"\n\n") if (i := data.find(sep)) >= 0]
    return min(ends) if ends else None


def _content_length(value: str) -> int:
    v = value.strip()
    if not is_number(v) or len(v) > 6:
        raise SipParseError(f"Content-Length {value!r} is not a number")
    return int(v)


def declared_length(values: list[str]) -> int | None:
    """The body length the Content-Length headers (full or compact `l`) declare, or None.

    Repeated headers that agree are one length; repeated headers that disagree make the
    message's framing ambiguous (a proxy may cut it where we do not: request smuggling), so
    they are refused rather than the first one winning and the rest of the body dropped.
    """
    lengths = [_content_length(v) for v in values]
    if len(set(lengths)) > 1:
        shown = ", ".join(str(n) for n in lengths)
        raise SipParseError(
            f"Content-Length appears {len(lengths)} times with different values ({shown})"
        )
    return lengths[0] if lengths else None


def _framing_values(head: str) -> list[str]:
    """Every Content-Length value of a header block (folded lines joined, compact `l`
    included), without judging the other headers: the stream framer only needs the length."""
    values: list[str] = []
    current: str | None = None
    for line in head.replace("\r\n", "\n").split("\n")[1:]:
        if line[:1] in (" ", "\t"):
            if current is not None:
                current = f"{current} {line.strip()}".strip()
            continue
        if current is not None:
            values.append(current)
            current = None
        name, colon, value = line.partition(":")
        if colon and name.strip().lower() in ("content-length", "l"):
            current = value.strip()
    if current is not None:
        values.append(current)
    return values


def _parse_start_line(line: str) -> SipMessage:
    if line.startswith(_VERSION + " "):
        parts = line.split(" ", 2)
        code = parts[1] if len(parts) > 1 else ""
        if len(code) != 3 or not is_number(code) or not 100 <= int(code) <= 699:
            raise SipParseError(f"status line {line[:80]!r}: status code is not 100..699")
        return SipMessage.response(int(code), parts[2].strip() if len(parts) > 2 else "")
    parts = line.split(" ")
    if len(parts) != 3:
        raise SipParseError(f"request line {line[:80]!r} is not 'METHOD URI SIP/2.0'")
    method, uri, version = parts
    if version != _VERSION:
        raise SipParseError(f"request line {line[:80]!r}: version is not {_VERSION}")
    if not _TOKEN.match(method):
        raise SipParseError(f"request line {line[:80]!r}: method is not a token")
    if ":" not in uri:
        raise SipParseError(f"request line {line[:80]!r}: URI has no scheme")
    return SipMessage.request(method, uri)


def _parse_headers(lines: list[str]) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    for line in lines:
        if line[:1] in (" ", "\t"):
            if not out:
                raise SipParseError("continuation line before the first header")
            name, value = out[-1]
            out[-1] = (name, f"{value} {line.strip()}".strip())
            continue
        name, colon, value = line.partition(":")
        name = name.strip()
        if not colon:
            raise SipParseError(f"header line {line[:60]!r} has no ':'")
        if not name or not _TOKEN.match(name):
            raise SipParseError(f"header name {name[:40]!r} is not a token")
        out.append((canonical_name(name), value.strip()))
    return out


class StreamFramer:
    """Cut a TCP/TLS byte stream into SIP messages using Content-Length (RFC 3261 §18.3)."""

    def __init__(self) -> None:
        self._buf = b""

    def feed(self, data: bytes) -> list[bytes]:
        """Add received bytes; return every complete message now available (raw bytes).

        Raises SipParseError when the stream cannot be framed (no Content-Length, repeated
        Content-Length headers that disagree, or a header block too large); the connection
        should then be closed.
        """
        self._buf += data
        out: list[bytes] = []
        while True:
            self._buf = self._buf.lstrip(b"\r\n")  # CRLF keep-alives (RFC 5626 §3.5.1)
            found = header_end(self._buf)
            if found is None:
                if len(self._buf) > MAX_MESSAGE:
                    raise SipParseError("header block longer than 65535 bytes")
                return out
            end, sep = found
            head = self._buf[:end].decode("utf-8", "replace")
            length = declared_length(_framing_values(head))
            if length is None:
                raise SipParseError("Content-Length is missing on a stream transport")
            total = end + sep + length
            if total > MAX_MESSAGE:
                # Refused before its body is buffered, as SipMessage.parse would refuse it.
                raise SipParseError(f"message of {total} bytes exceeds {MAX_MESSAGE}")
            if len(self._buf) < total:
                return out
            out.append(self._buf[:total])
            self._buf = self._buf[total:]
