"""RFC 6076 ratios over many call attempts: SER, SEER, ISA, SCR (pure)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

SEER_CODES = frozenset({200, 480, 486, 600, 603})
ISA_CODES = frozenset({408, 500, 503, 504})


@dataclass(frozen=True)
class Ratios:
    attempts: int
    ser_pct: float | None
    seer_pct: float | None
    isa_pct: float | None
    scr_pct: float | None


def ratios(final_codes: Sequence[int | None], completed: Sequence[bool]) -> Ratios:
    """`final_codes[i]` is the final response to INVITE i (None: no response, counted as 408);
    `completed[i]` says the session was set up and ended by a successful BYE.

    SER = 200s / (INVITEs - 3xx); SEER = (200, 480, 486, 600, 603) / (INVITEs - 3xx);
    ISA = (408, 500, 503, 504) / INVITEs; SCR = completed sessions / INVITEs; in percent.
    """
    if len(final_codes) != len(completed):
        raise ValueError("final_codes and completed must have the same length")
    codes = [408 if c is None else c for c in final_codes]
    n = len(codes)
    redirects = sum(1 for c in codes if 300 <= c < 400)
    base = n - redirects
    ok = sum(1 for c in codes if 200 <= c < 300)
    effective = sum(1 for c in codes if c in SEER_CODES or 200 <= c < 300)
    ineffective = sum(1 for c in codes if c in ISA_CODES)
    return Ratios(
        attempts=n,
        ser_pct=100.0 * ok / base if base else None,
        seer_pct=100.0 * effective / base if base else None,
        isa_pct=100.0 * ineffective / n if n else None,
        scr_pct=100.0 * sum(completed) / n if n else None,
    )
