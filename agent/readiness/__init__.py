"""VoIP readiness: the tier-1 on-demand test suite, its checks, thresholds and report.

Public surface: `ReadinessOptions`, `run_readiness`, `ReadinessReport`, `Check`, and the
report writers in `agent.readiness.report`.
"""

from agent.readiness.model import REPORT_VERSION, Check, ReadinessReport
from agent.readiness.options import ReadinessOptions

__all__ = ["REPORT_VERSION", "Check", "ReadinessOptions", "ReadinessReport", "run_readiness"]


def __getattr__(name: str) -> object:
    if name == "run_readiness":
        from agent.readiness.suite import run_readiness

        return run_readiness
    raise AttributeError(name)
