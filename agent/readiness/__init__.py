"""VoIP readiness: the tier-1 on-demand test suite, its checks, thresholds and capacity ramp.

Public surface: `ReadinessOptions`, `run_readiness`, `ReadinessReport`, `Check`. The
options and report models are wire types (agent/wire/readiness.py), their writers are in
agent/wire/report.py: the collector reads and renders the same report.
"""

from agent.wire.readiness import REPORT_VERSION, Check, ReadinessOptions, ReadinessReport

__all__ = ["REPORT_VERSION", "Check", "ReadinessOptions", "ReadinessReport", "run_readiness"]


def __getattr__(name: str) -> object:
    if name == "run_readiness":
        from agent.readiness.suite import run_readiness

        return run_readiness
    raise AttributeError(name)
