"""Credentials file: written with mode 0600, atomically, and read back; damage is reported."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from agent.runtime.client import Credentials


def test_credentials_round_trip_with_mode_0600(tmp_path: Path) -> None:
    c = Credentials("http://127.0.0.1:1", "a1", "secret-key", "s1")
    path = tmp_path / "state" / "agent.json"
    c.save(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert Credentials.load(path) == c
    assert [p.name for p in path.parent.iterdir()] == ["agent.json"]


def test_missing_and_damaged_credentials_say_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="enroll first"):
        Credentials.load(tmp_path / "none.json")
    bad = tmp_path / "bad.json"
    bad.write_text('{"agent_id": "x"}')
    with pytest.raises(ValueError, match="damaged"):
        Credentials.load(bad)
