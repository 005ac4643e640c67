"""OpenSSL only when TLS is used: asyncio imported without `ssl`, `ssl` loaded on demand,
and hashlib on its built-in hashes.

asyncio imports `ssl` when it is first imported (about 4 MiB of resident memory with
OpenSSL), although an agent reporting to an http:// collector whose probes use no TLS never
needs it. `import_asyncio_without_ssl()` imports asyncio with `ssl` kept out (asyncio
supports that: its modules then hold `ssl = None`); `ssl_module()` loads `ssl` when TLS is
actually wanted and hands it to those asyncio modules, so TLS works as usual from then on.
Code that only needs to recognise TLS errors asks `loaded_ssl()`: without `ssl` loaded no
TLS error can have happened.

`keep_openssl_out()` also keeps hashlib off OpenSSL's libcrypto (`_hashlib`, another 2.8
MiB: pydantic imports hashlib through `secrets`): Python's built-in MD5, SHA-1, SHA-2, SHA-3
and BLAKE2 serve everything the agent hashes (SIP digest, report ids, config versions).
`ssl` still loads libcrypto for itself when TLS is used.

`client_context(verify)` is the client context of every TLS connection the agent opens (to
the collector, to a SIP server): making one loads the system's CA store (22 ms of CPU on a
2-vCPU VM), so one is made per trust setting and kept, not one per connection.
"""

from __future__ import annotations

import os
import sys
from types import ModuleType
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import ssl

# asyncio's modules that hold a module-level `ssl` (None when imported without it).
_ASYNCIO_HOLDERS = ("asyncio.base_events", "asyncio.selector_events", "asyncio.sslproto")


def keep_openssl_out() -> None:
    """For a process that wants OpenSSL only if it uses TLS: hashlib without `_hashlib`
    (unless hashlib is imported already) and asyncio without `ssl`."""
    if "hashlib" not in sys.modules and "_hashlib" not in sys.modules:
        sys.modules["_hashlib"] = None  # type: ignore[assignment]  # hashlib falls back
    import_asyncio_without_ssl()


def import_asyncio_without_ssl() -> None:
    """Import asyncio without `ssl`, unless either is imported already. Later imports of
    `ssl` work as usual; `ssl_module()` also tells asyncio about it."""
    if "asyncio" in sys.modules or "ssl" in sys.modules:
        return
    sys.modules["ssl"] = None  # type: ignore[assignment]  # makes `import ssl` fail
    try:
        import asyncio  # noqa: F401
    finally:
        if "ssl" in sys.modules and sys.modules["ssl"] is None:
            del sys.modules["ssl"]


def loaded_ssl() -> ModuleType | None:
    """The `ssl` module if something loaded it, else None (then no TLS is in use)."""
    return sys.modules.get("ssl")


def ssl_module() -> ModuleType:
    """The `ssl` module, loaded now if needed, with asyncio's TLS support switched on."""
    import ssl

    for name in _ASYNCIO_HOLDERS:
        mod = sys.modules.get(name)
        if mod is not None and getattr(mod, "ssl", None) is None:
            mod.ssl = ssl  # type: ignore[attr-defined]
    sslproto = sys.modules.get("asyncio.sslproto")
    if sslproto is not None and not hasattr(sslproto, "SSLAgainErrors"):
        sslproto.SSLAgainErrors = (ssl.SSLWantReadError, ssl.SSLSyscallError)  # type: ignore[attr-defined]
    return ssl


# the client contexts made, by verification and the CA files named in the environment
_CLIENT_CONTEXTS: dict[tuple[bool, str | None, str | None], ssl.SSLContext] = {}


def client_context(verify: bool = True) -> ssl.SSLContext:
    """The client context for `verify` (off: no certificate or host name check), made once
    per trust setting: verification and the CA files `SSL_CERT_FILE`/`SSL_CERT_DIR` name."""
    key = (verify, os.environ.get("SSL_CERT_FILE"), os.environ.get("SSL_CERT_DIR"))
    ctx = _CLIENT_CONTEXTS.get(key)
    if ctx is not None:
        return ctx
    ssl = ssl_module()
    ctx = ssl.create_default_context()
    if not verify:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    _CLIENT_CONTEXTS[key] = ctx
    return ctx
