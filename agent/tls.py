"""OpenSSL only when TLS is used: asyncio imported without `ssl`, and `ssl` loaded on demand.

asyncio imports `ssl` when it is first imported (about 4 MiB of resident memory with
OpenSSL), although an agent reporting to an http:// collector whose probes use no TLS never
needs it. `import_asyncio_without_ssl()` imports asyncio with `ssl` kept out (asyncio
supports that: its modules then hold `ssl = None`); `ssl_module()` loads `ssl` when TLS is
actually wanted and hands it to those asyncio modules, so TLS works as usual from then on.
Code that only needs to recognise TLS errors asks `loaded_ssl()`: without `ssl` loaded no
TLS error can have happened.
"""

from __future__ import annotations

import sys
from types import ModuleType

# asyncio's modules that hold a module-level `ssl` (None when imported without it).
_ASYNCIO_HOLDERS = ("asyncio.base_events", "asyncio.selector_events", "asyncio.sslproto")


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
