"""Error hierarchy for probes. Each class names its category; what a category means for a
person is the table `CATEGORY_MESSAGES` in agent/wire/errors.py (the collector reads it
too, for tickets)."""

from __future__ import annotations

from typing import Any

from agent.wire.errors import CATEGORY_MESSAGES

__all__ = [
    "CATEGORY_MESSAGES", "CliError", "ConfigError", "NetworkUnreachableError", "PeerError",
    "PermissionDeniedError", "ProbeError", "ProbeTimeoutError", "ResolveError", "SipError",
]  # fmt: skip


class CliError(Exception):
    """A user error on the command line: printed as one line on stderr, exit status 2."""


class ProbeError(Exception):
    """Base class: a probe could not measure. `category` groups errors for tickets."""

    category = "probe"

    def __init__(self, message: str, *, measurement: Any = None) -> None:
        super().__init__(message)
        self.message = message
        # What was measured before the failure (e.g. ICMP with every reply lost): the
        # probe's measurement model (a Struct of agent.wire.lite, or a pydantic model).
        self.measurement = measurement


class ConfigError(ProbeError):
    """Options or config are invalid."""

    category = "config"


class ResolveError(ProbeError):
    """A host name did not resolve."""

    category = "dns"


class PermissionDeniedError(ProbeError):
    """The probe needs a privilege the agent does not have (raw socket, ...)."""

    category = "privilege"


class NetworkUnreachableError(ProbeError):
    """No route to the target, or the network refused the packets."""

    category = "network"


class ProbeTimeoutError(ProbeError):
    """The probe's deadline passed before it finished."""

    category = "timeout"


class PeerError(ProbeError):
    """The far end answered, but not as the protocol requires."""

    category = "peer"


class SipError(ProbeError):
    """SIP signalling failed (final error response, auth failure, transaction timeout)."""

    category = "sip"
