"""The suite's pytest-xdist grouping (tests/scheduling.py) holds with the installed pytest
and pytest-xdist: a file's tests run on one worker, and the fixed-port files (SERIAL) all
on one."""

from __future__ import annotations

import re
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

HERE = Path(__file__).resolve().parent

CONFTEST = f"""\
import importlib.util

_spec = importlib.util.spec_from_file_location("scheduling", {str(HERE / "scheduling.py")!r})
_real = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_real)
pytest_xdist_make_scheduler = _real.pytest_xdist_make_scheduler
"""

SAMPLE = """\
import pytest


@pytest.mark.parametrize("i", range(8))
def test_x(i):
    pass
"""


def test_a_files_tests_share_a_worker_and_the_serial_files_one(tmp_path: Path) -> None:
    files = ["tests/docs/test_a.py", "tests/sip/test_b.py", "tests/other/test_c.py",
             "tests/more/test_d.py"]  # fmt: skip
    for f in files:
        (tmp_path / f).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / f).write_text(SAMPLE)
    (tmp_path / "tests" / "conftest.py").write_text(CONFTEST)
    (tmp_path / "pytest.ini").write_text("[pytest]\n")
    out = subprocess.run(
        [sys.executable, "-m", "pytest", "-n", "2", "-v", "-p", "no:cacheprovider",
         "-p", "no:randomly", "tests"],
        cwd=tmp_path, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    workers: dict[str, set[str]] = defaultdict(set)
    for worker, path in re.findall(r"\[(gw\d)\] \[ *\d+%\] PASSED (\S+?)::", out.stdout):
        workers[path].add(worker)
    assert sorted(workers) == sorted(files), out.stdout[-3000:]
    assert all(len(w) == 1 for w in workers.values()), dict(workers)
    assert workers["tests/docs/test_a.py"] == workers["tests/sip/test_b.py"]
