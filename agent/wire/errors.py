"""What both sides say about errors: validation failures as one line naming each field, and
what each probe error category means for a person (reports on the agent, tickets on the
collector)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the agent's running path loads no pydantic
    from pydantic import ValidationError

VALUE_ERROR_PREFIX = "Value error, "

# Probe error category (ProbeErrorInfo.category, agent/errors.py) -> what it means for a person.
CATEGORY_MESSAGES: dict[str, str] = {
    "probe": "The test could not take this measurement.",
    "config": "The test was set up wrongly: its options or configuration are invalid.",
    "dns": "A name did not resolve: the site's DNS servers cannot find this host, so phones "
    "using the same DNS cannot find it either.",
    "privilege": "The agent lacks a privilege this test needs (for example raw sockets); "
    "this is about the agent's installation, not the network.",
    "network": "The target is unreachable from the site: no route, or a firewall refuses "
    "the traffic.",
    "timeout": "The test did not finish in time: the far end did not answer, or the network "
    "dropped the traffic.",
    "peer": "The far end answered, but not as its protocol requires.",
    "sip": "SIP signalling failed: the server refused the request, did not answer, or "
    "rejected the credentials.",
    "internal": "The test crashed: a bug in qos-scout, not a fault of the network.",
}


def category_message(category: str | None) -> str:
    """The sentence for a probe error category; the generic one for an unknown category."""
    return CATEGORY_MESSAGES.get(category or "probe", CATEGORY_MESSAGES["probe"])


def format_validation_error(
    exc: ValidationError,
    *,
    unknown: str = "unknown key",
    root: str | None = "(root)",
    strip_value_error: bool = False,
    first_only: bool = False,
    prefix: str = "",
) -> str:
    """The problems of `exc` as `field.path: message`, joined by "; ".

    `unknown` replaces pydantic's message for a key the model forbids; a problem with no
    field path is prefixed with `root` (None: the message alone); `strip_value_error` drops
    pydantic's "Value error, " before a validator's own message; `first_only` keeps the
    first problem; `prefix` goes before every path (`spec.` for a model validated inside a
    larger document; a problem with no path of its own is then named by the prefix). Parts
    of the path that name a validator function are left out.
    """
    parts = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"] if not str(p).startswith("function-"))
        loc = prefix + loc if loc else prefix.rstrip(".")
        msg = unknown if err["type"] == "extra_forbidden" else err["msg"]
        if strip_value_error:
            msg = msg.removeprefix(VALUE_ERROR_PREFIX)
        if loc:
            parts.append(f"{loc}: {msg}")
        else:
            parts.append(f"{root}: {msg}" if root is not None else msg)
        if first_only:
            break
    return "; ".join(parts)
