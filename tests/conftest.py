"""Suite-wide settings: hypothesis without wall-clock deadlines (the suite must pass while
another process keeps both cores busy; a property is about values, not speed)."""

from __future__ import annotations

from hypothesis import HealthCheck, settings

settings.register_profile("qos-scout", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("qos-scout")
