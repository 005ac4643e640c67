"""qos-scout agent: on-site probes, the voice-quality maths and the wire schema."""

from agent.wire import VERSION as __version__

__all__ = ["__version__"]
