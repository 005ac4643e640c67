"""Everything that crosses a process boundary: probe results, one measurement model per
probe kind, job specs and statuses, readiness reports, and the packet value objects.
The collector imports nothing else of the agent."""

# The release (pyproject.toml's version): agents report it at enrollment and in their
# User-Agent, the collector in its OpenAPI document. `agent.__version__` is this.
VERSION = "0.1.0"
