"""Shipper retry delays: exponential with jitter, capped, so a fleet does not retry in step."""

from __future__ import annotations

import random

from agent.runtime.shipper import backoff_delay


def test_backoff_grows_doubles_and_caps_with_jitter() -> None:
    rng = random.Random(5)
    for attempt, cap in [(0, 1.0), (1, 2.0), (3, 8.0), (8, 256.0), (9, 300.0), (500, 300.0)]:
        delays = [backoff_delay(attempt, 1.0, 300.0, rng) for _ in range(200)]
        assert all(cap / 2 <= d <= cap for d in delays)
        assert max(delays) - min(delays) > cap / 4  # spread, not a fixed step


def test_two_agents_with_different_seeds_do_not_retry_in_step() -> None:
    a = [backoff_delay(n, 1.0, 300.0, random.Random(1)) for n in range(10)]
    b = [backoff_delay(n, 1.0, 300.0, random.Random(2)) for n in range(10)]
    assert all(abs(x - y) > 1e-6 for x, y in zip(a, b, strict=True))
