"""Shared CLI output for probe results: one JSON object per line, or a readable table."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Callable, Sequence
from typing import Any

from agent.probes import run_many
from agent.wire.lite import ProbeResult

# A table renderer turns results into (column headers, rows of cells).
TableFn = Callable[[Sequence[ProbeResult]], tuple[list[str], list[list[str]]]]


def fmt(value: Any, digits: int = 2) -> str:
    """A cell: numbers rounded, None as an em dash."""
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def flatten(measurement: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Scalars of a nested measurement as dotted keys; a list of texts (an assumption, ALG
    evidence) joined with "; ", other lists left out."""
    out: dict[str, Any] = {}
    for key, value in measurement.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flatten(value, f"{name}."))
        elif not isinstance(value, list):
            out[name] = value
        elif value and all(isinstance(v, str) for v in value):
            out[name] = "; ".join(value)
    return out


def generic_table(results: Sequence[ProbeResult]) -> tuple[list[str], list[list[str]]]:
    """One row per measurement field per target: works for any probe."""
    rows: list[list[str]] = []
    for r in results:
        status = "ok" if r.success else f"FAILED: {r.error.message if r.error else ''}"
        rows.append([r.target, "status", status])
        for key, value in flatten(r.measurement or {}).items():
            rows.append([r.target, key, fmt(value)])
    return ["target", "field", "value"], rows


def emit(results: Sequence[ProbeResult], as_json: bool, table: TableFn = generic_table) -> int:
    """Print results; exit status 0 when every result succeeded, 1 otherwise."""
    if as_json:
        for r in results:
            sys.stdout.write(json.dumps(r.to_json_dict()) + "\n")
    else:
        from rich.console import Console
        from rich.table import Table

        headers, rows = table(results)
        t = Table(*headers, title=f"{results[0].probe} results" if results else None)
        for row in rows:
            t.add_row(*row)
        # Off a terminal (pipes, CI logs) rich would assume 80 columns and squash the table.
        Console(width=None if sys.stdout.isatty() else 200).print(t)
        for r in results:
            if not r.success and r.error:
                print(f"{r.target}: {r.error.message}", file=sys.stderr)
    return 0 if all(r.success for r in results) else 1


def run_and_emit(
    probe: str,
    targets: Sequence[str],
    options: dict[str, Any],
    as_json: bool,
    table: TableFn = generic_table,
    concurrency: int = 8,
) -> int:
    """Run `probe` against `targets` concurrently and print the results."""
    results = asyncio.run(run_many(probe, list(targets), options, concurrency=concurrency))
    return emit(results, as_json, table)
