"""What the SIP probes share: transport options, target resolution and error mapping."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Annotated, Literal, Protocol

import msgspec
from msgspec import Meta

from agent.errors import NetworkUnreachableError, PeerError, ResolveError, SipError
from agent.probes import Target
from agent.tls import loaded_ssl

if TYPE_CHECKING:
    from agent.sip.client import SipTarget
    from agent.sip.endpoint import SipEndpoint


class SipTransportOptions(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """The options every SIP probe takes (`sip_base.SipOptionsBase` is the same for the
    probes whose options are pydantic models)."""

    transport: Literal["udp", "tcp", "tls"] = "udp"
    tls_verify: bool = True  # check the server's TLS certificate
    user: Annotated[str, Meta(max_length=128)] | None = None  # auth / From user
    password: Annotated[str, Meta(max_length=256)] | None = None
    # name server for the SRV/A lookups of the SIP domain, HOST or HOST:PORT ([V6]:PORT);
    # None: the system's
    dns_server: str | None = None

    def __post_init__(self) -> None:
        if self.dns_server is not None:
            try:
                name_server(self.dns_server)
            except ValueError as exc:
                raise ValueError(f"@dns_server: {exc}") from None


class SipOptions(Protocol):
    """What `sip_session` reads of a SIP probe's options."""

    @property
    def transport(self) -> str: ...
    @property
    def tls_verify(self) -> bool: ...
    @property
    def dns_server(self) -> str | None: ...


def name_server(text: str) -> tuple[str, int]:
    """'HOST', 'HOST:PORT' or '[V6]:PORT' -> (host, port); ValueError names what is wrong."""
    host, port = text, "53"
    if text.startswith("["):
        host, sep, rest = text[1:].partition("]")
        if not sep or (rest and not rest.startswith(":")):
            raise ValueError(f"name server {text!r} must be HOST, HOST:PORT or [V6]:PORT")
        port = rest[1:] or "53"
    elif text.count(":") == 1:
        host, port = text.split(":")
    if not host or not port.isdigit() or not 1 <= int(port) <= 65535:
        raise ValueError(f"name server {text!r} must be HOST, HOST:PORT or [V6]:PORT")
    return host, int(port)


def target_uri(target: Target) -> str:
    if target.uri:
        return target.uri
    host = f"[{target.host}]" if ":" in target.host else target.host
    return f"sip:{host}" + (f":{target.port}" if target.port else "")


@contextlib.asynccontextmanager
async def sip_session(
    target: Target, opts: SipOptions
) -> AsyncIterator[tuple[SipEndpoint, SipTarget]]:
    """(endpoint, resolved target) with SIP failures mapped to probe errors."""
    from agent.sip import client
    from agent.sip.endpoint import SipTimeoutError
    from agent.sip.message import SipParseError

    try:
        dns = name_server(opts.dns_server) if opts.dns_server else None
        resolved = await client.resolve(target_uri(target), opts.transport, dns_server=dns)
    except LookupError as exc:
        raise ResolveError(str(exc)) from None
    except SipParseError as exc:
        raise PeerError(f"bad target: {exc}") from None
    try:
        endpoint = await client.open_endpoint(resolved, tls_verify=opts.tls_verify)
    except OSError as exc:
        ssl = loaded_ssl()  # None: no TLS was tried
        if ssl is not None and isinstance(exc, ssl.SSLCertVerificationError):
            raise PeerError(
                f"TLS certificate of {resolved.host} not accepted: {exc.verify_message} "
                "(tls_verify: false / --insecure accepts it, e.g. a responder's self-signed one)"
            ) from None
        where = f"{resolved.addr[0]}:{resolved.addr[1]}"
        raise NetworkUnreachableError(
            f"cannot open SIP over {opts.transport.upper()} to {where}: {exc}"
        ) from None
    try:
        yield endpoint, resolved
    except SipTimeoutError as exc:
        raise SipError(str(exc)) from None
    except SipParseError as exc:
        raise PeerError(f"malformed SIP from the far end: {exc}") from None
    except ConnectionError as exc:
        raise NetworkUnreachableError(f"SIP connection lost: {exc}") from None
    finally:
        endpoint.close()
