"""Nokia's twampy (an independent TWAMP-light implementation) as a test peer: find it, start its
responder, run its sender and read the statistics table it prints.

twampy is not on PyPI: a copy lives in tests/peers/twampy (BSD 3-Clause). TWAMPY_SRC (its
`src` directory) or an installed twampy take precedence.
"""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path


def command() -> list[str] | None:
    """argv prefix that runs twampy with this interpreter, or None if it is not available."""
    src = os.environ.get("TWAMPY_SRC")
    if src and (Path(src) / "twampy" / "__main__.py").is_file():
        return ["env", f"PYTHONPATH={src}", sys.executable, "-m", "twampy"]
    if importlib.util.find_spec("twampy") is not None:
        return [sys.executable, "-m", "twampy"]
    if (VENDORED / "twampy" / "__main__.py").is_file():
        return ["env", f"PYTHONPATH={VENDORED}", sys.executable, "-m", "twampy"]
    return None


VENDORED = Path(__file__).resolve().parents[1] / "peers" / "twampy"


SKIP_REASON = (
    "twampy is not available: tests/peers/twampy is missing; install "
    "https://github.com/nokia/twampy or set TWAMPY_SRC to its src directory"
)


@dataclass(frozen=True)
class Row:
    """One line of twampy's table: delays in ms and loss in percent."""

    min_ms: float
    max_ms: float
    avg_ms: float
    jitter_ms: float
    loss_pct: float


_UNITS = {"us": 1e-3, "ms": 1.0, "sec": 1000.0, "min": 60_000.0}
_ROW = re.compile(r"^\s*(Outbound|Inbound|Roundtrip):\s+(.*?)\s+(-?[\d.]+)%\s*$")
_VALUE = re.compile(r"(-?[\d.]+)(us|ms|sec|min)")


def parse_table(text: str) -> dict[str, Row]:
    """twampy sender's summary table -> {"Outbound": Row, "Inbound": Row, "Roundtrip": Row}."""
    out: dict[str, Row] = {}
    for line in text.splitlines():
        m = _ROW.match(line)
        if not m:
            continue
        values = [float(v) * _UNITS[u] for v, u in _VALUE.findall(m.group(2))]
        if len(values) != 4:
            raise ValueError(f"unexpected twampy line: {line!r}")
        out[m.group(1)] = Row(*values, loss_pct=float(m.group(3)))
    if set(out) != {"Outbound", "Inbound", "Roundtrip"}:
        raise ValueError(f"no twampy statistics table in:\n{text}")
    return out


_REQUEST = re.compile(r"Request from (\S+):(\d+) \[sseq=(\d+) outbound=(-?[\d.]+)ms\]")


def requests_by_port(log: str) -> dict[int, list[tuple[int, float]]]:
    """twampy responder's verbose log -> (sender sequence number, outbound delay ms as it
    prints it: its receive time minus our timestamp) per packet received, per source port."""
    out: dict[int, list[tuple[int, float]]] = {}
    for m in _REQUEST.finditer(log):
        out.setdefault(int(m.group(2)), []).append((int(m.group(3)), float(m.group(4))))
    return out


def wait_udp_bound(
    port: int, run: Callable[[Sequence[str]], str], proc: subprocess.Popen, deadline_s: float = 20
) -> None:
    """Wait until something listens on UDP `port` (`run` executes ss where it must look)."""
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        if proc.poll() is not None:
            raise RuntimeError(f"twampy exited with {proc.returncode} before listening")
        if run(["ss", "-Hlun", f"sport = :{port}"]).strip():
            return
        time.sleep(0.05)  # polling a condition with a deadline
    raise TimeoutError(f"twampy did not listen on UDP {port} within {deadline_s} s")


def eventually(cond: Callable[[], bool], deadline_s: float = 10) -> bool:
    """Whether `cond` becomes true within the deadline (a counter another thread updates)."""
    end = time.monotonic() + deadline_s
    while not cond():
        if time.monotonic() > end:
            return False
        time.sleep(0.01)
    return True


def local_run(argv: Sequence[str]) -> str:
    return subprocess.run(list(argv), capture_output=True, text=True, check=True).stdout
