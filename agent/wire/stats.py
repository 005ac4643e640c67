"""Order statistics of a sample, as measurements carry them (`rtt_ms`)."""

from __future__ import annotations

from pydantic import BaseModel


class SummaryStats(BaseModel):
    """min/avg/median/p95/max/stdev of a sample; every field is None for an empty sample."""

    min: float | None
    avg: float | None
    median: float | None
    p95: float | None
    max: float | None
    stdev: float | None
