"""qos-scout agent: on-site probes, the voice-quality maths and the wire schema."""

__version__ = "0.1.0"
