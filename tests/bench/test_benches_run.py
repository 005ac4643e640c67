"""The benchmarks still run against the code they measure: nothing else in the suite runs
them, and a bench that calls an API the code no longer has fails only when someone needs its
figures."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BENCHES = sorted(p.name for p in (ROOT / "bench").glob("*.py") if not p.name.startswith("_"))


@pytest.mark.parametrize("bench", BENCHES)
def test_every_bench_imports_and_explains_its_arguments(bench: str) -> None:
    out = subprocess.run([sys.executable, f"bench/{bench}", "--help"], cwd=ROOT,
                         capture_output=True, text=True, timeout=120)  # fmt: skip
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.startswith("usage:"), out.stdout[:500]
    bad = subprocess.run([sys.executable, f"bench/{bench}", "--no-such-option"], cwd=ROOT,
                         capture_output=True, text=True, timeout=120)  # fmt: skip
    assert bad.returncode == 2 and "Traceback" not in bad.stderr, bad.stderr[-2000:]
    assert "--no-such-option" in bad.stderr


def test_storage_bench_stores_a_site_day_on_sqlite() -> None:
    """One site's day of the captured default mix through the real ingest: the table's
    figures come out and the compact layout is smaller than the JSON it stores."""
    out = subprocess.run(
        [sys.executable, "bench/storage.py", "--db", "sqlite", "--sites", "1",
         "--from", "tests/data/results_default_mix.json"],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-3000:]
    row = next(line for line in out.stdout.splitlines() if line.startswith("| sqlite |"))
    before, after, as_json = (float(x.replace(",", "")) for x in row.split("|")[2:5])
    assert 0 < after < as_json < before, row


def test_config_check_bench_measures_every_kind_on_sqlite() -> None:
    """A short run against a real `collector serve`: every kind's row comes out (each
    request's answer is checked by the bench itself: 304 for the checks, 200 for the poll)."""
    out = subprocess.run(
        [sys.executable, "bench/config_check.py", "--agents", "4", "--requests", "20",
         "--rounds", "1"],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-3000:]
    assert "(2 with a central profile)" in out.stdout, out.stdout
    rows = [line for line in out.stdout.splitlines() if line.startswith("| config check")]
    assert len(rows) == 2 and "| job poll (wait=0), fast path |" in out.stdout, out.stdout
