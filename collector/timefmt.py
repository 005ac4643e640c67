"""How the collector writes times on the wire: Unix seconds in, ISO 8601 UTC out."""

from __future__ import annotations

from datetime import UTC, datetime


def iso(ts: float | None) -> str | None:
    """ISO 8601 UTC text of a Unix time, None for None."""
    return None if ts is None else datetime.fromtimestamp(ts, UTC).isoformat()
